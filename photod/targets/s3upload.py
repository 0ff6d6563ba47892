"""An S3 upload: one PUT for a small file, a multipart upload for a larger one
(``part_size`` at a time, at most ``IN_FLIGHT`` parts on the wire, so memory stays bounded
for a video of any size), and what it leaves on the server until it ends: its record
(``temp_key``, which names its multipart upload by the id the server gave it), and
``end_temp``, which ends it from that record after a crash or a cut network.  An
upload whose part the network cut for longer than ``part_retry`` is kept on the server
(``Kept``) and resumed by the next upload of the same file: the parts the server took
are not sent again."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from photod.errors import (
    BytesNotHashed,
    ChecksumMismatch,
    KeyExists,
    PhotodError,
    Stopping,
    TargetUnavailable,
)
from photod.logs import log
from photod.models import VerifyMethod
from photod.targets.objects import TMP
from photod.targets.s3client import NETWORK, error_code, passing, retries

if TYPE_CHECKING:
    from photod.targets.s3 import S3Target

UPLOAD = "s3-upload:"  # temp keys: an upload not started yet, to the key that follows
STARTED = "s3-multipart:"  # temp keys: a multipart upload the server started, and its id
IN_FLIGHT = 2  # parts of one upload on the wire at once
T = TypeVar("T")
TOKEN = "photod-upload"  # metadata: the upload's random token (``_made``)


class _Part(io.BytesIO):
    """A part's bytes as botocore reads them to send, a block at a time: ``cut`` set
    (photod stops) ends the sending there (over a slow uplink a part takes minutes,
    and systemd kills a photod still stopping 30 s after it asked); ``paced``, the
    target's bandwidth limit, is asked for each block as it goes on the wire."""

    def __init__(
        self, data: bytes, cut: threading.Event, paced: Callable[[int], None] | None
    ) -> None:
        super().__init__(data)  # (the bytes are shared, not copied)
        self.cut = cut
        self.paced = paced

    def read(self, n: int | None = -1) -> bytes:
        if self.cut.is_set():
            raise OSError("photod is stopping")
        data = super().read(n)
        if self.paced is not None and data:
            self.paced(len(data))
            if self.cut.is_set():  # (a stop during the wait)
                raise OSError("photod is stopping")
        return data


