"""A Live Photo's movie and an edit's sidecar that reach a watch folder before their
still (a sync client sends the small files first) still land beside it, under its
name; a video of its own is not held for that, and a companion whose still never
comes is backed up all the same."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import make_mov, sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds

pytestmark = pytest.mark.integration

LIVE_ID = "570F1469-09C7-4E50-9875-05F21D5BD166"  # the movie's tie to its still
TAKEN = datetime(2008, 5, 30, 15, 56, 1, tzinfo=UTC)  # jpg_Canon_40D.jpg's capture time


def test_a_movie_and_edit_that_come_before_their_still_land_beside_it(
    setup: Setup, samples: Path
) -> None:
    """A phone's IMG_0001.AAE and Live Photo IMG_0001.MOV are written 4 s before
    IMG_0001.JPG, whose name is taken that day by another photo already backed up: the
    still gets its ~hash suffix, and the movie and the edit carry it too, in the
    still's folder (not the edit's own date, not the movie's name without suffix).  A
    movie of its own (no Live Photo identifier) written with them is on the target
    before the still even comes."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}],
                     policy={"copies": 1, "media": 1, "offsite": 0}).start()  # fmt: skip
    try:
        (setup.inbox / "earlier").mkdir()
        earlier = setup.inbox / "earlier" / "IMG_0001.JPG"  # the same day, other bytes
        earlier.write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes() + b"another camera")
        p.wait_protected(1, timeout=30)

        phone = setup.inbox / "phone"
        phone.mkdir()
        came = time.monotonic()
        (phone / "IMG_0001.AAE").write_text("<plist><!-- the edit --></plist>")
        make_mov(phone / "IMG_0001.MOV", TAKEN, payload=b"live" * 4096, content_id=LIVE_ID)
        movie = make_mov(phone / "MVI_0002.MOV", TAKEN, payload=b"clip" * 4096)
        wait_for(lambda: sha256(movie) in target_files(lib).values(), 3.5,
                 "the movie of its own, before the still comes")  # fmt: skip
        time.sleep(max(0.0, came + 4 - time.monotonic()))
        shutil.copy(samples / "jpg_Canon_40D.jpg", phone / "IMG_0001.JPG")
        p.wait_protected(5, timeout=30)

        still = f"2008/2008-05-30/IMG_0001~{sha256(phone / 'IMG_0001.JPG')[:8]}"
        expected = {
            "2008/2008-05-30/IMG_0001.JPG": sha256(earlier),
            f"{still}.JPG": sha256(phone / "IMG_0001.JPG"),
            f"{still}.MOV": sha256(phone / "IMG_0001.MOV"),
            f"{still}.AAE": sha256(phone / "IMG_0001.AAE"),
            "2008/2008-05-30/MVI_0002.MOV": sha256(movie),
        }
        assert_target_holds(lib, expected)
        assert [] == p.events("companion_taken_alone")
    finally:
        assert 0 == p.stop()


def test_a_movie_and_edit_whose_still_never_comes_are_backed_up_after_a_minute(
    setup: Setup, samples: Path
) -> None:
    """An .AAE and a Live Photo .MOV with no still: while their still may yet come (for
    a minute from when they arrived, by their ctime, though a sync client kept their
    mtime of years ago) they are not copied; then each is backed up under its own date
    (`companion_taken_alone`).  The still that comes after that is filed under its own
    date and name, and nothing already on the target is moved or renamed."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}],
                     policy={"copies": 1, "media": 1, "offsite": 0}).start()  # fmt: skip
    try:
        came = time.monotonic()
        edit = setup.inbox / "IMG_0003.AAE"
        edit.write_text("<plist><!-- an edit of a photo not here --></plist>")
        movie = make_mov(setup.inbox / "IMG_0003.MOV", datetime(2019, 7, 1, 12, tzinfo=UTC),
                         payload=b"lone" * 4096, content_id=LIVE_ID)  # fmt: skip
        kept = datetime(2020, 1, 2, 12).timestamp()  # the mtime a sync client keeps
        for f in (edit, movie):
            os.utime(f, (kept, kept))
        time.sleep(10)
        assert {} == target_files(lib)  # held: its still may yet come

        p.wait_protected(2, timeout=75)
        waited = time.monotonic() - came
        assert 55 < waited, waited
        alone = {"2020/2020-01-02/IMG_0003.AAE": sha256(edit),
                 "2019/2019-07-01/IMG_0003.MOV": sha256(movie)}  # fmt: skip
        assert alone == target_files(lib)
        assert ["IMG_0003.AAE", "IMG_0003.MOV"] == sorted(
            e["path"] for e in p.events("companion_taken_alone")
        )

        shutil.copy(samples / "jpg_hdr_iphone_hdr_NO.jpg", setup.inbox / "IMG_0003.JPG")
        p.wait_protected(3, timeout=30)
        assert_target_holds(
            lib, {**alone, "2015/2015-04-10/IMG_0003.JPG": sha256(setup.inbox / "IMG_0003.JPG")}
        )
    finally:
        assert 0 == p.stop()


def test_run_once_takes_a_lone_companion_at_once(setup: Setup) -> None:
    """`photod run --once` (from cron, a script) backs up what is there now: a fresh
    .AAE with no still beside it is taken alone at once, not after a minute's wait for
    a still that a watching daemon would have waited for."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    (setup.inbox / "IMG_0004.AAE").write_text("<plist><!-- an edit --></plist>")
    began = time.monotonic()
    assert 0 == p.cli("run", "--once").returncode
    assert time.monotonic() - began < 30
    assert ["IMG_0004.AAE"] == [k.rsplit("/", 1)[1] for k in target_files(lib)]
    assert ["IMG_0004.AAE"] == [e["path"] for e in p.events("companion_taken_alone")]
