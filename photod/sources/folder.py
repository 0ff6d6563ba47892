"""Watch folders with watchdog (the only module that imports it), and scan them.

inotify events are hints (they are lost on queue overflow, sleep, unmount): a periodic
scan is the source of truth.  Where inotify watches run out, or the folder is on a
network filesystem that reports no remote changes, the folder is polled instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserverVFS

from photod.logs import log
from photod.media import ignore_matcher
from photod.mounts import NETWORK_FS, mount_of, present
from photod.paths import other_form

OnEvent = Callable[[str, Path, str], None]  # (source name, path, event kind)
BATCH = 500  # a large folder's files looked up in the catalog at once
PART = 4096  # a folder's entries listed at once (a folder of fewer: its range is read)


class Known(Protocol):
    """What the catalog holds of some of a folder's files: path -> (size, mtime_ns);
    with ``folder``, the paths are all of that folder's files.  ``gone``: the rows
    a complete listing of a folder lacks (``Catalog.source_stats``); ``forget``: drops
    rows."""

    def __call__(
        self, paths: list[str], folder: str | None = None
    ) -> Mapping[str, tuple[int, int]]: ...

    def gone(self, folder: str, dirs: list[str], found: int | None) -> Iterable[str]: ...

    def forget(self, paths: list[str]) -> int: ...


# The events photod acts on.  Asking inotify for these only keeps the kernel from
# queueing an open and a close for every file and folder anyone reads, photod's own
# scans and scrubs among them: at 100,000 files that was a third of a start-up scan,
# and a storm fills the queue later.
WANTED = [FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent, FileModifiedEvent,
          FileClosedEvent]  # fmt: skip


class _OverflowTap(logging.Handler):
    """watchdog tells that an inotify queue overflowed (so that events were lost: a
    storm of new files, or a slow reader) only in its log.  This turns that line into
    a call, so that the folders are scanned at once instead of at the next rescan."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "queue overflowed" in str(record.msg) and "events were lost" in str(record.msg):
            self.callback()


