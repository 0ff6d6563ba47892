"""The running parts wired together: watchers feed the settler, complete files go to
the ingest workers, the replicator copies and proves.  Jobs (``jobs.py``) call the
methods here; ``daemon.py`` starts and stops it."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from photod import policy, snapshot
from photod.activity import Activity
from photod.catalog import STATE_MIN_FREE, Catalog
from photod.config import Config
from photod.devices import DeviceManager
from photod.errors import CatalogDamaged, PhotodError, SourceChanged, StateDirFull, Stopping
from photod.fleet import Fleet, TargetState, build_targets
from photod.ingest import Ingestor, Settler
from photod.logs import log
from photod.recovery import plan_for, shared_plan
from photod.replicate import Replicator
from photod.restore import drill, open_targets
from photod.schedules import interval
from photod.sources.folder import FolderWatcher, on_events_lost
from photod.targets.records import Installation
from photod.throttle import on_battery_now
from photod.verify import Scrubber

if TYPE_CHECKING:
    from photod.notify import Notifier

POLICY_LOOK_MAX = 600.0  # seconds between looks for photos short of the policy, at most
LIST_EVERY = 1.0  # seconds between writes of the targets' lists when copies trickle in


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        me: Installation,
        relist: bool = False,
        *,
        notifier: Notifier | None = None,
        paused_until: float = 0.0,
        trusted: bool = True,
        distrust: Callable[[str], None] | None = None,
    ) -> None:
        """``me``: this installation (its records on the targets); ``relist``: the last
        run did not stop cleanly, so each target's list is compared with the catalog
        in full when it comes.  ``notifier``: who is told of failures (the daemon's);
        ``paused_until``: a `photod pause` that outlives a reload; ``trusted`` and
        ``distrust``: see ``Fleet``."""
        self.cfg = cfg
        self.catalog = catalog
        self.me = me
        self.stop_event = threading.Event()
        self.targets = build_targets(cfg, self.stop_event, me)
        roots = cfg.source_roots()
        self.fleet = Fleet(catalog, self.targets, self.stop_event, cfg.daemon.retry_max,
                           relist, trusted=trusted, distrust=distrust)  # fmt: skip
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
        self.ingestor = Ingestor(cfg, catalog, self.replicator)
        self.settler = Settler(cfg.ingest.settle)
        self.watchers = {
            s.name: FolderWatcher(s.name, s.path, cfg.ingest.ignore_patterns, self.on_event, s.poll)
            for s in cfg.folders
        }
        self.workers = ThreadPoolExecutor(cfg.daemon.workers, thread_name_prefix="ingest")
        self._inflight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.devices = (
            DeviceManager(cfg, catalog, self.ingestor, self.workers, self._can_import)
            if cfg.iphones
            else None
        )
        self.scrubber = Scrubber(
            cfg, catalog, self.replicator, interval(cfg.schedule.scrub), self.stop_event
        )
        self.watching = False
        self._unhook: Callable[[], None] = lambda: None  # undoes on_events_lost
        self._known: dict[str, Future[dict[str, tuple[int, int]]]] = {}  # for the first scan
        self.wake: Callable[[str], None] = lambda job: None  # set by jobs.start
        self._snapshot_at = (-1, 0.0)  # (catalog changes, monotonic time) of the last one
        self._snapshot_took = 0.0  # seconds the last one took
        self._listed_at = 0.0  # when the lists were last written from settle_tick
        self._waiting_room: set[tuple[str, str]] = set()  # files that met a full state dir
        self._full = False  # the state dir was full, and no room was seen since
        self._policy_looked = -POLICY_LOOK_MAX  # when `remind` last grouped the catalog
        # `photod pause`: until this time.time() nothing heavy starts (imports, copies,
        # scans, scrubs, drills); events still arrive and wait.  Set by the daemon.
        self.paused_until = paused_until
        self.notifier = notifier
        self.activity = Activity()  # the jobs running now (`photod status`)
        # Scheduled scrubs and drills that fell due on battery ([schedule] on_battery =
        # false): each runs when the probe sees mains power again.
        self.deferred: set[str] = set()

    # -- life cycle --------------------------------------------------------------------

    def start(self, watch: bool = True) -> None:
        self.watching = watch
        # What the first scan compares with is read from the catalog while the targets
        # are checked and the folders' watches are set up (for a large library both
        # take a good part of a second).
        self._known = {name: self.workers.submit(self.catalog.source_stats, name)
                       for name in self.watchers}  # fmt: skip
        for name in self.targets:
            self.fleet.refresh(name)
        if watch:
            self._unhook = on_events_lost(self._events_lost)
            for watcher in self.watchers.values():
                watcher.start()
            if self.devices is not None:
                self.devices.start()

    def stop(self, snapshot: bool = True) -> None:
        """Stop everything; a copy in flight is rolled back (its temporary removed).
        ``snapshot``: write the catalog's last snapshot (not when it is suspect)."""
        self.stop_event.set()
        if self.devices is not None:
            self.devices.stop()
        self._unhook()
        for watcher in self.watchers.values():
            watcher.stop()
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
        """Every thread that should run does (WATCHDOG=1 is sent only then).  A watcher
        whose folder went away (deleted, or on a drive that was unplugged) lost its
        thread for a reason: the reconcile scan watches it again once it is back."""
        devices_ok = self.devices is None or not self.watching or self.devices.alive()
        return devices_ok and all(
            w.alive() or not w.root.is_dir()
            for w in self.watchers.values()
            if w.observer is not None
        )

    def _events_lost(self) -> None:
        log.warning(
            "source_events_lost",
            detail="the kernel's queue of file events overflowed (a storm of new files); "
            "the watch folders are scanned now, so that nothing is missed",
        )
        self.wake("reconcile")

    def _can_import(self) -> bool:
        """A phone import starts only when some target can take the files."""
        return not self.paused() and bool(self.fleet.available())

    def paused(self) -> bool:
        return time.time() < self.paused_until

    def heavy_waits(self, job: str) -> bool:
        """Whether a scheduled scrub or drill must not start now: `photod pause`, or
        the battery when ``[schedule] on_battery = false`` (then it is remembered and
        run as soon as the charger is back)."""
        if self.paused():
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
        with self._lock:
            return bool(self._inflight) or len(self.settler) > 0

    # -- events and ingest --------------------------------------------------------------

    def on_event(self, source: str, path: Path, kind: str) -> None:
        if kind == "dir":  # a folder moved or copied in: its files may have no events
            for _, file, _ in self.watchers[source].scan(path):
                self.settler.touch(source, Path(file), "scan")
            return
        self.settler.touch(source, path, kind)

    def settle_tick(self) -> None:
        # A batch is done: its copies go on the targets' lists now, not at the next probe
        # (at most once a second, so a trickle of files makes few segments).
        now = time.monotonic()
        if now - self._listed_at > LIST_EVERY and not self.busy() and self.fleet.unlisted():
            self._listed_at = now
            self.fleet.flush()
        if self.paused():
            return  # settled files stay in the settler until work resumes
        for source, path in self.settler.due():
            self.submit(source, path)

    def submit(self, source: str, path: Path) -> None:
        key = (source, str(path))
        with self._lock:
            if key in self._inflight:
                self.settler.touch(source, path, "changed")  # look again after this run
                return
            self._inflight.add(key)
        try:
            self.workers.submit(self._ingest, source, path)
        except RuntimeError:  # shutting down
            with self._lock:
                self._inflight.discard(key)

    def _ingest(self, source: str, path: Path) -> None:
        try:
            self.ingestor.ingest(source, path)
        except SourceChanged:
            log.info(
                "source_changed",
                source=source,
                path=self.ingestor.relpath(source, path),
                detail="changed while being read; taken again once stable",
            )
            self.settler.touch(source, path, "changed")
        except Stopping:
            pass
        except StateDirFull as exc:
            self._wait_for_room(source, path, exc)
        except CatalogDamaged as exc:  # the daemon stops and settles the catalog
            log.error("ingest_failed", source=source, path=str(path), error=str(exc))
        except Exception as exc:  # a job boundary: log, keep the daemon alive
            log.exception("ingest_failed", source=source, path=str(path), error=str(exc))
        finally:
            with self._lock:
                self._inflight.discard((source, str(path)))

    def _wait_for_room(self, source: str, path: Path, exc: StateDirFull) -> None:
        """The state dir is full: the file waits, and is taken as soon as the probe sees
        room again, not at the next rescan."""
        with self._lock:
            self._waiting_room.add((source, str(path)))
        self.note_full(exc)

    def note_full(self, exc: StateDirFull) -> None:
        """Say once (until there is room again) that the state dir is full; the jobs
        and the files that met it wait."""
        with self._lock:
            first, self._full = not self._full, True
        if first:
            log.error("state_dir_full", state_dir=str(self.cfg.state_dir), detail=exc.detail,
                      free=_free(self.cfg.state_dir),
                      action="new files wait; they are taken as soon as there is room")  # fmt: skip

    def _room_again(self) -> None:
        """Files that waited for room in the state dir go now, if there is room."""
        with self._lock:
            waiting, full = sorted(self._waiting_room), self._full
        if not full or _free(self.cfg.state_dir) < STATE_MIN_FREE:
            return
        with self._lock:
            self._waiting_room.clear()
            self._full = False
        log.info("state_dir_room", state_dir=str(self.cfg.state_dir), files=len(waiting),
                 free=_free(self.cfg.state_dir))  # fmt: skip
        for source, path in waiting:
            self.submit(source, Path(path))

    def state_full(self) -> int:
        """How many files wait for room in the state dir (for `photod status`)."""
        with self._lock:
            return len(self._waiting_room)

    # -- jobs ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Scan every watch folder: pick up what arrived while nobody was watching,
        without re-reading files whose path, size and mtime are recorded."""
        for name, watcher in self.watchers.items():
            if self.stop_event.is_set():
                return
            if self.watching and watcher.root.is_dir() and not watcher.alive():
                # Missing at start, or its watch thread ended when the folder went away
                # (a drive unplugged, a folder renamed back): watch it again.
                if watcher.observer is not None:
                    watcher.stop()
                    log.info("source_rewatched", source=name, path=str(watcher.root))
                watcher.start()
            if not watcher.root.is_dir():
                continue
            started = time.monotonic()
            first = self._known.pop(name, None)
            known = first.result() if first is not None else self.catalog.source_stats(name)
            new = 0
            cutoff = time.time() - self.cfg.ingest.settle
            for _, path, st in watcher.scan(unchanged=known):  # new or changed files only
                if self.stop_event.is_set():
                    return
                new += 1
                if st.st_mtime < cutoff:
                    self.submit(name, Path(path))
                else:
                    self.settler.touch(name, Path(path), "scan")
            log.info(
                "scan_finished",
                source=name,
                files=watcher.scanned,
                changed=new,
                duration=round(time.monotonic() - started, 3),
            )

    def probe_targets(self) -> None:
        came_back = False
        for name, state in self.targets.items():
            was = state.available
            if self.fleet.refresh(name) and not was:
                came_back = True
        self.fleet.flush()
        self.snapshot_if_due()
        self._room_again()
        if self.deferred and not on_battery_now():
            for job in sorted(self.deferred):
                log.info("job_resumed", job=job, reason="mains power is back")
                self.wake(job)
            self.deferred.clear()
        if came_back:
            self.wake("retry")
            self.wake("upload")

    def retry_pending(self, queued: bool | None = None) -> None:
        """Catch up every available target (only the local ones, or only the remote
        ones, when ``queued`` says which)."""
        for name in self.fleet.available():
            if self.stop_event.is_set():
                return
            if queued is None or self.targets[name].queued == queued:
                self.replicator.replicate_pending(name)

    def retry_local(self) -> None:
        self.retry_pending(queued=False)

    def upload_pending(self) -> None:
        self.retry_pending(queued=True)

    # -- proof and recovery -----------------------------------------------------------

    def scrub(self) -> None:
        self.scrubber.run()

    def drill(self) -> None:
        drill(
            self.catalog,
            open_targets(self.catalog, {n: s for n, s in self.targets.items() if s.available}),
            self.cfg.schedule.drill_sample,
            self.stop_event,
            self.cfg.state_dir,
        )

    def snapshot_if_due(self, force: bool = False) -> None:
        """After a batch (the catalog changed and nothing is being ingested), at most
        every SNAPSHOT_EVERY seconds, and never more than a tenth of the time (a large
        catalog takes seconds to copy, check and pack): the catalog and the recovery
        plan on every available target."""
        changes, at = self.catalog.changes(), time.monotonic()
        if changes == self._snapshot_at[0] or not self.fleet.available():
            return
        every = max(snapshot.SNAPSHOT_EVERY, 10 * self._snapshot_took)
        if not force and (self.busy() or at - self._snapshot_at[1] < every):
            return
        if isinstance(self.catalog.problem, CatalogDamaged):
            return  # the daemon is about to settle the catalog: no snapshot of it
        try:
            snapshot.write_all(
                self.catalog,
                self.targets,
                self.cfg.state_dir,
                plan_for(self.cfg, self.catalog, self.me.folder),
                {t.name: shared_plan(t) for t in self.cfg.targets},
            )
        except CatalogDamaged as exc:  # its copy is not sound: the daemon acts on it
            self.catalog.noticed(exc)
            log.error("snapshot_failed", error=str(exc))
        except (PhotodError, OSError) as exc:
            log.warning("snapshot_failed", error=str(exc))
        self._snapshot_took = time.monotonic() - at
        self._snapshot_at = (self.catalog.changes(), at)

    def remind(self) -> None:
        """The reminders no single event triggers: a target away longer than its
        ``expect_every``, and photos short of the policy for longer than ``grace``."""
        if self.notifier is None:
            return
        from photod.notify import Message

        now = datetime.now(UTC)
        for key, title, body in _targets_away(self.cfg, self.targets, self.catalog, now):
            self.notifier.send(Message(key, title, body))
        # The policy look groups every asset: a grace of a day needs it every few
        # minutes, not every 15 s (at a million assets that would be an idle load).
        grace = self.cfg.notify.grace
        if time.monotonic() - self._policy_looked < min(max(grace / 4, 0.0), POLICY_LOOK_MAX):
            return
        self._policy_looked = time.monotonic()
        cutoff = (now - timedelta(seconds=grace)).isoformat(timespec="seconds")
        rule, infos = self.cfg.policy.rule(), self.cfg.target_infos()
        short = sum(n for held, n in self.catalog.holdings_before(cutoff.replace("+00:00", "Z"))
                    if not policy.evaluate(rule, held, infos).compliant)  # fmt: skip
        if short:
            self.notifier.send(Message(
                "policy",
                "photod: photos are not protected",
                f"{short} photo(s) have been short of the 3-2-1 policy for more than "
                f"{_span(self.cfg.notify.grace)}; `photod status` says what is missing",
            ))  # fmt: skip


def _targets_away(
    cfg: Config, targets: dict[str, TargetState], catalog: Catalog, now: datetime
) -> Iterator[tuple[str, str, str]]:
    """(key, title, text) of a reminder for each target away longer than its
    ``expect_every``."""
    for t in cfg.targets:
        state = targets[t.name]
        if t.expect_every is None or state.available:
            continue
        seen = catalog.last_seen(t.name)
        since = (
            datetime.fromisoformat(seen.replace("Z", "+00:00"))
            if seen
            else datetime.fromtimestamp(state.since, UTC)
        )
        away = (now - since).total_seconds()
        if away > t.expect_every:
            kind = {"external": "external drive", "nas": "NAS"}.get(str(t.media), "target")
            yield (f"away:{t.name}", f"photod: {kind} '{t.name}' missing",
                   f"the {kind} '{t.name}' has not been connected for {_span(away)}; "
                   f"{state.reason}")  # fmt: skip


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds"
