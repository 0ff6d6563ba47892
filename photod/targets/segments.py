"""A manifest kept as a series of small immutable files ("segments") in a target's
``.photod/`` folder.  Object stores cannot append to a file; writing one segment per
batch of verified copies, instead of rewriting one growing file, keeps every write
small and every segment whole (each is published atomically).

``cat .photod/manifest/*`` gives the whole manifest; on an encrypted target each
segment is an age file and the entries are the encrypted index.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable

from photod.targets.base import ManifestEntry, Target

FLUSH_EVERY = 1000  # entries; fewer are written by flush() (the daemon calls it often)
COMPACT_AFTER = 64  # segments; then they are merged into one, so a restore reads few files


class SegmentLog:
    def __init__(
        self,
        target: Target,
        folder: str,
        encode: Callable[[list[ManifestEntry]], bytes],
        decode: Callable[[bytes], list[ManifestEntry]],
    ) -> None:
        self.target = target
        self.folder = folder
        self.encode = encode
        self.decode = decode
        self._buffer: list[ManifestEntry] = []
        self._stored: int | None = None  # entries in segments on the target, once counted
        self._segments: int | None = None
        self._lock = threading.Lock()

    def _name(self) -> str:
        # Random: no write time leaks, and two writers never pick the same name.  Order
        # does not matter: a key's entries are identical wherever they repeat.
        return f"{self.folder}/{secrets.token_hex(12)}"

    def entries(self) -> list[ManifestEntry]:
        """Every stored entry, oldest segment first (a restore reads these)."""
        out: list[ManifestEntry] = []
        names = self.target.list_meta(self.folder)
        for name in names:
            data = self.target.get_meta(name)
            if data is not None:
                out.extend(self.decode(data))
        with self._lock:
            self._stored, self._segments = len(out), len(names)
            return out + self._buffer

    def append(self, entries: Iterable[ManifestEntry]) -> None:
        with self._lock:
            self._buffer.extend(entries)
            full = len(self._buffer) >= FLUSH_EVERY
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            self.target.put_meta(self._name(), self.encode(batch))
        except BaseException:
            with self._lock:
                self._buffer[:0] = batch  # kept for the next flush
            raise
        with self._lock:
            if self._stored is not None and self._segments is not None:
                self._stored += len(batch)
                self._segments += 1
            compact = (self._segments or 0) > COMPACT_AFTER
        if compact:
            self.rewrite(self.entries())

    def rewrite(self, entries: Iterable[ManifestEntry]) -> None:
        """One new segment with exactly these entries, then the old ones go.  A crash
        in between leaves more entries than the catalog has, never fewer: the next
        count disagrees and the rewrite runs again."""
        old = self.target.list_meta(self.folder)
        batch = list(entries)
        with self._lock:
            self._buffer = []
        if batch:
            self.target.put_meta(self._name(), self.encode(batch))
        for name in old:
            self.target.delete_meta(name)
        with self._lock:
            self._stored, self._segments = len(batch), 1 if batch else 0

    def count(self) -> int:
        with self._lock:
            stored, buffered = self._stored, len(self._buffer)
        if stored is None:
            return len(self.entries())
        return stored + buffered


def plain_lines(entries: list[ManifestEntry]) -> bytes:
    """``sha256sum`` format: ``cat .photod/manifest/* > SUMS; sha256sum -c SUMS``."""
    return "".join(f"{e.sha256}  {e.key}\n" for e in entries).encode()


def parse_plain_lines(data: bytes) -> list[ManifestEntry]:
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        sha, sep, key = line.partition("  ")
        if sep and len(sha) == 64:
            out.append(ManifestEntry(sha, key))
    return out
