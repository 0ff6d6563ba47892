"""Which of the daemon's jobs run now: what `photod status` shows, and what the
scheduler (jobs) and the work (pipeline) both touch, so it lives below both."""

from __future__ import annotations

import threading


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
