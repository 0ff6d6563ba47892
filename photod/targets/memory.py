"""A target that lives in a dict: for tests of the pipeline, the way httpx ships a
MockTransport.  It honours the same contract as the others (atomic publish, no
overwrite, read-back check) and can be made unavailable or full."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from photod.errors import ChecksumMismatch, KeyExists, TargetFull, TargetUnavailable
from photod.models import ManifestEntry, VerifyMethod
from photod.targets.base import Identity, now_stamp, quarantine_name

_ids = itertools.count()


class MemoryWriter:
    def __init__(self, target: MemoryTarget, key: str) -> None:
        self.target = target
        self.temp_key = f"{key}.tmp{next(_ids)}"
        self.buf = io.BytesIO()
        self.taken = hashlib.sha256()  # as an upload hashes what it sends

    def sha256(self) -> str | None:
        return self.taken.hexdigest()

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        return False  # its bytes live in memory: there is no file to link

    def write(self, data: bytes) -> None:
        if not self.target.available:
            raise TargetUnavailable(self.target.name, "offline")
        used = sum(len(v) for v in self.target.objects.values()) + self.buf.tell() + len(data)
        if self.target.capacity is not None and used > self.target.capacity:
            raise TargetFull(self.target.name, used, self.target.capacity)
        if (
            self.target.cut_after is not None
            and self.buf.tell() + len(data) > self.target.cut_after
        ):
            self.target.available = False  # the connection drops, this file half sent
            raise TargetUnavailable(self.target.name, "connection lost")
        self.buf.write(data)
        self.taken.update(data)

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        if not self.target.available:
            raise TargetUnavailable(self.target.name, "offline")
        data = self.buf.getvalue()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ChecksumMismatch(f"{self.target.name}:{key}", sha256, actual)
        if key in self.target.objects:
            raise KeyExists(key)
        self.target.objects[key] = data
        return VerifyMethod.READBACK

    def abort(self) -> bool:
        self.buf = io.BytesIO()
        self.taken = hashlib.sha256()
        return True


class MemoryTarget:
    encrypted = checks_bodies = False

    def __init__(self, name: str, capacity: int | None = None) -> None:
        self.name = name
        self.capacity = capacity
        self.available = True
        # Bytes of one file after which the target goes offline (a cable pulled mid-copy).
        self.cut_after: int | None = None
        self.objects: dict[str, bytes] = {}
        self.meta: dict[str, bytes] = {}
        self.target_id = f"memory-{name}"

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        if known and known.target_id != self.target_id:
            raise TargetUnavailable(self.name, "foreign")
        return Identity(self.target_id, f"memory:{self.name}")

    def free_bytes(self) -> int | None:
        if self.capacity is None:
            return None
        return self.capacity - sum(len(v) for v in self.objects.values())

    def open_writer(self, key: str, hashed: bool = True) -> MemoryWriter:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        return MemoryWriter(self, key)

    def open(self, key: str) -> BinaryIO:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        if key not in self.objects:
            raise FileNotFoundError(key)
        return io.BytesIO(self.objects[key])

    def size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    def keys(self) -> Iterator[str]:
        yield from sorted(self.objects)

    def listing(self) -> Iterator[tuple[str, int | None]]:
        for key in sorted(self.objects):
            yield key, len(self.objects[key])

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        pass  # a memory writer's bytes vanish with it

    def put_meta(self, name: str, data: bytes) -> None:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        self.meta[name] = data

    def create_meta(self, name: str, data: bytes) -> bool:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        return self.meta.setdefault(name, data) is data

    def get_meta(self, name: str) -> bytes | None:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        return self.meta.get(name)

    def list_meta(self, folder: str) -> list[str]:
        return sorted(n for n in self.meta if n.startswith(folder + "/"))

    def delete_meta(self, name: str) -> None:
        self.meta.pop(name, None)

    def put_beside(self, key: str, data: bytes, replace: bool) -> bool:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        if not replace and key in self.objects:
            return False
        self.objects[key] = data
        return True

    def get_beside(self, key: str) -> bytes | None:
        if not self.available:
            raise TargetUnavailable(self.name, "offline")
        return self.objects.get(key)

    def locate(self, key: str) -> str:
        return key

    def learn(self, entries: Iterable[ManifestEntry]) -> None:
        pass  # plain keys are the stored names

    def prefetch(self, key: str) -> None:
        pass

    def discard(self, key: str) -> None:
        data = self.objects.pop(key, None)
        if data is not None:
            self.meta[quarantine_name(key, now_stamp())] = data

    put_private = put_meta
    get_private = get_meta

    def put_private_file(self, name: str, src: BinaryIO) -> None:
        self.put_meta(name, src.read())  # (in memory: what it holds is there already)

    def open_private(self, name: str) -> BinaryIO:
        data = self.get_meta(name)
        if data is None:
            raise FileNotFoundError(name)
        return io.BytesIO(data)

    def close(self) -> None:
        pass
