"""Failpoints: named places where a test can make photod fail on purpose.

The fault campaigns (a thread that dies, a power cut between a copy's rename and its
catalog record) need failures at exact moments, which no outside signal can hit.  As in
FreeBSD's fail(9) or TiKV's fail-rs, the code names such places with ``hit("name")``
and the environment arms them::

    PHOTOD_FAILPOINTS="replica_published=kill,device_attached=3:raise"

``ACTION`` is ``raise`` (a ``FailpointHit``, which no handler in photod expects),
``kill`` (SIGKILL to the whole process: a power cut, as far as the disk can tell),
``eio`` (the OSError a failing disk gives) or ``sleep:SECONDS``; ``N:ACTION`` acts on the Nth hit only.  Unset, which is always the
case outside tests, ``hit`` is one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

ENV = "PHOTOD_FAILPOINTS"


class FailpointHit(RuntimeError):
    """Raised by an armed ``raise`` failpoint: deliberately not a PhotodError, so it
    takes the path an unexpected bug would."""


def _parse(spec: str) -> dict[str, tuple[int, str]]:
    armed: dict[str, tuple[int, str]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        nth, _, rest = action.partition(":")
        if nth.isdigit() and rest:
            armed[name] = (int(nth), rest)
        else:
            armed[name] = (0, action or "raise")
    return armed


_armed = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def armed(name: str) -> bool:
    """Whether the failpoint ``name`` is armed: for a place where the fault is a
    different path (a check's time budget spent), not an action."""
    return name in _armed


def hit(name: str) -> None:
    """Fail here if the failpoint ``name`` is armed (see the module docstring)."""
    if name not in _armed:
        return
    nth, action = _armed[name]
    with _lock:
        _hits[name] = count = _hits.get(name, 0) + 1
    if nth and count != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # the signal is on its way; nothing after this line may run
    elif action == "eio":
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    elif action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
    else:
        raise FailpointHit(f"failpoint {name!r} hit")
