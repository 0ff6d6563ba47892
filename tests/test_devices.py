"""Phone import rules that need no phone: what pairs with what, in which order files
are read, where a staging copy may go, and how a partial copy is resumed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from photod.catalog import DeviceFile
from photod.media import companion_key
from photod.phoneplan import is_render, lead, order, stills
from photod.staging import resume_point, stage_name

ON_PHONE = [
    "/DCIM/100APPLE/IMG_0001.HEIC",
    "/DCIM/100APPLE/IMG_0001.MOV",
    "/DCIM/100APPLE/IMG_0001.AAE",
    "/DCIM/101APPLE/IMG_0001.JPG",  # the same number in the next folder: another photo
    "/DCIM/101APPLE/IMG_0002.MOV",  # a plain video, no still
    "/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.heic",
]


def test_live_photo_movie_sidecar_and_edit_find_their_still() -> None:
    index = stills(ON_PHONE)
    assert lead("/DCIM/100APPLE/IMG_0001.MOV", index) == "/DCIM/100APPLE/IMG_0001.HEIC"
    assert lead("/DCIM/100APPLE/IMG_0001.AAE", index) == "/DCIM/100APPLE/IMG_0001.HEIC"
    assert lead(ON_PHONE[-1], index) == "/DCIM/100APPLE/IMG_0001.HEIC"
    assert lead("/DCIM/101APPLE/IMG_0002.MOV", index) is None
    assert lead("/DCIM/101APPLE/IMG_0001.JPG", index) is None  # a still leads itself


def test_only_rendered_edits_are_taken_from_mutations() -> None:
    assert is_render(ON_PHONE[-1])
    assert not is_render(
        "/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/Adjustments.plist"
    )
    assert not is_render("/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/FullSizeRender.heic")


def test_stills_are_read_before_what_pairs_with_them() -> None:
    files = [DeviceFile(p, 1, 1, "2026-01-01T00:00:00") for p in reversed(ON_PHONE)]
    ranks = [order(f.path)[0] for f in sorted(files, key=lambda f: order(f.path))]
    assert ranks == sorted(ranks)
    first = sorted(files, key=lambda f: order(f.path))[0].path
    assert first.endswith((".HEIC", ".JPG"))


def test_edit_is_named_after_its_original_and_sorts_after_it() -> None:
    lead = "2026/2026-09-15/IMG_0001.HEIC"
    edit = companion_key(lead, "FullSizeRender.heic", "_edited")
    movie = companion_key(lead, "IMG_0001.MOV")
    assert edit == "2026/2026-09-15/IMG_0001_edited.heic"
    assert sorted([edit, "2026/2026-09-15/IMG_0002.HEIC", movie, lead]) == [
        lead,
        movie,
        edit,
        "2026/2026-09-15/IMG_0002.HEIC",
    ]


def test_resume_point_trusts_only_a_checkpoint_of_the_same_file(tmp_path: Path) -> None:
    part, meta = tmp_path / "IMG.MOV.part", tmp_path / "IMG.MOV.part.json"
    data = bytes(range(256)) * 1000
    part.write_bytes(data + b"bytes written after the checkpoint, maybe never synced")
    meta.write_text(json.dumps({"size": 500_000, "mtime_ns": 7, "offset": len(data)}))

    offset, h = resume_point(part, meta, 500_000, 7)
    assert offset == len(data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert part.stat().st_size == len(data)  # cut back to the checkpoint

    # The file on the phone changed (another size or mtime): start again from 0.
    assert resume_point(part, meta, 500_000, 8)[0] == 0
    assert resume_point(part, meta, 400_000, 7)[0] == 0
    # No checkpoint, or a damaged one: from 0.
    meta.write_text("{not json")
    assert resume_point(part, meta, 500_000, 7)[0] == 0
    meta.unlink()
    assert resume_point(part, meta, 500_000, 7)[0] == 0


def test_a_partial_copy_linked_elsewhere_is_never_written_into(tmp_path: Path) -> None:
    """A partial copy whose file is also linked elsewhere (a target took it after a
    crash left the names odd) is not resumed: writing into it would change that copy
    too.  The phone's file is read again from its start."""
    part, meta = tmp_path / "IMG.MOV.part", tmp_path / "IMG.MOV.part.json"
    data = bytes(range(256)) * 1000
    part.write_bytes(data + b"more")
    os.link(part, tmp_path / "a copy on a target")
    meta.write_text(json.dumps({"size": 500_000, "mtime_ns": 7, "offset": len(data)}))
    assert resume_point(part, meta, 500_000, 7)[0] == 0
    assert data + b"more" == (tmp_path / "a copy on a target").read_bytes()


