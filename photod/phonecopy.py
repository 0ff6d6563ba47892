"""One file from a phone to this computer's disk, before it is ingested.

The file is read in chunks into ``NAME.part`` in staging, hashed as it comes (the next
chunk is asked for before this one is written), and checkpointed every
``staging.CHECKPOINT`` bytes into ``NAME.part.json``: an unplug then costs at most that
much, and the next plug-in resumes with a seek when the file on the phone is unchanged.
Only a complete file takes its real name; a copy with no checkpoint is removed at once,
so staging holds nothing half-read that cannot be resumed.

A file smaller than one read (most photos) is read whole into memory on the loop
(``read_small``) and staged by the ingest worker that takes it (``stage``), the same
way: one trip to a thread a file instead of two, which on a phone of small files was
a tenth of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photod import staging
from photod.catalog import DeviceFile
from photod.errors import PhotodError, SourceChanged
from photod.logs import log
from photod.private import COPY_MODE
from photod.sources.phone import READ_SIZE, PhoneLink


async def fetch(
    link: PhoneLink, f: DeviceFile, staged: Path, counted: Callable[[int], None]
) -> str:
    """Copy ``f`` from the phone to ``staged``; its SHA-256.  ``counted(n)``: n more
    bytes of it are here (a resumed copy counts its first part at once)."""
    part = staged.with_name(staged.name + staging.PARTIAL[0])
    meta = staged.with_name(staged.name + staging.PARTIAL[1])
    staged.parent.mkdir(parents=True, exist_ok=True)
    if f.size > staging.CHECKPOINT:
        offset, h = await asyncio.to_thread(staging.resume_point, part, meta, f.size, f.mtime_ns)
    else:  # (never checkpointed: nothing to resume, and no trip to a thread to say so)
        offset, h = 0, hashlib.sha256()
    try:
        await _read_into(link, f, part, meta, offset, h, counted)
    except BaseException as exc:
        # Nothing worth resuming (or bytes that are not the listed file's): no debris.
        if not meta.exists() or isinstance(exc, SourceChanged):
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        raise
    os.utime(part, ns=(f.mtime_ns, f.mtime_ns))  # copies keep the phone's mtime
    os.replace(part, staged)
    with contextlib.suppress(FileNotFoundError):
        meta.unlink()
    return str(h.hexdigest())


SMALL = READ_SIZE  # files shorter than this are read whole, then staged by the ingest


class StagingTaken(PhotodError):
    """A phone file's staging name holds another photo that no target has yet: that
    copy is the other photo's only one off the phone, so this file waits for it."""

    said = "its staging name holds another photo no target has yet; read once a target has it"
    busy = (
        "another of the phone's files of its staging name is being read; read at the next plug-in"
    )


class NotStaged(PhotodError):
    """A small file's bytes could not be written into staging (``error``): said as a
    file that cannot be staged, or, the disk full, as the whole import waiting."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def read_small(link: PhoneLink, f: DeviceFile, counted: Callable[[int], None]) -> bytes:
    """A file shorter than SMALL, read whole: its bytes, exactly as many as listed
    (SourceChanged if the phone gives more or fewer)."""
    handle = await link.open_file(f.path)
    try:
        parts: list[bytes] = []
        done = 0
        # Read to the phone's empty answer: no earlier read answered in full here (it
        # would have been longer than the file), so none says where the file ends.
        while chunk := await link.read(handle):
            if done + len(chunk) > f.size:  # (a file that never ends fills no memory)
                raise SourceChanged(f"{f.path} on the phone (longer than listed)")
            parts.append(chunk)
            done += len(chunk)
            counted(len(chunk))
    finally:
        await link.close_file(handle)
    if done != f.size:
        raise SourceChanged(f"{f.path} on the phone ({done} of {f.size} bytes)")
    return b"".join(parts)


def stage(data: bytes, f: DeviceFile, staged: Path) -> str:
    """On an ingest worker: a small file's bytes into staging as ``fetch`` writes a
    large one (a fresh file under its partial name, never one truncated in place: a
    staged file may be a target's copy by a link; the phone's mtime; then its name);
    its SHA-256.  NotStaged when the disk refuses."""
    part = staged.with_name(staged.name + staging.PARTIAL[0])
    try:
        with open(_fresh(part), "wb") as out:
            out.write(data)
        os.utime(part, ns=(f.mtime_ns, f.mtime_ns))
        os.replace(part, staged)
        staged.with_name(staged.name + staging.PARTIAL[1]).unlink(missing_ok=True)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise NotStaged(exc) from exc
    return hashlib.sha256(data).hexdigest()


def _fresh(part: Path) -> int:
    """``part`` created anew (O_EXCL), its folders made and what a crash left there
    removed only when the create says so: most files find their folder there and no
    partial copy (three calls to the disk fewer a file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, COPY_MODE)
    except FileNotFoundError:
        part.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        part.unlink(missing_ok=True)
    return os.open(part, flags, COPY_MODE)


