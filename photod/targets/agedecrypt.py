"""Reading an age object as a stream: pyrage decrypts in a thread of its own while the
plaintext is read (``crypt.CryptTarget.open``); sealing a file as a stream, read
as pyrage makes it (``Sealing``: a private file too large to seal in memory); and the
two ends of an object's encryption as photod writes it (``QueueReader``, what pyrage
reads; ``CipherSink``, where its ciphertext goes: ``crypt.CryptWriter``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
from typing import Any, BinaryIO

import pyrage
from pyrage import x25519

from photod.errors import TargetUnavailable, Undecryptable
from photod.targets.base import Writer

QUEUE = 8  # chunks waiting between photod and pyrage, per object (both ways)


class Decrypting(io.RawIOBase):
    """An object's plaintext, decrypted by pyrage in a thread while it is read."""

    def __init__(self, name: str, identity: x25519.Identity, source: BinaryIO) -> None:
        self.name = name  # the target's, for what is said
        self.identity = identity
        self.source = source
        self.q: queue.Queue[bytes | None] = queue.Queue(QUEUE)
        self.chunk = b""
        self.failure: BaseException | None = None
        self.source_failure: BaseException | None = None
        self.done = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="decrypt", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            pyrage.decrypt_io(_Watched(self), _QueueWriter(self.q, self.stop), [self.identity])
        except BaseException as exc:
            self.failure = exc
        finally:  # the end, however long the reader takes to come for it
            _put(self.q, self.stop, None)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.chunk:
            if self.done:
                return 0
            item = self.q.get()
            if item is None:
                self.done = True
                if self.source_failure is not None:  # the download, not the data
                    if isinstance(self.source_failure, TargetUnavailable):
                        raise self.source_failure
                    raise OSError(f"{self.name}: download failed: {self.source_failure}")
                if self.failure is not None:  # pyrage read every byte and refused them
                    raise Undecryptable(self.name, str(self.failure), self.failure)
                return 0
            self.chunk = item
        n = min(len(buf), len(self.chunk))
        buf[:n] = self.chunk[:n]
        self.chunk = self.chunk[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self.stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    self.q.get_nowait()
            self.thread.join(timeout=10)
            self.source.close()
        super().close()


class Sealing(Decrypting):
    """``source`` sealed to ``recipients``, read as pyrage encrypts it in a thread."""

    def __init__(
        self, name: str, identity: x25519.Identity, recipients: list[Any], source: BinaryIO
    ) -> None:
        self.recipients = recipients
        super().__init__(name, identity, source)

    def _run(self) -> None:
        try:
            pyrage.encrypt_io(_Watched(self), _QueueWriter(self.q, self.stop), self.recipients)
        except BaseException as exc:
            self.failure = exc
        finally:
            _put(self.q, self.stop, None)


class _Watched(io.RawIOBase):
    """The ciphertext stream as pyrage reads it, noting a failure of the download
    itself: pyrage reports every failure as the same OSError, and a cut connection
    must not be taken for damaged data."""

    def __init__(self, owner: Decrypting) -> None:
        self.owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.owner.source.read(len(buf))
        except BaseException as exc:
            self.owner.source_failure = exc
            raise
        n = len(data)
        buf[:n] = data
        return n


class _QueueWriter(io.RawIOBase):
    def __init__(self, q: queue.Queue[bytes | None], stop: threading.Event) -> None:
        self.q = q
        self.stop = stop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if _put(self.q, self.stop, chunk):
            return len(chunk)
        raise OSError("reader closed")


def _put(q: queue.Queue[bytes | None], stop: threading.Event, item: bytes | None) -> bool:
    """Put ``item`` once there is room; False if the reader closed first."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            q.put(item, timeout=0.2)
            return True
    return False


class QueueReader(io.RawIOBase):
    """What pyrage reads from: chunks put by the producer, then b'' (the end)."""

    def __init__(self, q: queue.Queue[bytes | None]) -> None:
        self.q = q
        self.chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self.chunk:
            item = self.q.get()
            if item is None:
                raise OSError("aborted")
            self.chunk = memoryview(item)
            if not item:
                return 0
        n = min(len(buf), len(self.chunk))
        buf[:n] = self.chunk[:n]
        self.chunk = self.chunk[n:]
        return n


class CipherSink(io.RawIOBase):
    """What pyrage writes ciphertext to: the inner writer, hashed on the way when its
    commit needs the hash and the writer takes none itself (a local file, read back)."""

    def __init__(self, writer: Writer, hashing: bool) -> None:
        self.writer = writer
        self.sha, self.hashing = hashlib.sha256(), hashing
        self.failure: BaseException | None = None
        # Set by abort: what pyrage still writes as it stops (the age header of a file
        # aborted before its first byte) must not start an upload nobody ends.
        self.discard = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.discard:
            return len(data)
        chunk = bytes(data)
        try:
            self.writer.write(chunk)
        except BaseException as exc:
            self.failure = exc  # pyrage only sees an I/O error; keep the real one
            raise
        if self.hashing:
            self.sha.update(chunk)
        return len(chunk)
