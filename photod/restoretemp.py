"""A restore's temporaries in DEST: each made beside its final name, locked while it
is written, given its name only whole and never over a file; what a killed restore
left is swept away by the next one that comes to that folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import time

TEMP_PREFIX = ".photod-restore-"  # a restore's temporaries, beside their final name
TEMP_AGE = 60.0  # seconds: where no lock can be taken, an older one is a killed restore's


def temporary(folder: int) -> tuple[str, int]:
    """A new temporary in ``folder`` (name, descriptor), locked while it is written:
    what ``sweep_one`` of another restore leaves alone.  One swept away between its
    making and its lock (it had no lock yet) is made again."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    tries = 0
    while True:
        tries += 1
        temp = f"{TEMP_PREFIX}{secrets.token_hex(6)}.tmp"
        fd = os.open(temp, flags, 0o600, dir_fd=folder)
        try:  # (never waited for: a NAS whose lock service is gone would hang here)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a sweep holds it, to remove it: made again
            if tries == 3:
                return temp, fd
            os.close(fd)
            continue
        except OSError:  # a disk that keeps no locks: the sweep goes by age there
            return temp, fd
        # (asked by its name, not its link count: some FUSE disks count no links)
        with contextlib.suppress(FileNotFoundError):
            there, mine = os.stat(temp, dir_fd=folder, follow_symlinks=False), os.fstat(fd)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return temp, fd
        if tries == 3:  # (a third sweep in a row: its copy fails, said, and no loop)
            return temp, fd
        os.close(fd)


def sweep_one(folder: int, entry: str) -> None:
    """Remove one temporary that no restore is writing: its lock is free (its writer
    was killed), or, on a disk that keeps no locks, it is older than ``TEMP_AGE``."""
    # (open to write: NFS takes a lock only on a file open for writing)
    fd = os.open(entry, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # being written
        except OSError:
            if st.st_mtime >= time.time() - TEMP_AGE:
                return
        os.unlink(entry, dir_fd=folder)  # (with the lock held: no writer takes it now)
    finally:
        os.close(fd)


def place(folder: int, temp: str, name: str) -> bool:
    """Give the temporary its name, never over a file: False when one is there."""
    where = {"src_dir_fd": folder, "dst_dir_fd": folder}
    try:
        os.link(temp, name, **where, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links (FAT, exFAT): check, then rename
        try:
            os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(temp, name, **where)
            return True
        return False
