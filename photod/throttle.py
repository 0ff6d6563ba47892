"""When and how fast a target may be written: the upload window, the battery rule, the
metered-connection rule and the bandwidth limit; and how politely a scrub reads (its
I/O and CPU priority).  ``paused`` is pure (the clock, the battery and the connection
are parameters)."""

from __future__ import annotations

import functools
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from photod.models import VerifyMethod
from photod.targets.base import Writer


def paused(
    window: tuple[int, int] | None,
    on_battery: bool,
    now: datetime,
    battery: bool | None,
    on_metered: bool = True,
    metered: bool = False,
) -> str:
    """Why uploads to a target wait now, or "" when they may run.  ``battery`` is True
    when the computer runs on battery, None when it has none; ``metered``: the
    connection is metered (a phone's hotspot)."""
    if window is not None:
        start, end = window
        minute = now.hour * 60 + now.minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if not inside:
            return (
                f"outside its upload window {_hhmm(start)}-{_hhmm(end)} (local time); "
                f"uploads start at {_hhmm(start)}"
            )
    if not on_battery and battery:
        return "the computer runs on battery (on_battery = false); uploads resume on mains power"
    if not on_metered and metered:
        return (
            "the connection is metered (on_metered = false); uploads resume on an unmetered network"
        )
    return ""


def lower_priority(level: str, nice: int | None = None, thread: int | None = None) -> None:
    """Lower the calling thread's I/O class and CPU priority (or the thread whose native
    id is ``thread``): "idle" reads only when no one else wants the disk (ionice -c3),
    "low" is best-effort at the lowest level (ionice -c2 -n7).  The nice value becomes
    at least ``nice``, or goes up by 10 when it is None.  Linux applies both per thread,
    and threads started afterwards inherit them: the daemon calls it first thing; a
    scrub in a thread that ends with it."""
    import psutil  # loaded where asked: it is a sixth of a short command's start

    if level == "normal" or not hasattr(psutil, "IOPRIO_CLASS_IDLE"):
        return
    tid = thread if thread is not None else threading.get_native_id()
    try:
        proc = psutil.Process(tid)  # a thread id names the thread itself on Linux
        if level == "idle":
            proc.ionice(psutil.IOPRIO_CLASS_IDLE)
        else:
            proc.ionice(psutil.IOPRIO_CLASS_BE, value=7)
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, max(now, nice) if nice is not None else now + 10)
        )
    except (psutil.Error, OSError):
        pass  # a politeness, never a reason to skip the scrub


@functools.cache
def _libc() -> Any:
    import ctypes

    try:
        # The process's own symbols, the C library's among them (the same functions):
        # ctypes.util.find_library("c") ran `ldconfig -p` in a child and parsed its
        # list at every daemon start.
        return ctypes.CDLL(None)
    except OSError:
        return None


M_ARENA_MAX = -8  # mallopt(3)


def few_arenas(count: int = 2) -> None:
    """Let glibc's malloc keep at most ``count`` arenas.  By default each busy thread
    may get one of its own (up to 8 per core), and a daemon that hashes and copies in a
    dozen threads holds all of their high-water marks; with two, memory stays flat
    (bench/daemon.py day).  Called first thing, before any thread starts.  A no-op
    where the C library has no such setting (macOS)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is not None:
        mallopt(M_ARENA_MAX, count)


def give_back_memory() -> None:
    """Hand freed heap memory back to the system.  glibc keeps each thread arena at its
    high-water mark, so a daemon that copies in many threads grows over the days
    without holding more objects (bench/daemon.py day measures it); ``malloc_trim``
    returns the free pages.  A no-op where the C library has no such call (macOS)."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def on_battery_now() -> bool | None:
    """True on battery, False on mains, None without a battery (or when unknown)."""
    import psutil  # as in lower_priority: only when asked

    try:
        battery = psutil.sensors_battery()
    except (AttributeError, OSError, NotImplementedError):
        return None
    return None if battery is None else not battery.power_plugged


class TokenBucket:
    """At most ``rate`` bytes per second over all writers that share it, with one
    second's worth of burst."""

    def __init__(self, rate: int, stop: threading.Event) -> None:
        self.rate = rate
        self.stop = stop
        self.tokens = float(rate)
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.rate), self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.stop.wait(wait)


class LimitedWriter:
    """A writer whose bytes go out no faster than its bucket allows."""

    def __init__(self, writer: Writer, bucket: TokenBucket) -> None:
        self.writer = writer
        self.bucket = bucket

    @property
    def temp_key(self) -> str:
        return self.writer.temp_key

    def write(self, data: bytes) -> None:
        self.bucket.take(len(data))
        self.writer.write(data)

    def sha256(self) -> str | None:
        return self.writer.sha256()

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        return self.writer.adopt(path, st)  # a link moves no bytes: nothing to limit

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        return self.writer.commit(key, sha256, mtime_ns, captured_at)

    def abort(self) -> bool:
        return self.writer.abort()
