"""What S3 and rclone targets share: an object store seen through a few primitives.

Under the target's prefix, ``.photod/target.json`` names the target (its id), and
``.photod/installations/`` holds each installation's records (``records.py``).
Temporary uploads are either invisible (an unfinished multipart upload) or under
``.photod/tmp/``; listings never show either.

Object stores have no "create if missing" that every server honours (S3's If-None-Match
is ignored by some, rclone's remotes have none), so two computers that find the same
empty target settle its id by claims: each writes ``.photod/claims/<time>-<id>``,
waits, and the earliest claim's id becomes the target's, written by whoever gets there
(the same bytes, whoever writes them).  Nothing else is written before that.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from photod.errors import TargetUnavailable
from photod.models import ManifestEntry
from photod.targets.base import (
    Identity,
    Writer,
    now_stamp,
    quarantine_name,
    refuse_stranger,
    write_stream,
)

META = ".photod/"
MARKER = "target.json"
CLAIMS = "claims"
TMP = f"{META}tmp/"
CLAIM_SETTLE = 2.0  # seconds a claimant waits for others' claims to be listed
CLAIM_WAIT = 30.0  # seconds to wait for the winner's marker before writing it ourselves


class ObjectTarget:
    """Subclasses provide ``where`` and the ``_get/_put/_list/_delete`` primitives,
    each raising TargetUnavailable for anything but "no such object"."""

    name: str
    where: str
    encrypted = checks_bodies = False

    # -- primitives -------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def open_writer(self, key: str, hashed: bool = True) -> Writer:
        raise NotImplementedError

    def _left_behind(self, temp_key: str) -> None:
        """A temporary a failed write could not remove now (the target's tidy will)."""

    def _end_unfinished(self, folder: str) -> None:
        """End what an upload into ``folder`` left when photod was killed during it
        (one only the server sees: an unfinished multipart upload)."""

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

    def _put_new(self, key: str, data: bytes) -> bool:
        """Put an object only where none is: False when one is.  Without a conditional
        write on the server there is a moment between the look and the put."""
        if self._get(key) is not None:
            return False
        self._put(key, data)
        return True

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
        found = self._marker_id()  # also proves the store answers and the keys work
        refuse_stranger(self.name, self.where, known, found, "was it emptied or moved?")
        if found is None and not prepare:
            return Identity("", self.where)
        if found is None:
            found = self._settle_identity()
        return Identity(found, self.where)

    def _marker_id(self) -> str | None:
        """The id in the marker; None when there is no marker.  A marker that cannot be
        read is never taken for none (writing another would make two targets of one)."""
        raw = self.get_meta(MARKER)
        if raw is None:
            return None
        try:
            return str(json.loads(raw)["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetUnavailable(
                self.name, f"{self.where}.photod/{MARKER} cannot be read ({exc}); photod "
                "does not write to a target it cannot identify",
            ) from exc  # fmt: skip

    def _settle_identity(self) -> str:
        """The id of a target found empty, agreed with any other computer that found it
        empty at the same moment (see the module's docstring)."""
        mine = f"{time.time_ns():020d}-{uuid.uuid4()}"
        self.put_meta(f"{CLAIMS}/{mine}", b"claim\n")
        time.sleep(CLAIM_SETTLE)
        deadline = time.monotonic() + CLAIM_WAIT
        give_up = deadline + CLAIM_WAIT * 4  # a marker written that never reads back
        while True:
            found = self._marker_id()
            if found is not None:
                return found
            if time.monotonic() > give_up:
                raise TargetUnavailable(self.name, f"{self.where}.photod/{MARKER} was written "
                                        "but does not read back")  # fmt: skip
            claims = self.list_meta(CLAIMS)
            first = claims[0].rpartition("/")[2] if claims else mine
            if first == mine or time.monotonic() > deadline:
                # The winner writes the marker; if it died before it did, anyone may:
                # the marker holds the winner's id whoever writes it.
                winner = first.partition("-")[2]
                marker = {"id": winner, "name": self.name, "created_by": "photod"}
                self._put_new(META + MARKER, json.dumps(marker).encode())
            time.sleep(0.5)

    def free_bytes(self) -> int | None:
        return None  # object stores do not say; a full bucket shows as a failed upload

    def keys(self) -> Iterator[str]:
        for key, _ in self.listing():
            yield key

    def listing(self) -> Iterator[tuple[str, int | None]]:
        for key, size in self._list_sized(""):
            if not key.startswith(META):
                yield key, size

    def put_meta(self, name: str, data: bytes) -> None:
        self._put(META + name, data)

    def create_meta(self, name: str, data: bytes) -> bool:
        return self._put_new(META + name, data)

    def get_meta(self, name: str) -> bytes | None:
        return self._get(META + name)

    def list_meta(self, folder: str) -> list[str]:
        return sorted(k.removeprefix(META) for k in self._list(f"{META}{folder}/"))

    def delete_meta(self, name: str) -> None:
        self._delete(META + name)

    def put_beside(self, key: str, data: bytes, replace: bool) -> bool:
        if not replace:
            return self._put_new(key, data)
        self._put(key, data)  # one PUT: the old object or the new one, never a mix
        return True

    def get_beside(self, key: str) -> bytes | None:
        return self._get(key)

    def locate(self, key: str) -> str:
        return key

    def learn(self, entries: Iterable[ManifestEntry]) -> None:
        pass  # plain keys are the stored names

    def _move(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def prefetch(self, key: str) -> None:
        pass  # a download starts when it is read

    def discard(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._move(key, META + quarantine_name(key, now_stamp()))

    put_private = put_meta
    get_private = get_meta

    def put_private_file(self, name: str, src: BinaryIO) -> None:
        self._end_unfinished(META + name.rpartition("/")[0])
        writer = self.open_writer(META + name)
        try:
            write_stream(self.name, writer, META + name, src)
        except BaseException:
            if not writer.abort():
                self._left_behind(writer.temp_key)
            raise

    def open_private(self, name: str) -> BinaryIO:
        return self.open(META + name)
