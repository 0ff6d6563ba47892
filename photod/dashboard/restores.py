"""Restores started from the dashboard: each in a thread of its own, through the same
code as `photod restore` (``standalone.restore``: every file checked, nothing
overwritten), with its progress kept for the page that polls it.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photod.errors import PhotodError
from photod.logs import log

if TYPE_CHECKING:
    from photod.config import Config

KEPT = 20  # finished restores the page can still show
FAILED_SHOWN = 50  # failures a restore's page names (each polled answer carries them)


@dataclass
class Job:
    id: int
    dest: str
    files: int
    total: int = 0  # bytes to restore
    done: int = 0  # bytes restored so far
    state: str = "running"  # "running", "done", "failed", "stopped" (the daemon stopped)
    restored: int = 0  # files, counted as they end
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # the first FAILED_SHOWN
    failed_count: int = 0
    message: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "dest": self.dest, "files": self.files, "total": self.total,
            "done": self.done, "state": self.state, "restored": self.restored,
            "skipped": self.skipped, "message": self.message,
            # The count apart from the list: a page shows every failure counted, the
            # first FAILED_SHOWN named.
            "failed": self.failed[:FAILED_SHOWN], "failed_count": self.failed_count,
        }  # fmt: skip


class Restores:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.jobs: dict[int, Job] = {}
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(
        self, cfg: Config, dest: Path, chosen: frozenset[str], owner: int | None
    ) -> Job | None:
        """A restore started; None while one runs (one at a time: checked and started
        at once, so two requests never both pass).  ``owner``: the user asking, when
        this daemon runs as root and they are not."""
        with self._lock:
            if any(j.state == "running" for j in self.jobs.values()):
                return None
            job = Job(next(self._ids), str(dest), len(chosen))
            self.jobs[job.id] = job
            for old in sorted(self.jobs)[:-KEPT]:
                if self.jobs[old].state != "running":
                    del self.jobs[old]
        thread = threading.Thread(
            target=self._run,
            args=(job, cfg, dest, chosen, owner),
            name=f"restore-{job.id}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job

    def join(self, timeout: float) -> None:
        """Wait for the restores in flight to end (``stop`` set: each ends between two
        reads), so that a stop removes their temporaries and says what they left."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, job: Job, cfg: Config, dest: Path, chosen: frozenset[str], owner: int | None
             ) -> None:  # fmt: skip
        from photod import standalone

        def plan(n: int) -> None:
            job.total = n

        def files(n: int) -> None:
            job.files = n  # (a chosen photo's movie and edits come with it)

        def advance(n: int) -> None:
            job.done += n

        def ended(outcome: str) -> None:
            if outcome == "restored":
                job.restored += 1
            elif outcome == "skipped":
                job.skipped += 1

        log.info("restore_started", dest=str(dest), files=len(chosen), by="dashboard")
        try:
            report = standalone.restore(
                cfg,
                dest,
                None,
                None,
                None,
                None,
                plan,
                advance,
                chosen=chosen,
                stop=self.stop,
                owner=owner,
                on_file=ended,
                on_files=files,
            )
        except (PhotodError, OSError) as exc:
            job.state, job.message = "failed", str(exc)
            log.warning("restore_failed", dest=str(dest), reason=str(exc), by="dashboard")
            return
        except Exception as exc:  # a bug: the job ends all the same (left "running", it
            # kept every later restore out until a restart); the log keeps the traceback
            job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("restore_failed", dest=str(dest), reason=job.message, by="dashboard")
            return
        job.restored, job.skipped = report.restored, report.skipped
        unreached = [(path, report.gone()) for path in report.unreached]
        job.failed = [*report.failed[:FAILED_SHOWN], *unreached][:FAILED_SHOWN]
        job.failed_count = report.failures
        left = job.files - report.restored - report.skipped  # (the failed ones too)
        if self.stop.is_set() and left:  # cut off by a stop of the daemon: said so
            job.state, job.message = "stopped", (
                f"the daemon stopped: this restore did not finish "
                f"({report.restored} of {job.files} restored)")  # fmt: skip
            log.warning("restore_stopped", dest=str(dest), restored=report.restored,
                        skipped=report.skipped, not_restored=left, by="dashboard")  # fmt: skip
            return
        job.state = "failed" if report.failures else "done"
        log.info("restore_finished", dest=str(dest), restored=report.restored,
                 skipped=report.skipped, failed=report.failures, by="dashboard")  # fmt: skip

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)
