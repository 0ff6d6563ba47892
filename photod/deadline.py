"""A call given a deadline of its own, for a server that may answer a byte at a time.

A socket's timeout bounds each read, not a whole answer: a webhook or heartbeat server
that drips its answer (a byte every few seconds) never trips it, and would hold the one
thread that sends every message and ping for as long as it likes.  ``within`` runs the
call on a thread of its own and stops waiting for it at the deadline; the call goes on
in the background until its server lets go (its own timeouts end it when the server
goes silent), and at most ``STUCK_MAX`` such calls of one ``name`` (a channel) are
left waiting at once: a heartbeat stuck for good holds back its own pings, never the
messages of another channel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
STUCK_MAX = 4  # calls of one name past their deadline, still waiting on their server

_stuck: dict[str, set[threading.Thread]] = {}  # name -> its calls past their deadline
_lock = threading.Lock()


def within(seconds: float, call: Callable[[], T], name: str) -> T:
    """``call()``'s result or exception, or TimeoutError once ``seconds`` have passed
    without it (or at once, while ``STUCK_MAX`` earlier calls of ``name`` still wait on
    theirs)."""
    with _lock:
        stuck = _stuck.setdefault(name, set())
        stuck.difference_update([t for t in stuck if not t.is_alive()])
        if len(stuck) >= STUCK_MAX:
            raise TimeoutError(f"{len(stuck)} earlier answers are still coming, too slowly")
    out: list[tuple[bool, object]] = []
    given_up = threading.Event()

    def run() -> None:
        try:
            out.append((True, call()))
        except BaseException as exc:  # handed to the caller as it is
            out.append((False, exc))
        if given_up.is_set():
            out.clear()  # (nobody will take it: dropped now, not at a garbage collection)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        given_up.set()
        with _lock:
            _stuck[name].add(worker)
        raise TimeoutError(f"no whole answer within {seconds:g} s")
    ok, value = out.pop()
    try:
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]
    finally:
        # An exception raised here refers to this frame, which would refer to it: a
        # cycle that keeps what it holds (an HTTP error's open socket) until a
        # garbage collection, not until the caller is done with it.
        del value
