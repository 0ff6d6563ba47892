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

from photod import catalog_guard, instance, logs, private, snapshot
from photod.albums import album_absent, album_assets, albums
from photod.catalog import CATALOG_NAME, Catalog, no_catalog
from photod.config import Config
from photod.drill import DrillResult, drill
from photod.errors import CatalogDamaged, CatalogUntrusted, PhotodError
from photod.fleet import build_targets
from photod.logs import log
from photod.pipeline import Pipeline
from photod.restore import Restorer, open_targets, select
from photod.restorereport import RestoreReport
from photod.statelock import StateLock, said_if_unwritable
from photod.targets.records import Installation
from photod.targetspec import TargetsSettings
from photod.verify import ScrubReport

Progress = Callable[[int], None]


class _Foreground:
    """The lock, the log and the catalog, for as long as a command runs.  ``settle``:
    check the catalog against the targets first, as the daemon does at start (and
    rebuild it where that is safe); else a missing catalog is an error."""

    def __init__(self, cfg: Config, settle: bool = False) -> None:
        self.cfg = cfg
        self.settle = settle
        self.me: Installation | None = None
        self.relist = False  # the catalog was rebuilt: compare the targets' lists in full

    def __enter__(self) -> Catalog:
        private.go_private()  # what it writes in the state dir is private
        private.refuse_theirs(
            self.cfg.state_dir, self.cfg.log_dir, self.cfg.log_dir / logs.LOG_NAME
        )
        with said_if_unwritable(self.cfg.state_dir):
            self.lock = StateLock(self.cfg.state_dir)  # raises AlreadyRunning
        try:
            with said_if_unwritable(self.cfg.state_dir):
                logs.setup(
                    self.cfg.log_dir,
                    console=False,
                    max_bytes=self.cfg.daemon.log_max_size,
                    keep=self.cfg.daemon.log_keep,
                )
            self.lock.sweep()
            db = self.cfg.state_dir / CATALOG_NAME
            if self.settle:
                targets = build_targets(self.cfg.targets_settings())
                try:
                    verdict = catalog_guard.settle(self.cfg, targets)
                finally:
                    for state in targets.values():
                        state.target.close()
                if verdict.action != "go":
                    raise CatalogUntrusted(verdict.found, verdict.fix)
                if verdict.unchecked:  # a large catalog: checked in full before any write
                    why = catalog_guard.deep_check(db, threading.Event())
                    if why:
                        raise CatalogDamaged(db, why)
                self.me, self.relist = verdict.me, verdict.relist
            elif not db.exists():
                raise CatalogUntrusted(f"there is no catalog at {db}", MISSING_FIX)
            elif no_catalog(db):  # never opened: SQLite would make a new, empty one in it
                raise CatalogUntrusted(f"the catalog {db} is a file of 0 bytes", instance.FIX)
            self.catalog = Catalog(db)
        except BaseException:
            logs.shutdown()
            self.lock.release(clean=not self.lock.unclean)
            raise
        return self.catalog

    def __exit__(self, *exc: object) -> None:
        self.catalog.close()
        logs.shutdown()
        # A crash of the daemon before this command is still news for its next start.
        self.lock.release(clean=not self.lock.unclean)


MISSING_FIX = (
    "start photod (it rebuilds a lost catalog from the targets by itself), or run "
    "`photod catalog rebuild --from TARGET`"
)


def verify(
    cfg: Config, only: str | None, everything: bool, on_plan: Progress, on_bytes: Progress
) -> ScrubReport:
    fg = _Foreground(cfg, settle=True)
    with fg as catalog:
        assert fg.me is not None
        pipeline = Pipeline(cfg, catalog, fg.me, relist=fg.relist or fg.lock.unclean)
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


def run_drill(cfg: Config, only: str | None) -> dict[str, DrillResult]:
    """Each target's drill: files restored and checked, and how many failed; or why
    it could not be drilled (not reachable now)."""
    with _Foreground(cfg) as catalog:
        targets = build_targets(cfg.targets_settings())
        away: dict[str, str] = {}
        try:
            ready = open_targets(catalog, targets, only, away)
            done = drill(catalog, ready, cfg.schedule.drill_sample, threading.Event(),
                         cfg.state_dir, whole=only is None)  # fmt: skip
            return done | {name: DrillResult(0, 0, why) for name, why in away.items()}
        finally:
            for state in targets.values():
                state.target.close()


