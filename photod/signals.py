"""The daemon's signals (SIGTERM, SIGINT: stop; SIGHUP: reload), acted on by a thread
of their own.

A Python signal handler runs on the main thread between two of its steps, maybe while
that thread holds a lock, such as the one inside the daemon's wake-up event during its
wait or clear.  A handler that set that event would then wait for itself for ever, and
`systemctl stop` would end in SIGKILL.  So the handler only puts the signal in a
SimpleQueue, whose ``put`` is reentrant and takes no such lock; the thread does the
rest."""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def listen(act: Callable[[int], None]) -> Callable[[], None]:
    """Install the handlers; ``act(signum)`` runs on the thread "signals" for each
    signal received.  Returns what ends that thread and puts the handlers that were
    there before back (a process that then hangs on its way out can still be stopped)."""
    inbox: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def take() -> None:
        while (signum := inbox.get()) is not None:
            try:
                act(signum)
            except Exception:  # a bug: said, and the next signal is still heard
                logging.getLogger("photod").exception("signal_failed", extra={"signal": signum})

    def handler(signum: int, _: FrameType | None) -> None:
        inbox.put(signum)

    threading.Thread(target=take, name="signals", daemon=True).start()
    before = {signum: signal.signal(signum, handler) for signum in HANDLED}

    def end() -> None:
        for signum, old in before.items():
            signal.signal(signum, old)
        inbox.put(None)

    return end


def interrupt_on_stop() -> None:
    """TERM and HUP end a command (`photod restore`) as Ctrl-C does: KeyboardInterrupt,
    so that the file being written is removed, not left half written (exit 130)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # (`nohup` keeps it going)
            signal.signal(signum, signal.default_int_handler)
