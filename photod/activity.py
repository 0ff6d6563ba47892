"""Which of the daemon's jobs run now, and which fail at every run: what `photod
status` and the heartbeat say, and what the scheduler (jobs) and the work (pipeline)
both touch, so it lives below both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class Activity:
    """Which jobs run now (for `photod status`), and which were woken while they ran:
    such a job runs once more as soon as it ends (APScheduler would skip the wake-up,
    with a warning, and the new work would wait for the job's next interval)."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._lock = threading.Lock()

    def now(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def begin(self, name: str) -> None:
        with self._lock:
            self._running.add(name)

    def wake_running(self, name: str) -> bool:
        """If ``name`` runs now, have it run again when it ends; True when it did."""
        with self._lock:
            if name in self._running:
                self._again.add(name)
                return True
            return False

    def rerun(self, name: str) -> bool:
        """Whether ``name``, which just ended a run, was woken during it (and is now
        taken as running again)."""
        with self._lock:
            if name in self._again:
                self._again.discard(name)
                return True
            return False

    def end(self, name: str) -> None:
        with self._lock:
            self._running.discard(name)
            self._again.discard(name)


class Failing:
    """The scheduled jobs whose runs fail, each by what its failure is (``kind``): a
    job failing at every run (the target probe every 5 s) is said once, and again only
    when it fails otherwise, not a trace every few seconds; while it lasts the
    heartbeat's "/fail" names it at every ping (``lines``)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._jobs: dict[str, tuple[str, float, str, int]] = {}  # name -> kind, since, error, runs
        self._lock = threading.Lock()

    def failed(self, name: str, kind: str, error: str) -> bool:
        """A run of ``name`` failed; True when that is news (a first failure, or
        another kind of failure than the last)."""
        with self._lock:
            last = self._jobs.get(name)
            if last is None:
                self._jobs[name] = (kind, self._now(), error, 1)
                return True
            self._jobs[name] = (kind, last[1], error, last[3] + 1)  # (since its first)
            return last[0] != kind

    def ran(self, name: str) -> int:
        """A run of ``name`` succeeded: how many failed in a row before it (0: none)."""
        with self._lock:
            last = self._jobs.pop(name, None)
        return 0 if last is None else last[3]

    def lines(self) -> list[str]:
        """One line for each job failing now, for the heartbeat's "/fail"."""
        with self._lock:
            jobs = sorted(self._jobs.items())
        return [f"the job {name} has failed at each of its last {runs} run(s) since "
                f"{datetime.fromtimestamp(since, UTC):%Y-%m-%d %H:%M} UTC: {error}"
                for name, (_, since, error, runs) in jobs]  # fmt: skip
