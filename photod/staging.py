"""A phone's files on this computer's disk, before they are ingested: staging names,
and partial copies that survive an unplug (checkpointed, then resumed with a seek).

The staging folder is under the state dir (private to photod); the names come from the
phone and are made safe for any disk here.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO

from photod.catalog import Catalog, DeviceFile
from photod.durable import fsync_dir
from photod.media import MAX_NAME_BYTES, safe_name

CHECKPOINT = 32 * 1024 * 1024  # a partial file is made durable (and resumable) this often


PARTIAL = (".part", ".part.json")  # a partial copy and its checkpoint, beside NAME


def stage_name(part: str) -> str:
    """A phone's path component as a name on this computer's disk: itself when any disk
    takes it; else (over MAX_NAME_BYTES, or bytes that are not UTF-8) a safe name
    plus a hash of the original, so that two odd names never share a staging file.  A
    name ending like a partial copy (``X.part``) gets a hash after it: it must never be
    the partial copy of another file (``X``), which is written in place."""
    raw = part.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES and raw.decode("utf-8", "replace") == part:
        if not part.endswith(PARTIAL):
            return part  # (most names: no hash taken, on the phone's loop, for each file)
        return f"{part}~{hashlib.sha256(raw).hexdigest()[:8]}"
    mark = hashlib.sha256(raw).hexdigest()[:8]
    stem, dot, ext = safe_name(part).rpartition(".")
    if not dot:
        stem, ext = ext, ""
    name = f"{stem}~{mark}{dot}{ext}"
    return f"{name}~{mark}" if name.endswith(PARTIAL) else name


def staged_path(root: Path, udid: str, path: str) -> Path:
    """Where a phone's file is staged: under the source's staging root, in a folder
    per phone.  AFC paths come from the phone: they stay inside that folder whatever
    they hold (the layout key, not this path, decides where copies go)."""
    parts = [stage_name(p) for p in path.split("/") if p not in ("", ".", "..")]
    return root.joinpath(udid, *parts)


def only_copy_at(
    catalog: Catalog, root: Path, source: str, staged: Path, f: DeviceFile
) -> str | None:
    """The photo (its SHA-256) whose only copy off the phone ``f``'s staging name holds,
    as it was staged; None when there is none.  A photo deleted on the phone whose
    name another then took (or two of the phone's paths making one staging name):
    staging ``f`` over that file would lose it, with no target holding it yet."""
    try:
        st = os.lstat(staged)
    except OSError:
        return None  # (nothing there now: staging goes on as usual)
    if (st.st_size, st.st_mtime_ns) == (f.size, f.mtime_ns):
        return None  # this file, staged before a crash kept it from being recorded
    seen = catalog.source_file(source, staged.relative_to(root).as_posix())
    if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
        # A disk blind to case (a Mac's, by default) may hold another's file under this
        # name, spelled as that one's: its record is under that spelling.  (Asked only
        # here, not of every file: a file is rarely there at all.)
        real = spelled(root, staged)
        if real is None or real == staged:
            return None  # not a photo's copy as it was staged (cut, replaced): nothing to keep
        seen = catalog.source_file(source, real.relative_to(root).as_posix())
        if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
    return None if catalog.replicas(seen.asset) else seen.asset


def spelled(root: Path, staged: Path) -> Path | None:
    """``staged`` as the disk spells it: on a disk blind to case, as the phone's file
    first staged there was spelled, which case may tell apart from ``staged``'s; None
    when it is gone."""
    at = root
    for part in staged.relative_to(root).parts:
        try:
            names = os.listdir(at)
        except OSError:
            return None
        if part not in names:
            part = next((n for n in names if _blind(n) == _blind(part)), "")
            if not part:
                return None
        at /= part
    return at


def fold(staged: Path) -> str:
    """``staged`` as a disk blind to case (a Mac's, by default) tells it apart: two
    staging paths of one fold may be one file there."""
    return _blind(str(staged))


def _blind(name: str) -> str:
    # Unicode's canonical caseless match: APFS and HFS+ are blind to case by default and
    # to how an accent is spelled always ("é" as one code point or as "e" and a combining
    # accent: one file there, two here).
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def holds(staged: Path, sha: str) -> bool:
    """Whether ``staged`` still holds the photo ``sha``: a copy whose proof failed (its
    bytes rotted after staging) is no photo's copy, and the phone's file is read again
    over it.  Read whole: asked only of an only copy ``only_copy_at`` found."""
    try:
        with open(staged, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha
    except OSError:
        return False


def tidy(catalog: Catalog, root: Path, source: str, udid: str, on_phone: set[str]) -> None:
    """Remove a phone's staging files that are no longer needed: copies already on a
    target, and partial files of files no longer on the phone."""
    top = root / udid
    if not top.is_dir():
        return
    for folder, _, names in os.walk(top):
        for name in names:
            path = Path(folder) / name
            phone_path = "/" + path.relative_to(top).as_posix()
            if name.endswith(PARTIAL):
                if phone_path.removesuffix(".json").removesuffix(".part") not in on_phone:
                    path.unlink(missing_ok=True)
                continue
            seen = catalog.source_file(source, f"{udid}{phone_path}")
            if seen is not None and catalog.replicas(seen.asset):
                path.unlink(missing_ok=True)


def resume_point(part: Path, meta: Path, size: int, mtime_ns: int) -> tuple[int, Any]:
    """Where to start: the last checkpoint of a partial copy of the same file (same size
    and mtime on the phone), with the hash of the bytes before it; else 0."""
    h = hashlib.sha256()
    try:
        saved = json.loads(meta.read_text())
        if (saved["size"], saved["mtime_ns"]) != (size, mtime_ns):
            return 0, h
        offset = int(saved["offset"])
        with open(os.open(part, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC), "r+b") as f:
            if os.fstat(f.fileno()).st_nlink != 1:
                return 0, hashlib.sha256()  # linked elsewhere: never written into; anew
            f.truncate(offset)  # bytes after the checkpoint may not have reached the disk
            remaining = offset
            while remaining:
                chunk = f.read(min(remaining, 4 * 1024 * 1024))
                if not chunk:
                    return 0, hashlib.sha256()
                h.update(chunk)
                remaining -= len(chunk)
        return offset, h
    except (OSError, ValueError, KeyError):
        return 0, hashlib.sha256()


def write_hashed(out: BinaryIO, h: Any, chunk: bytes) -> None:
    h.update(chunk)
    out.write(chunk)


def make_durable(staged: Path, top: Path) -> None:
    """The staged file's bytes, its name and its folders' names up to ``top`` on the
    disk: it is about to be the only copy of the phone's file that photod counts on."""
    fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    folder = staged.parent
    while True:
        fsync_dir(folder)
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent


def checkpoint(out: BinaryIO, meta: Path, f: DeviceFile, offset: int) -> None:
    out.flush()
    os.fsync(out.fileno())
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps({"size": f.size, "mtime_ns": f.mtime_ns, "offset": offset}))
    os.replace(tmp, meta)
