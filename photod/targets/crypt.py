"""Encryption at rest, in the age format, over any other target.  With ``agedecrypt``
(streams), ``agekeygen`` (a new identity) and ``cryptkeys`` (the keys), the only
modules that import pyrage.

Every object is an age file sealed to the owner's X25519 recipient (and any extra
recipients), so ``age -d -i IDENTITY`` opens it without photod.  Names leak nothing:
an object's name is an HMAC of its key under a secret derived from the identity, so
the listing shows neither file names, dates, folders nor hashes.  Beside each object,
``.photod/objects/<ab>/<38 hex>`` holds its index line, sealed (object, SHA-256, size,
capture time, file time, path; ``records.index_line``), stored while the object goes
up; a copy counts only once both are: an object is restorable under its name and date
even when every index is lost.  The installations' encrypted indexes (``records.py``)
list the same lines in few files, so that photod need not read one file per object.

pyrage encrypts a whole stream in one call, and photod pushes chunks; a thread per
open object runs pyrage between two bounded queues.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pyrage

from photod import failpoints
from photod.errors import (
    ChecksumMismatch,
    KeyExists,
    NotAFile,
    PhotodError,
    TargetUnavailable,
    Undecryptable,
)
from photod.models import ManifestEntry, VerifyMethod
from photod.targets.agedecrypt import QUEUE, CipherSink, Decrypting, QueueReader, Sealing
from photod.targets.base import CHUNK, Identity, Target, unread
from photod.targets.cryptkeys import DATA, Keys
from photod.targets.records import index_line, own_entry, parse_index

OBJECTS = "objects/"  # under .photod/: each object's sealed index line


class CryptWriter:
    def __init__(self, target: CryptTarget, key: str) -> None:
        self.t = target
        self.key = key
        self.checked = target.inner.checks_bodies  # S3: no hash of the ciphertext needed
        self.inner = target.inner.open_writer(target.keys_.object_name(key), not self.checked)
        self.sha = hashlib.sha256()
        self.size = 0
        self.q: queue.Queue[bytes | None] = queue.Queue(QUEUE)
        self.sink = CipherSink(self.inner, not self.checked and self.inner.sha256() is None)
        self.failure: BaseException | None = None
        self.sealed = False
        self.thread = threading.Thread(target=self._run, name="encrypt", daemon=True)
        self.thread.start()

    @property
    def temp_key(self) -> str:
        return self.inner.temp_key  # (it may change as the ciphertext goes up)

    def _run(self) -> None:
        try:
            pyrage.encrypt_io(QueueReader(self.q), self.sink, self.t.keys_.recipients)
        except BaseException as exc:  # handed to the producer thread
            self.failure = self.sink.failure or exc

    def _put(self, item: bytes | None) -> None:
        while True:
            if self.failure is not None:
                raise self._error()
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise self._error() from None

    def _error(self) -> PhotodError:
        exc = self.failure
        if isinstance(exc, PhotodError):
            return exc
        return TargetUnavailable(self.t.name, f"encryption failed: {exc}")

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        try:
            self._put(data)
        except PhotodError:
            self.abort()
            raise

    def sha256(self) -> str | None:
        return self.sha.hexdigest()

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        return False  # what it stores is ciphertext, never the file's own bytes

    def _seal(self) -> None:
        """End of the plaintext: let pyrage write the last chunk and finish."""
        if not self.sealed:
            self._put(b"")  # (the end)
            self.thread.join()
            self.sealed = True
        if self.failure is not None:
            raise self._error()

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        try:
            self._seal()
        except PhotodError:
            self.abort()
            raise
        if self.sha.hexdigest() != sha256:
            self.abort()
            raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, self.sha.hexdigest())
        obj = self.t.keys_.object_name(key)
        entry = ManifestEntry(sha256, key, self.size, captured_at, mtime_ns)
        # (S3: a question the link cut mid-upload is asked again, not the upload lost)
        again = getattr(self.inner, "again", lambda call: call())
        if again(lambda: self.t.inner.size(obj)) is not None:
            return self._adopted(key, obj, entry)  # (or KeyExists: still open)
        # The name was just asked: the inner writer need not ask it again (S3: a HEAD).
        if hasattr(self.inner, "asked"):
            self.inner.asked = True
        # The object's own index line goes up while the object does (one after the
        # other, each waited for, cost a photo two round trips more than a plain copy).
        # The copy counts only once both are stored; one cut between the two (a crash)
        # leaves an object without its line, which the next try recognises (_adopted).
        line = self.t.keys_.encrypt(index_line(obj, entry).encode())
        sealed = self.t.lines.submit(self._put_line, obj, line, again)
        try:
            # The inner target proves it stored the ciphertext pyrage produced: read
            # back, the remote's own hash, or the server's check of every body.
            cipher = "" if self.checked else self.inner.sha256() or self.sink.sha.hexdigest()
            # No file time on the object: it would show on the drive or to the provider
            # when the photo was taken; its sealed line keeps it.
            try:
                method = self.inner.commit(obj, cipher)
            finally:
                sealed.result()  # (never left running: its failure is this copy's)
        except KeyExists as exc:  # (another upload of the name's: ``rclonerival``)
            raise self._withdraw(key, obj, entry, exc) from None
        except PhotodError:
            self.abort()
            raise
        self.t.learn([entry])
        return method

    def _withdraw(self, key: str, obj: str, entry: ManifestEntry, taken: KeyExists) -> KeyExists:
        """Another commit took the name as this copy's line went up, maybe over its own:
        a line naming this photo is taken back first (a stop then leaves none, as a kill
        does), then the object read: this very photo gets it back, the caller adopts it
        unread; another's waits for a scrub to write its own again (``mend_line``).  A
        failure fails the copy: its next try reads the object first (``_adopted``).  The
        inner writer's verdict goes on only unread (two sealings of a photo differ)."""
        try:
            line, said = self.t.inner.get_meta(sidecar(obj)), None
            with contextlib.suppress(pyrage.DecryptError):
                said = own_entry(self.t.keys_.decrypt(line), obj) if line is not None else None
            if line is None or said is None or said.sha256 != entry.sha256:
                return KeyExists(key, other=taken.other or said is not None,
                                 size=said.size if said else None)  # fmt: skip
            self.t.inner.delete_meta(sidecar(obj))
            if self.t.inner.size(obj) is None:
                return KeyExists(key, other=True)  # (still on its way: ``rclonerival``)
            if not self._holds(obj, entry):  # (or not whole: the line stays taken back)
                return KeyExists(key, other=True)
            self.t.inner.put_meta(sidecar(obj), line)
            return KeyExists(key, size=entry.size, same=True)
        except (PhotodError, OSError) as exc:
            self.abort()
            raise unread(self.t.inner, obj, f"{key}'s object, this copy's line over it,",
                         exc) from exc  # fmt: skip

    def _put_line(self, obj: str, line: bytes, again: Any) -> None:
        failpoints.hit("index_line_sealing")
        again(lambda: self.t.inner.put_meta(sidecar(obj), line))

    def _adopted(self, key: str, obj: str, entry: ManifestEntry) -> VerifyMethod:
        """An object at this name without its index line (photod killed between the two),
        or with one naming this photo (a race's, ``_withdraw``): read, this very photo's
        counts (its line written), nothing sent again; else KeyExists (the writer still
        open: the copy goes beside it), saying when it is another photo's (read, or told
        by its own line).  One the link does not let through now is neither: the copy
        fails and is tried again (beside it, its first object never got a line)."""
        said = None
        if (line := self.t.inner.get_meta(sidecar(obj))) is not None:
            with contextlib.suppress(pyrage.DecryptError):  # (another identity's: says nothing)
                said = own_entry(self.t.keys_.decrypt(line), obj)
            if said is None or said.sha256 != entry.sha256:
                raise KeyExists(key, other=said is not None, size=said.size if said else None)
        try:  # (no line, or one naming this photo: a race's, over another's object?)
            same = self._holds(obj, entry)
        except (PhotodError, OSError) as exc:  # (tried again: it may have to take the line)
            self.abort()
            if said is not None:
                raise unread(self.t, key, "the file taking its name", exc) from exc
            raise unread(self.t.inner, obj, f"{key}'s object, without its line,", exc) from exc
        if said is not None:  # the line goes only from another photo, read whole
            if same is False:
                with contextlib.suppress(PhotodError, OSError):  # (refused: left, as it was)
                    self.t.inner.delete_meta(sidecar(obj))
            raise KeyExists(key, other=not same, size=entry.size, same=bool(same))
        if not same:
            raise KeyExists(key, other=True)
        self.abort()
        self.t.inner.put_meta(sidecar(obj), self.t.keys_.encrypt(index_line(obj, entry).encode()))
        self.t.learn([entry])
        return VerifyMethod.EXISTING

    def _holds(self, obj: str, entry: ManifestEntry) -> bool | None:
        """Whether object ``obj`` itself (not another holding ``entry``'s key) decrypts
        to ``entry``'s bytes, read up to one byte past them (no more tells); None for
        one this identity does not open (or a damaged one), or no file.  A read that
        failed (the link cut, a read error, the object gone since) is raised."""
        h, left = hashlib.sha256(), entry.size + 1
        try:
            plain = Decrypting(self.t.name, self.t.keys_.identity, self.t.inner.open(obj))
            with io.BufferedReader(plain, CHUNK) as f:
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    h.update(chunk)
                    left -= len(chunk)
        except (NotAFile, Undecryptable):  # (not this copy's, or not whole: unknown)
            return None
        return left == 1 and h.hexdigest() == entry.sha256

    def abort(self) -> bool:
        self.sink.discard = True
        if not self.sealed and self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self.q.get_nowait()
            with contextlib.suppress(queue.Full):
                self.q.put_nowait(None)  # the reader raises; pyrage stops
            self.thread.join(timeout=10)
        self.sealed = True
        return self.inner.abort()


