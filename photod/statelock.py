"""One daemon per catalog: the state dir's lock file, and who holds it.

An flock, so the kernel drops it when the holder dies; the file says the holder's pid
while held and "stopped" after a clean stop.  Light on purpose: `photod status` and
`photod doctor` ask ``running_pid`` without loading the daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from photod.errors import AlreadyRunning, PhotodError
from photod.logs import log

LOCK_NAME = "photod.lock"
STOPPED = "stopped"  # what the lock file says after a clean stop
# Scratch folders the lock's holder makes in the state dir: a catalog snapshot's copy
# (snapshot.py), a drill's restored photos (restore.py).  Only the holder makes them, so
# one found by the next holder was left by a photod killed mid-work (kill -9, a power
# cut), and no one will ever remove it but photod: a full catalog copy, or photos.
SNAPSHOT_SCRATCH, DRILL_SCRATCH = "photod-snapshot-", "photod-drill-"


@contextlib.contextmanager
def said_if_unwritable(state_dir: Path) -> Iterator[None]:
    """The lock and the log opened (by the daemon and the foreground commands): a disk
    remounted read-only, a folder of another user's, is one line naming the file, not a
    traceback (at every restart of the unit, which may fix it)."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or state_dir
        raise PhotodError(f"cannot write {where}: {exc.strerror or exc}; photod keeps its "
                          "lock, catalog and log there: see whether that disk is mounted "
                          f"read-only (`findmnt -T {where}`) and who may write there, or set "
                          "[daemon] state_dir and log_dir to folders of your own") from exc  # fmt: skip


class StateLock:
    """An flock on the state dir: one daemon per catalog.  The kernel drops it when the
    process dies, so a crash never leaves a stale lock.  The file holds the pid while
    the lock is held and "stopped" after a clean stop: ``unclean`` tells that the last
    holder died (a crash, kill -9, a power cut).

    The lock file is mode 600, so only photod's user can open it, and so hold the lock.
    A lock file left readable (an old start with a wide umask) may be open in another
    user's process: when such a file is held by anything but a live photod of this user,
    the holder is a stranger, and the file is replaced rather than waited for.  A file
    that was private all along is held by this user's own process: waited for."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / LOCK_NAME
        _not_a_lock_file(self.path)
        before = None  # what a stranger's lock file said, when it is replaced
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            self.file: IO[str] = os.fdopen(fd, "a+")
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = self._text()
                st = os.fstat(self.file.fileno())
                stranger = bool(st.st_mode & 0o077) and before is None
                stranger = stranger and not _photod_holds(self.file)
                self.file.close()
                if not stranger:
                    raise AlreadyRunning(str(state_dir), pid) from None
                before = pid
                # Only the very file found held: a photod starting at the same moment
                # may have replaced it already (then the next round finds that one's).
                if _same_file(self.path, st):
                    os.unlink(self.path)  # a new file only we can open
                    log.warning("lock_taken_over", path=str(self.path),
                                detail="another process held photod's lock file (left "
                                "readable by an earlier start); it was replaced")  # fmt: skip
        os.fchmod(self.file.fileno(), 0o600)
        text = self._text() if before is None else before
        self.unclean = text not in ("", STOPPED)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def _text(self) -> str:
        self.file.seek(0)
        return self.file.read().strip()

    def sweep(self) -> None:
        """Remove the scratch folders a holder of the lock killed mid-work left in the
        state dir (held: nothing there is a running photod's).  Called once the log is
        set up, where the event goes."""
        removed, size = [], 0
        with os.scandir(self.path.parent) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith((SNAPSHOT_SCRATCH, DRILL_SCRATCH)) and entry.is_dir(
                    follow_symlinks=False
                ):
                    with contextlib.suppress(OSError):  # (what it held: said, not needed)
                        for top, _, files in os.walk(entry.path):
                            size += sum(os.lstat(os.path.join(top, f)).st_size for f in files)
                    shutil.rmtree(entry.path, ignore_errors=True)  # (never follows a link)
                    removed.append(name)
        if removed:
            log.info("scratch_removed", paths=sorted(removed), bytes=size,
                     detail="left in the state dir by a photod killed mid-work")  # fmt: skip

    def release(self, clean: bool = True) -> None:
        if clean:
            self.file.seek(0)
            self.file.truncate()
            self.file.write(f"{STOPPED}\n")
            self.file.flush()
        self.file.close()


def _not_a_lock_file(path: Path) -> None:
    """Something at the lock's name that is not our regular file (a link, a file of
    another user) is removed: the lock is opened without following a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_nlink == 1:
        return  # a second name (a hard link) might be another file's: truncated below
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _photod_holds(lock: IO[str]) -> bool:
    """Whether the lock is held by photod (a daemon or a command) of this user: the pid
    in the file is a live photod process of ours.  Asked twice, a moment apart, as a
    photod that has just taken the lock writes its pid right after."""
    import psutil  # only when the lock is taken: `photod status` never loads it

    for attempt in (1, 2):
        lock.seek(0)
        text = lock.read().strip()
        if text.isdigit():
            try:
                proc = psutil.Process(int(text))
                if proc.uids().real == os.getuid() and any(
                    "photod" in part for part in proc.cmdline()
                ):
                    return True
            except (psutil.Error, OSError):
                pass
        if attempt == 1:
            time.sleep(0.3)
    return False


def running_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding this state dir, or None when none runs."""
    path = state_dir / LOCK_NAME
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else 0
    except OSError:  # no lock file (or no state dir): no daemon
        return None
    return None
