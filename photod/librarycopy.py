"""A consistent copy of a phone's Photos database, taken over the file service.

The phone keeps its library in ``/PhotoData/Photos.sqlite`` with a write-ahead log
(``-wal``) and its index (``-shm``): committed changes may live only in the log, so the
three files are copied together, and the copy counts only if none of them changed while
it was read (sizes and times looked at before and after); otherwise it is taken again.
The copy goes into a private folder of the state dir and is only ever opened read-only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from photod.errors import FileUnreadable, LibraryUnreadable
from photod.sources.phone import PhoneFile, PhoneLink

DATABASE = "/PhotoData/Photos.sqlite"
PARTS = (DATABASE, DATABASE + "-wal", DATABASE + "-shm")
ATTEMPTS = 3  # copies tried while the phone keeps writing
SETTLE = 1.0  # seconds waited between tries: the phone's own writes come in bursts


@dataclass(frozen=True)
class LibraryCopy:
    db: Path  # the copy of Photos.sqlite, its -wal and -shm beside it
    digest: str  # SHA-256 over the three files: equal digests, the same library
    size: int  # bytes copied
    changed_at: str = ""  # when the phone last wrote it, by its clock (``changed_at``)


def _shape(files: list[PhoneFile | None]) -> list[tuple[int, int] | None]:
    return [None if f is None else (f.size, f.mtime_ns) for f in files]


async def copy_library(link: PhoneLink, folder: Path) -> LibraryCopy | None:
    """Copy the phone's library database into ``folder`` (made private, emptied of an
    earlier copy); None when the phone has none.  Raises LibraryUnreadable when no
    consistent copy could be had; trouble with the phone itself (DeviceGone,
    DeviceStalled) goes up as it is, to the session."""
    await asyncio.to_thread(_prepare, folder)
    for attempt in range(ATTEMPTS):
        before = [await link.stat(p) for p in PARTS]
        if before[0] is None:
            return None
        digest = hashlib.sha256()
        size = 0
        try:
            for path, st in zip(PARTS, before, strict=True):
                local = folder / path.rpartition("/")[2]
                if st is None:
                    local.unlink(missing_ok=True)
                    digest.update(b"\0absent\0")
                    continue
                size += await _copy(link, path, local, digest, st.size)
        except (FileUnreadable, _Changed):
            pass  # changed or gone under the copy (the phone wrote, checkpointed): again
        else:
            after = [await link.stat(p) for p in PARTS]
            if _shape(after) == _shape(before):
                return LibraryCopy(folder / "Photos.sqlite", digest.hexdigest(), size,
                                   changed_at(before))  # fmt: skip
        if attempt + 1 < ATTEMPTS:
            await asyncio.sleep(SETTLE)
    raise LibraryUnreadable(
        DATABASE, f"the phone kept changing it while it was copied ({ATTEMPTS} tries)"
    )


def changed_at(files: list[PhoneFile | None]) -> str:
    """When the phone last wrote its library, by the phone's own clock: the newest time
    of its database's files, as the phone's file service dates them (UTC, to the
    microsecond: ``2026-12-04T05:30:00.123456Z``).  It orders two reads of one phone
    whatever the clocks of the computers that read it (a computer's clock a year ahead
    does not make its older read the newer); '' when the phone gives no time."""
    ns = max((f.mtime_ns for f in files if f is not None), default=0)
    if ns <= 0:
        return ""
    seconds, micro = divmod(ns // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro:06d}Z"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _prepare(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in folder.iterdir():  # an earlier copy, or a journal SQLite left
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink()


class _Changed(Exception):
    """A file grew past the size it had when the copy began."""


async def _copy(
    link: PhoneLink, path: str, local: Path, digest: hashlib._Hash, expected: int
) -> int:
    """One file, chunk by chunk, hashed as it comes; its size.  Raises _Changed as
    soon as it is longer than ``expected`` (a log the phone keeps appending to would
    otherwise never end)."""
    handle = await link.open_file(path)
    size = 0
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        digest.update(path.encode() + b"\0")
        while chunk := await link.read(handle):
            digest.update(chunk)
            size += len(chunk)
            if size > expected:
                raise _Changed(path)
            await asyncio.to_thread(_write_all, fd, chunk)
    finally:
        os.close(fd)
        await link.close_file(handle)
    return size
