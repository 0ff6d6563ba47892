"""The daemon's signals (SIGTERM, SIGINT: stop; SIGHUP: reload), acted on by a thread
of their own.

A Python signal handler runs on the main thread between two of its steps, maybe while
that thread holds a lock, such as the one inside the daemon's wake-up event during its
wait or clear.  A handler that set that event would then wait for itself for ever, and
`systemctl stop` would end in SIGKILL.  So the handler only puts the signal in a
SimpleQueue, whose ``put`` is reentrant and takes no such lock; the thread does the
rest."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def listen(act: Callable[[int], None]) -> Callable[[], None]:
    """Install the handlers; ``act(signum)`` runs on the thread "signals" for each
    signal received.  Returns what ends that thread."""
    inbox: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def take() -> None:
        while (signum := inbox.get()) is not None:
            act(signum)

    def handler(signum: int, _: FrameType | None) -> None:
        inbox.put(signum)

    threading.Thread(target=take, name="signals", daemon=True).start()
    for signum in HANDLED:
        signal.signal(signum, handler)
    return lambda: inbox.put(None)
