"""What S3 and rclone targets share: an object store seen through a few primitives.

Under the target's prefix, ``.photod/target.json`` names the target (its id), and
``.photod/manifest/`` holds the manifest as segments (see ``segments.py``).  Temporary
uploads are either invisible (an unfinished multipart upload) or under
``.photod/tmp/``; listings never show either.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from photod.errors import TargetUnavailable
from photod.targets.base import (
    Identity,
    ManifestEntry,
    now_stamp,
    quarantine_name,
    refuse_stranger,
)
from photod.targets.segments import SegmentLog, parse_plain_lines, plain_lines

META = ".photod/"
MARKER = "target.json"
TMP = f"{META}tmp/"


class ObjectTarget:
    """Subclasses provide ``where`` and the ``_get/_put/_list/_delete`` primitives,
    each raising TargetUnavailable for anything but "no such object"."""

    name: str
    where: str

    def __init__(self) -> None:
        self.manifest = SegmentLog(self, "manifest", plain_lines, parse_plain_lines)  # type: ignore[arg-type]

    # -- primitives -------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def _get(self, key: str) -> bytes | None:
        try:
            with self.open(key) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a download cut off
            raise TargetUnavailable(self.name, str(exc)) from exc

    def _put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _list(self, prefix: str) -> Iterator[str]:
        for key, _ in self._list_sized(prefix):
            yield key

    def _list_sized(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Keys under a prefix, with their sizes, from a recursive listing."""
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    # -- the Target contract -----------------------------------------------------------

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        raw = self.get_meta(MARKER)  # also proves the store answers and the keys work
        try:
            found = str(json.loads(raw)["id"]) if raw else None
        except (ValueError, KeyError, TypeError):
            found = None
        refuse_stranger(self.name, self.where, known, found, "was it emptied or moved?")
        if found is None and not prepare:
            return Identity("", self.where)
        if found is None:
            found = str(uuid.uuid4())
            marker = {"id": found, "name": self.name, "created_by": "photod"}
            self.put_meta(MARKER, json.dumps(marker).encode())
        return Identity(found, self.where)

    def free_bytes(self) -> int | None:
        return None  # object stores do not say; a full bucket shows as a failed upload

    def keys(self) -> Iterator[str]:
        for key, _ in self.listing():
            yield key

    def listing(self) -> Iterator[tuple[str, int | None]]:
        for key, size in self._list_sized(""):
            if not key.startswith(META):
                yield key, size

    def append_manifest(self, entries: Iterable[ManifestEntry]) -> None:
        self.manifest.append(entries)

    def rewrite_manifest(self, entries: Iterable[ManifestEntry]) -> None:
        self.manifest.rewrite(entries)

    def manifest_lines(self) -> int:
        return self.manifest.count()

    def flush(self) -> None:
        self.manifest.flush()

    def put_meta(self, name: str, data: bytes) -> None:
        self._put(META + name, data)

    def get_meta(self, name: str) -> bytes | None:
        return self._get(META + name)

    def list_meta(self, folder: str) -> list[str]:
        return sorted(k.removeprefix(META) for k in self._list(f"{META}{folder}/"))

    def delete_meta(self, name: str) -> None:
        self._delete(META + name)

    def manifest_entries(self) -> list[ManifestEntry]:
        return self.manifest.entries()

    def _move(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def prefetch(self, key: str) -> None:
        pass  # a download starts when it is read

    def discard(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._move(key, META + quarantine_name(key, now_stamp()))

    put_private = put_meta
    get_private = get_meta
