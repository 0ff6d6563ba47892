"""`photod run --once`: scan, copy everything pending, and return (a one-shot backup)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from photod.logs import log
from photod.pipeline import Pipeline


def run_once(pipeline: Pipeline, stopped: Callable[[], bool]) -> None:
    """Run ``pipeline`` through one backup; ``stopped`` says a signal asked to stop
    (what is in flight is rolled back, as in the daemon)."""
    pipeline.start(watch=False)
    log.info("backup_started", config=str(pipeline.cfg.path))
    started = time.monotonic()
    # Uploads to remote targets start while files are still being ingested, as in
    # the daemon, where each new asset wakes the upload job.
    ingesting = threading.Event()
    ingesting.set()

    def upload_meanwhile() -> None:
        while ingesting.is_set() and not stopped():
            pipeline.upload_pending()
            time.sleep(0.2)

    uploader = threading.Thread(target=upload_meanwhile, name="upload", daemon=True)
    uploader.start()
    pipeline.reconcile()
    while pipeline.busy() and not stopped():
        pipeline.settle_tick()
        time.sleep(0.05)
    ingesting.clear()
    uploader.join()
    if not stopped():
        pipeline.retry_pending()
    pipeline.stop()
    assets, size = pipeline.catalog.counts()
    log.info(
        "backup_finished",
        assets=assets,
        bytes=size,
        duration=round(time.monotonic() - started, 3),
    )
