"""systemd's notify protocol (``Type=notify``): one datagram a message to the AF_UNIX
socket in ``$NOTIFY_SOCKET``, and a keep-alive for work that outlasts systemd's patience.

systemd kills a service that has not said READY=1 within its start timeout (90 s), and,
once it has, one that has not said WATCHDOG=1 within ``WatchdogSec`` (60 s); with
``Restart=on-failure`` it then starts it again.  A catalog rebuilt from a target, or
checked page by page, can take longer than either: killed, the rebuild is thrown away
and begun again at the next start, for ever.  ``keep_alive`` tells systemd, while such
work runs, that it goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

TICK = 5.0  # seconds between two keep-alives (the watchdog's own beat, too)
# Each keep-alive asks for three ticks more: a machine too busy to run the ticker for
# a tick or two is not yet taken for a hung one.
EXTEND_USEC = int(3 * TICK * 1_000_000)

_ready = threading.Event()  # READY=1 was sent: from then on the watchdog counts


def supervised() -> bool:
    """Whether systemd listens (photod runs as a ``Type=notify`` service)."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def send(message: str) -> None:
    """Tell systemd about our state; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr or not message:
        return
    if addr.startswith("@"):  # the abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode("utf-8"), addr)
    except OSError:
        return
    if "READY=1" in message.split("\n"):
        _ready.set()


@contextlib.contextmanager
def keep_alive(status: str) -> Iterator[None]:
    """Every TICK seconds while the block runs, and while the thread that runs it
    lives: EXTEND_TIMEOUT_USEC, which pushes back whichever of systemd's timers runs
    (the start timeout before READY; after RELOADING=1 a reload's, which systemd 252
    arms as a start's; the watchdog's), and WATCHDOG=1 once READY was sent.
    ``status``: the STATUS line systemd shows meanwhile.  Nothing is sent for work
    shorter than a tick."""
    if not supervised():
        yield
        return
    worker, done = threading.current_thread(), threading.Event()

    def tick() -> None:
        said = False
        while not done.wait(TICK) and worker.is_alive():
            message = f"EXTEND_TIMEOUT_USEC={EXTEND_USEC}"
            if _ready.is_set():
                message = "WATCHDOG=1\n" + message
            send(message if said else f"{message}\nSTATUS={status}")
            said = True

    ticker = threading.Thread(target=tick, name="systemd-keep-alive", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
