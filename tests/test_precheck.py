"""The catalog's check begun before the daemon's modules load (photod/precheck.py): its
answer saves the daemon a second check only when it is 'sound' for the very file the
daemon then opens; damage is always found by the daemon's own check."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

from photod import precheck
from photod.catalog import Catalog
from photod.models import Kind, Probe
from photod.throttle import lower_priority
from tests.conftest import damage_catalog, wait_for

INFO = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)


def catalog(path: Path, photos: int = 300) -> Path:
    c = Catalog(path)
    for i in range(photos):
        c.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", INFO, "in", f"{i}.jpg")
    c.close()
    return path


def test_a_sound_catalog_checked_early_is_taken_once_and_left_as_it_was(tmp_path: Path) -> None:
    db = catalog(tmp_path / "catalog.sqlite")
    before = db.read_bytes()
    precheck.begin(db)
    assert precheck.taken(db, 60) is True
    assert precheck.taken(db, 0.5) is None  # answered once: a later settle checks anew
    # Nothing written before the lock is held, not even SQLite's -wal and -shm (made
    # with the catalog's mode, they would have to be named by a read-only catalog's fix).
    assert before == db.read_bytes()
    assert [db] == list(tmp_path.iterdir())


def test_a_catalog_with_a_crashs_journal_is_left_to_the_daemons_check(tmp_path: Path) -> None:
    db = catalog(tmp_path / "catalog.sqlite")
    db.with_name(db.name + "-wal").write_bytes(b"")
    precheck.begin(db)
    assert precheck.taken(db, 60) is None


def test_damage_done_after_the_early_check_began_is_found_by_the_daemons_check(
    tmp_path: Path,
) -> None:
    """Whether the early check read the catalog before or after the damage, its answer
    is not taken: the file is not the one it found sound."""
    db = catalog(tmp_path / "catalog.sqlite")
    precheck.begin(db)
    time.sleep(0.05)  # (a later tick of the file system's clock than the check's look)
    damage_catalog(db, "assets")
    assert precheck.taken(db, 60) is None
    assert Catalog(db).sound()  # what the daemon then finds, and says


def test_a_catalog_replaced_after_the_early_check_is_checked_again(tmp_path: Path) -> None:
    """A rebuild finished at start puts another file in its place (same size, same time:
    another file all the same)."""
    db = catalog(tmp_path / "catalog.sqlite")
    other = tmp_path / "rebuilt.sqlite"
    other.write_bytes(db.read_bytes())
    st = db.stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    damage_catalog(other, "assets")
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    precheck.begin(db)
    os.replace(other, db)  # (before or after the check has read the first: either way)
    assert precheck.taken(db, 60) is None
    assert Catalog(db).sound()


def test_a_damaged_catalog_gets_no_answer_from_the_early_check(tmp_path: Path) -> None:
    db = catalog(tmp_path / "catalog.sqlite")
    damage_catalog(db, "assets")
    precheck.begin(db)
    assert precheck.taken(db, 60) is None
    assert Catalog(db).sound()


def test_no_catalog_yet_begins_nothing_and_makes_no_file(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite"
    precheck.begin(db)
    assert precheck.taken(db, 60) is None
    assert [] == list(tmp_path.iterdir())


def test_a_check_not_done_in_time_goes_on_and_is_taken_once_it_ends(tmp_path: Path) -> None:
    """Not waited for (the first scan goes first): the check goes on, and its answer is
    taken although the daemon has the catalog open by then, with its journal beside it,
    as long as nothing was written to the file itself."""
    db = catalog(tmp_path / "catalog.sqlite")
    go = threading.Event()
    precheck.begin(db, lambda: go.wait(10) and None)
    assert precheck.taken(db, 0.0) is False
    opened = Catalog(db)  # the daemon's: a -wal beside it; its writes stay there
    opened.set_meta("scanned:inbox", "1")
    go.set()
    assert precheck.finish(db, threading.Event()) is True
    assert precheck.finish(db, threading.Event()) is None  # answered once
    opened.close()


def test_a_check_handed_over_is_not_taken_once_the_file_was_written(tmp_path: Path) -> None:
    """A checkpoint wrote the daemon's changes into the file while the check read it:
    what it read is no longer the catalog, and the daemon checks on its own."""
    db = catalog(tmp_path / "catalog.sqlite")
    go = threading.Event()
    precheck.begin(db, lambda: go.wait(10) and None)
    assert precheck.taken(db, 0.0) is False
    time.sleep(0.05)  # (a later tick of the file system's clock than the check's look)
    opened = Catalog(db)
    opened.set_meta("scanned:inbox", "1")
    opened.close()  # (the last connection: its journal goes into the file)
    go.set()
    assert precheck.finish(db, threading.Event()) is None


def test_a_stop_ends_a_check_handed_over_without_an_answer(tmp_path: Path) -> None:
    """photod stopping while the check goes on does not wait for it to end."""
    db = catalog(tmp_path / "catalog.sqlite")
    go = threading.Event()
    precheck.begin(db, lambda: go.wait(10) and None)
    assert precheck.taken(db, 0.0) is False
    stop = threading.Event()
    stop.set()
    assert precheck.finish(db, stop) is None
    go.set()


def test_a_check_handed_over_gets_the_priority_of_the_daemons_own(tmp_path: Path) -> None:
    """The check going on beside the first scan is found by its thread and lowered to
    idle, as the daemon's own check in the background is: on a busy computer the scan
    and new photos go first."""
    db = catalog(tmp_path / "catalog.sqlite")
    go = threading.Event()
    precheck.begin(db, lambda: go.wait(10) and None)
    assert precheck.taken(db, 0.0) is False
    wait_for(lambda: precheck.handed_thread(db) is not None, 10, "the check's thread")
    thread = precheck.handed_thread(db)
    assert thread is not None and thread != threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, thread)
    lower_priority("idle", thread=thread)
    assert min(19, before + 10) == os.getpriority(os.PRIO_PROCESS, thread)
    assert before == os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # (not ours)
    go.set()
    assert precheck.finish(db, threading.Event()) is True
