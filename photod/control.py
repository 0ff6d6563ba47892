"""The control socket: how the command line talks to the running daemon.

A Unix stream socket in the runtime directory: the folder is mode 700 and the socket
600, and the daemon also asks the kernel who is calling (SO_PEERCRED) and answers only
its own user or root.  No TCP port is ever opened.  One JSON object per line each way:
``{"cmd": "backup"}`` in, ``{"ok": true, "message": "..."}`` out.  A malformed request
gets an error answer; the server goes on.

Whatever comes in, the server holds: a fixed few threads answer (no thread per
connection, which a flood would exhaust), a connection gets REQUEST_TIME seconds in all
to send its line (one byte every few seconds does not hold a thread for long), more
waiting connections than the queue holds are told "busy", and the accept loop survives
every error (out of file descriptors included).  ``alive`` says whether its threads
run: the daemon's watchdog pings only while they do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photod import paths
from photod.logs import log

MAX_REQUEST = 64 * 1024
WORKERS = 4  # connections answered at once
QUEUE = 64  # connections waiting for a worker; beyond, "busy"
REQUEST_TIME = 5.0  # seconds a connection has to send its whole request
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _own_folder(folder: Path) -> None:
    """The socket's folder must be a real folder of photod's own user, private: in /tmp
    (the fallback) another user could have made it first, to swap the socket."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise PermissionError(
                errno.EPERM, "the control socket's folder belongs to another user; "
                "remove it, or set [daemon] runtime_dir", str(folder)
            )  # fmt: skip
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.workers: list[threading.Thread] = []
        self.waiting: queue.Queue[socket.socket | None] = queue.Queue(QUEUE)
        self._said = ""  # the last accept error told (once, not in a loop)
        self._bound = False  # whether this server made the socket file (stop removes it)

    def start(self) -> None:
        """Bind the socket.  The caller holds the state lock, so a socket file left at
        the path is a dead daemon's and is replaced."""
        old = os.umask(0o077)  # any folder made on the way is private too
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old)
        _own_folder(self.path.parent)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born 600: no moment where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        self._bound = True
        sock.listen(64)
        self.sock = sock
        self.workers = [threading.Thread(target=self._work, name=f"control-{i}", daemon=True)
                        for i in range(WORKERS)]  # fmt: skip
        for worker in self.workers:
            worker.start()
        self.thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        """The accept thread and every worker run."""
        threads = [self.thread, *self.workers]
        return all(t is not None and t.is_alive() for t in threads)

    def stop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._bound:  # only the socket this server made: never a file in a folder
            self._bound = False  # the start refused (another user's, made first)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self.path.parent.name.startswith(f"{paths.FALLBACK}{os.getuid()}-"):
            # The short folder for it in the temporary folder (a deep runtime dir:
            # ``paths.socket_path``) goes too, made by this start or left by a crash
            # (it stayed for good then), when it is this user's: never another user's
            # (made first, the start refused it), and only empty.
            with contextlib.suppress(OSError):
                if os.lstat(self.path.parent).st_uid == os.geteuid():
                    self.path.parent.rmdir()
        if self.thread is not None:
            self.thread.join(timeout=5)
        while True:  # connections still waiting are closed unanswered
            try:
                conn = self.waiting.get_nowait()
            except queue.Empty:
                break
            if conn is not None:
                conn.close()
        for _ in self.workers:
            with contextlib.suppress(queue.Full):
                self.waiting.put(None, timeout=1)
        for worker in self.workers:
            worker.join(timeout=REQUEST_TIME + 2)

    def _accept(self) -> None:
        while True:
            sock = self.sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError as exc:
                if self.sock is None:
                    return  # closed by stop()
                # Out of file descriptors or memory (a flood): say so once, breathe, go on.
                if exc.strerror != self._said:
                    self._said = exc.strerror or str(exc)
                    log.warning("control_busy", error=self._said)
                time.sleep(0.1)
                continue
            except Exception as exc:  # a bug must not end the accept loop
                log.exception("control_failed", error=str(exc))
                time.sleep(0.1)
                continue
            try:
                self.waiting.put_nowait(conn)
            except queue.Full:
                self._busy(conn)

    @staticmethod
    def _busy(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.5)
            conn.sendall(json.dumps({"ok": False, "message": "the daemon is busy with other "
                                     "requests; try again"}).encode() + b"\n")  # fmt: skip

    def _work(self) -> None:
        while True:
            conn = self.waiting.get()
            if conn is None:
                return
            try:
                self._serve(conn)
            except Exception as exc:  # never: _serve answers every failure; but a worker lives
                log.exception("control_failed", error=str(exc))

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = _peer_uid(conn)
                if uid not in (os.getuid(), 0):  # told before anything of theirs is read
                    log.warning("control_refused", uid=uid)
                    answer: dict[str, Any] = {"ok": False, "message": "not your photod"}
                else:
                    # The whole line within REQUEST_TIME: a slow sender keeps no worker.
                    answer = self.handler(self._read(conn, time.monotonic() + REQUEST_TIME))
            except (OSError, ValueError) as exc:
                answer = {"ok": False, "message": f"bad request: {exc}"}
            except Exception as exc:  # a bug must not take the control socket down
                log.exception("control_failed", error=str(exc))
                answer = {"ok": False, "message": f"the daemon failed to answer: {exc}"}
            with contextlib.suppress(OSError):
                conn.settimeout(1)
                self._answer(conn, answer)
                # Let the caller read the answer even if it sent more than was read:
                # closing on unread input would reset the connection first.  At most
                # a second and 1 MiB: a trickle keeps no worker either.
                conn.shutdown(socket.SHUT_WR)
                drained, end = 0, time.monotonic() + 1
                while drained < 1 << 20 and (left := end - time.monotonic()) > 0:
                    conn.settimeout(left)
                    if not (chunk := conn.recv(65536)):
                        break
                    drained += len(chunk)

    @staticmethod
    def _read(conn: socket.socket, deadline: float) -> dict[str, Any]:
        request = json.loads(_line(conn, MAX_REQUEST, deadline) or b"null")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise ValueError('expected one JSON object with a "cmd"')
        return request

    @staticmethod
    def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer).encode() + b"\n")


def _line(conn: socket.socket, limit: int, deadline: float | None = None) -> bytes:
    """One line (without its newline), or what came before the other side closed;
    ``deadline`` (monotonic): TimeoutError when the line is not whole by then."""
    data = b""
    while b"\n" not in data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request took too long")
            conn.settimeout(left)
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
