"""The dashboard's server: uvicorn in a thread of the daemon, on a loopback socket.

It costs nothing while nobody looks: uvicorn's own loop wakes ten times a second
(``main_loop``), so this runs its start-up and shut-down around one wait instead, and
sends no Date header (which that loop keeps fresh).  Its port is taken at once, but its
libraries (0.2 s of Python) load in that thread only once the daemon's first scan is
done (``begin``), or after BEGIN_WAIT: they would hold the interpreter while the daemon
checks its catalog and scans.  A browser that comes earlier waits in the socket's
queue.  Where it listens is kept in ``dashboard.json`` in the state dir, for
`photod dashboard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photod.durable import write_atomic
from photod.logs import log

if TYPE_CHECKING:
    from photod.config import Config

ADDRESS_NAME = "dashboard.json"
BEGIN_WAIT = 5.0  # seconds the dashboard waits at most for the daemon's first scan
RESTORE_WAIT = 5.0  # seconds a stop waits for restores in flight to end and say so


def url_of(state_dir: Path) -> str | None:
    """Where the running daemon's dashboard answers, as it said when it started."""
    try:
        found = json.loads((state_dir / ADDRESS_NAME).read_text())
        return str(found["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DashboardServer:
    def __init__(
        self,
        config: Callable[[], Config],
        live: Callable[[], dict[str, Any] | None],
        begin: threading.Event,
    ) -> None:
        """``begin``: set by the daemon once its start-up work is done."""
        self.config, self.live = config, live
        self.begin = begin
        self.stop_event = threading.Event()  # ends restores in flight too
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None

    def start(self) -> None:
        cfg = self.config()
        # A crash's leftover must not send `photod dashboard` to whoever holds the port now.
        with contextlib.suppress(OSError):
            (cfg.state_dir / ADDRESS_NAME).unlink(missing_ok=True)
        host, port = cfg.dashboard.listen
        host = "127.0.0.1" if host == "localhost" else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Inherited by each connection: a response's head and body go out at once
            # (else Nagle holds the body for the browser's delayed ACK, 40 ms a request).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:  # (a port in use, no IPv6: the backups go on)
            if sock is not None:
                sock.close()
            log.warning("dashboard_unavailable", listen=f"{host}:{port}",
                        reason=f"{exc.strerror or exc}; set [dashboard] listen to a free port, "
                        "or enabled = false")  # fmt: skip
            return
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="dashboard",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _serve(self, sock: socket.socket) -> None:
        self.begin.wait(BEGIN_WAIT)
        if self.stop_event.is_set():
            sock.close()
            return
        try:
            asyncio.run(self._main(sock))
        except Exception as exc:  # the dashboard never takes the backups down with it
            log.error("dashboard_failed", reason=f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()

    async def _main(self, sock: socket.socket) -> None:
        import uvicorn

        from photod.dashboard.app import Site, build
        from photod.dashboard.auth import SPENT_NAME, Keys, ensure_secret
        from photod.dashboard.restores import Restores
        from photod.thumbs import Thumbnails

        cfg = self.config()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        names = {shown, "localhost"} if host == "127.0.0.1" else {shown}
        hosts = frozenset(f"{n}:{port}" for n in names)
        origin = f"http://{shown}:{port}"
        keys = Keys(ensure_secret(cfg.state_dir), cfg.state_dir / SPENT_NAME)
        thumbs = Thumbnails(cfg.state_dir / "thumbs", cfg.dashboard.thumbnail_cache)
        site = Site(self.config, self.live, thumbs, Restores(self.stop_event))
        config = uvicorn.Config(
            build(site, keys, hosts), log_config=None, access_log=False,
            lifespan="off", date_header=False, ws="none", http=_guarded(),
            limit_concurrency=CONNECTIONS_MAX + 1, backlog=CONNECTIONS_MAX,
            server_header=False, proxy_headers=False,
        )  # fmt: skip
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        self._loop, self._done = asyncio.get_running_loop(), asyncio.Event()
        await server.startup(sockets=[sock])
        write_atomic(cfg.state_dir / ADDRESS_NAME, json.dumps({"url": origin}).encode())
        log.info("dashboard_started", url=origin)
        if not self.stop_event.is_set():
            await self._done.wait()
        await server.shutdown(sockets=[sock])
        await asyncio.to_thread(site.restores.join, RESTORE_WAIT)
        site.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.begin.set()  # a dashboard still waiting to begin ends at once
        loop, done = self._loop, self._done
        if loop is not None and done is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: it failed, or ended
                loop.call_soon_threadsafe(done.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            (self.config().state_dir / ADDRESS_NAME).unlink(missing_ok=True)

    def serving(self) -> bool:
        """It listens (False when its address could not be taken, or it failed)."""
        return self._thread is not None and self._thread.is_alive()


CONNECTIONS_MAX = 64  # connections open at once; more are closed as they come
HEAD_WAIT = 10.0  # seconds a connection has to send a whole request head


def _guarded() -> type:
    """uvicorn's HTTP protocol, bounded: another local user can open connections to
    the port without a session, and each holds one of the daemon's descriptors (1,100
    idle ones took them all: copies failed with "Too many open files").  A connection
    past ``CONNECTIONS_MAX`` is closed at once, and one that has not sent a whole
    request head within ``HEAD_WAIT`` (after it opened, or after its last answer) is
    closed: a single byte no longer holds it for ever.  (uvicorn's
    ``limit_concurrency`` only answers 503 to requests, and its keep-alive timer stops
    at the first byte.)"""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > CONNECTIONS_MAX:
                transport.close()
                return
            self._head_by()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._head_by()

        def _head_by(self) -> None:
            self.loop.call_later(HEAD_WAIT, self._head_late, self.cycle)

        def _head_late(self, answered: Any) -> None:
            # No request since (the cycle is the one answered then, or none): close.
            if self.cycle is answered and not self.transport.is_closing():
                self.transport.close()

    return Guarded