def md5(data: bytes) -> str:
    """The Content-MD5 of a body: every S3 server checks it before it stores one."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class S3Writer:
    def __init__(self, target: S3Target, key: str, hashed: bool = True) -> None:
        self.t = target
        self.key = key
        # Where a multipart upload goes, decided at its first part: the key itself when it
        # is free (no copy), else .photod/tmp/ (put in place by the server at commit, under
        # whatever name commit is given).  A small file is one PUT at commit.
        self.token = secrets.token_hex(12)  # (also on the upload: ``_made``)
        self.tmp = f"{TMP}{self.token}"
        self.upload_key = key
        self.temp_key = f"{UPLOAD}{self.tmp}:{key}"  # (its id added once started)
        # Called once the server gave the upload its id (``Temporaries.register`` sets it):
        # recorded then, not after a commit that may send the whole upload (an
        # encrypted copy's starts on its own thread), so a crash's tidy finds it.
        self.started: Callable[[], None] = lambda: None
        # The target's bandwidth limit, paced as each part goes on the wire (not read
        # at the limit, then sent at full speed): set by ``TargetState.open_writer``.
        self.paced: Callable[[int], None] | None = None
        self.chunks: list[bytes] = []  # joined once per part or PUT: one copy of each byte
        self.buffered = 0
        self.sha = hashlib.sha256() if hashed else None  # what it sent (None: caller's hash)
        self.size = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.futures: list[Future[dict[str, Any]]] = []
        self.completed = False
        self.ended: bool | None = None  # what ``abort`` found: None before it ran
        # A stop cuts the parts on the wire of an upload in flight when it came, never
        # of one made as photod stops (the catalog's last snapshot).
        self.cut = target.stop if not target.stop.is_set() else threading.Event()
        self.asked = False  # the caller asked for the name just before (crypt): not again
        self.resumable = False  # a part given up on a cut network: kept at ``abort``
        self.retried = False  # a part was sent again (said once: ``upload_part_retried``)
        # An upload resumed: its parts on the server (``_parts_there``), learned at its
        # first part (None until then).  Only of plain bytes, the same at every try.
        self.listed: dict[int, tuple[int, str, str]] | None = {}
        # (SHA-256, size, Content-MD5) taken in one read of the photo (``vouch``)
        self.vouched: tuple[str, int, str] | None = None
        resumed = target.kept.take(key, self) if hashed else None
        self.resumed = "" if resumed is None else resumed[3]  # (``Kept.done`` at its end)
        if resumed is not None:
            self.upload_key, self.upload_id, self.token, self.temp_key = resumed
            self.tmp, self.listed = f"{TMP}{self.token}", None

    def vouch(self, sha256: str, size: int, md5: str) -> None:
        """Before any byte: the Content-MD5 one read of the photo gave with its SHA-256.
        The PUT carries it and the server refuses other bytes, so its 200 proves these are
        the bytes hashed as ``sha256``; its one PUT to the key leaves nothing temporary (no
        record).  Not for a file sent in parts (each with its own MD5): hashed as usual."""
        if not (self.size or self.sha is None or self.resumed) and size < self.t.part_size:
            self.vouched, self.sha, self.temp_key = (sha256, size, md5), None, ""

    def write(self, data: bytes) -> None:
        if self.sha is not None:
            self.sha.update(data)
        self.size += len(data)
        if self.vouched is not None and self.size > self.vouched[1]:  # (never a part unhashed)
            self.abort()
            raise BytesNotHashed(f"{self.t.name}:{self.key}", self.vouched[0])
        self.chunks.append(data)
        self.buffered += len(data)
        while self.buffered >= self.t.part_size:
            joined = b"".join(self.chunks)
            part, rest = joined[: self.t.part_size], joined[self.t.part_size :]
            self.chunks, self.buffered = ([rest] if rest else []), len(rest)
            self._send_part(part)

    def sha256(self) -> str | None:
        if self.vouched is not None:  # (proved at commit, by the server's MD5 check)
            return self.vouched[0]
        return self.sha.hexdigest() if self.sha is not None else None

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        return False  # an upload: its bytes are sent

    def _take_buffer(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks, self.buffered = [], 0
        return data

    def _send_part(self, part: bytes) -> None:
        try:
            if self.listed is None:
                self.listed = _parts_there(self)
            if self.upload_id is None:
                if self.t.exists(self.key):
                    self.upload_key = self.tmp
                answer = self.t.call("create_multipart_upload", Key=self.t.full(self.upload_key),
                                     Metadata={TOKEN: self.token})  # fmt: skip
                self.upload_id = self._field(answer, "UploadId", "the start of the upload")
                # The record names this upload by its id: a crash's tidy ends it, and
                # never another computer's upload to the same name (one prefix shared).
                where = "tmp" if self.upload_key == self.tmp else "key"
                self.temp_key = (f"{STARTED}{self.tmp}:{where}:"
                                 f"{self.upload_id.encode().hex()}:{self.key}")  # fmt: skip
                self.started()
            while len(self.futures) >= IN_FLIGHT:  # bounded memory: wait for room
                self.futures[0].result()
                self._collect(wait=False)
            number = len(self.parts) + len(self.futures) + 1
            there = (self.listed or {}).get(number)
            if there is not None and there[:2] == (len(part), hashlib.md5(part).hexdigest()):
                self.parts.append({"PartNumber": number, "ETag": there[2]})  # (not sent again)
                return
            self.futures.append(self.t.pool.submit(self._upload_part, number, part))
            self._collect(wait=False)
        except PhotodError:
            self.abort()
            raise

    def _upload_part(self, number: int, part: bytes) -> dict[str, Any]:
        """Send one part.  One the network cut (or a busy server refused) is sent again
        in the same upload, after 2 s, 4 s, 8 s ... (a minute at most) for the target's
        ``part_retry`` in all: a link that drops every few minutes then costs a part,
        not the whole upload; from its first byte again, a video longer to send than
        the link stays up could never land."""
        digest = md5(part)
        try:
            response = self._again(lambda: self.t.call(  # (a part sent again replaces the first)
                "upload_part", Key=self.t.full(self.upload_key), UploadId=self.upload_id,
                PartNumber=number, Body=_Part(part, self.cut, self.paced), ContentMD5=digest),
                functools.partial(self._retrying, number))  # fmt: skip
        except TargetUnavailable as exc:
            self.resumable |= passing(exc.__cause__)  # (the network: its parts are kept)
            raise
        return {"PartNumber": number, "ETag": self._field(response, "ETag", f"part {number}")}

    def _retrying(self, number: int, exc: TargetUnavailable) -> None:
        """A part the network cut is sent again: said once an upload."""
        if not self.retried:
            self.retried = True
            log.warning("upload_part_retried", target=self.t.name, path=self.key, part=number,
                        error=exc.reason, part_retry=self.t.part_retry)  # fmt: skip

    def again(self, call: Callable[[], T]) -> T:
        """``call()``, a question asked before a commit (is the name free?): during a
        multipart upload asked again if the network cut it (``_again``), else its parts,
        all sent, were thrown away with it and the video sent again whole."""
        return self._again(call) if self.upload_id is not None else call()

    def _again(
        self, call: Callable[[], T], again: Callable[[TargetUnavailable], None] | None = None
    ) -> T:
        """``call()`` (a request that may be sent twice), asked again when the network
        cut it or a busy server refused it, after 2 s, 4 s, 8 s ... (a minute at most)
        for the target's ``part_retry`` in all; ``again`` is told each time."""
        waits = retries(self.t.part_retry, self.t.stop)
        while True:
            try:
                return call()
            except TargetUnavailable as exc:
                if self.cut.is_set():
                    raise Stopping from exc  # (photod stops: not the target's fault)
                if not passing(exc.__cause__) or not next(waits, False):
                    raise
                if again is not None:
                    again(exc)

    def _field(self, answer: Any, field: str, what: str) -> str:
        """A field the upload cannot go on without, from the server's answer.  One
        missing (a server's bug, a proxy that drops headers) is the target's fault,
        told as such: the upload is aborted and tried again later, never a crash."""
        value = answer.get(field) if isinstance(answer, dict) else None
        if not isinstance(value, str) or not value:
            raise TargetUnavailable(
                self.t.name, f"the server's answer to {what} of {self.key} has no {field}"
            )
        return value

    def _collect(self, wait: bool) -> None:
        """Move finished parts to ``parts``; raise the first failure."""
        pending = []
        for f in self.futures:
            if wait or f.done():
                self.parts.append(f.result())
            else:
                pending.append(f)
        self.futures = pending

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        if self.sha is None and self.vouched is None and sha256:  # a caller's mistake
            raise ValueError(f"{key}: an upload opened unhashed cannot prove {sha256}")
        if self.vouched is not None and self.vouched[:2] != (sha256, self.size):
            self.abort()  # (fewer bytes came than were hashed: the file changed since)
            raise BytesNotHashed(f"{self.t.name}:{key}", sha256)
        if self.sha is not None and self.sha.hexdigest() != sha256:
            self.abort()
            raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, self.sha.hexdigest())
        if key != self.key and self.upload_key == self.key and self.upload_id is not None:
            # A multipart upload is bound to its key, and that key was taken while we
            # uploaded: nothing is published; the catch-up copies it again later.
            self.abort()
            raise PhotodError(f"{key}: the name was taken during the upload; copied again later")
        # Where the server would put over an object that appeared since the listing was
        # made (another computer of the family, this minute), ask the object itself.
        # (a multipart upload always: a server may honour it for a PUT, not a completion)
        fresh = self.upload_id is not None or not self.t.refuses_overwrites()
        there = None if self.asked else self.again(functools.partial(_taken, self.t, key, fresh))
        if there is not None:  # (its size: the copy goes by it, not asked again)
            raise KeyExists(key, size=there)  # still open: commit again under another key
        try:
            if self.upload_id is None:
                # One request: the server checks the Content-MD5 of the whole object
                # before it stores it, so its 200 is the proof.  If-None-Match makes
                # servers that know it refuse to replace an object that appeared
                # since the existence check.
                if self.paced is not None:  # (one PUT: its bytes at once, after its wait)
                    self.paced(self.buffered)
                try:
                    md5 = self.vouched[2] if self.vouched is not None else None
                    self.t.put(key, b"".join(self.chunks), True, mtime_ns, md5)
                except KeyExists:
                    self.t.remember(key)
                    raise KeyExists(key) from None  # still open, bytes kept
                except BytesNotHashed as exc:
                    # Not the bytes hashed, their own MD5 another (the file rewritten in
                    # place since): the copy fails, not the target.
                    self.abort()
                    raise BytesNotHashed(f"{self.t.name}:{key}", sha256) from exc
                self.chunks, self.buffered = [], 0
                self.t.remember(key)
                return VerifyMethod.SERVER
            if self.buffered:
                self._send_part(self._take_buffer())
            self._collect(wait=True)
            self.parts.sort(key=lambda p: p["PartNumber"])
            # If-None-Match: a server that knows it refuses to complete over an object
            # another computer published at this key meanwhile (a shared bucket).
            exclusive = {"IfNoneMatch": "*"} if self.upload_key == key else {}
            try:
                self._again(lambda: _complete(self, exclusive))
            except KeyExists:
                self.abort()
                raise PhotodError(
                    f"{key}: another upload took the name meanwhile; copied again later"
                ) from None
            self.completed = True
            self.t.kept.done(self.resumed)  # (nothing left to resume)
            if self.upload_key != key:  # (the server's copy of a video takes minutes)
                self._again(lambda: self.t.copy(self.upload_key, key))
                self._again(lambda: self.t.delete_object(self.upload_key))
            self.t.remember(key)
            # Every part was checked; the whole is there.  (Asked again if the network
            # cut the question: else the video, published, went up again to be adopted.)
            stored = self._again(lambda: self.t.object_size(key))
        except KeyExists:
            raise
        except PhotodError as exc:
            self.abort()
            if isinstance(exc, TargetUnavailable) and self.cut.is_set():
                raise Stopping from exc  # (a PUT cut at a stop: the target is not away)
            raise
        if stored != self.size:
            raise ChecksumMismatch(f"{self.t.name}:{key}", f"{self.size} bytes", f"{stored} bytes")
        return VerifyMethod.SERVER

    def abort(self) -> bool:
        """End the upload: wait for the parts in flight, abort the multipart upload and
        delete the temporary object.  True once nothing of it is left on the server;
        False when that could not be done now (the network is down): ``temp_key`` stays
        recorded, and ``delete_temp`` ends it when the target is back.  False too for an
        upload kept to be resumed (a part given up on a cut network: ``Kept``).  The
        server is asked once: a later call answers as the first did, without waiting
        again."""
        for f in self.futures:
            with contextlib.suppress(Exception):
                f.result()
        self.futures = []
        self.chunks, self.buffered = [], 0
        self.t.kept.done(self.resumed)  # (kept again below, or ended)
        if self.ended is not None:
            return self.ended
        if self.upload_id is not None and not self.completed and self.resumable:
            # Its parts stay on the server for the next try of this file (``Kept``); its
            # record stays, so that a crash's tidy ends it.  (Not at a stop: cut then.)
            self.t.kept.keep(self.key, (self.upload_key, self.upload_id, self.token,
                                        self.temp_key))  # fmt: skip
            self.upload_id, self.ended = None, False
            return False
        left = False
        if self.upload_id is not None and not self.completed:
            try:
                self.t.abort_upload(self.upload_key, self.upload_id)
            except PhotodError:
                left = True
        self.upload_id = None
        # An upload to the temporary may have been completed even when its answer was
        # lost (the network dropped on the way back): its object is deleted whatever
        # this writer heard (a delete of no object is answered as done).
        if self.upload_key == self.tmp:
            try:
                self.t.delete_object(self.upload_key)
            except PhotodError:
                left = True
        self.ended = not left
        return self.ended