def test_a_phone_name_that_looks_like_a_partial_copy_is_never_anothers_partial() -> None:
    """`X.part` on the phone (with `*.part` taken out of `ignore`) is staged under a
    name that is not the partial copy of `X` (`X.part`, written in place)."""
    for name in ("IMG_0001.JPG", "a" * 300 + ".JPG", "bad-\udcff.jpg"):
        base = stage_name(name)
        for suffix in (".part", ".part.json"):
            odd = stage_name(name + suffix)
            assert odd != base + suffix
            assert not odd.endswith((".part", ".part.json"))
            assert len(odd.encode("utf-8", "surrogateescape")) + len(".part.json") <= 255


def test_odd_phone_names_get_safe_distinct_staging_names() -> None:
    """A name any disk takes is kept; one over the length limit or not UTF-8 becomes a
    safe name with a hash of the original: short enough for '.part.json' to follow,
    and two odd names never share a staging file."""
    assert "IMG_0001.HEIC" == stage_name("IMG_0001.HEIC")
    assert "ctrl\x01.jpg" == stage_name("ctrl\x01.jpg")  # a local disk takes it
    long_a, long_b = stage_name("a" * 300 + "1.jpg"), stage_name("a" * 300 + "2.jpg")
    assert long_a != long_b
    assert all(len(n.encode()) + len(".part.json") <= 255 for n in (long_a, long_b))
    assert (".jpg", ".jpg") == (long_a[-4:], long_b[-4:])
    odd = stage_name("bad-\udcff.jpg")
    odd.encode("utf-8")  # valid UTF-8 now
    assert odd.startswith("bad-") and odd.endswith(".jpg")


def test_a_busy_catalog_never_stalls_the_phones_loop(tmp_path: Path) -> None:
    """Another writer holds the catalog (a long transaction): telling a phone's new state
    returns at once on the phones' event loop, and the state reaches the catalog, in
    order, once the writer lets go."""
    import asyncio
    import sqlite3
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from photod import config
    from photod.catalog import Catalog
    from photod.devices import DeviceManager

    text = (
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "p"\ntype = "iphone"\n'
        f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{tmp_path}/lib"\n'
        f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
    )
    cfg = config.parse(text, tmp_path / "photod.toml")
    (tmp_path / "state").mkdir()
    catalog = Catalog(tmp_path / "state" / "catalog.sqlite")
    workers = ThreadPoolExecutor(1)
    phones = DeviceManager(
        cfg.iphones,
        cfg.daemon,
        cfg.source_roots(),
        tmp_path / "state" / "pairing",
        catalog,
        None,  # type: ignore[arg-type]
        workers,
        lambda: True,
    )
    udid = "00008110-000A1B2C3D4E5F60"
    asyncio.run(phones.records.begin(udid, "p", "Anna's iPhone"))  # the phone is attached
    other = sqlite3.connect(tmp_path / "state" / "catalog.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer that holds the catalog
    took = []

    def on_the_loop() -> None:
        started = time.monotonic()
        phones.records.set(udid, "importing", "12 new file(s)")
        phones.records.set(udid, "imported", "everything on the phone is imported", imported=12)
        took.append(time.monotonic() - started)

    t = threading.Thread(target=on_the_loop)
    t.start()
    t.join(timeout=5)
    assert took and took[0] < 0.5, took  # not waiting for the catalog
    time.sleep(0.5)
    other.execute("COMMIT")
    other.close()
    phones.lane.close()
    [saved] = catalog.devices()
    assert ("imported", 12) == (saved.state, saved.last_import["imported"])
    catalog.close()
    workers.shutdown()
    phones.loop.close()  # made with the manager; never run here


def test_a_small_file_is_staged_whatever_a_crash_left_at_its_partial_name(
    tmp_path: Path,
) -> None:
    """A small file is staged into a folder not made yet, and over what a crash left
    at its partial name (a link there is removed, never followed): the staged file
    holds the phone's bytes and mtime, nothing partial stays, and the link's target is
    untouched."""
    from photod.phonecopy import stage

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"someone else's")
    f = DeviceFile("/DCIM/100APPLE/IMG_0001.JPG", 5, 1_600_000_000_000_000_000, "")
    first = tmp_path / "new" / "100APPLE" / "IMG_0001.JPG"
    second = tmp_path / "old" / "IMG_0001.JPG"
    second.parent.mkdir()
    (tmp_path / "old" / "IMG_0001.JPG.part").symlink_to(outside)
    for staged in (first, second):
        assert hashlib.sha256(b"photo").hexdigest() == stage(b"photo", f, staged)
        assert (b"photo", f.mtime_ns) == (staged.read_bytes(), staged.stat().st_mtime_ns)
        assert [staged.name] == os.listdir(staged.parent)
    assert b"someone else's" == outside.read_bytes()
