"""Decide what to take from a watch folder, and when.

``Settler`` holds paths that changed until they are complete (closed after writing, or
size and mtime unchanged for the settle time).  ``Ingestor`` takes one complete file:
skips what is not media or already known, reads what it is (probe), decides where it
goes (layout), and hands it to the replicator.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from photod import failpoints
from photod.catalog import Catalog
from photod.config import Config
from photod.errors import SourceChanged
from photod.logs import log
from photod.media import companion_key, is_ignored, kind_from_name, layout_key, stem_of
from photod.models import Kind, Probe
from photod.probe import HEAD_BYTES, probe
from photod.replicate import NewFile, Replicator
from photod.targets.base import CHUNK

SPARSE_MIN = 64 * 1024 * 1024  # files this long or longer are checked for holes


@dataclass
class _Watch:
    path: Path
    size: int
    mtime_ns: int
    changed_at: float
    closed: bool  # a writer closed it (inotify): complete unless it changes again
    writing: bool  # modified since the last close (inotify): a writer still has it open


class Settler:
    """Paths waiting to be complete.  Events are hints: each tick re-stats every path.

    A file is due when a writer closed it and it stayed unchanged for a moment, or when
    its size and mtime stayed unchanged for ``settle`` seconds.  Where the watcher sees
    opens and closes (inotify), a file still open for writing waits up to ``open_wait``
    seconds even when quiet: a sync client may pause mid-file.
    """

    CLOSED_GRACE = 0.3

    def __init__(self, settle: float, open_wait: float = 60.0) -> None:
        self.settle = settle
        self.open_wait = max(open_wait, settle)
        self._items: dict[tuple[str, str], _Watch] = {}
        self._lock = threading.Lock()

    def touch(self, source: str, path: Path, event: str = "created") -> None:
        """Note an event: 'created', 'modified' (inotify), 'changed' (polling), 'closed',
        'moved' (renamed into place, complete) or 'scan' (found by a rescan)."""
        key = (source, str(path))
        now = time.monotonic()
        with self._lock:
            item = self._items.setdefault(key, _Watch(path, -1, -1, now, False, False))
            if event in ("closed", "moved"):
                item.closed, item.writing = True, False
            elif event == "modified":
                item.writing, item.closed, item.changed_at = True, False, now
            elif event == "changed":  # a watcher that cannot see closes (polling)
                item.changed_at = now

    def __len__(self) -> int:
        return len(self._items)

    def due(self) -> list[tuple[str, Path]]:
        """Paths that are complete now; they leave the settler."""
        now = time.monotonic()
        ready = []
        with self._lock:
            for key, item in list(self._items.items()):
                try:
                    st = os.stat(item.path)
                except OSError:
                    del self._items[key]  # gone (renamed away, deleted): nothing to take
                    continue
                if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                    item.size, item.mtime_ns, item.changed_at = st.st_size, st.st_mtime_ns, now
                quiet = now - item.changed_at
                if item.closed:
                    done = quiet >= min(self.CLOSED_GRACE, self.settle)
                else:
                    done = quiet >= (self.open_wait if item.writing else self.settle)
                if done:
                    del self._items[key]
                    ready.append((key[0], item.path))
        return ready


def hash_path(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    st = os.stat(path)
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise SourceChanged(str(path))
    return h.hexdigest()


class Ingestor:
    def __init__(self, cfg: Config, catalog: Catalog, replicator: Replicator) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.replicator = replicator
        self.roots = cfg.source_roots()
        self.ignore = cfg.ingest.ignore_patterns
        self._refused: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._refused_lock = threading.Lock()

    def relpath(self, source: str, path: Path) -> str:
        return path.relative_to(self.roots[source]).as_posix()

    def _refuse(self, source: str, rel: str, st: os.stat_result, reason: str) -> str:
        """Say once why a file is not taken: every rescan finds it again, and only a
        change to it (size, mtime, type) is news."""
        seen = (st.st_mode, st.st_size, st.st_mtime_ns)
        with self._refused_lock:
            if self._refused.get((source, rel)) == seen:
                return "skipped"
            self._refused[(source, rel)] = seen
        log.info("file_skipped", source=source, path=rel, reason=reason)
        return "skipped"

    def ingest(
        self,
        source: str,
        path: Path,
        lead: str | None = None,
        sha256: str | None = None,
        tag: str = "",
    ) -> str:
        """Take one complete file; returns what happened ('stored', 'known', 'unchanged',
        'ignored', 'skipped', 'gone').  Raises SourceChanged when it changed under us.

        A phone import passes what it already knows: ``lead`` (the source path of the
        still a movie, sidecar or edit belongs with), ``sha256`` (hashed while it was
        read from the phone) and, for a rendered edit, the ``tag`` its name gets."""
        rel = self.relpath(source, path)
        if is_ignored(rel, self.ignore):
            return "ignored"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "gone"
        if stat.S_ISLNK(st.st_mode):
            return self._refuse(source, rel, st, "symbolic link; photod backs up real "
                                "files only, so a link cannot pull in files from elsewhere")  # fmt: skip
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or a device node would block or never end a read: never opened.
            return self._refuse(source, rel, st, "not a regular file (a FIFO, socket or "
                                "device node); it is never opened")  # fmt: skip
        if st.st_size >= SPARSE_MIN and st.st_blocks * 512 < st.st_size // 16:
            # Mostly holes: no camera or phone writes such a file (a disk image, or a
            # placeholder of a file kept elsewhere); reading it would copy gigabytes
            # of zeros to every target.
            return self._refuse(source, rel, st, f"sparse file: {st.st_size:,} bytes long "
                                f"but {st.st_blocks * 512:,} on disk; not a photo or video "
                                "original, so it is not copied")  # fmt: skip
        seen = self.catalog.source_file(source, rel)
        if seen and (seen.size, seen.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return "unchanged"
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
            info = probe(str(path), path.name, head, st.st_mtime, self.cfg.ingest.decode_check)
        except OSError as exc:
            log.warning("file_unreadable", source=source, path=rel, error=exc.strerror or str(exc))
            return "skipped"
        if info is None:
            return "ignored"
        if st.st_size == 0:
            return self._refuse(source, rel, st, "empty file")
        if sha256 is not None and self.catalog.asset(sha256) is not None:
            self.catalog.saw_source_file(source, rel, st.st_size, st.st_mtime_ns, sha256)
            log.info("asset_seen_again", asset=sha256, source=source, path=rel)
            return "known"
        if sha256 is None and self.catalog.has_size(st.st_size):
            # Something of this size is known: hash first, so a duplicate (the same photo
            # exported twice, a re-synced folder) is never written to the targets again.
            sha = hash_path(path, st.st_size, st.st_mtime_ns)
            if self.catalog.asset(sha) is not None:
                self.catalog.saw_source_file(source, rel, st.st_size, st.st_mtime_ns, sha)
                log.info("asset_seen_again", asset=sha, source=source, path=rel)
                return "known"
        key = self._key(source, path, info, lead, tag)
        new = NewFile(source, rel, path, st.st_size, st.st_mtime_ns, info, key)
        failpoints.hit("ingest_storing")  # a slow disk, for the test of `workers`
        sha, is_new = self.replicator.store_new(new)
        if sha256 is not None and sha != sha256:
            raise SourceChanged(f"{path}: read {sha}, expected {sha256}")
        return "stored" if is_new else "known"

    def _key(
        self, source: str, path: Path, info: Probe, lead_rel: str | None = None, tag: str = ""
    ) -> str:
        """The layout key; a Live Photo's movie or an edit's sidecar follows its still."""
        layout = self.cfg.ingest.layout
        if lead_rel is not None:
            asset = self.catalog.asset_at_source(source, lead_rel)
            if asset is not None:
                return companion_key(asset.relpath, path.name, tag)
            if tag:  # the original is not imported (yet): name the edit after it anyway
                lead_name = lead_rel.rpartition("/")[2]
                name = companion_key(lead_name, path.name, tag)
                return layout_key(layout, name, info.captured_at, info.kind, source)
        elif info.kind in (Kind.VIDEO, Kind.SIDECAR):
            lead = self._lead(path)
            if lead is not None:
                rel = self.relpath(source, lead)
                asset = self.catalog.asset_at_source(source, rel)
                if asset is not None:
                    return companion_key(asset.relpath, path.name)
                try:
                    with open(lead, "rb") as f:
                        lead_info = probe(
                            str(lead), lead.name, f.read(HEAD_BYTES), lead.stat().st_mtime, "off"
                        )
                except OSError:
                    lead_info = None
                if lead_info is not None:
                    lead_key = layout_key(
                        layout, lead.name, lead_info.captured_at, lead_info.kind, source
                    )
                    return companion_key(lead_key, path.name)
        return layout_key(layout, path.name, info.captured_at, info.kind, source)

    @staticmethod
    def _lead(path: Path) -> Path | None:
        """The still beside a movie or sidecar: same folder, same stem, any case."""
        stem = stem_of(path.name)
        try:
            with os.scandir(path.parent) as it:
                for entry in it:
                    if (
                        entry.name != path.name
                        and stem_of(entry.name) == stem
                        and kind_from_name(entry.name) in (Kind.PHOTO, Kind.RAW)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        return Path(entry.path)
        except OSError:
            return None
        return None