def _complete(w: S3Writer, exclusive: dict[str, str]) -> None:
    """Complete ``w``'s multipart upload.  The network may cut the answer once the server has
    done it, and the request is sent again (``_again``, botocore's own retry): AWS
    answers as the first time, MinIO and `rclone serve s3` that there is no such
    upload (or, for If-None-Match, that the name is taken).  Then the object there
    is this upload's if it carries its token and size; else the answer stands."""
    try:
        w.t.call("complete_multipart_upload", Key=w.t.full(w.upload_key),
                    UploadId=w.upload_id, MultipartUpload={"Parts": w.parts},
                    **exclusive)  # fmt: skip
    except (KeyExists, TargetUnavailable) as exc:
        gone = isinstance(exc, KeyExists) or error_code(exc.__cause__) == "NoSuchUpload"
        if not (gone and _made(w)):
            raise


def _made(w: S3Writer) -> bool:
    """Whether the object at the upload's key is the one it made (its token).  The
    question cut by the network again is no answer: raised, and asked again."""
    try:
        answer = w.t.call("head_object", Key=w.t.full(w.upload_key))
    except TargetUnavailable as exc:
        if passing(exc.__cause__):
            raise
        return False
    meta = {str(k).lower(): v for k, v in (answer.get("Metadata") or {}).items()}
    return meta.get(TOKEN) == w.token and answer.get("ContentLength") == w.size


