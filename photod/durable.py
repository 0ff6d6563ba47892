"""Writing files so that a crash leaves the old bytes or the new ones, never a mix."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """A temporary beside ``path``, fsynced, renamed over it, the folder fsynced.  The
    temporary is a new file of a random name (never a link or a file already there,
    whose mode it would keep), removed when the write fails (a full disk)."""
    _sweep(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


LEFTOVER_AGE = 60.0  # seconds: a temporary older than this is no write in progress


def _sweep(path: Path) -> None:
    """Remove what a crash left of earlier writes of ``path`` (their temporaries)."""
    old = time.time() - LEFTOVER_AGE
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            if entry.name.startswith(f".{path.name}.") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if (
                        entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_mtime < old
                    ):
                        os.unlink(entry.path)
