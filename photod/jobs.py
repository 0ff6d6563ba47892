"""APScheduler wiring: the only place where time enters photod."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from photod.config import Config
from photod.errors import Stopping
from photod.logs import log
from photod.pipeline import Pipeline

SETTLE_TICK = 0.25  # seconds between looks at files that are still being written
TARGET_PROBE = 5.0  # seconds between checks that a drive came or went


def _guarded(job: Callable[[], None]) -> Callable[[], None]:
    """A job boundary: a failure becomes one event and the daemon goes on; the job
    simply runs again at its next time."""

    @functools.wraps(job)
    def run() -> None:
        try:
            job()
        except Stopping:
            pass
        except Exception as exc:
            log.exception("job_failed", job=job.__name__, error=str(exc))

    return run


def start(pipeline: Pipeline, cfg: Config) -> BackgroundScheduler:
    """Start the scheduler with photod's periodic jobs; a reconcile scan runs at once."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        # A laptop that slept through a run does it when it wakes, once.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    now = datetime.now(UTC)
    scheduler.add_job(_guarded(pipeline.settle_tick), "interval", seconds=SETTLE_TICK, id="settle")
    scheduler.add_job(
        _guarded(pipeline.probe_targets), "interval", seconds=TARGET_PROBE, id="probe"
    )
    scheduler.add_job(
        _guarded(pipeline.retry_local),
        "interval",
        seconds=cfg.daemon.retry_interval,
        id="retry",
        next_run_time=now,
    )
    scheduler.add_job(
        _guarded(pipeline.upload_pending),
        "interval",
        seconds=cfg.daemon.retry_interval,
        id="upload",
        next_run_time=now,
    )
    scheduler.add_job(
        _guarded(pipeline.reconcile),
        "interval",
        seconds=cfg.daemon.rescan_interval,
        id="reconcile",
        next_run_time=now,
    )

    def wake(job_id: str) -> None:
        job = scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))
            scheduler.wakeup()

    pipeline.wake = wake
    scheduler.start()
    return scheduler


def stop(scheduler: BackgroundScheduler) -> None:
    """Wait for running jobs; they check the pipeline's stop event between files."""
    scheduler.shutdown(wait=True)
