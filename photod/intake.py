"""The watch folders' way in: watchers feed the settler, complete files go to the
ingest workers, one at a time per path.

A still and what belongs with it (its Live Photo movie, its .AAE or .XMP sidecar) are
taken in turn, the still first: the movie is named after the key its still got (which
may carry a suffix, or be an older copy's key), and that key exists only once the
still is recorded.  Several workers taking both at once would name the movie after the
key its still merely wanted: beside another camera's IMG_0001.JPG.

A file that meets a full state dir waits in a waiting room and is taken as soon as
there is room again; the reconcile scan finds what arrived while nobody watched.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from pathlib import Path

from photod.catalog import STATE_MIN_FREE, Catalog
from photod.clock import SYSTEM, Clock
from photod.config import FolderSource, IngestConfig
from photod.errors import CatalogDamaged, SourceChanged, StateDirFull, Stopping
from photod.ingest import Ingestor, Settler
from photod.logs import log
from photod.media import is_still, stem_of
from photod.sources.folder import FolderWatcher, on_events_lost

Family = tuple[str, str, str]  # (source, folder, stem): a still and its companions


def family(source: str, path: Path) -> Family:
    """What a still shares with its movie and sidecars: IMG_0001.JPG, IMG_0001.MOV,
    IMG_0001.AAE and IMG_0001.JPG.xmp are one family."""
    return source, str(path.parent), stem_of(stem_of(path.name))


def stills_first(files: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Files in the order they are handed to the workers: each family together, its
    stills before the rest."""
    return sorted(files, key=lambda f: (family(*f), not is_still(f[1].name), f[1].name))


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
        # Files handed to the workers and not done, by the order they were handed
        # over; a family's files wait for the earlier ones of the family (``_turn``).
        self._inflight: dict[tuple[str, str], int] = {}
        self._families: dict[Family, list[int]] = {}
        self._handed = 0
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._unhook: Callable[[], None] = lambda: None  # undoes on_events_lost
        self._known: dict[str, Future[dict[str, tuple[int, int]]]] = {}  # for the first scan
        self._waiting_room: set[tuple[str, str]] = set()  # files that met a full state dir
        self._full = False  # the state dir was full, and no room was seen since

    # -- life cycle --------------------------------------------------------------------

    def prepare(self) -> None:
        """Start reading what the first scan compares with (for a large library this
        takes a good part of a second: it overlaps the targets' first checks)."""
        self._known = {name: self.workers.submit(self.catalog.source_stats, name)
                       for name in self.watchers}  # fmt: skip

    def watch(self) -> None:
        self.watching = True
        self._unhook = on_events_lost(self._events_lost)
        for watcher in self.watchers.values():
            watcher.start()

    def stop(self) -> None:
        self._unhook()
        for watcher in self.watchers.values():
            watcher.stop()

    def alive(self) -> bool:
        """Every watcher that should run does.  A watcher whose folder went away
        (deleted, or on a drive that was unplugged) lost its thread for a reason: the
        reconcile scan watches it again once it is back."""
        return all(
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
        for source, path in stills_first(self.settler.due()):
            self.submit(source, path)

    def submit(self, source: str, path: Path) -> None:
        """Hand a file to the workers.  (A family's files must be handed over stills
        first, as ``stills_first`` orders them, for the still to be taken first.)"""
        key = (source, str(path))
        with self._lock:
            if key in self._inflight:
                self.settler.touch(source, path, "changed")  # look again after this run
                return
            self._handed += 1
            self._inflight[key] = self._handed
            self._families.setdefault(family(source, path), []).append(self._handed)
        try:
            self.workers.submit(self._ingest, source, path)
        except RuntimeError:  # shutting down
            self._done(source, path)

    def _done(self, source: str, path: Path) -> None:
        with self._lock:
            turn = self._inflight.pop((source, str(path)))
            fam = family(source, path)
            waiting = self._families[fam]
            waiting.remove(turn)
            if not waiting:
                del self._families[fam]
            self._turn.notify_all()

    def _my_turn(self, source: str, path: Path) -> bool:
        """Wait until the files of this one's family handed over before it are done
        (never for a later one: the workers take files in the order they were handed
        over, so the first of a family never waits, and no wait can close a circle).
        False when the daemon stops meanwhile."""
        with self._lock:
            turn = self._inflight[(source, str(path))]
            waiting = self._families[family(source, path)]
            while waiting[0] != turn:
                if self.stop_event.is_set():
                    return False
                self._turn.wait(0.5)
        return True

    def _ingest(self, source: str, path: Path) -> None:
        try:
            if not self._my_turn(source, path):
                return  # stopping: taken at the next start
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
            self._done(source, path)

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
            waiting, full = sorted(self._waiting_room), self._full
        if not full or _free(self.state_dir) < STATE_MIN_FREE:
            return
        with self._lock:
            self._waiting_room.clear()
            self._full = False
        log.info("state_dir_room", state_dir=str(self.state_dir), files=len(waiting),
                 free=_free(self.state_dir))  # fmt: skip
        for source, path in stills_first((s, Path(p)) for s, p in waiting):
            self.submit(source, path)

    # -- the reconcile scan ----------------------------------------------------------------

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
            started = self.clock.monotonic()
            first = self._known.pop(name, None)
            known = first.result() if first is not None else self.catalog.source_stats(name)
            new = 0
            cutoff = self.clock.time() - self.settings.settle
            settled = []
            for _, path, st in watcher.scan(unchanged=known):  # new or changed files only
                if self.stop_event.is_set():
                    return
                new += 1
                if st.st_mtime < cutoff:
                    settled.append((name, Path(path)))
                else:
                    self.settler.touch(name, Path(path), "scan")
            for source, file in stills_first(settled):
                self.submit(source, file)
            log.info(
                "scan_finished",
                source=name,
                files=watcher.scanned,
                changed=new,
                duration=round(self.clock.monotonic() - started, 3),
            )


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