def _readable(settings: TargetsSettings, only: str | None) -> TargetsSettings:
    """The targets a restore can read: without the age identity (lost with the
    computer), the encrypted ones are left out, said once each, and the others serve."""
    if settings.identity is None or settings.identity.exists():
        return settings
    sealed = [t.name for t in settings.targets if t.encrypt]
    why = (f"it is encrypted and the age identity {settings.identity} is missing: put that "
           "file back (a new key from `photod keygen` does not open it)")  # fmt: skip
    if only in sealed:
        raise PhotodError(f"target {only!r} cannot be read: {why}")
    for name in sealed:
        log.warning("target_unavailable", target=name, reason=why)
    return settings._replace(targets=tuple(t for t in settings.targets if not t.encrypt))


def restore(
    cfg: Config,
    dest: Path,
    only: str | None,
    since: date | None,
    until: date | None,
    match: str | None,
    on_plan: Progress,
    on_bytes: Progress,
    album: str | None = None,
    chosen: frozenset[str] | None = None,
    stop: threading.Event | None = None,
    owner: int | None = None,
    on_file: Callable[[str], None] | None = None,
    on_files: Progress | None = None,
) -> RestoreReport:
    """``photod restore``, and the dashboard's: ``chosen`` narrows it to these assets
    (SHA-256), ``stop`` ends it between two files, ``owner`` is the user it is written
    for by a root daemon (see ``Restorer``), ``on_file`` is told each file's outcome
    as it ends ('restored', 'skipped' or why not), ``on_files`` how many files it
    restores (the movies and edits kept beside a chosen photo too)."""
    db = cfg.state_dir / CATALOG_NAME
    if not db.exists():
        raise FileNotFoundError(db)
    # A catalog older than its last snapshot (put back from a backup of the home folder)
    # would restore what it knows and say nothing of the rest: refused, as status does.
    problem = instance.check_catalog(cfg.state_dir)
    if problem is not None:
        raise CatalogUntrusted(problem.found, problem.fix)
    catalog = Catalog(db)
    stop = stop or threading.Event()  # (its targets' too: a download waiting for the link)
    targets = build_targets(_readable(cfg.targets_settings(), only), stop)
    try:
        # (only the targets it reads: one asked for by --target is the one trusted)
        read = {n: s for n, s in targets.items() if only in (None, n)}
        newer = catalog_guard.newer_elsewhere(cfg, read, catalog)
        if newer is not None:
            raise CatalogUntrusted(newer.found, newer.fix)
        among, absent = None, 0
        if album is not None:
            among = album_assets(catalog, album)
            absent = album_absent(catalog, album)
            if among is None:
                known = sorted({a.name for a in albums(catalog, cfg.policy.rule(), {})})
                raise PhotodError(
                    f"no album named {album!r}; "
                    + (f"known: {', '.join(known[:20])}" if known else
                       "photod knows no album yet (they come from a phone's library)")
                )  # fmt: skip
        if chosen is not None:
            among = chosen if among is None else among & chosen
        # Counted first, then read again as it is restored: a whole library's restore
        # held every asset at once (a million photos: about a gigabyte).
        files = planned = 0
        for asset in select(catalog, since, until, match, among):
            files, planned = files + 1, planned + asset.size
        on_plan(planned)
        if on_files is not None:
            on_files(files)
        assets = select(catalog, since, until, match, among)
        restorer = Restorer(catalog, open_targets(catalog, targets, only), stop, owner)
        restorer.on_bytes = on_bytes
        if on_file is not None:
            restorer.on_file = on_file
        report = restorer.restore(assets, dest)
        report.absent = absent
        return report
    finally:
        for state in targets.values():
            state.target.close()
        catalog.close()


def rebuild(
    cfg: Config, name: str, force: bool, wanted: str | None, take_over: bool = False
) -> tuple[snapshot.Rebuilt, Path | None]:
    private.go_private()
    private.refuse_theirs(cfg.state_dir, cfg.log_dir, cfg.log_dir / logs.LOG_NAME)
    with said_if_unwritable(cfg.state_dir):
        lock = StateLock(cfg.state_dir)
        logs.setup(cfg.log_dir, console=False)
    lock.sweep()
    targets = build_targets(_readable(cfg.targets_settings(), name))
    try:
        return snapshot.rebuild_catalog(
            cfg.state_dir, cfg.state_dir / CATALOG_NAME, name, targets, force, wanted,
            cfg.instance, take_over=take_over,
        )  # fmt: skip
    finally:
        for state in targets.values():
            state.target.close()
        logs.shutdown()
        lock.release(clean=not lock.unclean)
