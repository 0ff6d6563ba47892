"""S3-compatible object storage (AWS, Backblaze B2, Wasabi, MinIO, Ceph...).  With
``s3client`` (the client it talks through), the only module that imports boto3.

Uploads stream (``s3upload``): a file up to ``part_size`` goes in one PUT; a larger one
in a multipart upload.  Every request body carries its Content-MD5, which every S3
server checks before it stores the bytes (a SHA-256 checksum header is ignored by some
servers, Content-MD5 by none).  Nothing is visible under a key until the PUT or the
CompleteMultipartUpload succeeds, and an upload cut off half way is aborted.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from photod import failpoints
from photod.errors import BytesNotHashed, KeyExists, PhotodError, TargetUnavailable
from photod.logs import log
from photod.targets.base import CHUNK
from photod.targets.objects import TMP, ObjectTarget
from photod.targets.records import mtime_from_text, mtime_text
from photod.targets.s3client import (
    CUT,
    DIGEST_REFUSED,
    NETWORK,
    Cut,
    error_code,
    make_client,
    mapped,
    passing,
    retries,
)
from photod.targets.s3kept import Kept
from photod.targets.s3overwrite import OverwriteRule
from photod.targets.s3presigned import Presigned
from photod.targets.s3upload import S3Writer, end_temp, md5

PROBE = "probe-"  # (under TMP) the object that learns whether the server honours If-None-Match
LISTING_TTL = 60.0  # seconds a folder listing answers "is this key taken?"


class _Body:
    """A GET's body as a file: read errors become OSError, as from a disk.  A download
    the network cut goes on from where it was cut, of the same object (its ETag), after
    2 s, 4 s, 8 s ... for the target's ``part_retry`` in all: over a link that drops
    every few minutes, a video begun again at its first byte could never come back."""

    def __init__(self, target: S3Target, key: str, answer: dict[str, Any]) -> None:
        self.t = target
        self.key = key
        self.body = answer["Body"]
        self.etag = answer.get("ETag")
        size = answer.get("ContentLength")
        self.size = size if isinstance(size, int) else None
        self.pos = 0
        self.closed = False
        # (metadata names are caseless: a server may answer ``Mtime``)
        self.metadata = {str(k).lower(): v for k, v in (answer.get("Metadata") or {}).items()}

    def file_time(self) -> int | None:
        """The original's file time, as its upload kept it (photod's or rclone's
        ``mtime`` metadata); None for an object that has none."""
        text = self.metadata.get("mtime")
        return mtime_from_text(text) if isinstance(text, str) else None

    def read(self, n: int = -1) -> bytes:
        waits = retries(self.t.part_retry, self.t.stop)
        while True:
            try:
                data = bytes(self.body.read(None if n < 0 else n))
                self.pos += len(data)
                return data
            except (*NETWORK, ValueError) as exc:
                cut: Exception = exc
            while True:  # the rest asked for again, once the network lets it through
                if not self.etag or self.closed or not next(waits, False):
                    raise OSError(f"{self.t.name}: download cut off: {cut}") from cut
                try:
                    answer = self.t.client.get_object(Bucket=self.t.bucket,
                        Key=self.t.full(self.key), Range=f"bytes={self.pos}-",
                        IfMatch=self.etag)  # fmt: skip
                    rest = self._rest(answer)
                except (*NETWORK, ClientError) as exc:
                    if isinstance(exc, ClientError) and not passing(exc):
                        raise OSError(f"{self.t.name}: download cut off: {cut}") from exc
                    cut = exc
                    continue
                if rest is None:  # (never another object's bytes after these)
                    raise OSError(f"{self.t.name}: download cut off: {cut}; asked again, "
                                  "the server sent another object") from cut  # fmt: skip
                with contextlib.suppress(Exception):
                    self.body.close()
                self.body = rest
                break

    def _rest(self, answer: dict[str, Any]) -> Any:
        """The body of a GET asked from ``pos`` on: the object's rest, or the whole
        object past the bytes already read where a server or a proxy ignored the Range
        (its 200 begins again at byte 0: after the bytes read, they would make another
        file); None when the answer is not this object's (its ETag changed)."""
        body = answer["Body"]
        got = str(answer.get("ContentRange") or "")
        size = answer.get("ContentLength")
        if answer.get("ETag") == self.etag:
            if got.startswith(f"bytes {self.pos}-") and (
                self.size is None or got.endswith(f"/{self.size}")
            ):
                return body
            if not got and self.size is not None and size == self.size:
                left = self.pos
                while left:
                    skipped = body.read(min(left, CHUNK))
                    if not skipped:
                        raise OSError("the answer ended early")  # (a cut: asked again)
                    left -= len(skipped)
                return body
        with contextlib.suppress(Exception):
            body.close()
        return None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_if_other_bytes(
    where: str, code: str | None, data: bytes, digest: str, cause: Exception | None = None
) -> None:
    """Raise BytesNotHashed when a PUT's refusal (its S3 error ``code``) says that its
    Content-MD5 ``digest`` is not the body's MD5, and it is not: the body is other bytes
    than the ones that MD5 was taken of (with a photo's SHA-256, in an earlier read of a
    file changed since); any request gets that answer, the body is not sent again.
    Hashed at a refusal alone: a refused MD5 that is the body's is the link's or the
    server's doing (bytes changed on the way, every Content-MD5 refused), no file's."""
    if code in DIGEST_REFUSED and md5(data) != digest:
        raise BytesNotHashed(where, "") from cause


