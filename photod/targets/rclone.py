"""Any remote rclone reaches (SFTP, Dropbox, OneDrive, Google Drive, B2...), through
one ``rclone rcd`` per target.  The only module that runs rclone.

rcd keeps the remote's connections open between files, which spares a login per
operation (a fresh ``rclone`` process per call made SFTP three times slower).  It
listens on a unix socket in a private folder, so only this user reaches it.

An upload streams (chunked HTTP) into ``operations/uploadfile`` under
``.photod/tmp/``.  The remote's own hash of it (its SHA-256, or a bucket store's MD5 or
SHA-1, which photod computes too as it sends: ``rcloneproof``), or elsewhere (SFTP,
Dropbox...) the bytes read back, must equal photod's; only then ``operations/movefile``
gives it its name (to a bucket store a photo goes straight there: ``rclonedirect``).
The catalog notes the temporary so a crash can remove it.  A metadata write (a list
segment, a marker) is not in the catalog: its temporary carries this installation's
id, and the first check of the next start removes what a crash left (another
computer's only once seen unchanged for a day: it may be an upload in flight).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from photod import failpoints
from photod.errors import (
    ChecksumMismatch,
    KeyExists,
    NotAFile,
    PhotodError,
    Stopping,
    TargetUnavailable,
)
from photod.logs import log
from photod.models import VerifyMethod
from photod.targets.base import Identity
from photod.targets.objects import TMP, ObjectTarget
from photod.targets.rcd import HUNG, SERVED, Download, Rcd, UnixHTTP, write_inline_config
from photod.targets.rclonedirect import commit_held, part_head
from photod.targets.rcloneproof import proof_hash, remote_sha256
from photod.targets.rclonerival import STAND_IN, in_tmp, name_tag, rival
from photod.targets.rcloneroom import Room
from photod.targets.rclonesays import complaint, meaning

FOREIGN_TEMP_AGE = 86400.0  # seconds another computer's temporary is seen unchanged before it goes
ABORT_WAIT = 5.0  # seconds an aborted upload waits for rcd to say it is done with it
# A photo up to this size goes to a bucket store in one PUT (not three requests of a
# multipart upload, each counted): photod holds it whole (``rclonedirect``), and so does
# rcd (rclone's S3 part size: the same peak memory; 8 MiB took 20 more).
STREAM_CUTOFF = 5 * 1024 * 1024


class RcloneWriter:
    def __init__(self, target: RcloneTarget, key: str, proved: bool = False) -> None:
        """``proved``: ``commit`` proves the bytes by their SHA-256 (a copy's), and
        rclone's own check of the upload is skipped (an SFTP server hashed each photo
        twice: rclone's md5sum, then photod's); a metadata write (``_put``) keeps it."""
        self.t = target
        self.proved = proved
        self.key = key  # the name it is for, which its temporary's name ends with
        self.temp_key = f"{TMP}{target.owner}{secrets.token_hex(12)}{name_tag(key)}"
        self.sha = hashlib.sha256()
        self.kind = "sha256"  # the remote's hash that proves the upload (``proof_hash``)
        self.other: Any = None  # that hash of the bytes sent, where it is not the SHA-256
        self.size = 0
        self.boundary = secrets.token_hex(16)
        self.conn: UnixHTTP | None = None
        self.begun = False  # the upload was started: the temporary may exist
        self.config = ""  # rclone's options (``upload_config``), once asked
        # A photo to a bucket store, held whole till its commit (``rclonedirect``).
        self.held: bytearray | None = None
        self.ended = False  # the body's end was sent
        self.answered = False  # rcd answered the upload: it is done with the temporary
        self.uploaded = self.aborted = False
        self.left = False  # its temporary may be on the remote still: its delete failed
        # One socket, used by the copy's thread and (for an encrypted target) the one
        # that aborts it: an end of the body never lands in the middle of a chunk.
        self._lock = threading.RLock()

    def _configure(self) -> None:
        """How the remote proves an upload photod proves (asked of it once)."""
        if self.config or not self.proved:
            return
        self.config = self.t.upload_config()
        self.kind = self.t.proof or "sha256"
        if self.kind != "sha256":
            self.other = hashlib.new(self.kind, usedforsecurity=False)

    def _begin(self) -> None:
        """Start the upload to the temporary.  Not before the first byte: rcd may create
        the temporary as soon as the request starts, and the caller records ``temp_key``
        in the catalog between opening the writer and writing, so that a crash at any
        moment leaves no temporary the next start does not know of."""
        self._configure()
        folder, _, name = self.temp_key.rpartition("/")
        params = {"fs": self.t.remote, "remote": folder}
        if self.config:
            params["_config"] = self.config
        query = urllib.parse.urlencode(params)
        self.conn = self.t.rcd.connection()
        self.begun, self.answered = True, False  # (a stand-in there is replaced)
        try:
            self.conn.putrequest("POST", f"/operations/uploadfile?{query}")
            self.conn.putheader("Content-Type", f"multipart/form-data; boundary={self.boundary}")
            self.conn.putheader("Transfer-Encoding", "chunked")  # the size is not known yet
            self.conn.endheaders()
            self._chunk(part_head(self.boundary, name))
        except OSError as exc:
            raise self._lost(exc) from exc

    def _chunk(self, data: bytes | bytearray) -> None:
        assert self.conn is not None
        if len(data) < 65536:
            self.conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        else:  # (not copied into one: 1.7 ms of CPU a photo of 2 MB)
            self.conn.send(b"%x\r\n" % len(data))
            self.conn.send(data)
            self.conn.send(b"\r\n")

    def _lost(self, exc: BaseException) -> PhotodError:
        self.abort()
        if self.t.rcd.stopping():  # cut by photod's stop (``Rcd.cut_when``): the copy is
            return Stopping()  # rolled back; the remote is not away (its last lists...)
        if isinstance(exc, PhotodError):
            return exc
        if isinstance(exc, TimeoutError) and self.t.rcd.hung():
            return TargetUnavailable(self.t.name, HUNG)
        return TargetUnavailable(self.t.name, f"upload to {self.t.remote} cut off: {exc}")

    def write(self, data: bytes) -> None:
        if not data:
            return  # an empty chunk would end the chunked body
        with self._lock:
            if self.aborted:
                raise TargetUnavailable(self.t.name, "the upload was aborted")
            if self.conn is None and self.held is None and not self.begun:
                self._configure()
                if self.proved and self.t.bucketed:
                    self.held = bytearray()
            if self.held is not None and len(self.held) + len(data) < STREAM_CUTOFF:
                self.held += data
            else:
                self._stream(data)
        self.sha.update(data)
        if self.other is not None:
            self.other.update(data)
        self.size += len(data)

    def _stream(self, data: bytes) -> None:
        """Send ``data`` into the temporary (what was held first)."""
        if self.conn is None:
            self._begin()
        held, self.held = self.held, None
        try:
            if held:
                self._chunk(held)
            if data:
                self._chunk(data)
        except OSError as exc:
            raise self._lost(exc) from exc

    def sha256(self) -> str | None:
        return self.sha.hexdigest()

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        return False  # an upload: its bytes are sent

    def _finish_upload(self) -> None:
        with self._lock:
            if self.uploaded:
                return
            if self.held is not None:  # (held for going straight: through its temporary)
                self._stream(b"")
            if self.conn is None:
                self._begin()  # an empty object
            assert self.conn is not None
            try:
                response, body = self._end_body()
            except (OSError, http.client.HTTPException) as exc:
                raise self._lost(exc) from exc
            self.conn.close()
            self.conn = None
            if response.status != 200:
                self.abort()
                raise self.t.room.refused(complaint(body), self.size)
            self.uploaded = True
        failpoints.hit("rclone_uploaded")  # whole (its temporary, or its object), not yet checked

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        if self.sha.hexdigest() != sha256:
            self.abort()
            raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, self.sha.hexdigest())
        proof = (self.kind, "" if self.other is None else self.other.hexdigest())
        try:
            if (held := self.held) is not None:
                method = commit_held(self, held, key, sha256, proof)
            else:
                method = self.commit_moved(key, sha256, proof)
        except (TargetUnavailable, ChecksumMismatch) as exc:
            self.abort()
            if isinstance(exc, TargetUnavailable) and self.t.rcd.stopping():
                raise Stopping from exc  # (its check or move cut at a stop: not away)
            raise
        self.t.room.short = False  # (room was made)
        return method

    def commit_moved(self, key: str, sha256: str, proof: tuple[str, str]) -> VerifyMethod:
        """Prove the temporary, look for another upload of the name, then move it there."""
        self._finish_upload()
        stored, method = remote_sha256(self.t, self.temp_key, sha256, *proof)
        if stored != sha256:
            raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, stored)
        if (there := self.t.size(key)) is not None:  # still uploaded: commit again
            raise KeyExists(key, size=there)  # under another key
        if key == self.key and rival(self.t, self.temp_key, key, sha256, self.size, proof):
            raise KeyExists(key, other=True)  # (its own suffix: ``rclonerival``)
        # Never over a file another computer of the family published meanwhile: rclone
        # leaves the temporary where it is then, and the name is taken.
        try:
            self.t.call("operations/movefile", srcFs=self.t.remote, srcRemote=self.temp_key,
                        dstFs=self.t.remote, dstRemote=key, _config={"IgnoreExisting": True})  # fmt: skip
        except TargetUnavailable:
            if self.t.folder(key):  # (``size`` sees files only: a folder of that name)
                raise KeyExists(key) from None
            raise
        # The name must hold ours (an earlier photod's upload, whose temporary says
        # no name, is no ``rival``): where the remote says its hash at no cost, by
        # it; elsewhere, a temporary left where it was means the name was taken.
        if method is VerifyMethod.SERVER:
            if remote_sha256(self.t, key, sha256, *proof)[0] != sha256:
                raise KeyExists(key)
            try:  # (left where the name held these bytes)
                self.t.delete_temp(self.temp_key)
            except PhotodError:
                self.t._left_behind(self.temp_key)
        elif self.t.size(self.temp_key) is not None:
            raise KeyExists(key)
        return method

    def _end_body(self) -> tuple[http.client.HTTPResponse, bytes]:
        assert self.conn is not None
        self._chunk(f"\r\n--{self.boundary}--\r\n".encode())
        self.conn.send(b"0\r\n\r\n")
        self.ended = True
        response = self.conn.getresponse()
        self.answered = True
        return response, response.read()

    def abort(self) -> bool:
        """End the upload, then remove its temporary.  Ended, not cut (a cut upload is
        dropped by rcd in its own time, which may come after a delete).  rcd gets
        ABORT_WAIT to answer.  A photo held whole sent nothing; one sent straight that
        may land yet leaves its stand-in (``rclonedirect``).
        Where the temporary may be left (rcd never answered: crashed, hung, a stalled
        remote; the remote refused its delete: the NAS off), this says False: the
        caller's record of it stays, and the target's tidy removes it when the remote
        answers again, not only at the next start (months away, for a daemon)."""
        with self._lock:
            if self.aborted:
                return not self.left
            self.aborted = True
            self.held = None
            if self.conn is not None:
                if not self.ended:
                    with contextlib.suppress(OSError, http.client.HTTPException):
                        if self.conn.sock is not None:
                            self.conn.sock.settimeout(ABORT_WAIT)
                        self._end_body()
                self.conn.close()
                self.conn = None
            if self.begun and not self.answered:
                # rcd may not be done with it (or, gone straight, the store may take it
                # yet: its stand-in stays): the tidy removes it.
                self.left = True
            elif self.begun:
                try:
                    self.t.delete_temp(self.temp_key)
                except PhotodError:
                    self.left = True
        return not self.left


class RcloneTarget(ObjectTarget):
    def __init__(
        self,
        name: str,
        remote: str,
        config_file: Path | None = None,
        timeout: float = 30.0,
        owner: str = "",
    ) -> None:
        """``owner``: this installation's short id, which its temporaries' names begin
        with (empty for a command that only reads)."""
        self.name = name
        self.remote = remote
        self.where = remote
        self.rcd = Rcd(name, config_file, timeout, remote)
        self.owner = f"{owner}-" if owner else ""
        self.swept = False  # a crashed run's metadata temporaries removed (once)
        self._foreign: dict[str, tuple[object, object]] = {}  # others' temporaries: size, time
        self._looked = 0.0  # when .photod/tmp/ was last looked at (monotonic)
        self._sweeping = threading.Lock()
        self._left: set[str] = set()  # temporaries of failed metadata writes, still there
        self.room = Room(self)  # (asked once an upload was refused)
        self.bucketed: bool | None = None  # the remote is a bucket store (``upload_config``)
        self.proof: str | None = None  # the hash its uploads are proved by (``proof_hash``)

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        found = super().check(known, prepare)
        if prepare and self.owner and found.target_id:
            with self._sweeping:  # the probe and a scrub may check at the same moment
                if not self.swept or time.monotonic() - self._looked >= FOREIGN_TEMP_AGE:
                    self._sweep()
                for key in sorted(self._left):  # failed metadata writes' (``_put``)
                    with contextlib.suppress(PhotodError):
                        self.delete_temp(key)
                        self._left.discard(key)
        return found

    def _sweep(self) -> None:
        """Remove the temporaries a crash of this installation left in ``.photod/tmp/``
        (at the first check: nothing of this process writes there before it, and the
        state lock keeps any other photod of this installation away), and other
        computers' once they are debris.  Another computer's may be an upload in flight,
        and no clock here says its age (its time is the uploading computer's rclone's;
        this computer's may be days off): it goes only when the look FOREIGN_TEMP_AGE
        earlier, by this process's monotonic clock, saw it at the same size and time (a
        daemon looks once a day; a command never).  Tidying only: a remote that refuses
        it (throttled, a temporary this account may not delete) is said once, and the
        target works."""
        first, self.swept = not self.swept, True
        self._looked = time.monotonic()
        before, self._foreign = self._foreign, {}
        try:
            for item in in_tmp(self, times=True):
                key = str(item.get("Path", ""))
                seen = (item.get("Size"), item.get("ModTime"))
                # A stand-in (``rclonedirect``) may be a clone's upload in flight under
                # this id: by its age, as another's (a crash's own is the catalog's tidy).
                if key.startswith(TMP + self.owner) and seen[0] != len(STAND_IN):
                    if first:  # (later, this process's own writes in flight)
                        self.delete_temp(key)
                elif before.get(key) == seen:
                    self.delete_temp(key)
                else:
                    self._foreign[key] = seen
        except PhotodError as exc:
            log.warning("target_tidy_failed", target=self.name, error=str(exc),
                        detail="a crash's temporaries stay until a later look")  # fmt: skip

    write_inline_config = staticmethod(write_inline_config)

    # -- talking to rcd ---------------------------------------------------------------

    def call(self, command: str, missing_ok: bool = False, **params: Any) -> dict[str, Any]:
        """One remote-control call; its JSON answer.  With ``missing_ok`` a "not found"
        is an empty answer."""
        status, body = self.post(f"/{command}", json.dumps(params),
                                 {"Content-Type": "application/json"})  # fmt: skip
        try:
            answer: dict[str, Any] = json.loads(body or b"{}")
        except ValueError:
            answer = {"error": body.decode(errors="replace")}
        if status == 200:
            return answer
        if missing_ok and status == 404:
            return {}
        raise self.error(str(answer.get("error", answer)))

    def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request to rcd: its status and what it said."""
        conn = self.rcd.connection()
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TargetUnavailable(self.name, self.rcd.why(exc)) from exc
        finally:
            conn.close()

    def error(self, message: str) -> TargetUnavailable:
        """Map rclone's complaint to a reason a person can act on."""
        return TargetUnavailable(self.name, meaning(self.remote, message))

    def free_bytes(self) -> int | None:
        return self.room.free_bytes()

    def upload_config(self) -> str:
        """rclone's options (``_config``) for an upload photod proves: none of rclone's
        own checks (sizes only: with no hash, rclone would compare file times, and fail
        an upload whose time the remote does not keep); to a bucket store, one PUT."""
        if self.bucketed is None:
            info = self.call("operations/fsinfo", fs=self.remote)
            self.proof = proof_hash(info)
            self.bucketed = bool((info.get("Features") or {}).get("BucketBased"))
        opts: dict[str, object] = {"IgnoreChecksum": True, "SizeOnly": True}
        if self.bucketed:
            opts["StreamingUploadCutoff"] = STREAM_CUTOFF
        return json.dumps(opts)

    # -- primitives -------------------------------------------------------------------

    def _put(self, key: str, data: bytes) -> None:
        """A metadata write.  One that fails removes its temporary; where the remote
        could not be asked to (the NAS went off between the upload and the move), the
        next check that reaches it does, not only the next start of photod (a
        catalog snapshot's partial upload took the NAS's room till then)."""
        w = RcloneWriter(self, key)
        try:
            w.write(data)
            w._finish_upload()
            self.call("operations/movefile", srcFs=self.remote, srcRemote=w.temp_key,
                      dstFs=self.remote, dstRemote=key)  # fmt: skip
        except PhotodError:
            if not w.abort():
                self._left_behind(w.temp_key)
            raise

    def _left_behind(self, temp_key: str) -> None:
        with self._sweeping:
            self._left.add(temp_key)

    def _list_sized(self, prefix: str) -> Iterator[tuple[str, int]]:
        folder = prefix.rstrip("/")
        answer = self.call("operations/list", missing_ok=True, fs=self.remote, remote=folder,
                           opt={"recurse": True, "filesOnly": True, "noModTime": True,
                                "noMimeType": True})  # fmt: skip
        for item in answer.get("list", []):
            yield str(item["Path"]), int(item["Size"])  # paths from the remote's root

    def _delete(self, key: str) -> None:
        self.call("operations/deletefile", missing_ok=True, fs=self.remote, remote=key)

    def _move(self, src: str, dst: str) -> None:
        if self.size(src) is None:
            raise FileNotFoundError(src)
        self.call("operations/movefile", srcFs=self.remote, srcRemote=src,
                  dstFs=self.remote, dstRemote=dst)  # fmt: skip

    # -- the Target contract ----------------------------------------------------------

    def open_writer(self, key: str, hashed: bool = True) -> RcloneWriter:
        return RcloneWriter(self, key, proved=True)

    def open(self, key: str) -> BinaryIO:
        conn = self.rcd.connection()
        try:
            # (through rcd's name for the remote, whatever its path holds: "]" too)
            conn.request("GET", f"/[{SERVED}:]/{urllib.parse.quote(key)}")
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TargetUnavailable(self.name, self.rcd.why(exc)) from exc
        if response.status == 404:
            conn.close()
            raise FileNotFoundError(key)
        if response.status != 200:
            message = complaint(response.read())
            conn.close()
            if self.folder(key):  # (rclone: "is a directory not a file")
                raise NotAFile(f"{self.name}:{key}", "a folder")
            raise self.error(message)
        return Download(self.name, conn, response)  # type: ignore[return-value]

    def size(self, key: str) -> int | None:
        # (files only: rclone, finding no file, listed the folder it would be in for a
        # folder of that name: each copy's two looks, two S3 listings each, or over SFTP
        # the photo's whole folder read)
        item = self.call("operations/stat", fs=self.remote, remote=key,
                         opt={"filesOnly": True}).get("item")  # fmt: skip
        return None if item is None else int(item["Size"])

    def folder(self, key: str) -> bool:
        """Whether a folder has the name ``key`` (asked when a move onto it failed)."""
        item = self.call("operations/stat", fs=self.remote, remote=key).get("item") or {}
        return bool(item.get("IsDir"))

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        if temp_key.startswith(TMP):  # never anything but photod's own temporaries
            self._delete(temp_key)

    def cut_when(self, stop: threading.Event) -> None:
        """The daemon's: its requests in flight are cut once ``stop`` is set (``Rcd``)."""
        self.rcd.cut_when(stop)

    def close(self) -> None:
        self.rcd.stop()
