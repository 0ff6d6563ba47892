"""The running parts wired together: the watch folders' intake, the phones, the
replicator that copies and proves, the scrub, the drills, the snapshots and the
reminders.  Jobs (``jobs.py``) call the methods here; ``daemon.py`` starts and stops
it.  This is the composition root: it builds each part from its own settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from photod import failpoints
from photod.activity import Activity, Failing
from photod.catalog import Catalog
from photod.clock import SYSTEM, Clock
from photod.config import Config
from photod.errors import CatalogDamaged, PhotodError, StateDirFull
from photod.fleet import Fleet, build_targets
from photod.ingest import Ingestor
from photod.intake import FolderIntake
from photod.logs import log
from photod.pause import Pause
from photod.reminders import Reminders
from photod.replicate import Replicator
from photod.schedules import interval
from photod.sidecars import LibraryKeeper
from photod.snapshotdue import Due, Snapshotted
from photod.targets.records import Installation
from photod.throttle import on_battery_now
from photod.verify import Scrubber

if TYPE_CHECKING:
    from photod.devices import DeviceManager
    from photod.fleet import TargetState
    from photod.notify import Notifier
    from photod.targetspec import TargetsSettings

LIST_EVERY = 1.0  # seconds between writes of the targets' lists when copies trickle in


def _built(
    settings: TargetsSettings, stop: threading.Event, cut: threading.Event, me: Installation
) -> dict[str, TargetState]:
    """The targets, a remote one (rclone or S3, even encrypted) told to cut its requests
    still in flight once ``cut`` is set: a hung NAS's answer is not waited for at a
    stop."""
    targets = build_targets(settings, stop, me)
    for state in targets.values():
        inner = getattr(state.target, "inner", state.target)
        if hasattr(inner, "cut_when"):
            inner.cut_when(cut)
    return targets


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        me: Installation,
        relist: bool = False,
        *,
        notifier: Notifier | None = None,
        pause: Pause | None = None,
        trusted: bool = True,
        distrust: Callable[[str], None] | None = None,
        activity: Activity | None = None,
        wake: Callable[[str], None] = lambda job: None,
        scanned: Callable[[], None] = lambda: None,
        clock: Clock = SYSTEM,
        snapshotted: Snapshotted | None = None,
    ) -> None:
        """``me``: this installation (its records on the targets); ``relist``: the last
        run did not stop cleanly, so each target's list is compared with the catalog
        in full when it comes.  ``notifier``: who is told of failures (the daemon's);
        ``pause``: `photod pause`, which outlives a reload; ``trusted`` and
        ``distrust``: see ``Fleet``; ``activity``: the jobs running now (shared with
        the scheduler); ``wake``: runs a scheduled job now (``jobs.Waker``; a one-shot
        run has none); ``scanned``: called after each reconcile scan (the daemon starts
        its dashboard after the first); ``clock``: what settling, backoff and pauses
        are measured with; ``snapshotted``: the last snapshot before a reload."""
        self.cfg = cfg
        self.clock = clock
        self.wake = wake
        self.scanned = scanned
        self.catalog = catalog
        self.me = me
        self.stop_event = threading.Event()
        self.cut = threading.Event()  # (set by ``halt``)
        self.targets = _built(cfg.targets_settings(), self.stop_event, self.cut, me)
        roots = cfg.source_roots()
        self.fleet = Fleet(catalog, self.targets, self.stop_event, cfg.daemon.retry_max,
                           relist, trusted=trusted, distrust=distrust, clock=clock)  # fmt: skip
        self.replicator = Replicator(
            catalog,
            self.fleet,
            cfg.policy.rule(),
            self.stop_event,
            roots,
            cfg.daemon.retry_interval,
            cfg.daemon.retry_max,
            on_new=self._wake_uploads if any(s.queued for s in self.targets.values()) else None,
        )
        self.ingestor = Ingestor(cfg.ingest, roots, catalog, self.replicator)
        self.workers = ThreadPoolExecutor(cfg.daemon.workers, thread_name_prefix="ingest")
        self.intake = FolderIntake(cfg.folders, cfg.ingest, self.ingestor, catalog, self.workers,
                                   cfg.state_dir, self.stop_event, wake, clock)  # fmt: skip
        self.devices: DeviceManager | None = None
        if cfg.iphones:  # (loaded only then: a start without phones waits for none of it)
            from photod.devices import DeviceManager

            self.devices = DeviceManager(cfg.iphones, cfg.daemon, roots, cfg.state_dir / "pairing",
                                         catalog, self.ingestor, self.workers, self._can_import,
                                         imported=self._wake_catch_up)  # fmt: skip
        self.keeper = LibraryKeeper(catalog, self.stop_event)
        self.scrubber = Scrubber(
            cfg.schedule,
            cfg.folders,
            catalog,
            self.replicator,
            interval(cfg.schedule.scrub),
            self.stop_event,
        )
        # when the next snapshot is (and whether the last run's covers the catalog)
        self.due = Due(catalog, cfg, snapshotted, partial(_newest, self.targets))
        self._listed_at = 0.0  # when the lists were last written from settle_tick
        # `photod pause`: while it lasts nothing heavy starts (imports, copies, scans,
        # scrubs, drills); events still arrive and wait.  Set by the daemon.
        self.pause = pause or Pause(clock)
        self.failing = Failing(clock.time)  # the scheduled jobs failing at each run
        self.reminders = (
            Reminders(
                cfg, catalog, self.targets, notifier, clock, self._import_waits, self.failing.lines
            )
            if notifier
            else None
        )
        self.activity = activity or Activity()  # the jobs running now (`photod status`)
        # Scheduled scrubs and drills that fell due on battery ([schedule] on_battery =
        # false), or during a pause (``held``): each runs when the probe sees mains
        # power again, or the pause over.
        self.deferred: set[str] = set()
        self.held: set[str] = set()

    # -- life cycle --------------------------------------------------------------------

    def start(self, watch: bool = True) -> None:
        self.watching = watch
        for name in self.targets:
            self.fleet.refresh(name)
        if watch:
            self.intake.watch()
            if self.devices is not None:
                self.devices.start()

    def stop(self, snapshot: bool = True) -> None:
        """Stop everything; a copy in flight is rolled back (its temporary removed).
        ``snapshot``: write the catalog's last snapshot (not when it is suspect)."""
        self.stop_event.set()
        if self.devices is not None:
            self.devices.stop()
        self.intake.stop()
        self.workers.shutdown(wait=True, cancel_futures=True)
        self.replicator.close()
        try:
            self.fleet.flush()  # the lists' last entries
        except PhotodError as exc:  # the catalog failed: the next start lists them again
            log.warning("list_flush_failed", error=str(exc))
        if snapshot:
            self.snapshot_if_due(force=True)
        for state in self.targets.values():
            try:
                state.target.close()  # writes what the manifests still buffer
            except PhotodError as exc:
                log.warning("target_close_failed", target=state.target.name, error=str(exc))

    def alive(self) -> bool:
        """Every thread that should run does (WATCHDOG=1 is sent only then).  A watch
        folder's watcher is not among them: one that ended (its folder gone, made again,
        mounted over) is started again by the ``rewatch`` job, without a restart."""
        return self.devices is None or not self.watching or self.devices.alive()

    def _can_import(self) -> bool:
        """A phone import starts only when some target can take the files."""
        return not self.paused() and bool(self.fleet.available())

    def _import_waits(self) -> float:
        """How long the imports have not moved while files wait (0 while paused: a
        pause holds imports on purpose)."""
        return 0.0 if self.paused() else self.intake.waiting_for()

    def paused(self) -> bool:
        return self.pause.active()

    def heavy_waits(self, job: str) -> bool:
        """Whether a scheduled scrub or drill must not start now: `photod pause`, or
        the battery when ``[schedule] on_battery = false``; either way it is remembered
        and run as soon as the pause ends or the charger is back."""
        if self.paused():
            if job not in self.held:
                self.held.add(job)
                log.info("job_deferred", job=job, reason="photod is paused: it runs when "
                         "the pause ends")  # fmt: skip
            return True
        if self.cfg.schedule.on_battery or not on_battery_now():
            self.deferred.discard(job)
            return False
        if job not in self.deferred:
            self.deferred.add(job)
            log.info(
                "job_deferred",
                job=job,
                reason="the computer runs on battery ([schedule] on_battery = false); "
                "it runs when mains power is back",
            )
        return True

    def _wake_uploads(self) -> None:
        self.wake("upload")

    def busy(self) -> bool:
        return self.intake.busy()

    def note_full(self, exc: StateDirFull) -> None:
        self.intake.note_full(exc)

    def settle_tick(self) -> None:
        # A batch is done: its copies go on the targets' lists now, not at the next probe
        # (at most once a second, so a trickle of files makes few segments).
        now = self.clock.monotonic()
        if now - self._listed_at > LIST_EVERY and not self.busy() and self.fleet.unlisted():
            self._listed_at = now
            self.fleet.flush()
        if not self.paused():  # else settled files stay in the settler until work resumes
            self.intake.take_due()

    # -- jobs ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        self.intake.reconcile()
        self.scanned()
        if self.reminders is not None and not self.stop_event.is_set():
            self.reminders.round_done()  # a round: the heartbeat, and what stale_after counts

    def probe_targets(self) -> None:
        failpoints.hit("targets_probing")  # a job that fails at each run, for its test
        came_back = False
        for name, state in self.targets.items():
            was = state.available
            if self.fleet.refresh(name) and not was:
                came_back = True
        self.fleet.flush()
        self.snapshot_if_due()
        self.intake.room_again()
        if self.deferred and not on_battery_now():
            for job in sorted(self.deferred):
                log.info("job_resumed", job=job, reason="mains power is back")
                self.wake(job)
            self.deferred.clear()
        if self.held and not self.paused():
            for job in sorted(self.held):
                log.info("job_resumed", job=job, reason="the pause ended")
                self.wake(job)
            self.held.clear()
        if came_back:
            self.wake("retry")
            self.wake("upload")
            self.wake("scrub_owed")

    def retry_pending(self, queued: bool | None = None) -> None:
        """Catch up every available target (only the local ones, or only the remote
        ones, when ``queued`` says which)."""
        for name in self.fleet.available():
            if self.stop_event.is_set():
                return
            if queued is None or self.targets[name].queued == queued:
                self.replicator.replicate_pending(name)
                self._keep_library(name)

    def _keep_library(self, name: str) -> None:
        """The phones' library sidecars and indexes, to a target that may be written."""
        state = self.targets[name]
        if not state.available or state.paused() or self.stop_event.is_set():
            return
        self.keeper.keep(name, state.target, state.records.folder if state.records else "")

    def _wake_catch_up(self) -> None:
        """After a phone's import: its library's sidecars go out with the catch-up."""
        self.wake("retry")
        self.wake("upload")

    def retry_local(self) -> None:
        self.retry_pending(queued=False)

    def upload_pending(self) -> None:
        self.retry_pending(queued=True)

    # -- proof and recovery -----------------------------------------------------------

    def scrub(self) -> None:
        self.scrubber.run()

    def drill(self) -> None:
        from photod import drill, restore  # (weekly: not among what a start loads)

        drill.drill(
            self.catalog,
            restore.open_targets(
                self.catalog, {n: s for n, s in self.targets.items() if s.available}
            ),
            self.cfg.schedule.drill_sample,
            self.stop_event,
            self.cfg.state_dir,
        )

    def snapshot_if_due(self, force: bool = False) -> None:
        """After a batch (the catalog changed and nothing is being ingested), at most
        every SNAPSHOT_EVERY seconds, and never more than a tenth of the time (a large
        catalog takes seconds to copy, check and pack): the catalog and the recovery
        plan on every available target (``snapshotdue``)."""
        at = self.clock.monotonic()
        ready = force or not (self.busy() or self.due.soon(at))  # (before any target's look)
        to = self.due.wanted(frozenset(self.fleet.available()), at, ready)  # (all once changed)
        if not to or not ready:
            return
        if isinstance(self.catalog.problem, CatalogDamaged):
            return  # the daemon is about to settle the catalog: no snapshot of it
        from photod import recovery, snapshot  # (after a batch: not among what a start loads)

        wrote: list[str] = []
        try:
            wrote = snapshot.write_all(
                self.catalog,
                {n: s for n, s in self.targets.items() if n in to},
                self.cfg.state_dir,
                recovery.plan_for(self.cfg, self.catalog, self.me.folder),
                {t.name: recovery.shared_plan(t) for t in self.cfg.targets},
                recovery.kept_config(self.cfg),
                self.due.failing,  # (each that did not answer)
            )
        except CatalogDamaged as exc:  # its copy is not sound: the daemon acts on it
            self.catalog.noticed(exc)
            log.error("snapshot_failed", error=str(exc))
            self.due.failing.update(to)  # (on none: each tried again)
        except (PhotodError, OSError) as exc:
            log.warning("snapshot_failed", error=str(exc))
            self.due.failing.update(to)
        self.due.written(to, at, self.clock.monotonic())
        if wrote:
            self.due.keep(wrote, self.catalog.generation)

    def remind(self) -> None:
        if self.reminders is not None:
            self.reminders.remind()


def _newest(targets: dict[str, TargetState], name: str) -> int | None:
    """The generation of this installation's newest snapshot on target ``name``."""
    records = targets[name].records
    top = next(iter(records.snapshots()), None) if records is not None else None
    return top.generation if top is not None else None


def halt(pipeline: Pipeline) -> None:
    """photod stops within its time (the daemon's stop: systemd kills at 30 s; a run
    cut short): the remote targets' requests in flight are cut too (``stopcut``).
    Never at a run's end: its last snapshot takes what time it needs (cut at 5 s, one
    over a slow uplink never reached a remote target, at any `run --once`)."""
    pipeline.cut.set()
    pipeline.stop_event.set()
