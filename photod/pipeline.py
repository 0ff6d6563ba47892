"""The running parts wired together: watchers feed the settler, complete files go to
the ingest workers, the replicator copies and proves.  Jobs (``jobs.py``) call the
methods here; ``daemon.py`` starts and stops it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from photod.catalog import Catalog
from photod.config import Config
from photod.devices import DeviceManager
from photod.errors import SourceChanged, Stopping
from photod.ingest import Ingestor, Settler
from photod.logs import log
from photod.models import Media
from photod.replicate import Replicator, TargetState
from photod.sources.folder import FolderWatcher
from photod.targets.local import LocalTarget


def build_targets(cfg: Config) -> dict[str, TargetState]:
    return {
        t.name: TargetState(
            LocalTarget(
                t.name, t.path, t.creates_root, t.reserve, relocatable=t.media is not Media.INTERNAL
            ),
            t.info(),
        )
        for t in cfg.targets
    }


class Pipeline:
    def __init__(self, cfg: Config, catalog: Catalog) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.stop_event = threading.Event()
        self.targets = build_targets(cfg)
        roots = cfg.source_roots()
        self.replicator = Replicator(
            catalog,
            self.targets,
            cfg.policy.rule(),
            self.stop_event,
            roots,
            cfg.daemon.retry_interval,
            cfg.daemon.retry_max,
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
        self.watching = False
        self.wake: Callable[[str], None] = lambda job: None  # set by jobs.start

    # -- life cycle --------------------------------------------------------------------

    def start(self, watch: bool = True) -> None:
        self.watching = watch
        for name in self.targets:
            self.replicator.refresh(name)
        if watch:
            for watcher in self.watchers.values():
                watcher.start()
            if self.devices is not None:
                self.devices.start()

    def stop(self) -> None:
        """Stop everything; a copy in flight is rolled back (its temporary removed)."""
        self.stop_event.set()
        if self.devices is not None:
            self.devices.stop()
        for watcher in self.watchers.values():
            watcher.stop()
        self.workers.shutdown(wait=True, cancel_futures=True)
        self.replicator.close()

    def alive(self) -> bool:
        devices_ok = self.devices is None or not self.watching or self.devices.alive()
        return devices_ok and all(
            w.alive() for w in self.watchers.values() if w.observer is not None
        )

    def _can_import(self) -> bool:
        """A phone import starts only when some target can take the files."""
        return bool(self.replicator.available())

    def busy(self) -> bool:
        with self._lock:
            return bool(self._inflight) or len(self.settler) > 0

    # -- events and ingest --------------------------------------------------------------

    def on_event(self, source: str, path: Path, kind: str) -> None:
        if kind == "dir":  # a folder moved or copied in: its files may have no events
            for file, _ in self.watchers[source].scan(path):
                self.settler.touch(source, file, "scan")
            return
        self.settler.touch(source, path, kind)

    def settle_tick(self) -> None:
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
        except Exception as exc:  # a job boundary: log, keep the daemon alive
            log.exception("ingest_failed", source=source, path=str(path), error=str(exc))
        finally:
            with self._lock:
                self._inflight.discard((source, str(path)))

    # -- jobs ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Scan every watch folder: pick up what arrived while nobody was watching,
        without re-reading files whose path, size and mtime are recorded."""
        for name, watcher in self.watchers.items():
            if self.stop_event.is_set():
                return
            if self.watching and watcher.observer is None:
                watcher.start()  # the folder was missing at start (a drive, a mount)
            if not watcher.root.is_dir():
                continue
            started = time.monotonic()
            known = self.catalog.source_files(name)
            files = new = 0
            cutoff = time.time() - self.cfg.ingest.settle
            for path, st in watcher.scan():
                if self.stop_event.is_set():
                    return
                files += 1
                rel = path.relative_to(watcher.root).as_posix()
                seen = known.get(rel)
                if seen is not None and (seen.size, seen.mtime_ns) == (st.st_size, st.st_mtime_ns):
                    continue
                new += 1
                if st.st_mtime < cutoff:
                    self.submit(name, path)
                else:
                    self.settler.touch(name, path, "scan")
            log.info(
                "scan_finished",
                source=name,
                files=files,
                changed=new,
                duration=round(time.monotonic() - started, 3),
            )

    def probe_targets(self) -> None:
        came_back = False
        for name, state in self.targets.items():
            was = state.available
            if self.replicator.refresh(name) and not was:
                came_back = True
        if came_back:
            self.wake("retry")

    def retry_pending(self) -> None:
        for name in self.replicator.available():
            if self.stop_event.is_set():
                return
            self.replicator.replicate_pending(name)
