"""The control socket: how the command line talks to the running daemon.

A Unix stream socket in the runtime directory: the folder is mode 700 and the socket
600, and the daemon also asks the kernel who is calling (SO_PEERCRED) and answers only
its own user or root.  No TCP port is ever opened.  One JSON object per line each way:
``{"cmd": "backup"}`` in, ``{"ok": true, "message": "..."}`` out.  A malformed request
gets an error answer; the server goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photod.logs import log

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def socket_path(runtime_dir: Path, state_dir: Path) -> Path:
    """The socket for the daemon of this state dir.  A Unix socket path holds at most
    107 bytes: a deeper runtime dir gets a short private folder in /tmp instead."""
    path = runtime_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= 100:
        return path
    tag = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"photod-{os.getuid()}-{tag}" / SOCKET_NAME


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the socket.  The caller holds the state lock, so a socket file left at
        the path is a dead daemon's and is replaced."""
        old = os.umask(0o077)  # any folder made on the way is private too
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old)
        os.chmod(self.path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born 600: no moment where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        self.sock = sock
        self.thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
            self.sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _accept(self) -> None:
        while self.sock is not None:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(conn,), name="control-client",
                             daemon=True).start()  # fmt: skip

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                uid = _peer_uid(conn)
                request = self._read(conn)  # read first: closing on unread data resets
                if uid not in (os.getuid(), 0):
                    log.warning("control_refused", uid=uid)
                    self._answer(conn, {"ok": False, "message": "not your photod"})
                    return
                answer = self.handler(request)
            except (OSError, ValueError) as exc:
                answer = {"ok": False, "message": f"bad request: {exc}"}
            except Exception as exc:  # a bug must not take the control socket down
                log.exception("control_failed", error=str(exc))
                answer = {"ok": False, "message": f"the daemon failed to answer: {exc}"}
            with contextlib.suppress(OSError):
                self._answer(conn, answer)
                # Let the caller read the answer even if it sent more than was read:
                # closing on unread input would reset the connection first.
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(1)
                drained = 0
                while drained < 1 << 20 and (chunk := conn.recv(65536)):
                    drained += len(chunk)

    @staticmethod
    def _read(conn: socket.socket) -> dict[str, Any]:
        request = json.loads(_line(conn, MAX_REQUEST) or b"null")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise ValueError('expected one JSON object with a "cmd"')
        return request

    @staticmethod
    def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer).encode() + b"\n")


def _line(conn: socket.socket, limit: int) -> bytes:
    """One line (without its newline), or what came before the other side closed."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("line too long")
    return data.split(b"\n", 1)[0]


def ask(path: Path, request: dict[str, Any], timeout: float = 30) -> dict[str, Any] | None:
    """Send one request to the daemon; None when no daemon listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = _line(sock, 16 * 1024 * 1024)
    finally:
        sock.close()
    answer = json.loads(data or b"null")
    if not isinstance(answer, dict):
        raise ValueError("the daemon's answer is not a JSON object")
    return answer