def on_events_lost(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` whenever the kernel dropped events of a watched folder;
    returns what undoes it."""
    tap = _OverflowTap(callback)
    logger = logging.getLogger("watchdog.observers.inotify_c")
    logger.addHandler(tap)
    return lambda: logger.removeHandler(tap)


class _Handler(FileSystemEventHandler):
    def __init__(self, source: str, on_event: OnEvent, sees_closes: bool) -> None:
        self.source = source
        self.on_event = on_event
        self.sees_closes = sees_closes

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                where = event.dest_path if event.event_type == "moved" else event.src_path
                self.on_event(self.source, Path(os.fsdecode(where)), "dir")
            return
        kind = event.event_type
        if kind == "moved":
            self.on_event(self.source, Path(os.fsdecode(event.dest_path)), "moved")
        elif kind == "closed":
            self.on_event(self.source, Path(os.fsdecode(event.src_path)), "closed")
        elif kind == "created":
            self.on_event(self.source, Path(os.fsdecode(event.src_path)), "created")
        elif kind == "modified":
            changed = "modified" if self.sees_closes else "changed"
            self.on_event(self.source, Path(os.fsdecode(event.src_path)), changed)
        # 'opened' and 'closed_no_write' come from readers, photod among them: ignored.


class FolderWatcher:
    def __init__(
        self,
        name: str,
        root: Path,
        ignore: tuple[str, ...],
        on_event: OnEvent,
        force_poll: bool = False,
        poll_interval: float = 5.0,
    ) -> None:
        self.name = name
        self.root = root
        self.ignore = ignore
        self.on_event = on_event
        self.force_poll = force_poll
        self.poll_interval = poll_interval
        self.observer: object | None = None
        self.polling = False
        self.unreadable: set[str] = set()  # folders and files a scan could not read (told once)
        self.scanned = 0  # files the last scan saw
        self.forgotten = 0  # rows of files gone from it the last scan dropped
        self.watched: tuple[int, int] | None = None  # (st_dev, st_ino) of the root watched

    def start(self) -> bool:
        """Start watching; False (and an event) when the folder is not there yet."""
        if not present(self.root):
            twin = other_form(self.root)  # (a Mac's name for it)
            log.warning(
                "source_unavailable",
                source=self.name,
                path=str(self.root),
                reason=f"folder does not exist; {twin}{'; ' if twin else ''}it is watched "
                "once it appears",
            )
            return False
        _, fstype = mount_of(self.root)
        why = ""
        if self.force_poll:
            why = "poll = true in the config"
        elif fstype in NETWORK_FS:
            why = f"network filesystem ({fstype}) reports no remote changes"
        if not why:
            try:
                self._start(Observer(), sees_closes=True)
                return True
            except OSError as exc:
                why = (
                    f"inotify limit reached ({exc.strerror or exc}); raise the sysctls "
                    "fs.inotify.max_user_watches and fs.inotify.max_user_instances "
                    "to watch it with events"
                )
        # Its snapshots stat each entry without following links (watchdog's own poller
        # follows them: two links to "." made every poll a walk without end, and the
        # daemon died of it before it started).
        poller = PollingObserverVFS(os.lstat, os.scandir, polling_interval=self.poll_interval)
        self._start(poller, sees_closes=False)
        self.polling = True
        log.warning("source_polling", source=self.name, path=str(self.root), reason=why)
        return True

    def _start(self, observer: object, sees_closes: bool) -> None:
        handler = _Handler(self.name, self.on_event, sees_closes)
        try:
            observer.schedule(  # type: ignore[attr-defined]
                handler, str(self.root), recursive=True, event_filter=WANTED
            )
            observer.start()  # type: ignore[attr-defined]
        except OSError:
            observer.stop()  # type: ignore[attr-defined]
            raise
        self.observer = observer
        self.watched = _identity(self.root)

    def lost(self) -> bool:
        """The folder is there but this watch no longer sees it: its thread ended (the
        folder was deleted and made again: a sync client resetting it), or the folder
        at its path is another now (a drive mounted over it, or unmounted from under it,
        leaves the watch on a folder nothing writes to)."""
        if self.observer is None:
            return False
        now = _identity(self.root)
        return now is not None and (not self.alive() or now != self.watched)

    def alive(self) -> bool:
        """The observer thread and each of its emitter threads are running."""
        obs: Any = self.observer
        return obs is not None and bool(obs.is_alive()) and all(e.is_alive() for e in obs.emitters)

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()  # type: ignore[attr-defined]
            self.observer.join(timeout=5)  # type: ignore[attr-defined]
            self.observer = None
            self.watched = None

    def scan(
        self,
        top: Path | None = None,
        unchanged: Known | None = None,
        since_ns: int | None = None,
        touched: Callable[[str, os.stat_result], bool] = lambda rel, st: True,
        device: int | None = None,
    ) -> Iterator[tuple[str, str, os.stat_result]]:
        """(path relative to the folder, full path, lstat) of every file under the
        folder (or under ``top`` in it), without following symbolic links to
        directories (no loops, nothing from outside).  Files whose (size, mtime_ns) is
        the one ``unchanged`` gives (the catalog's, asked a folder's files at a time:
        a large library's every file was held at once, a million: 300 MB) are
        counted but not yielded, unless
        their inode changed after ``since_ns`` (the last scan's start: its ctime moved,
        bytes written over it keeping size and mtime?) and ``touched(rel, st)`` says
        it changed since it was read.  After the scan,
        ``self.scanned`` is the number of files seen.

        ``device``: the folder's, when the catalog's rows of files gone from it may be
        dropped (``_forget``): only those a folder's complete listing lacks, and not
        there when looked for again; ``self.forgotten`` says how many.

        A reconcile asks this of every file of a large library at every start, so the
        loop stays lean: strings, the entries' own stats, and the ignore patterns only
        for what is not known already."""
        ignored = ignore_matcher(tuple(self.ignore))
        since = since_ns if since_ns is not None else 1 << 62
        start = top or self.root
        rel0 = os.path.relpath(start, self.root).replace(os.sep, "/")
        stack = [(str(start), "" if rel0 == "." else rel0 + "/")]
        seen = self.forgotten = 0
        sweep = unchanged if device is not None else None
        try:
            while stack:
                folder, prefix = stack.pop()
                listed: list[bool] = []  # (made true once the whole folder is listed)
                dirs: list[str] = []  # its sub-folders' names
                found, whole = 0, True  # (found: rows of its files, when asked by name)
                for part, whole in self._parts(folder, listed):
                    step = PART if whole else BATCH  # (whole: its range is read, in order)
                    for start_at in range(0, len(part), step):
                        files = []
                        for entry in part[start_at : start_at + step]:
                            name = entry.name
                            try:
                                if entry.is_dir(follow_symlinks=False):
                                    dirs.append(name)
                                    if not ignored(name):
                                        stack.append((entry.path, f"{prefix}{name}/"))
                                    continue
                                st = entry.stat(follow_symlinks=False)
                            except OSError as exc:  # (in a folder it may list but not enter,
                                self._unstatable(entry.path, exc)  # or past the path limit)
                                continue
                            files.append((prefix + name, name, entry.path, st))
                        known = (
                            unchanged([f[0] for f in files], prefix if whole else None)
                            if unchanged and files
                            else {}
                        )
                        found += len(known)
                        for rel, name, path, st in files:
                            if known.get(rel) == (st.st_size, st.st_mtime_ns) and (
                                st.st_ctime_ns <= since or not touched(rel, st)
                            ):
                                seen += 1
                                continue
                            if ignored(name):
                                continue
                            seen += 1
                            yield rel, path, st
                if sweep and listed and device is not None:
                    self._forget(sweep, folder, prefix, dirs, None if whole else found, device)
        finally:
            self.scanned = seen

    def _forget(
        self, rows: Known, folder: str, prefix: str, dirs: list[str], found: int | None, dev: int
    ) -> None:
        """Drop the catalog's rows of a folder's files (and sub-folders) that its
        complete listing lacked and that are not there now either, while the folder is
        on the watch folder's device still (a drive unplugged mid-scan leaves an empty
        mount point: its files are away, not gone).  A file it may not look at stays."""
        doomed: list[str] = []
        for rel in rows.gone(prefix, dirs, found):
            try:
                os.lstat(os.path.join(self.root, rel))
                continue
            except (FileNotFoundError, NotADirectoryError):
                doomed.append(rel)
            except OSError:
                continue
            if len(doomed) >= BATCH:
                self._drop(rows, doomed, folder, dev)
        if doomed:
            self._drop(rows, doomed, folder, dev)

    def _drop(self, rows: Known, doomed: list[str], folder: str, dev: int) -> None:
        ident = _identity(Path(folder))
        if ident is not None and ident[0] == dev:
            self.forgotten += rows.forget(doomed)
        doomed.clear()

    def _parts(
        self, folder: str, listed: list[bool]
    ) -> Iterator[tuple[list[os.DirEntry[str]], bool]]:
        """A folder's entries, ``PART`` at a time (one of 100,000 held whole was 10 MB),
        and whether they are every one of them; ``listed`` gets a True once every one
        was (a listing that fails halfway is no list of what is left).  A folder it
        cannot list is said once, not at every scan."""
        try:
            listing = os.scandir(folder)
            with listing:
                part = list(islice(listing, PART))
                self.unreadable.discard(folder)
                yield part, len(part) < PART
                while len(part) == PART:
                    part = list(islice(listing, PART))
                    yield part, False
            listed.append(True)
        except OSError as exc:
            if folder not in self.unreadable:
                self.unreadable.add(folder)
                log.warning("folder_unreadable", source=self.name, path=folder,
                            error=exc.strerror or str(exc))  # fmt: skip

    def _unstatable(self, path: str, exc: OSError) -> None:
        """A file the scan sees but cannot even look at: never backed up while so,
        and said once (as a folder it cannot read is), not passed over in silence."""
        if path in self.unreadable:
            return
        self.unreadable.add(path)
        log.warning("file_unreadable", source=self.name, path=path,
                    error=exc.strerror or str(exc), detail=NOT_BACKED_UP)  # fmt: skip


NOT_BACKED_UP = "not backed up while photod cannot read it; tried again at every scan"


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino
