"""The daemon's proof jobs run in the foreground, for the command line: ``photod
verify``, ``photod drill``, ``photod restore`` and ``photod catalog rebuild``.

verify, drill and rebuild hold the state lock (the daemon cannot start meanwhile, and
they refuse to run beside it) and write their events to the daemon's log, so `photod
logs` shows them.  restore only reads, so it runs beside a daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

from photod import logs, snapshot
from photod.catalog import Catalog
from photod.config import Config
from photod.daemon import CATALOG_NAME, StateLock
from photod.errors import PhotodError
from photod.pipeline import Pipeline, build_targets
from photod.restore import Restorer, RestoreReport, drill, open_targets, select
from photod.verify import ScrubReport

Progress = Callable[[int], None]


class _Foreground:
    """The lock, the log and the catalog, for as long as a command runs."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __enter__(self) -> Catalog:
        self.lock = StateLock(self.cfg.state_dir)  # raises AlreadyRunning
        logs.setup(
            self.cfg.log_dir,
            console=False,
            max_bytes=self.cfg.daemon.log_max_size,
            keep=self.cfg.daemon.log_keep,
        )
        self.catalog = Catalog(self.cfg.state_dir / CATALOG_NAME)
        return self.catalog

    def __exit__(self, *exc: object) -> None:
        self.catalog.close()
        logs.shutdown()
        self.lock.release()


def verify(
    cfg: Config, only: str | None, everything: bool, on_plan: Progress, on_bytes: Progress
) -> ScrubReport:
    with _Foreground(cfg) as catalog:
        pipeline = Pipeline(cfg, catalog)
        if only is not None and only not in pipeline.targets:
            pipeline.stop()
            raise PhotodError(
                f"no target named {only!r}; configured: {', '.join(pipeline.targets)}"
            )
        pipeline.scrubber.on_plan, pipeline.scrubber.on_bytes = on_plan, on_bytes
        try:
            pipeline.start(watch=False)
            return pipeline.scrubber.run(only, everything)
        finally:
            pipeline.stop()  # also writes the catalog snapshot after a repair


def run_drill(cfg: Config, only: str | None) -> dict[str, bool]:
    with _Foreground(cfg) as catalog:
        targets = build_targets(cfg)
        try:
            return drill(
                catalog,
                open_targets(catalog, targets, only),
                cfg.schedule.drill_sample,
                threading.Event(),
                cfg.state_dir,
            )
        finally:
            for state in targets.values():
                state.target.close()


def restore(
    cfg: Config,
    dest: Path,
    only: str | None,
    since: date | None,
    until: date | None,
    match: str | None,
    on_plan: Progress,
    on_bytes: Progress,
) -> RestoreReport:
    db = cfg.state_dir / CATALOG_NAME
    if not db.exists():
        raise FileNotFoundError(db)
    catalog = Catalog(db)
    targets = build_targets(cfg)
    try:
        assets = list(select(catalog, since, until, match))
        on_plan(sum(a.size for a in assets))
        restorer = Restorer(catalog, open_targets(catalog, targets, only), threading.Event())
        restorer.on_bytes = on_bytes
        return restorer.restore(assets, dest)
    finally:
        for state in targets.values():
            state.target.close()
        catalog.close()


def rebuild(cfg: Config, name: str, force: bool) -> tuple[snapshot.Rebuilt, Path | None]:
    lock = StateLock(cfg.state_dir)
    logs.setup(cfg.log_dir, console=False)
    targets = build_targets(cfg)
    try:
        return snapshot.rebuild_catalog(cfg.state_dir / CATALOG_NAME, name, targets, force)
    finally:
        for state in targets.values():
            state.target.close()
        logs.shutdown()
        lock.release()
