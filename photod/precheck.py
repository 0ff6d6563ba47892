"""SQLite's check of the catalog's pages, begun before the daemon's modules are loaded.

`photod run` spends a fifth of a second loading its modules (Python, on one core) and,
on a catalog of 100,000 photos, as long again in SQLite's check of every page before it
acts (SQLite lets go of the interpreter meanwhile).  Begun first, on a read-only
connection of its own, the check runs on the other core while the modules load.

Only a check that found the catalog sound is taken, and only for the file it read: the
catalog has the same identity, size and time as when the check began and still no
journal (a rebuild finished at start replaces the file; another process may have
written to it).  Anything else, an error, a finding, a changed file, and the daemon
checks as it always did, on its own connection, and says what it finds.

A check not done when the daemon is ready to act is not waited for: it goes on beside
the first scan, handed over as the daemon's check in the background (``finish``), and
no target is written to until it passes.  Then the daemon has the catalog open (a
journal beside it is its own): the check is still taken only if the file it read is
the same and was not written to meanwhile (the daemon's changes stay in the journal
until a checkpoint, which writes the file and changes its time).

Nothing here writes, not even the -wal and -shm files SQLite makes beside a catalog
it opens (the state dir's lock is not held yet, and a read-only catalog's are made
read-only too): it runs only after a clean stop, when the catalog is one file with no
journal, which SQLite then reads as it is (``immutable``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from photod import failpoints

_Stamp = tuple[int, int, int, int, bool]


def _stamp(db: Path) -> _Stamp:
    """The catalog's identity, size and time, and whether it has a journal (what was
    written since shows in one or the other)."""
    st = os.stat(db)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, _journal(db)


def _journal(db: Path) -> bool:
    return os.path.lexists(db.with_name(db.name + "-wal"))


class _Check:
    def __init__(self, db: Path, first: Callable[[], None]) -> None:
        self.db = db
        self.first = first
        self.stamp = _stamp(db)
        self.began = time.monotonic()
        self.sound = False  # set once SQLite answered 'ok'
        self.thread: int | None = None  # its native id, once it runs
        self.done = threading.Event()
        self.conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # (the connection: closed by one, interrupted by the other)
        threading.Thread(target=self._run, name="catalog-precheck", daemon=True).start()

    def _run(self) -> None:
        self.thread = threading.get_native_id()
        try:
            self.first()
            conn = sqlite3.connect(f"{self.db.absolute().as_uri()}?mode=ro&immutable=1",
                                   uri=True, check_same_thread=False)  # fmt: skip
            with self._lock:
                self.conn = conn
            rows = conn.execute("PRAGMA quick_check(5)").fetchall()
            self.sound = [tuple(r) for r in rows] == [("ok",)]
        except sqlite3.Error:  # damaged, unreadable, interrupted: the daemon's own check says
            pass
        finally:
            with self._lock:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
            self.done.set()

    def stop(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.interrupt()


_begun: dict[Path, _Check] = {}
_handed: dict[Path, _Check] = {}  # still going when the daemon was ready: ``finish``


def begin(
    db: Path, first: Callable[[], None] = lambda: failpoints.hit("catalog_prechecking")
) -> None:
    """Start checking ``db`` on a thread of its own (nothing when there is no file, or a
    journal beside it: a crash's, whose pages only SQLite's recovery reads); ``first``
    runs on that thread before the check (a test's: a check that lasts)."""
    if db not in _begun and os.path.isfile(db) and not _journal(db):
        with contextlib.suppress(OSError):  # (gone meanwhile: nothing to check)
            _begun[db] = _Check(db, first)


def taken(db: Path, budget: float | None) -> bool | None:
    """Whether the check begun for ``db`` found it sound: True; None when it gives no
    answer to take (none begun, not sound, the file changed); False when it is still
    going after ``budget`` seconds from its start: then it goes on, handed over to
    ``finish`` (the daemon's check in the background).  Answers once."""
    _handed.pop(db, None)  # (a settle again: what an earlier one left is not taken)
    check = _begun.pop(db, None)
    if check is None:
        return None
    left = None if budget is None else max(0.0, check.began + budget - time.monotonic())
    if not check.done.wait(left):
        if not _same(db, check.stamp):
            check.stop()
            check.done.wait()
            return None
        _handed[db] = check
        return False
    return True if check.sound and _same(db, check.stamp) else None


def finish(db: Path, stop: threading.Event) -> bool | None:
    """The answer of the check ``taken`` handed over for ``db``, once it ends: True when
    it found the catalog sound and the file it read was not written to meanwhile; None
    when there is none to take (none handed over, not sound, the file written to or
    replaced, or ``stop`` set: then it is stopped).  Answers once."""
    check = _handed.pop(db, None)
    if check is None:
        return None
    while not check.done.wait(0.2):
        if stop.is_set():
            check.stop()
            return None
    return True if check.sound and _same(db, check.stamp, journal=False) else None


def handed_thread(db: Path) -> int | None:
    """The native id of the thread of the check handed over for ``db`` (None: none, or
    not running yet): the daemon gives it the priority of its own background check."""
    check = _handed.get(db)
    return check.thread if check is not None else None


def _same(db: Path, stamp: _Stamp, journal: bool = True) -> bool:
    """The file is the one ``stamp`` was taken of, with the same size and time (and,
    with ``journal``, still none beside it; without, one the daemon made is allowed)."""
    try:
        now = _stamp(db)
    except OSError:
        return False
    return now == stamp if journal else now[:4] == stamp[:4]