class S3Target(ObjectTarget):
    checks_bodies = True  # Content-MD5 on every PUT and part

    def __init__(
        self,
        name: str,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        credentials_file: Path | None = None,
        part_size: int = 16 * 1024**2,
        timeout: float = 20.0,
        owner: str = "",
        stop: threading.Event | None = None,
        part_retry: float = 120.0,
    ) -> None:
        """``owner``: this installation's short id, which its probe's name begins with
        (empty for a command that only reads); ``stop``: set when photod stops (an
        upload's part waiting to be sent again then waits no more); ``part_retry``: how long
        (seconds) a part the network cut is sent again before the upload is given up."""
        self.name = name
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.owner = f"{owner}-" if owner else ""
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")
        self.part_size = max(part_size, 5 * 1024**2)  # S3's smallest part
        self.one_put_below = self.part_size  # (``copies.Md5s``: one MD5 for the file)
        self.stop = stop or threading.Event()
        self.part_retry = part_retry
        self.client, presigner = make_client(endpoint, region, profile, credentials_file, timeout)
        self.cut = Cut(self.client)
        self.kept = Kept()  # uploads the network cut, resumed by the next try (``S3Writer``)
        self.overwrites = OverwriteRule()  # (``refuses_overwrites``)
        self.cut.unanswered = self.overwrites.forget
        self.presigned = Presigned(self.client, presigner, bucket, name, self.cut.stopping,
                                   self.overwrites.forget)  # fmt: skip
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"s3-{name}")
        self._lock = threading.Lock()
        self._listings: dict[str, tuple[float, set[str]]] = {}

    # -- errors -----------------------------------------------------------------------

    def error(self, exc: Exception) -> PhotodError:
        if isinstance(exc, CUT):  # no answer: the next may be another server's
            self.overwrites.forget()
        return mapped(exc, self.name, self.bucket, self.where, self.endpoint)

    def call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except (*NETWORK, ClientError) as exc:
            raise self.error(exc) from exc

    def full(self, key: str) -> str:
        return self.prefix + key

    # -- primitives -------------------------------------------------------------------

    def object_size(self, key: str) -> int | None:
        status, size = self.presigned.head(self.full(key))
        if status == 200 and size is not None:
            return size
        if status == 404:
            return None
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=self.full(key)).get(
                "ContentLength"
            )
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise self.error(exc) from exc
            size = None  # (an answer: no object there)
        except NETWORK as exc:
            raise self.error(exc) from exc
        self.presigned.decided(status)
        if size is not None and not isinstance(size, int):  # (none, or a garbled one)
            raise TargetUnavailable(self.name, f"the server's answer for {key} has no size")
        return size

    def refuses_overwrites(self) -> bool | None:
        """Whether this server refuses a PUT with ``If-None-Match: *`` over an object (AWS
        S3, MinIO; `rclone serve s3` overwrites): where not, a HEAD just before each PUT
        narrows the moment two computers find a name free to milliseconds (s3overwrite)."""
        return self.overwrites.refused(self._probe)

    def _probe(self) -> bool | None:
        # The object is this process's alone (this installation's id, then a random
        # name): "refuses" is only ever the server's 412 to a PUT over it.  Another
        # computer's probe may be between its two PUTs: removed there, that computer
        # would learn "ignored" where it is not, so only this installation's go.
        mine = f"{TMP}{PROBE}{self.owner}"
        key = f"{mine}{secrets.token_hex(8)}"
        try:
            self.put(key, b"")
            failpoints.hit("s3_probed")  # (between the PUTs: another computer's probe now)
            try:
                self.put(key, b"", exclusive=True)
                return False
            except KeyExists:
                return True
        except PhotodError as exc:  # not learned: each upload asks the object meanwhile
            log.warning("target_probe_failed", target=self.name, error=str(exc))
            return None
        finally:
            try:  # this one, and any a killed process of this installation left
                for left in {key, *(self._list(mine) if self.owner else ())}:
                    self.delete_object(left)
            except PhotodError as exc:
                log.warning("target_tidy_failed", target=self.name, error=str(exc),
                            action=f"photod's probe objects stay in {TMP}")  # fmt: skip

    def exists(self, key: str, fresh: bool = False) -> bool:
        """Whether an object is at the key (``found``)."""
        return self.found(key, fresh) is not None

    def found(self, key: str, fresh: bool = False) -> int | None:
        """The size of the object at the key, None when there is none.  "None" comes from
        a listing of its folder at most LISTING_TTL old (a request a folder, as rclone copy
        does), kept up to date with what this process publishes; a size is asked again of
        the object (``fresh``: only there): a cache never outranks what was just seen."""
        if fresh:
            return self.object_size(key)
        folder = key.rpartition("/")[0]
        now = time.monotonic()
        with self._lock:
            cached = self._listings.get(folder)
        if cached is None or now - cached[0] > LISTING_TTL:
            prefix = f"{folder}/" if folder else ""
            names = set(self._list(prefix, delimiter=True))
            cached = (now, names)
            with self._lock:
                # Listings past their minute answer nothing: dropped as a new one comes,
                # or a daemon up for a year would hold every folder it ever asked of.
                for old in [f for f, (t, _) in self._listings.items() if now - t > LISTING_TTL]:
                    del self._listings[old]
                self._listings[folder] = cached
        if key not in cached[1]:
            return None
        if (size := self.object_size(key)) is None:
            with self._lock:
                cached[1].discard(key)
        return size

    def remember(self, key: str) -> None:
        with self._lock:
            cached = self._listings.get(key.rpartition("/")[0])
            if cached is not None:
                cached[1].add(key)

    def copy(self, src: str, dst: str) -> None:
        try:  # the managed copy switches to a multipart copy above 5 GB
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.full(src)},
                self.bucket,
                self.full(dst),
                Config=TransferConfig(multipart_threshold=4 * 1024**3, use_threads=False),
            )
        except (*NETWORK, ClientError) as exc:
            raise self.error(exc) from exc

    def delete_object(self, key: str) -> None:
        self.call("delete_object", Key=self.full(key))

    def put(self, key: str, data: bytes, exclusive: bool = False, mtime_ns: int | None = None,
            digest: str | None = None) -> None:  # fmt: skip
        """One PUT with the body's Content-MD5 (``digest``, else ``data``'s); ``exclusive``:
        If-None-Match, which a server that knows it refuses over an object (KeyExists);
        ``mtime_ns``: the original's file time, as rclone keeps it (``mtime`` metadata)."""
        digest = digest or md5(data)
        mtime = mtime_text(mtime_ns)
        status, code = self.presigned.put(self.full(key), data, digest, exclusive, mtime)
        if 200 <= status < 300:
            return
        if status == 412 and exclusive:
            raise KeyExists(key)  # (not the body sent again for the same answer)
        where = f"{self.name}:{key}"
        _raise_if_other_bytes(where, code, data, digest)  # (else botocore's call, as ever)
        try:
            self.call("put_object", Key=self.full(key), Body=data, ContentMD5=digest,
                      **({"IfNoneMatch": "*"} if exclusive else {}),
                      **({"Metadata": {"mtime": mtime}} if mtime else {}))  # fmt: skip
        except TargetUnavailable as exc:
            _raise_if_other_bytes(where, error_code(exc.__cause__), data, digest, exc)
            raise
        if code not in DIGEST_REFUSED:  # (bytes damaged on the way: a passing fault)
            self.presigned.decided(status)

    _put = put

    def _put_new(self, key: str, data: bytes) -> bool:
        # If-None-Match makes a server that knows it refuse the second of two writers;
        # one that ignores it leaves the moment between the look and the put.
        if self.object_size(key) is not None:  # (a HEAD: the body is not needed)
            return False
        try:
            self.put(key, data, exclusive=True)
        except KeyExists:
            return False
        return True

    def _list(self, prefix: str, delimiter: bool = False) -> Iterator[str]:
        """Keys under a prefix; with ``delimiter``, only those directly in it."""
        for key, _ in self._list_sized(prefix, delimiter):
            yield key

    def _list_sized(self, prefix: str, delimiter: bool = False) -> Iterator[tuple[str, int]]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self.full(prefix),
                **({"Delimiter": "/"} if delimiter else {}),
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :], int(obj["Size"])
        except (*NETWORK, ClientError) as exc:
            raise self.error(exc) from exc

    _delete = delete_object

    def _move(self, src: str, dst: str) -> None:
        if self.object_size(src) is None:
            raise FileNotFoundError(src)
        # An object the server will not copy (archived by a lifecycle rule: 403
        # InvalidObjectState; its bytes shorter than its record) stays where it is: a
        # copy that could not be made proves nothing about the bytes, and deleting
        # them would be the only thing here that loses any.
        self.copy(src, dst)
        self.delete_object(src)
        with self._lock:
            self._listings.pop(src.rpartition("/")[0], None)

    # -- the Target contract ----------------------------------------------------------

    def open_writer(self, key: str, hashed: bool = True) -> S3Writer:
        return S3Writer(self, key, hashed)

    def open(self, key: str) -> BinaryIO:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise self.error(exc) from exc
        except NETWORK as exc:
            raise self.error(exc) from exc
        return _Body(self, key, answer)  # type: ignore[return-value]

    def size(self, key: str) -> int | None:
        return self.object_size(key)

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        """End an upload's multipart upload and delete its temporary object, from its
        record (``s3upload.end_temp``).  A finished object at a real key is never
        touched, nor another installation's upload."""
        end_temp(self, temp_key, alone)

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one multipart upload; one the server no longer has (completed, or
        aborted already) is as good as aborted."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.full(key), UploadId=upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self.error(exc) from exc
        except NETWORK as exc:
            raise self.error(exc) from exc

    def _end_unfinished(self, folder: str) -> None:
        """Abort every multipart upload open in ``folder``: one photod was killed
        during (a snapshot's, in this installation's own folder, which only the photod
        holding its state dir writes, one file at a time), not left there billed."""
        for key, upload_id in self.open_uploads(folder + "/"):
            self.abort_upload(key, upload_id)

    def open_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of the multipart uploads open under ``prefix``."""
        try:
            answer = self.client.list_multipart_uploads(Bucket=self.bucket,
                                                        Prefix=self.full(prefix))  # fmt: skip
        except ClientError as exc:  # (rclone serve s3: NoSuchUpload when there are none)
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self.error(exc) from exc
            return []
        except NETWORK as exc:
            raise self.error(exc) from exc
        return [(u["Key"][len(self.prefix) :], u["UploadId"]) for u in answer.get("Uploads", [])]

    def cut_when(self, stop: threading.Event) -> None:
        self.cut.when(stop)  # (a dead link's answer is not waited for at a stop)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
