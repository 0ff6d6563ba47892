"""A file that changes while photod copies it (a sync client still writing, an editor
saving over it): the copy in flight is dropped and never recorded with a hash the file
never had as a whole; the file is taken again once it is stable."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds
from tests.integration.test_mounts import big_video, temps

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_a_file_changed_mid_copy_is_taken_again_once_stable(setup: Setup, change: str) -> None:
    """Mid-copy, 1 MB in the middle is rewritten (same size, new mtime), or the file is
    cut to half: `source_changed`, and in the end the catalog and both targets hold the
    final bytes only (the first version may count too, as it was complete once)."""
    lib, ext = setup.home / "library", setup.home / "ext"
    p = setup.photod(
        [{"name": "library", "path": str(lib)}, {"name": "ext", "path": str(ext), "create": True}]
    ).start()
    video = setup.inbox / "clip.mov"
    os.rename(big_video(setup.home / "clip.mov", 300), video)
    first = sha256(video)
    wait_for(lambda: temps(lib) or temps(ext), 30, "the copy to start")
    with open(video, "r+b") as f:
        if change == "rewritten":
            f.seek(150 * 1024 * 1024)
            f.write(os.urandom(1024 * 1024))
        else:
            f.truncate(150 * 1024 * 1024)
    if change == "truncated":  # (an old cut file: one just written waits for the rest)
        os.utime(video, (time.time() - 3600,) * 2)
    final = sha256(video)
    event = p.wait_event("source_changed", timeout=60)[0]
    assert ("inbox", "clip.mov") == (event["source"], event["path"])
    p.wait_event("asset_protected", asset=final, timeout=60)
    db = sqlite3.connect(setup.home / "state" / "catalog.sqlite")
    recorded = {r[0] for r in db.execute("SELECT sha256 FROM assets")}
    db.close()
    assert final in recorded and recorded <= {first, final}
    for root in (lib, ext):
        held = target_files(root)
        assert final in held.values() and set(held.values()) <= {first, final}
        assert_target_holds(root, held)
    assert 0 == p.stop()


def append_in_parts(path: Path, data: bytes, parts: int, pause: float) -> None:
    """Write ``data`` as a slow writer does: a part at a time, opened, appended and
    closed each time, with ``pause`` seconds between."""
    step = len(data) // parts + 1
    for at in range(0, len(data), step):
        with path.open("ab") as out:
            out.write(data[at : at + step])
        time.sleep(pause)


def test_a_file_written_a_chunk_at_a_time_is_taken_whole(setup: Setup, samples: Path) -> None:
    """A writer that appends a chunk at a time, closing the file after each (`cat >>`
    from a resumed download, an uploader's append per chunk), with a second's pause
    between chunks: photod takes the whole file once, never a partial one (each closed
    part was kept as a photo of its own, for ever, on every target)."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}])
    p.config.write_text(p.config.read_text().replace('settle = "0.5s"', 'settle = "3s"'))
    p.start()
    whole = (samples / "jpg_Canon_40D.jpg").read_bytes()
    append_in_parts(setup.inbox / "IMG_0001.JPG", whole, parts=4, pause=1)
    p.wait_event("asset_ingested", timeout=30)
    time.sleep(4)  # a partial taken late would show up by now
    assert [hashlib.sha256(whole).hexdigest()] == [e["asset"] for e in p.events("asset_ingested")]
    assert {"2008/2008-05-30/IMG_0001.JPG"} == set(target_files(lib))
    assert 0 == p.stop()


def test_a_file_written_slower_than_settle_is_taken_whole(setup: Setup, samples: Path) -> None:
    """A writer pausing longer than `settle` between chunks (a slow download): each part
    looks cut short (the JPEG's data ends early) and was written a moment ago, so it is
    not taken as a photo of its own; the whole file is taken once."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}]).start()  # settle: 0.5 s
    whole = (samples / "jpg_gps_DSCN0010.jpg").read_bytes()
    append_in_parts(setup.inbox / "DSCN0010.JPG", whole, parts=3, pause=1.5)
    p.wait_event("asset_ingested", timeout=30)
    time.sleep(2)  # a part taken late would show up by now
    assert [hashlib.sha256(whole).hexdigest()] == [e["asset"] for e in p.events("asset_ingested")]
    assert not p.events("asset_undecodable")
    # A cut photo whose time is ahead of the clock (a camera's) is not waited for until
    # the clock catches up: it is taken as it is, and said undecodable.
    ahead = setup.inbox / "AHEAD.JPG"
    ahead.write_bytes(whole[: len(whole) // 2])
    os.utime(ahead, (time.time() + 86400,) * 2)
    p.wait_event("asset_undecodable", timeout=15, path="AHEAD.JPG")
    assert 0 == p.stop()


@pytest.mark.parametrize("while_", ["stopped", "running"])
def test_a_photo_written_over_another_of_the_same_size_and_time_is_backed_up(
    setup: Setup, samples: Path, while_: str
) -> None:
    """A photo replaced in place by another of the same size, its time set back as
    `cp -p` or a camera card's 2-second times leave it (two cameras' uncompressed RAWs
    of one name): the new photo is backed up beside the old one, whether photod was
    stopped (its next scan) or running (the write's event), not taken for the same
    file until a source scrub came round (up to a month)."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0},
                     daemon='rescan_interval = "1h"')  # fmt: skip
    photo = setup.inbox / "DSC_0001.JPG"
    first = (samples / "jpg_Canon_40D.jpg").read_bytes()
    photo.write_bytes(first)
    old = time.time() - 3600
    os.utime(photo, (old, old))
    assert 0 == p.cli("run", "--once").returncode
    second = first[:-200] + os.urandom(198) + first[-2:]  # another photo, as many bytes
    if while_ == "running":
        p.start()
        p.wait_protected(1)
    time.sleep(1.1)  # (a later second than its record's)
    photo.write_bytes(second)
    os.utime(photo, (old, old))
    if while_ == "running":
        p.wait_protected(2, timeout=30)
        assert 0 == p.stop()
    else:
        assert 0 == p.cli("run", "--once").returncode
    held = set(target_files(lib).values())
    assert {hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()} == held