def _beside(obj: str) -> str:
    """Where a sidecar sealed beside object ``obj`` is kept (under .photod/)."""
    return f"beside/{obj.rpartition('/')[2]}"


def sidecar(obj: str) -> str:
    """Where an object's sealed index line is, under .photod/: objects/<ab>/<38 hex>."""
    return OBJECTS + obj.removeprefix(DATA)


class CryptTarget:
    """``inner`` holds the ciphertext; this holds the keys, and what it learned of which
    object is which key (from the indexes and the objects' own index lines)."""

    encrypted, checks_bodies = True, False

    def __init__(self, inner: Target, keys: Keys) -> None:
        self.inner = inner
        self.name = inner.name
        self.keys_ = keys
        self.names: dict[str, str] = {}  # object name -> key
        # key -> object, for objects named with another identity's key (a second
        # recipient's identity reads what the owner's wrote): from their index lines.
        self.objects: dict[str, str] = {}
        self.relisted = False  # every object's line read once, to find them
        self.absent: set[str] = set()  # keys whose own object is not there (found elsewhere)
        self.sizes: dict[str, int] = {}  # key -> plaintext size
        self.times: dict[str, int] = {}  # key -> the original's file time, from its line
        # Objects whose own index line this identity cannot open (another computer's,
        # sealed to another identity): not asked again at every listing.
        self.foreign: set[str] = set()
        self.lock = threading.Lock()
        self.scan = threading.Lock()  # held while every object's line is read (``_found``)
        # Each object's index line is stored while its object goes up (``CryptWriter``).
        self.lines = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"line-{self.name}")

    def learn(self, entries: Iterable[ManifestEntry]) -> None:
        """Note which object holds which key (from an index read by the records)."""
        with self.lock:
            for e in entries:
                self.names[self.keys_.object_name(e.key)] = e.key
                if e.size >= 0:
                    self.sizes[e.key] = e.size
                if e.mtime_ns is not None:
                    self.times[e.key] = e.mtime_ns
                self.absent.discard(e.key)  # (committed under its own name now)

    def file_time(self, key: str) -> int | None:
        """The original's file time as its index line keeps it (a photo without EXIF
        has no other date), read from the object's own line if not learned yet."""
        with self.lock:
            when = self.times.get(key)
        if when is None and (entry := self.described(self._stored(key))) is not None:
            when = entry.mtime_ns
        return when

    def described(self, obj: str) -> ManifestEntry | None:
        """An object's own index line (None: it has none, or not for this identity)."""
        if obj in self.foreign:
            return None
        try:
            data = self.get_private(sidecar(obj))
        except Undecryptable:
            self.foreign.add(obj)
            return None
        entries = parse_index(data) if data else []
        # The line names its object (one copied beside another proves nothing).
        if not data or not entries or data.split(b"\t", 1)[0] != obj.encode():
            return None
        key = entries[0].key
        if self.keys_.object_name(key) != obj:  # named with another identity's key
            with self.lock:  # (this identity's own object for the key always comes first:
                self.names[obj] = key  # its size and time are not taken from this one)
                self.objects.setdefault(key, obj)
            return entries[0]
        self.learn(entries[:1])
        return entries[0]

    def mend_line(self, key: str, entry: ManifestEntry) -> bool:
        """Write ``key``'s own index line again when it is missing, damaged or names
        other bytes (the recovery without photod restores only what the lines name);
        True when it was."""
        obj = self._stored(key)
        try:
            data = self.get_private(sidecar(obj))
        except Undecryptable:  # (the object opens with this identity: so would its line)
            data = None
        found = parse_index(data)[:1] if data else []
        named = data is not None and data.split(b"\t", 1)[0] == obj.encode()
        if named and [(f.sha256, f.key) for f in found] == [(entry.sha256, key)]:
            return False
        self.inner.put_meta(sidecar(obj), self.keys_.encrypt(index_line(obj, entry).encode()))
        with self.lock:
            self.foreign.discard(obj)
        return True

    def _object(self, key: str) -> str:
        """The object this identity names ``key`` (where it writes it)."""
        return self.keys_.object_name(key)

    def _stored(self, key: str) -> str:
        """The object that holds ``key``: this identity's own, else one named with
        another identity's key (only when this one's is not there)."""
        own = self._object(key)
        with self.lock:
            other = self.objects.get(key)
            if other is not None and key in self.absent:
                return other
        return own if other is None or self.inner.size(own) is not None else other

    def _found(self, key: str) -> str | None:
        """The object named with another identity's key that holds ``key``, when this
        identity's own is not there: every object's index line is read once for it (a
        restore with a second recipient's identity, after a rebuild from a snapshot)."""
        with self.scan:  # (others wait for the one reading: none takes "not found" early)
            if not self.relisted:
                for obj, _ in self.inner.listing():
                    if obj.startswith(DATA) and obj not in self.names:
                        self.described(obj)
                self.relisted = True
        with self.lock:
            other = self.objects.get(key)
            if other is not None:
                self.absent.add(key)  # (asked for again: straight there)
            return other

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        return self.inner.check(known, prepare)

    def free_bytes(self) -> int | None:
        return self.inner.free_bytes()

    def open_writer(self, key: str, hashed: bool = True) -> CryptWriter:
        return CryptWriter(self, key)

    def open(self, key: str) -> BinaryIO:
        try:
            source = self.inner.open(self._stored(key))
        except FileNotFoundError:
            if (other := self._found(key)) is None:
                raise
            source = self.inner.open(other)
        return io.BufferedReader(Decrypting(self.name, self.keys_.identity, source), 1 << 20)

    def size(self, key: str) -> int | None:
        obj = self._stored(key)
        if self.inner.size(obj) is None:
            if (other := self._found(key)) is None:
                return None
            obj = other
        with self.lock:
            size = self.sizes.get(key)
        if size is None:
            entry = self.described(obj)
            size = entry.size if entry is not None else None
        return size

    def keys(self) -> Iterator[str]:
        for key, _ in self.listing():
            yield key

    def listing(self) -> Iterator[tuple[str, int | None]]:
        """Every object whose key is known: learned from an index, else read from the
        object's own index line (objects sealed to another identity are not listed)."""
        found = []
        for obj, _ in self.inner.listing():
            if not obj.startswith(DATA):
                continue
            with self.lock:
                key = self.names.get(obj)
            if key is None:
                entry = self.described(obj)
                key = entry.key if entry is not None else None
            if key is not None:
                found.append(key)
        for key in sorted(set(found)):  # (one key under two identities' names: once)
            yield key, None  # the stored size is the ciphertext's

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        self.inner.delete_temp(temp_key, alone)

    def put_meta(self, name: str, data: bytes) -> None:
        self.inner.put_meta(name, data)

    def create_meta(self, name: str, data: bytes) -> bool:
        return self.inner.create_meta(name, data)

    def get_meta(self, name: str) -> bytes | None:
        return self.inner.get_meta(name)

    def list_meta(self, folder: str) -> list[str]:
        return self.inner.list_meta(folder)

    def delete_meta(self, name: str) -> None:
        self.inner.delete_meta(name)

    # A sidecar is sealed and kept with the target's own files, under the meaningless
    # name its key has: not among the objects, so a listing never has to open it.
    def put_beside(self, key: str, data: bytes, replace: bool) -> bool:
        # Under .photod/ with a name only a sidecar has: nothing else can be there.  It
        # is its photo's object's name (``KEY.xmp`` beside ``KEY``), which the photo's
        # index line gives the recovery without photod.  This identity's own name for
        # it: a photo held through another computer's object never lends its sidecar's
        # name (that computer's sidecar, sealed to its keys, would be replaced).
        self.put_private(_beside(self._object(key.removesuffix(".xmp"))), data)
        return True

    def get_beside(self, key: str) -> bytes | None:
        data = self.get_private(_beside(self._object(key.removesuffix(".xmp"))))
        if data is None:  # written before, named after the sidecar's own key
            data = self.get_private(_beside(self._stored(key)))
        return data

    def locate(self, key: str) -> str:
        return self._object(key)

    def prefetch(self, key: str) -> None:
        self.inner.prefetch(self._object(key))

    def discard(self, key: str) -> None:
        self.inner.discard(self._object(key))

    def put_private(self, name: str, data: bytes) -> None:
        self.inner.put_meta(name, self.keys_.encrypt(data))

    def put_private_file(self, name: str, src: BinaryIO) -> None:
        with Sealing(self.name, self.keys_.identity, self.keys_.recipients, src) as sealed:
            self.inner.put_private_file(name, sealed)  # type: ignore[arg-type]

    def open_private(self, name: str) -> BinaryIO:
        plain = Decrypting(self.name, self.keys_.identity, self.inner.open_private(name))
        return io.BufferedReader(plain, 1 << 20)

    def get_private(self, name: str) -> bytes | None:
        data = self.inner.get_meta(name)
        if data is None:
            return None
        try:
            return self.keys_.decrypt(data)
        except pyrage.DecryptError as exc:
            raise Undecryptable(
                self.name, f"{name} cannot be opened with {self.keys_.file}", exc
            ) from exc

    def close(self) -> None:
        self.lines.shutdown(wait=True)
        self.inner.close()