def _taken(t: S3Target, key: str, fresh: bool) -> int | None:
    """The size of the object at ``key`` (None: none); one found is told to the listing
    (the next try)."""
    found = t.found(key, fresh=fresh)
    if found is not None:
        t.remember(key)
    return found


def _parts_there(w: S3Writer) -> dict[int, tuple[int, str, str]]:
    """The parts the server holds of the upload ``w`` resumes (ListParts): (size, MD5,
    ETag) by number.  An upload the server no longer has (aborted, expired) has none,
    and ``w`` starts a new one; one whose parts the server will not list has none
    known, and each is sent again."""
    t = w.t

    def listing() -> list[Any]:
        try:
            return list(t.client.get_paginator("list_parts").paginate(
                Bucket=t.bucket, Key=t.full(w.upload_key), UploadId=w.upload_id))  # fmt: skip
        except (*NETWORK, ClientError) as exc:
            raise t.error(exc) from exc

    try:
        pages = w.again(listing)
    except TargetUnavailable as exc:
        # The link gone again as the question was asked (it flaps): the upload stays
        # kept for the next try, never aborted with the parts the server took.
        w.resumable |= passing(exc.__cause__)
        if w.resumable:
            raise
        if error_code(exc.__cause__) != "NoSuchUpload":
            # A key whose policy does not allow ListParts, a server without it: every
            # part is sent again, into the same upload (each replaces the one there).
            return {}
        w.upload_id, w.upload_key, w.temp_key = None, w.key, f"{UPLOAD}{w.tmp}:{w.key}"
        return {}
    parts = {int(p["PartNumber"]): (int(p["Size"]), str(p["ETag"]).strip('"'), str(p["ETag"]))
             for page in pages for p in page.get("Parts", [])}  # fmt: skip
    log.info("upload_resumed", target=t.name, path=w.key, parts_kept=len(parts),
             bytes_kept=sum(size for size, _, _ in parts.values()))  # fmt: skip
    return parts


