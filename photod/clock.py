"""Where time enters photod: the clock that settling, backoff and pauses read.

A component that waits for something to be quiet, or for a pause to pass, takes a
``Clock`` (the system's by default) instead of calling ``time`` itself.  Tests hand it
a ``ManualClock`` and move time forward by hand, so a settle or backoff test runs in
microseconds and means the same on a loaded machine as on an idle one.  (Timestamps
written into records, and the scheduler's own timing, still read the system clock.)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol

__all__ = ["SYSTEM", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""

    def time(self) -> float:
        """Seconds since the epoch (for when something happened)."""

    def boottime(self) -> float:
        """Seconds on a clock that never goes back and goes on while the computer
        sleeps (for a deadline a person set: a pause for 2 h ends 2 h later)."""


# Linux's CLOCK_BOOTTIME counts a suspend, which CLOCK_MONOTONIC (time.monotonic) does
# not; on macOS CLOCK_MONOTONIC counts a sleep (clock_gettime(3)), mach time does not.
_BOOT = getattr(time, "CLOCK_BOOTTIME" if sys.platform == "linux" else "CLOCK_MONOTONIC", None)


class SystemClock:
    """The computer's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def boottime(self) -> float:
        return time.clock_gettime(_BOOT) if _BOOT is not None else time.monotonic()


SYSTEM: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told (``advance``): both readings move together."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def time(self) -> float:
        with self._lock:
            return self._wall

    def boottime(self) -> float:
        return self.monotonic()  # (a ManualClock never sleeps)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._monotonic += seconds
            self._wall += seconds
