"""Reading bytes back to hash them, shared by the scrub, the catch-up and restore.

``hash_stream`` hashes any open file or object, cold from the disk; ``open_source``
opens a watch-folder file beneath its root through no link, and ``hash_source`` hashes
one with its stat before and after the read (to tell rot from a file being written).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from photod.errors import Stopping
from photod.safeopen import open_beneath, open_root

READ = 4 * 1024 * 1024  # bytes per read: large reads keep the disk streaming


def hash_stream(
    f: object, on_bytes: Callable[[int], None], stop: threading.Event, cold: bool = True
) -> str:
    """SHA-256 of an open object.  A local file is first dropped from the page cache
    (``cold``; unless ``Target.prefetch`` did that already and started the read), so
    the bytes come from the disk and not from memory, then read ahead by the kernel
    while this thread hashes (hashlib releases the GIL; OpenSSL uses the CPU's SHA
    instructions)."""
    fd = _fileno(f)
    if fd is not None and cold:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if fd is not None:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    h = hashlib.sha256()
    read = f.read  # type: ignore[attr-defined]
    while chunk := read(READ):
        if stop.is_set():
            raise Stopping
        h.update(chunk)
        on_bytes(len(chunk))
    if fd is not None:  # leave the cache to what the computer is doing
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return h.hexdigest()


def _fileno(f: object) -> int | None:
    try:
        return int(f.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def open_source(root: Path, rel: str) -> BinaryIO:
    """A source file opened beneath its folder's root, through no link (the caller
    closes it); LinkRefused, FileNotFoundError and other OSErrors as they come."""
    root_fd = open_root(root)
    try:
        return os.fdopen(open_beneath(root_fd, rel, os.O_RDONLY | os.O_NONBLOCK), "rb")
    finally:
        os.close(root_fd)


def hash_source(root: Path, rel: str) -> tuple[str, os.stat_result, os.stat_result]:
    """SHA-256 of a watch-folder file, opened beneath its root through no link, with
    its stat before and after the read."""
    with open_source(root, rel) as f:
        before = os.fstat(f.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", rel)
        sha = hash_stream(f, lambda n: None, threading.Event())
        return sha, before, os.fstat(f.fileno())