def end_temp(t: S3Target, temp_key: str, alone: bool = False) -> None:
    """End what an upload recorded as ``temp_key`` left on the server (a crash, or an
    abort the network did not let through): its multipart upload and its temporary
    object.  Only this installation's own: an upload recorded before the server gave
    its id (none started, or photod stopped in that very moment) is looked for at the
    temporary key alone, which no other computer uses.  At the photo's own key an
    upload may be another computer's, in flight (two computers on one prefix); where
    none but this one keeps records (``alone``), an upload there that the record names
    without its id is this one's: a photod before 2026-12-05 started its uploads at the
    photo's own key and recorded them so, and one killed as the server started it."""
    if temp_key.startswith(STARTED):
        fields = temp_key[len(STARTED) :].split(":", 3)
        try:
            tmp, where, hexid, key = fields
            upload_id = bytes.fromhex(hexid).decode()
        except ValueError:
            return  # not a record this code wrote: nothing is touched
        t.abort_upload(tmp if where == "tmp" else key, upload_id)
    elif temp_key.startswith(UPLOAD):
        tmp, _, key = temp_key[len(UPLOAD) :].partition(":")
        _abort_uploads(t, tmp)
        if alone and key:
            _abort_uploads(t, key)
    else:
        return
    if tmp.startswith(TMP):
        t.delete_object(tmp)


def _abort_uploads(t: S3Target, key: str) -> None:
    """Abort every multipart upload to ``key``: only for a key no other computer
    uploads to (a temporary's)."""
    for there, upload_id in t.open_uploads(key):
        if there == key:
            t.abort_upload(there, upload_id)
