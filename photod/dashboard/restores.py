"""Restores started from the dashboard: each in a thread of its own, through the same
code as `photod restore` (``standalone.restore``: every file checked, nothing
overwritten), with its progress kept for the page that polls it.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photod.errors import PhotodError
from photod.logs import log

if TYPE_CHECKING:
    from photod.config import Config

KEPT = 20  # finished restores the page can still show


@dataclass
class Job:
    id: int
    dest: str
    files: int
    total: int = 0  # bytes to restore
    done: int = 0  # bytes restored so far
    state: str = "running"  # "running", "done", "failed"
    restored: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    message: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "dest": self.dest, "files": self.files, "total": self.total,
            "done": self.done, "state": self.state, "restored": self.restored,
            "skipped": self.skipped, "failed": self.failed[:50], "message": self.message,
        }  # fmt: skip


class Restores:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, cfg: Config, dest: Path, chosen: frozenset[str], owner: int | None) -> Job:
        """``owner``: the user asking, when this daemon runs as root and they are not."""
        job = Job(next(self._ids), str(dest), len(chosen))
        with self._lock:
            self.jobs[job.id] = job
            for old in sorted(self.jobs)[:-KEPT]:
                if self.jobs[old].state != "running":
                    del self.jobs[old]
        threading.Thread(
            target=self._run,
            args=(job, cfg, dest, chosen, owner),
            name=f"restore-{job.id}",
            daemon=True,
        ).start()
        return job

    def _run(self, job: Job, cfg: Config, dest: Path, chosen: frozenset[str], owner: int | None
             ) -> None:  # fmt: skip
        from photod import standalone

        def plan(n: int) -> None:
            job.total = n

        def advance(n: int) -> None:
            job.done += n

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
        job.restored, job.skipped, job.failed = report.restored, report.skipped, report.failed
        job.state = "failed" if report.failed else "done"
        log.info("restore_finished", dest=str(dest), restored=report.restored,
                 skipped=report.skipped, failed=len(report.failed), by="dashboard")  # fmt: skip

    def running(self) -> bool:
        with self._lock:
            return any(j.state == "running" for j in self.jobs.values())

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)
