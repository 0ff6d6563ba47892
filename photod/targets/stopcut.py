"""Requests still in flight once photod stops are cut, after a grace: a dead link (a NAS
or a router that vanished, which takes a request and never answers) is not waited on,
each request up to its timeout (a stop took minutes, past systemd's 30 s).  A copy cut so
is rolled back as any copy in flight at a stop; requests made after the cut (the last
lists, the snapshot) go as usual.  A link is dead when not one byte moved on a request
in flight during the grace (the kernel's count of the bytes the other end took, and of
those it sent): a slow link still moving a photo's bytes is cut as well, and is asked
for the last lists and the snapshot."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

# Seconds requests in flight have to end once photod stops, and a link that moved no
# byte in them is dead: many round trips of the slowest live link (a satellite's is
# under a second), and the stop's last requests still have 25 s of systemd's 30.
STOP_GRACE = 5.0
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # (Linux)
_MOVED_AT = 120  # Linux's struct tcp_info: tcpi_bytes_acked, then tcpi_bytes_received
# Why a request was not sent: another of the target's, in flight as photod stopped, got
# no answer (``cut_at_stop``'s ``silent``).
UNANSWERED = ("no answer as photod stopped (the link is dead): nothing more is asked of it "
              "until the next start, which ends what this stop left there")  # fmt: skip


def moved(conn: Any) -> int | None:
    """The bytes moved so far on ``conn``'s socket, both ways (None where the kernel
    does not count them: not TCP, not Linux, a kernel before 4.1).  A ``Counted``
    socket's are its own count."""
    counted = getattr(getattr(conn, "sock", None), "moved", None)
    if isinstance(counted, int):
        return counted
    try:
        info = conn.sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _MOVED_AT + 16)
    except (AttributeError, OSError, TypeError):
        return None
    if len(info) < _MOVED_AT + 16:
        return None
    acked, received = struct.unpack_from("=QQ", info, _MOVED_AT)
    return int(acked + received)


def cut_at_stop(stop: threading.Event, live: Callable[[], list[Any]], name: str) -> threading.Event:
    """Once ``stop`` is set, the connections ``live()`` still lists after ``STOP_GRACE``
    are shut (a watch thread named ``name``, which ends then).  The event returned is
    set then, before any is shut, when one of them was in flight as photod stopped and
    moved no byte since (``moved``: unknown counts as none): the link is dead, and
    nothing more is asked of it at this stop (what is left there is ended at the next
    start)."""
    silent = threading.Event()

    def watch() -> None:
        stop.wait()
        deadline = time.monotonic() + STOP_GRACE
        asked = weakref.WeakKeyDictionary({conn: moved(conn) for conn in live()})
        while live() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = live()
        if any(still(conn, asked) for conn in left):
            silent.set()
        for conn in left:
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=watch, name=name, daemon=True).start()
    return silent


def still(conn: Any, asked: weakref.WeakKeyDictionary[Any, int | None]) -> bool:
    """Whether ``conn`` was in flight as photod stopped (``asked``: what it had moved
    then) and has moved no byte since."""
    if conn not in asked or getattr(conn, "sock", None) is None:
        return False
    now = moved(conn)
    return now is None or now == asked[conn]


class Counted(socket.socket):
    """A socket that counts the bytes it moved (``moved``), as the kernel does not for
    a unix socket (rcd's: a peer that stops reading, its remote dead, moves none).  Sent
    a piece at a time: a slow live link moves some bytes within the grace."""

    moved = 0
    PIECE = 64 * 1024

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        for at in range(0, len(view), self.PIECE):
            super().sendall(view[at : at + self.PIECE], flags)
            self.moved += len(view[at : at + self.PIECE])

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        self.moved += n
        return n
