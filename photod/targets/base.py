"""The one interface every target kind implements, written as a contract.

Keys are '/'-separated relative paths checked by ``media.check_key`` before they get
here; a target never sees an unsafe key.  Nothing a writer does is visible under the
final key until ``commit`` has verified the bytes and published them atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from photod import failpoints
from photod.errors import (
    ChecksumMismatch,
    KeyExists,
    NotAFile,
    PhotodError,
    Stopping,
    TargetUnavailable,
    Undecryptable,
)
from photod.models import ManifestEntry, VerifyMethod

__all__ = [
    "CHUNK",
    "Identity",
    "Target",
    "TargetReadOnly",
    "Writer",
    "hash_object",
    "holds",
    "kept_time",
    "now_stamp",
    "quarantine_name",
    "refuse_stranger",
    "sealed_time",
    "unread",
    "write_stream",
]

CHUNK = 1024 * 1024
BESIDE_MAX = 1024 * 1024  # a sidecar is a few kB: a bigger file at KEY.xmp is not photod's


class Identity(NamedTuple):
    """Who a target is: the id in its marker, and where it was found."""

    target_id: str
    root: str
    mount_rel: str = ""


class TargetReadOnly(TargetUnavailable):
    """A target that answers and reads, but takes no write (a drive mounted read-only to
    spare a failing disk, an NTFS drive on a Mac): no copy goes there, while a restore
    and a catalog rebuild, which only read, take it as it is (``identity``: who ``check``
    found it to be)."""

    def __init__(self, target: str, reason: str, identity: Identity) -> None:
        super().__init__(target, reason)
        self.identity = identity


class Writer(Protocol):
    @property
    def temp_key(self) -> str:
        """Where the bytes sit until commit; recorded so a crash can clean it.  It may
        say more once bytes are written (an S3 upload names the upload the server
        started, by its id): the caller records it again when it changes.  Empty for
        a copy that puts nothing anywhere before its commit (one S3 PUT of a vouched
        body, straight to its key): nothing to record, nothing a crash could leave."""

    def write(self, data: bytes) -> None:
        """Append bytes.  Raises TargetFull or TargetUnavailable."""

    def sha256(self) -> str | None:
        """The SHA-256 of every byte written so far, when the writer hashes them to
        prove its commit (an upload: what it sent); None when it proves its copy
        another way (a local file is read back).  The caller that would hash the same
        bytes again takes this instead: one pass over each byte, not two."""

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        """Take the file at ``path`` (status ``st``) as this copy's bytes without
        writing them again, before any ``write``: a hard link on the same disk.  Only
        for photod's own staged copy of a phone's file, which nothing else writes.
        False when it cannot (another disk, a folder whose new files would get another
        group or ACL, an upload); the caller then writes the bytes.  ``commit`` proves
        an adopted copy as it proves a written one."""

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        """Make the bytes durable, prove they read back as ``sha256``, then publish them
        at ``key`` without ever replacing an existing object (with the file time
        ``mtime_ns`` where the target keeps one; an encrypted target records both times
        beside the object).

        Raises KeyExists (the writer stays open: commit again under another key),
        ChecksumMismatch (the writer is aborted), TargetFull, TargetUnavailable.
        """

    def abort(self) -> bool:
        """Remove the temporary bytes.  Safe to call more than once.  True once nothing
        of them is left; False when they could not be removed now (an upload whose
        server the network no longer reaches): the caller keeps ``temp_key`` recorded,
        and ``Target.delete_temp`` removes them when the target is back."""


class Target(Protocol):
    name: str
    encrypted: bool  # objects and private files are sealed with age
    # The store checks every body it is sent against the checksum sent with it (S3's
    # Content-MD5) and refuses a body that does not match: what a writer sent arrived.
    checks_bodies: bool

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        """Make sure this is the target photod knows (``known``; None the first time) and
        that it can take writes.  Raises TargetUnavailable with the reason.  With
        ``prepare`` (the daemon) a new target gets its root and marker; without it
        (``photod status``) nothing is written, and one that reads but takes no write
        raises TargetReadOnly, which carries the identity found."""

    def free_bytes(self) -> int | None:
        """Space that may still be written, or None when unknown."""

    def open_writer(self, key: str, hashed: bool = True) -> Writer:
        """Start writing an object that will be published at ``key`` (or a sibling).
        ``hashed=False``, only where ``checks_bodies``: the caller made the bytes
        itself (ciphertext) and nothing is checked against their hash, so the writer
        hashes nothing, ``sha256`` is None and ``commit`` takes "" for its ``sha256``."""

    def open(self, key: str) -> BinaryIO:
        """Read an object.  Raises FileNotFoundError or TargetUnavailable."""

    def size(self, key: str) -> int | None:
        """Size of an object, None when there is none."""

    def keys(self) -> Iterator[str]:
        """Every published object key (not the target's own metadata)."""

    def listing(self) -> Iterator[tuple[str, int | None]]:
        """Every published key with the size the store reports for it, from one
        listing (None where the stored size says nothing of the photo's: encrypted)."""

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        """Delete a temporary object left by a crash.  Never deletes anything else.
        ``alone``: no other computer keeps records on the target (none uploads there)."""

    # The target's own small files under ``.photod/`` (marker, records, snapshots).  Names
    # are '/'-separated and made by photod.  ``put_meta`` replaces a file atomically (a
    # reader sees the old one or the new one); ``create_meta`` writes one only when it
    # is missing, and says whether it did (the first of two computers wins).
    def put_meta(self, name: str, data: bytes) -> None: ...

    def create_meta(self, name: str, data: bytes) -> bool: ...

    def get_meta(self, name: str) -> bytes | None: ...

    def list_meta(self, folder: str) -> list[str]:
        """Every file under ``folder`` (recursively), as names relative to ``.photod/``,
        sorted; never a temporary."""

    def delete_meta(self, name: str) -> None: ...

    def locate(self, key: str) -> str:
        """Where an object is stored: its key, or its meaningless name when encrypted."""

    def learn(self, entries: Iterable[ManifestEntry]) -> None:
        """Take note of the keys a list (``records.py``) says the target holds: an
        encrypted target maps its meaningless names back to keys with it; a plain one
        needs nothing."""

    def prefetch(self, key: str) -> None:
        """Hint that ``key`` will be read soon.  A local disk starts reading it from the
        device now (any cached copy is dropped first, so the read still proves the
        disk); elsewhere a no-op."""

    def discard(self, key: str) -> None:
        """Move an object found corrupt out of the way (under ``.photod/quarantine/``):
        kept for a person to look at, and its key free for a good copy.  Only ever
        called for an object the scrub proved wrong; missing is not an error."""

    # Metadata kept beside an original, at ``KEY.xmp`` (the library's facts as an XMP
    # sidecar, for other tools to read): replaced atomically when the facts change,
    # never an original, never listed by ``keys``/``listing`` on an encrypted target
    # (plain targets list it: it is a file there like any other).  An encrypted target
    # seals it like everything else, under its own meaningless name.
    def put_beside(self, key: str, data: bytes, replace: bool) -> bool:
        """Write ``data`` at ``key``: over what is there with ``replace`` (a sidecar
        photod wrote before), else only where nothing is (False when something was: a
        file photod did not write is never replaced)."""

    def get_beside(self, key: str) -> bytes | None: ...

    # Small files only photod reads back (the catalog snapshot): sealed with age on an
    # encrypted target, as they are on a plain one.
    def put_private(self, name: str, data: bytes) -> None: ...

    def get_private(self, name: str) -> bytes | None: ...

    # A private file that grows with the library (the catalog snapshot: hundreds of MB
    # for a large one), streamed from ``src`` through a ``Writer`` (``write_stream``),
    # as a photo is: never whole in memory, published whole or not at all.
    def put_private_file(self, name: str, src: BinaryIO) -> None: ...

    def open_private(self, name: str) -> BinaryIO:
        """A private file, read as a stream.  Raises FileNotFoundError; a sealed one
        that does not open raises Undecryptable as it is read."""

    def close(self) -> None:
        """Flush and let go of connections and helper processes."""


def hash_object(target: Target, key: str) -> str:
    """SHA-256 of an object, read in chunks."""
    h = hashlib.sha256()
    with target.open(key) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def holds(target: Target, key: str, sha256: str) -> bool:
    """Whether the object at ``key`` is the photo ``sha256``, read whole.  False only
    for an answer: other bytes, no file there (a folder, a link: NotAFile), or an
    object this identity cannot open (Undecryptable: sealed to another, or damaged).
    A read that failed says nothing of what is there, and is raised as it came (the
    link cut, a server's 500, no permission, a disk's I/O error, the object gone
    since, photod stopping): the caller's try fails and is made again later; taken
    for "not this photo", it published the photo a second time beside it."""
    try:
        return hash_object(target, key) == sha256
    except (NotAFile, Undecryptable):
        return False


def unread(target: Target, key: str, what: str, exc: Exception) -> PhotodError:
    """Why a copy to ``target`` failed when ``what`` at ``key`` could not be read to tell
    whether it is the photo (``holds`` raised ``exc``).  The target is asked a cheap
    question about the same name (its size): one that answers is up, and the file alone
    is unread (no permission, an archived object, a bad sector, a server's error on it):
    that photo's failure, tried again later while every other photo goes on.  Taken for
    the target's outage, one such file marked the target away, and the stuck photo,
    the oldest, came first each time it was back.  Only a target that does not answer
    that either is away (TargetUnavailable: it waits).  Never stored beside it."""
    if isinstance(exc, Stopping):  # (photod stopping: no read's failure)
        return exc
    reason = exc.reason if isinstance(exc, TargetUnavailable) else str(exc)
    why = (f"{what} at {key} could not be read to tell whether it is this photo "
           f"({reason}): tried again later, never stored beside it")  # fmt: skip
    try:
        target.size(key)
    except Stopping:
        raise
    except (OSError, PhotodError) as away:
        if isinstance(away, TargetUnavailable):
            return TargetUnavailable(target.name, f"{why}; {away.reason}")
        return TargetUnavailable(target.name, f"{why}; {away}")
    return PhotodError(f"{why}. If it stays unreadable, make it readable (its permissions; "
                       "an archived object restored) or move it away")  # fmt: skip


def write_stream(name: str, writer: Writer, key: str, src: BinaryIO) -> None:
    """Every byte of ``src`` through ``writer``, a chunk at a time, then committed at
    ``key`` (proved as a photo's copy is).  Any failure aborts it: nothing is published;
    one the target refuses is TargetUnavailable (target ``name``)."""
    h = hashlib.sha256()
    try:
        while chunk := src.read(CHUNK):
            writer.write(chunk)
            h.update(chunk)
        failpoints.hit("meta_written")  # a kill here leaves the temporary (swept)
        writer.commit(key, h.hexdigest())
    except (KeyExists, ChecksumMismatch) as exc:
        writer.abort()
        raise TargetUnavailable(name, str(exc)) from exc
    except BaseException:
        writer.abort()
        raise


def kept_time(src: BinaryIO) -> int | None:
    """The file time a plain copy keeps of its photo (for a photo without EXIF, its
    only date), from the copy opened: a local file's own, an S3 object's ``mtime``
    metadata (as rclone keeps it); None where it keeps none (a download through rclone,
    an encrypted copy's plaintext: its stored times are the copy's)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.fstat(src.fileno()).st_mtime_ns
    kept = getattr(src, "file_time", None)  # (an S3 object's: ``s3._Body``)
    return kept() if kept is not None else None


def sealed_time(target: Target, key: str) -> int | None:
    """The file time an encrypted target's index line keeps of ``key`` (None for a
    target of another kind, or a line not at hand)."""
    line = getattr(target, "file_time", None)  # (crypt.CryptTarget's)
    with contextlib.suppress(OSError, PhotodError):
        return line(key) if line is not None else None
    return None


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def quarantine_name(key: str, when: str) -> str:
    """Where ``discard`` puts an object: one folder per scrub time, the key below it."""
    return f"quarantine/{when.replace(':', '')}/{key}"


def refuse_stranger(
    name: str, where: str, known: Identity | None, found: str | None, missing: str
) -> None:
    """Raise TargetUnavailable unless the marker id ``found`` at ``where`` is the target
    photod knows (any id is fine the first time).  ``missing`` says why a known target
    can have lost its marker."""
    if known is not None and found is None:
        raise TargetUnavailable(
            name,
            f"{where} has no .photod/target.json: it is not the place photod knows as "
            f"{name!r} (id {known.target_id}); {missing}",
        )
    if known is not None and found != known.target_id:
        raise TargetUnavailable(
            name,
            f"{where} belongs to another target (id {found}, expected {known.target_id}); "
            "give it its own target name in the config",
        )
