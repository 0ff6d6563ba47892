"""The watch folders' intake, without a daemon: what a rewatch says."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from photod import config
from photod.catalog import Catalog
from photod.ingest import Ingestor
from photod.intake import FolderIntake
from photod.sources.folder import FolderWatcher


def test_a_folder_whose_watch_cannot_start_is_said_gone_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder there whose watch cannot start (a network mount whose root answers and
    whose tree does not: EIO) was said gone, then back (`source_available`), then gone
    again at every rewatch, every few seconds for as long as it lasted.  It is said
    gone once, and back only once its watch runs."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    text = (f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\n'
            f'type = "folder"\npath = "{inbox}"\n[[targets]]\nname = "lib"\n'
            f'type = "local"\npath = "{tmp_path / "lib"}"\n')  # fmt: skip
    cfg = config.parse(text, tmp_path / "c.toml")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    workers = ThreadPoolExecutor(1)
    ingestor = Ingestor(cfg.ingest, {"in": inbox}, catalog, None)  # type: ignore[arg-type]
    intake = FolderIntake(cfg.folders, cfg.ingest, ingestor, catalog, workers, tmp_path,
                          threading.Event(), lambda job: None)  # fmt: skip
    intake.watching = True

    def broken(self: FolderWatcher) -> bool:
        raise OSError(5, "Input/output error")

    try:
        monkeypatch.setattr(FolderWatcher, "start", broken)
        with capture_logs() as events:
            for _ in range(4):
                intake.rewatch()
        said = [e["event"] for e in events if e["event"].startswith("source_")]
        assert ["source_unavailable"] == said
        monkeypatch.undo()
        with capture_logs() as events:
            for _ in range(2):
                intake.rewatch()
        said = [e["event"] for e in events if e["event"].startswith("source_")]
        assert "source_available" in said and "source_unavailable" not in said
    finally:
        intake.stop()
        workers.shutdown()
        catalog.close()


def test_a_scan_of_a_large_library_asks_the_catalog_a_folder_at_a_time(tmp_path: Path) -> None:
    """A watch folder's scan read every file the catalog knows of it at once, to
    compare (200,000 files: 60 MB; a million, 300 MB: more than a small computer has
    beside the rest).  Asked a folder's files at a time, what it holds stays small, and
    it still finds every new and changed file: one whose name only case tells apart
    from a known one, one whose name is not UTF-8, one changed with its size kept."""
    import hashlib
    import os
    import time
    import tracemalloc

    from bench.scale import fill_catalog

    inbox = tmp_path / "inbox"
    n, there = 200_000, 1_500  # known to the catalog; of them, still in the folder
    rows = [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
             1000 + i, 10**18 + i) for i in range(n)]  # fmt: skip
    fill_catalog(tmp_path / "catalog.sqlite", rows, [])
    for _, rel, size, mtime in rows[:there]:
        (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (inbox / rel).write_bytes(b"x" * size)
        os.utime(inbox / rel, ns=(mtime, mtime))
    odd = os.fsdecode(b"2010/IMG_\xff.JPG")  # (a name from a foreign disk)
    (inbox / odd).write_bytes(b"y" * 10)
    os.utime(inbox / odd, ns=(10**18, 10**18))
    text = (f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "inbox"\n'
            f'type = "folder"\npath = "{inbox}"\n[[targets]]\nname = "lib"\n'
            f'type = "local"\npath = "{tmp_path / "lib"}"\n')  # fmt: skip
    cfg = config.parse(text, tmp_path / "c.toml")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.saw_source_file("inbox", odd, 10, 10**18, "f" * 64)
    workers = ThreadPoolExecutor(1)
    ingestor = Ingestor(cfg.ingest, {"inbox": inbox}, catalog, None)  # type: ignore[arg-type]
    intake = FolderIntake(cfg.folders, cfg.ingest, ingestor, catalog, workers, tmp_path,
                          threading.Event(), lambda job: None)  # fmt: skip
    try:
        tracemalloc.start()
        try:
            with capture_logs() as events:
                intake.reconcile()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        [scan] = [e for e in events if e["event"] == "scan_finished"]
        assert (there + 1, 0, 0) == (scan["files"], scan["changed"], len(intake.settler))
        assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"

        now = time.time_ns()
        found = [f"{2010 + 7 % 15}/img_{7:07d}.jpg", os.fsdecode(b"2010/IMG_\xfe.JPG"),
                 "2026/new.jpg", rows[3][1], odd]  # fmt: skip
        for rel in found:
            (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
            (inbox / rel).write_bytes(b"z" * 10)
            os.utime(inbox / rel, ns=(now, now))
        (inbox / rows[3][1]).write_bytes(b"z" * rows[3][2])  # same size, another time
        os.utime(inbox / rows[3][1], ns=(now, now))
        with capture_logs() as events:
            intake.reconcile()
        [scan] = [e for e in events if e["event"] == "scan_finished"]
        assert (there + 4, len(found)) == (scan["files"], scan["changed"])
        assert all(("inbox", str(inbox / rel)) in intake.settler for rel in found)
        assert len(found) == len(intake.settler)
    finally:
        intake.stop()
        workers.shutdown()
        catalog.close()


def _inbox_intake(
    tmp_path: Path, inbox: Path, catalog: Catalog
) -> tuple[FolderIntake, ThreadPoolExecutor]:
    """The watch folder ``inbox`` (source "inbox") and its intake on one worker, to scan
    with ``reconcile``; stop the intake and shut the worker down after."""
    text = (f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "inbox"\n'
            f'type = "folder"\npath = "{inbox}"\n[[targets]]\nname = "lib"\n'
            f'type = "local"\npath = "{tmp_path / "lib"}"\n')  # fmt: skip
    cfg = config.parse(text, tmp_path / "c.toml")
    workers = ThreadPoolExecutor(1)
    ingestor = Ingestor(cfg.ingest, {"inbox": inbox}, catalog, None)  # type: ignore[arg-type]
    intake = FolderIntake(cfg.folders, cfg.ingest, ingestor, catalog, workers, tmp_path,
                          threading.Event(), lambda job: None)  # fmt: skip
    return intake, workers


def test_a_scan_read_by_folder_ranges_misses_no_file_and_counts_none_twice(
    tmp_path: Path,
) -> None:
    """The scan reads what the catalog knows of a folder as a range of its index, in
    order: a folder's range ("a/" up to "a0") holds its sub-folders' files too, its
    siblings ("a b/", "a.b/", "a0/") sort right beside it, names that are not UTF-8 are
    kept as BLOBs, after every text, a folder of more than PART entries is listed a
    part at a time, and one whose range holds far more files than it has (long gone)
    is asked by name.  Every file is still counted once, and every changed one found."""
    import os
    import time
    import unicodedata

    from photod.sources.folder import PART

    inbox = tmp_path / "inbox"
    rels = ["r.jpg", "a/x.jpg", "a/X.jpg", "a/y.jpg", "a b/x.jpg", "a.b/x.jpg", "a0/x.jpg",
            "a/sub/x.jpg", "a/sub/deeper/z.jpg", "a/sub0/x.jpg", "a/sub b/x.jpg", "a/sub.b.jpg",
            unicodedata.normalize("NFC", "a/é.jpg"), unicodedata.normalize("NFD", "a/é.jpg"),
            os.fsdecode(b"a/\xff.jpg"), os.fsdecode(b"a/\xfd/k.jpg"), os.fsdecode(b"a\xff/k.jpg"),
            os.fsdecode(b"\xfe/x.jpg"), os.fsdecode(b"\xfe/sub/y.jpg"), os.fsdecode(b"\xfe0/q.jpg"),
            os.fsdecode(b"\xfe/\xfe.jpg"), "gone/kept.jpg", "big/sub/s.jpg"]  # fmt: skip
    rels += [f"big/{i:05d}.jpg" for i in range(PART + 10)] + [
        f"mid/{i:04d}.jpg" for i in range(1100)
    ]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    for i, rel in enumerate(rels):
        (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (inbox / rel).write_bytes(b"x" * (i % 7))
        os.utime(inbox / rel, ns=(10**18 + i, 10**18 + i))
        catalog.saw_source_file("inbox", rel, i % 7, 10**18 + i, "a" * 64)
    for i in range(300):  # files of the folder long gone, and of its gone sub-folders
        catalog.saw_source_file("inbox", f"gone/{i:03d}.jpg", 1, 1, "b" * 64)
        catalog.saw_source_file("inbox", f"gone/{i:03d}/x.jpg", 1, 1, "b" * 64)
        catalog.saw_source_file("inbox", os.fsdecode(b"gone/\xff%d.jpg" % i), 1, 1, "b" * 64)
    intake, workers = _inbox_intake(tmp_path, inbox, catalog)
    try:
        with capture_logs() as events:
            intake.reconcile()
        [scan] = [e for e in events if e["event"] == "scan_finished"]
        assert (len(rels), 0, 0) == (scan["files"], scan["changed"], len(intake.settler))

        now = time.time_ns()
        changed = [r for r in rels if not r.startswith(("big/0", "mid/")) or r.endswith("9.jpg")]
        for rel in changed:  # (its size kept, its time another)
            os.utime(inbox / rel, ns=(now, now))
        with capture_logs() as events:
            intake.reconcile()
        [scan] = [e for e in events if e["event"] == "scan_finished"]
        assert (len(rels), len(changed)) == (scan["files"], scan["changed"])
        assert all(("inbox", str(inbox / rel)) in intake.settler for rel in changed)
        assert len(changed) == len(intake.settler)
    finally:
        intake.stop()
        workers.shutdown()
        catalog.close()


def test_a_scan_drops_the_rows_of_files_gone_from_a_folder_it_listed_whole(
    tmp_path: Path,
) -> None:
    """Files deleted from a watch folder kept their rows for ever: an export folder
    emptied after each import grew the catalog at every one, and the scan read its
    folder's range past them, then by name.  Once the folder was seen on its device
    (the first scan), a scan drops the rows of the files and sub-folders a folder's
    complete listing lacks, in a folder of more than PART files too, and no others:
    the next scan finds nothing gone and nothing changed."""
    import os

    from photod.sources.folder import PART

    inbox = tmp_path / "inbox"
    there = [f"big/{i:05d}.jpg" for i in range(PART + 10)] + [
        f"small/{i:02d}.jpg" for i in range(20)] + ["small/sub/x.jpg", "r.jpg", "only/sub/y.jpg"]  # fmt: skip
    gone = [f"small/old{i:04d}.jpg" for i in range(3000)] + [f"big/gone{i}.jpg" for i in range(50)]
    gone += [f"trip/{i}/x.jpg" for i in range(10)] + ["only/z.jpg", "q.jpg"]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    for i, rel in enumerate(there + gone):
        if i < len(there):
            (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
            (inbox / rel).write_bytes(b"x")
            os.utime(inbox / rel, ns=(10**18, 10**18))
        catalog.saw_source_file("inbox", rel, 1, 10**18, "a" * 64)
    intake, workers = _inbox_intake(tmp_path, inbox, catalog)

    def scanned() -> tuple[int, int, int, int]:
        with capture_logs() as events:
            intake.reconcile()
        [scan] = [e for e in events if e["event"] == "scan_finished"]
        return scan["files"], scan["changed"], scan["gone"], catalog.source_count("inbox")

    try:  # (the first scan sees the folder's device: until then, nothing is dropped)
        assert (len(there), 0, 0, len(there) + len(gone)) == scanned()
        assert (len(there), 0, len(gone), len(there)) == scanned()
        assert (len(there), 0, 0, len(there)) == scanned()
        for rel in there[:5]:  # (of the large folder)
            (inbox / rel).unlink()
        assert (len(there) - 5, 0, 5, len(there) - 5) == scanned()
    finally:
        intake.stop()
        workers.shutdown()
        catalog.close()
