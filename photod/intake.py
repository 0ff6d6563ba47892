"""The watch folders' way in: watchers feed the settler, complete files go to the
ingest workers, one at a time per path.

A Live Photo's movie or a sidecar is named after the key its still got, which exists
only once the still is recorded (it may carry a suffix, or be an older copy's key).
When several workers would take both at once, or the movie comes first, the movie goes
back to the settler while its still is on its way in (being taken, settling, or not
reached yet by a running scan) and is taken again after it.  Each batch (a folder's
files in a scan, the settler's due files) is handed over stills first.  One that came
before its still, with no still beside it yet (a sync client's small files first),
goes back to the settler the same way for up to a minute (``Ingestor._alone``).

A file that meets a full state dir waits in a waiting room and is taken as soon as
there is room again; the reconcile scan finds what arrived while nobody watched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path

from photod.catalog import STATE_MIN_FREE, Catalog
from photod.clock import SYSTEM, Clock
from photod.config import FolderSource, IngestConfig
from photod.errors import (
    CatalogDamaged,
    LeadPending,
    SourceChanged,
    StateDirFull,
    StillArriving,
    Stopping,
    Unloadable,
)
from photod.ingest import Ingestor, Settler, changed_since_read
from photod.logs import log
from photod.media import is_still
from photod.models import IngestResult
from photod.mounts import present
from photod.sources.folder import FolderWatcher, on_events_lost

READ_FAILED = "the file could not be read to its end; tried again at the next scan"


class FolderIntake:
    def __init__(
        self,
        folders: list[FolderSource],
        settings: IngestConfig,
        ingestor: Ingestor,
        catalog: Catalog,
        workers: Executor,
        state_dir: Path,
        stop: threading.Event,
        wake: Callable[[str], None],
        clock: Clock = SYSTEM,
    ) -> None:
        """``workers``: the ingest threads (shared with the phones); ``state_dir``:
        where a full disk makes files wait; ``wake``: runs a scheduled job now (a
        storm of events asks for the reconcile scan)."""
        self.settings = settings
        self.ingestor = ingestor
        ingestor.lead_pending = self.lead_pending  # what is on its way in is known here
        self.catalog = catalog
        self.workers = workers
        self.state_dir = state_dir
        self.stop_event = stop
        self.wake = wake
        self.clock = clock
        self.settler = Settler(settings.settle, clock=clock)
        self.watchers = {
            s.name: FolderWatcher(s.name, s.path, settings.ignore_patterns, self.on_event, s.poll)
            for s in folders
        }
        self.watching = False
        # (source, path) handed to the workers -> when (monotonic): ``waiting_for``
        self._inflight: dict[tuple[str, str], float] = {}
        self._progress = clock.monotonic()  # when an ingest last finished
        self._scanning: set[str] = set()  # sources a reconcile scan is walking now
        # Stills a movie asked for that nobody had heard of, as they were then.
        self._asked: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._rewatching = threading.Lock()  # one (re)start of a watch at a time
        self._gone: set[str] = set()  # watched folders said gone, until they are back
        self._unhook: Callable[[], None] = lambda: None  # undoes on_events_lost
        self._waiting_room: set[tuple[str, str]] = set()  # files that met a full state dir
        self._full = False  # the state dir was full, and no room was seen since

    # -- life cycle --------------------------------------------------------------------

    def watch(self) -> None:
        self.watching = True
        self._unhook = on_events_lost(self._events_lost)
        for watcher in self.watchers.values():
            watcher.start()

    def stop(self) -> None:
        self._unhook()
        for watcher in self.watchers.values():
            watcher.stop()

    def rewatch(self) -> None:
        """Watch again each folder whose watch no longer sees it (deleted and made again,
        a drive mounted over it or taken from under it), and scan it for what came
        meanwhile; say once when a watched folder is gone.  A job of its own every few
        seconds, off the thread that tells systemd the daemon lives: a watch's start walks
        the whole tree (a NAS's library: a minute), and a dead network mount raises."""
        with self._rewatching:
            for name, watcher in self.watchers.items():
                if not self.watching or self.stop_event.is_set():
                    return
                try:
                    self._rewatch(name, watcher)
                except OSError as exc:  # (a dead mount: ENOTCONN, ESTALE, EIO)
                    self._said_gone(name, f"the folder cannot be read ({exc.strerror or exc})")

    def _rewatch(self, name: str, watcher: FolderWatcher) -> None:
        if not present(watcher.root):
            if watcher.observer is not None:
                self._said_gone(name, "the folder is gone (deleted, renamed, or on a drive "
                                "that was unplugged)")  # fmt: skip
            return
        if watcher.observer is not None and not watcher.lost():
            _back(self._gone, name, watcher)  # (its watch may have lived on: away and back)
            return
        if watcher.observer is not None:
            watcher.stop()
            log.info("source_rewatched", source=name, path=str(watcher.root))
        if watcher.start():  # (an OSError here leaves it said gone: once, not each time)
            _back(self._gone, name, watcher)
            self.wake("reconcile")

    def _said_gone(self, name: str, reason: str) -> None:
        if name not in self._gone:
            self._gone.add(name)
            log.warning("source_unavailable", source=name, path=str(self.watchers[name].root),
                        reason=f"{reason}; it is watched again once it is back")  # fmt: skip

    def _events_lost(self) -> None:
        log.warning(
            "source_events_lost",
            detail="the kernel's queue of file events overflowed (a storm of new files); "
            "the watch folders are scanned now, so that nothing is missed",
        )
        self.wake("reconcile")

    def busy(self) -> bool:
        with self._lock:
            return bool(self._inflight) or len(self.settler) > 0

    # -- events and ingest ---------------------------------------------------------------

    def on_event(self, source: str, path: Path, kind: str) -> None:
        if kind == "dir":  # a folder moved or copied in: its files may have no events
            for _, file, _ in self.watchers[source].scan(path):
                self.settler.touch(source, Path(file), "scan")
            return
        self.settler.touch(source, path, kind)

    def take_due(self) -> None:
        """Send every settled file to the workers."""
        ready = self.settler.due(leave=False)  # (its look at each file, outside our lock)
        with self._lock:  # from the settler to the in-flight set at once (``lead_pending``)
            self.settler.discard(ready)
            files = self._claim(ready)
        self._hand_over(files)

    def waiting_for(self) -> float:
        """Seconds the imports have not moved while files wait for them: since the last
        one finished, or since the oldest waiting file was handed over if later (a
        first backup of a large library waits long in the queue, moving all along)."""
        with self._lock:
            oldest = min(self._inflight.values(), default=None)
            if oldest is None:
                return 0.0
            return self.clock.monotonic() - max(oldest, self._progress)

    def lead_pending(self, source: str, lead: Path) -> bool:
        """Whether a still (not recorded) is on its way in: handed to the workers,
        settling, or in a folder a scan has not finished walking.  A still on disk that
        nobody has heard of yet (a polled folder between two looks, a start before
        the first scan) is put in the settler now, once: if it comes back unchanged and
        still not recorded, it was not taken (refused, unreadable) and is not waited
        for again.  (The ingestor asks, for a movie or sidecar named after it.)"""
        key = (source, str(lead))
        with self._lock:
            if key in self._inflight or source in self._scanning or key in self.settler:
                return True
            try:
                st = os.lstat(lead)
            except OSError:
                self._asked.pop(key, None)
                return False  # gone
            looked = (st.st_size, st.st_mtime_ns)
            if self._asked.pop(key, None) == looked:
                return False
            self._asked[key] = looked
            self.settler.touch(source, lead, "scan")
            return True

    def _claim(self, files: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
        """Mark files in flight (under ``_lock``), stills first; a file in flight
        already is looked at again after this run."""
        claimed = []
        for source, path in stills_first(files):
            key = (source, str(path))
            if key in self._inflight:
                self.settler.touch(source, path, "changed")
                continue
            self._inflight[key] = self.clock.monotonic()
            claimed.append((source, path))
        return claimed

    def _hand_over(self, files: list[tuple[str, Path]]) -> None:
        for source, path in files:
            try:
                self.workers.submit(self._ingest, source, path)
            except RuntimeError:  # shutting down
                with self._lock:
                    self._inflight.pop((source, str(path)), None)

    def _ingest(self, source: str, path: Path) -> None:
        try:
            if self.ingestor.ingest(source, path) in (IngestResult.STORED, IngestResult.KNOWN):
                with self._lock:  # a still a movie asked for is recorded: nothing to remember
                    self._asked.pop((source, str(path)), None)
        except SourceChanged:
            log.info("source_changed", source=source, path=self.ingestor.relpath(source, path),
                     detail="changed while being read; taken again once stable")  # fmt: skip
            self.settler.touch(source, path, "changed")
        except (LeadPending, StillArriving):
            # Taken again once its still is in (or the wait for it is over), or once it
            # is whole (the settler's wait; no event: the normal order of things).
            self.settler.touch(source, path, "changed")
        except Stopping:
            pass
        except StateDirFull as exc:
            self._wait_for_room(source, path, exc)
        except (CatalogDamaged, Unloadable) as exc:  # (the daemon settles the catalog;
            # a broken install is said so, no trace: the file is tried at the next scan)
            log.error("ingest_failed", source=source, path=str(path), error=str(exc))
        except OSError as exc:  # (a target's faults are its writer's: this is the file's
            # disk failing as it was read) no traceback: an event, and the next scan's try
            log.error("ingest_failed", source=source, path=str(path),
                      error=exc.strerror or str(exc), detail=READ_FAILED)  # fmt: skip
        except Exception as exc:  # a job boundary: log, keep the daemon alive
            log.exception("ingest_failed", source=source, path=str(path), error=str(exc))
        finally:
            with self._lock:
                self._inflight.pop((source, str(path)), None)
                self._progress = self.clock.monotonic()

    # -- a full state dir ------------------------------------------------------------------

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
            log.error("state_dir_full", state_dir=str(self.state_dir), detail=exc.detail,
                      free=_free(self.state_dir),
                      action="new files wait; they are taken as soon as there is room")  # fmt: skip

    def room_again(self) -> None:
        """Files that waited for room in the state dir go now, if there is room."""
        with self._lock:
            full = self._full
        if not full or _free(self.state_dir) < STATE_MIN_FREE:
            return
        with self._lock:  # (one look: a file that meets the full disk meanwhile stays)
            waiting = [(s, Path(p)) for s, p in self._waiting_room]
            self._waiting_room.clear()
            self._full = False
            files = self._claim(waiting)
        log.info("state_dir_room", state_dir=str(self.state_dir), files=len(waiting),
                 free=_free(self.state_dir))  # fmt: skip
        self._hand_over(files)

    def _submit_all(self, files: list[tuple[str, Path]]) -> None:
        if not files:
            return
        with self._lock:
            claimed = self._claim(files)
        self._hand_over(claimed)

    # -- the reconcile scan ----------------------------------------------------------------

    def reconcile(self) -> None:
        """Scan every watch folder: pick up what arrived while nobody was watching,
        without re-reading files whose path, size and mtime are recorded."""
        for name, watcher in self.watchers.items():
            if self.stop_event.is_set():
                return
            if self.watching and present(watcher.root) and watcher.observer is None:
                with self._rewatching:  # missing at start: watched now that it is here
                    if watcher.observer is None:
                        watcher.start()
            if not present(watcher.root):
                continue
            started, began = self.clock.monotonic(), int(self.clock.time() * 1e9)
            since = self.catalog.meta(f"scanned:{name}")  # (a file changed after: read)
            new = 0
            cutoff = self.clock.time() - self.settings.settle
            with self._lock:
                self._scanning.add(name)
            try:
                folder: list[tuple[str, Path]] = []  # one folder's files: stills first
                where = ""
                with self.catalog.source_stats(name) as known:
                    for _, path, st in watcher.scan(None, known, int(since) if since else None,
                                                    partial(_touched, self.catalog, name),
                                                    _device(self.catalog, name, watcher)):  # fmt: skip
                        if self.stop_event.is_set():
                            return
                        new += 1
                        if (here := os.path.dirname(path)) != where:
                            self._submit_all(folder)
                            folder, where = [], here
                        if st.st_mtime < cutoff:
                            folder.append((name, Path(path)))
                        else:
                            self.settler.touch(name, Path(path), "scan")
                self._submit_all(folder)
                _scanned(self.catalog, name, watcher, began)
            finally:
                with self._lock:
                    self._scanning.discard(name)
            log.info("scan_finished", source=name, files=watcher.scanned, changed=new,
                     gone=watcher.forgotten,
                     duration=round(self.clock.monotonic() - started, 3))  # fmt: skip


def _scanned(catalog: Catalog, name: str, watcher: FolderWatcher, began: int) -> None:
    """A whole scan of a watch folder: when it began (files whose inode changed after
    are looked at again next time), and, when it found files, the device the folder was
    on: an empty folder on another device later is its drive unplugged from its mount
    point (``catchup``), one on the same device a folder emptied."""
    catalog.set_meta(f"scanned:{name}", str(began), note=True)
    if watcher.scanned:
        with contextlib.suppress(OSError):
            catalog.set_meta(f"device:{name}", str(os.stat(watcher.root).st_dev))


def _device(catalog: Catalog, name: str, watcher: FolderWatcher) -> int | None:
    """The watch folder's device, when it is the one its files were found on (the
    scan may drop the rows of files gone from it); None when it is another (the empty
    mount point of a drive unplugged: its files are away, not deleted) or never seen."""
    found_on = catalog.meta(f"device:{name}")
    try:
        device = os.stat(watcher.root).st_dev
    except OSError:
        return None
    return device if found_on is not None and int(found_on) == device else None


def _touched(catalog: Catalog, source: str, rel: str, st: os.stat_result) -> bool:
    """Whether a file the scan would pass over (its size and mtime as recorded, its
    inode changed since the last scan) changed since photod read it."""
    seen = catalog.source_file(source, rel)
    return seen is None or changed_since_read(seen, st)


def stills_first(files: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """A batch of files in the order they are handed over: stills first, so that a
    movie rarely has to wait for its still."""
    return sorted(files, key=lambda f: not is_still(f[1].name))


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _back(gone: set[str], name: str, watcher: FolderWatcher) -> None:
    """A folder said gone is watched again: said, so the next time it goes is."""
    if name in gone:
        gone.discard(name)
        log.info("source_available", source=name, path=str(watcher.root))