async def _read_into(
    link: PhoneLink,
    f: DeviceFile,
    part: Path,
    meta: Path,
    offset: int,
    h: Any,
    counted: Callable[[int], None],
) -> None:
    handle = await link.open_file(f.path)
    try:
        if offset:
            counted(offset)
            await link.seek(handle, offset)
            log.info(
                "device_import_resumed",
                device=link.name,
                udid=link.udid,
                path=f.path,
                offset=offset,
                size=f.size,
            )
        # A fresh file, never one truncated in place: a staged file may be linked into
        # a target (``Writer.adopt``), and its bytes must never change there.  Created
        # as a copy on a target is (COPY_MODE), since it may become one.
        if not offset:
            part.unlink(missing_ok=True)
        flags = os.O_RDWR if offset else os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(part, flags, COPY_MODE), "r+b" if offset else "wb") as out:
            out.seek(offset)
            done, pieces = offset, False
            next_checkpoint = offset + staging.CHECKPOINT
            nxt: asyncio.Future[bytes] = asyncio.ensure_future(link.read(handle))
            try:
                while True:
                    chunk = await nxt
                    if not chunk:
                        break
                    if done + len(chunk) > f.size:  # (a file that never ends fills no disk)
                        raise SourceChanged(f"{f.path} on the phone (longer than listed)")
                    # Ask for the next chunk before hashing and writing this one; unless
                    # this one ended short at the listed size after reads answered in
                    # full: the phone's read met the file's end there (one request a
                    # file fewer).  A file longer than listed is still caught.
                    in_full = done > offset and not pieces
                    if _at_its_end(chunk, done + len(chunk), f.size, in_full):
                        nxt = _at_end()
                    else:
                        nxt = asyncio.ensure_future(link.read(handle))
                    pieces |= len(chunk) < READ_SIZE
                    await asyncio.to_thread(staging.write_hashed, out, h, chunk)
                    done += len(chunk)
                    counted(len(chunk))
                    if done >= next_checkpoint and done < f.size:
                        await asyncio.to_thread(staging.checkpoint, out, meta, f, done)
                        next_checkpoint = done + staging.CHECKPOINT
            finally:
                if not nxt.done():
                    nxt.cancel()
                # Its outcome is taken even when it failed (the phone unplugged while
                # this chunk was written): a failure nobody retrieves is logged as a bug.
                with contextlib.suppress(BaseException):
                    await nxt
        if done != f.size:  # the phone's reads ended early: this file's, not the link's
            raise SourceChanged(f"{f.path} on the phone ({done} of {f.size} bytes)")
    finally:
        await link.close_file(handle)


def _at_its_end(chunk: bytes, done: int, size: int, in_full: bool) -> bool:
    """Whether the read that brought ``chunk`` met the file's end: it reached the listed
    size with less than it asked for, from a phone that had answered an earlier read of
    the file and every one in full (``in_full``).  One that answers in pieces may have
    stopped short of the end, at the listed size too when the file grew since the
    listing: its next read says.  A first read proves nothing: a piece of a grown file
    may be just the listed size.  One request a large file fewer."""
    return len(chunk) < READ_SIZE and done == size and in_full


def _at_end() -> asyncio.Future[bytes]:
    """A read already answered: the end of the file."""
    end: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    end.set_result(b"")
    return end
