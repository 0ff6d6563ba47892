"""Requests still in flight once photod stops are cut, after a grace: a dead link (a NAS
or a router that vanished, which takes a request and never answers) is not waited on,
each request up to its timeout (a stop took minutes, past systemd's 30 s).  A copy cut so
is rolled back as any copy in flight at a stop; requests made after the cut (the last
lists, the snapshot) go as usual."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

STOP_GRACE = 5.0  # seconds requests in flight have to end once photod stops


def cut_at_stop(stop: threading.Event, live: Callable[[], list[Any]], name: str) -> threading.Event:
    """Once ``stop`` is set, the connections ``live()`` still lists after ``STOP_GRACE``
    are shut (a watch thread named ``name``, which ends then).  The event returned is
    set then, before any is shut, when one of them was in flight as photod stopped and
    still waits for its answer: the link is dead, and nothing more is asked of it at
    this stop (what is left there is ended at the next start)."""
    silent = threading.Event()

    def watch() -> None:
        stop.wait()
        deadline = time.monotonic() + STOP_GRACE
        asked = weakref.WeakSet(live())  # (in flight as photod stops)
        while live() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = live()
        if any(conn in asked and getattr(conn, "sock", None) is not None for conn in left):
            silent.set()
        for conn in left:
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=watch, name=name, daemon=True).start()
    return silent
