"""The watch folders' watches: each set once its folder's start-up scan has listed it,
set again when the folder comes back or is made again, and said gone once when it goes.

At a start the scan goes first: setting a watch walks the whole tree (0.2 s of CPU at
100,000 files), and the scan is what finds what is new.  A folder the scan listed that
changed before its watch was set is scanned once more at once: a file that landed there
meanwhile was seen by neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from photod.logs import log
from photod.mounts import present
from photod.sources.folder import FolderWatcher, Looked, changed_after, on_events_lost


class Watches:
    def __init__(
        self,
        watchers: dict[str, FolderWatcher],
        stop: threading.Event,
        wake: Callable[[str], None],
        scanning: Callable[[str], bool],
    ) -> None:
        """``wake``: runs a scheduled job now (a reconcile scan); ``scanning``: whether
        a reconcile scan walks a folder now."""
        self.watchers = watchers
        self.stop_event = stop
        self.wake = wake
        self.scanning = scanning
        self._lock = threading.Lock()  # one (re)start of a watch at a time
        self._gone: set[str] = set()  # watched folders said gone, until they are back
        self._unhook: Callable[[], None] = lambda: None  # undoes on_events_lost
        self._unarmed: set[str] = set()  # folders whose watch waits for their first scan

    def start(self, at_once: bool) -> None:
        """Watch every folder once its start-up scan has listed it (``after_scan``), or
        ``at_once`` (paused: no scan runs now)."""
        self._unhook = on_events_lost(self._events_lost)
        if at_once:
            for watcher in self.watchers.values():
                watcher.start()
        else:
            self._unarmed = set(self.watchers)

    def waiting(self, name: str) -> bool:
        """Whether the folder's watch waits for its start-up scan."""
        return name in self._unarmed

    def after_scan(self, name: str, looked: Looked | None) -> None:
        """Set the folder's watch after its start-up scan (``looked``: the folders that
        scan listed; None when it could not run), and have the folder scanned once more
        if one of them changed before the watch was set."""
        with self._lock:
            self._arm(name)
        if looked and (changed := changed_after(looked)):
            log.info("source_changed_at_start", source=name, folders=len(changed),
                     detail="files came while its watch was being set up: the folder is "
                     "scanned once more")  # fmt: skip
            self.wake("reconcile")  # (once this one ends: never two at once)

    def ensure(self, name: str) -> None:
        """Watch a folder missing at the start, now that it is here."""
        watcher = self.watchers[name]
        if watcher.observer is None:
            with self._lock:
                if watcher.observer is None:
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
        with self._lock:
            for name, watcher in self.watchers.items():
                if self.stop_event.is_set():
                    return
                try:
                    self._rewatch(name, watcher)
                except OSError as exc:  # (a dead mount: ENOTCONN, ESTALE, EIO)
                    self._said_gone(name, f"the folder cannot be read ({exc.strerror or exc})")

    def _arm(self, name: str) -> None:
        """(with ``_lock``) The first start of a folder's watch."""
        self._unarmed.discard(name)
        try:
            if self.watchers[name].observer is None:
                self.watchers[name].start()  # (says so when the folder is not there)
        except OSError as exc:  # (a dead mount: the rewatch job tries again)
            self._said_gone(name, f"the folder cannot be read ({exc.strerror or exc})")

    def _rewatch(self, name: str, watcher: FolderWatcher) -> None:
        if name in self._unarmed:
            if self.scanning(name):
                return  # its start-up scan sets its watch when it ends
            self._arm(name)  # (no start-up scan ran: paused, or it failed)
            if watcher.observer is not None:
                self.wake("reconcile")
            return
        if not present(watcher.root):
            if watcher.observer is not None:
                self._said_gone(name, "the folder is gone (deleted, renamed, or on a drive "
                                "that was unplugged)")  # fmt: skip
            return
        if watcher.observer is not None and not watcher.lost():
            self._back(name, watcher)  # (its watch may have lived on: away and back)
            return
        if watcher.observer is not None:
            watcher.stop()
            log.info("source_rewatched", source=name, path=str(watcher.root))
        if watcher.start():  # (an OSError here leaves it said gone: once, not each time)
            self._back(name, watcher)
            self.wake("reconcile")

    def _said_gone(self, name: str, reason: str) -> None:
        if name not in self._gone:
            self._gone.add(name)
            log.warning("source_unavailable", source=name, path=str(self.watchers[name].root),
                        reason=f"{reason}; it is watched again once it is back")  # fmt: skip

    def _back(self, name: str, watcher: FolderWatcher) -> None:
        """A folder said gone is watched again: said, so the next time it goes is."""
        if name in self._gone:
            self._gone.discard(name)
            log.info("source_available", source=name, path=str(watcher.root))

    def _events_lost(self) -> None:
        log.warning(
            "source_events_lost",
            detail="the kernel's queue of file events overflowed (a storm of new files); "
            "the watch folders are scanned now, so that nothing is missed",
        )
        self.wake("reconcile")
