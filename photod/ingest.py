"""Decide what to take from a watch folder, and when.

``Settler`` holds paths that changed until they are complete (closed after writing, or
size and mtime unchanged for the settle time).  ``Ingestor`` takes one complete file:
skips what is not media or already known, reads what it is (probe), decides where it
goes (layout), and hands it to the replicator.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from photod import failpoints
from photod.catalog import Catalog, SourceFile, stamp_seconds
from photod.clock import SYSTEM, Clock
from photod.config import IngestConfig
from photod.errors import LeadPending, SourceChanged, StillArriving
from photod.isobmff import content_identifier, is_isobmff
from photod.logs import log
from photod.media import (
    companion_key,
    is_ignored,
    layout_key,
    lead_of,
    stem_of,
    still_index,
    waits_for_still,
)
from photod.models import IngestResult, Kind, Probe
from photod.probe import probe
from photod.replicate import NewFile, Replicator
from photod.safeopen import LinkRefused, open_beneath, open_root
from photod.targets.base import CHUNK

SPARSE_MIN = 64 * 1024 * 1024  # files this long or longer are checked for holes
# Seconds a file that ends early may be its writer's (as open_wait), and that a movie or
# sidecar that came before its still waits for it.
CUT_SHORT_WAIT = 60.0
REFUSED_KEPT = 1024  # files refused, remembered before those since gone are forgotten
LINK = "a symbolic link: photod reads no file through a link, which could point anywhere"
NOT_A_FILE = "not a regular file (a FIFO, socket or device node); it is never read"


@dataclass
class _Watch:
    path: Path
    size: int
    mtime_ns: int
    changed_at: float
    renamed: bool  # renamed into place (a sync client's last step): complete at once
    writing: bool  # modified since the last close (inotify): a writer still has it open


class Settler:
    """Paths waiting to be complete.  Events are hints: each tick re-stats every path.

    A file is due when it was renamed into place and stayed unchanged for a moment, or
    when its size and mtime stayed unchanged for ``settle`` seconds.  Where the watcher
    sees opens and closes (inotify), a file still open for writing waits up to
    ``open_wait`` seconds even when quiet: a sync client may pause mid-file.  A close
    is not the end: a writer that appends a chunk at a time (a resumed download, `cat
    >>`) closes the file after each one, and a file taken after one would be a partial
    copy kept for ever on every target; so a closed file waits ``settle`` too.
    """

    RENAMED_GRACE = 0.3

    def __init__(self, settle: float, open_wait: float = 60.0, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.settle = settle
        self.open_wait = max(open_wait, settle)
        self._items: dict[tuple[str, str], _Watch] = {}
        self._lock = threading.Lock()

    def touch(self, source: str, path: Path, event: str = "created") -> None:
        """Note an event: 'created', 'modified' (inotify), 'changed' (polling), 'closed',
        'moved' (renamed into place, complete) or 'scan' (found by a rescan)."""
        key = (source, str(path))
        now = self.clock.monotonic()
        with self._lock:
            item = self._items.setdefault(key, _Watch(path, -1, -1, now, False, False))
            if event == "moved":
                item.renamed, item.writing = True, False
            elif event == "closed":
                item.writing = False
            elif event == "modified":
                item.writing, item.renamed, item.changed_at = True, False, now
            elif event == "changed":  # a watcher that cannot see closes (polling)
                item.changed_at = now

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Whether (source, path) waits here."""
        with self._lock:
            return key in self._items

    def due(self, leave: bool = True) -> list[tuple[str, Path]]:
        """Paths that are complete now; they leave the settler (unless ``leave`` is
        False: then they stay until ``discard``, so that they never seem nowhere)."""
        now = self.clock.monotonic()
        ready = []
        with self._lock:
            for key, item in list(self._items.items()):
                try:
                    st = os.lstat(item.path)  # a link is never followed, even to look
                except OSError:
                    del self._items[key]  # gone (renamed away, deleted): nothing to take
                    continue
                if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                    item.size, item.mtime_ns, item.changed_at = st.st_size, st.st_mtime_ns, now
                quiet = now - item.changed_at
                if item.renamed:
                    done = quiet >= min(self.RENAMED_GRACE, self.settle)
                else:
                    done = quiet >= (self.open_wait if item.writing else self.settle)
                if done:
                    if leave:
                        del self._items[key]
                    ready.append((key[0], item.path))
        return ready

    def discard(self, files: list[tuple[str, Path]]) -> None:
        with self._lock:
            for source, path in files:
                self._items.pop((source, str(path)), None)


def _cut_short(info: Probe, st: os.stat_result, now: float) -> bool:
    """A file that ends early (a container's box or a JPEG's data cut off) and was
    written within CUT_SHORT_WAIT: a writer pausing between chunks for longer than
    ``settle`` (a slow download) would otherwise have each part kept as a photo of its
    own.  Past that, a cut file is taken as it is (and said undecodable): a damaged
    original is backed up all the same."""
    age = now - st.st_mtime  # (a time ahead of the clock, a camera's: taken as it is)
    return "truncated" in info.problem.lower() and 0 <= age < CUT_SHORT_WAIT


def changed_since_read(seen: SourceFile, st: os.stat_result) -> bool:
    """A watch-folder file is not what photod read of it: another size or mtime, or its
    inode changed since (its ctime, which no program can set back, moved): bytes
    written over it keeping its size and mtime (`cp -p` of another photo of the same
    size) are read, not taken for the same.  (A chmod or a move costs one read, then
    the record is newer; the record's time is to the second, hence the second's margin.)
    A ctime equal to the mtime says nothing (FAT and exFAT keep no ctime: theirs is the
    mtime, which a camera sets, and `cp -p` too), nor one ahead of the clock (a camera's
    or a NAS's): either would have each scan read the file again, for ever."""
    if (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return True
    if not seen.read_at or st.st_ctime_ns == st.st_mtime_ns or st.st_ctime > time.time():
        return False
    return st.st_ctime > stamp_seconds(seen.read_at) + 1


def hash_open(f: BinaryIO, size: int, mtime_ns: int, where: str) -> str:
    """SHA-256 of an open file from its start; SourceChanged if it changed meanwhile."""
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(CHUNK):
        h.update(chunk)
    st = os.fstat(f.fileno())
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise SourceChanged(where)
    return h.hexdigest()


class _Owners:
    """Who may read what: a file in a watch folder is taken only if the folder's owner
    could read it.  When photod runs as someone else (root, for a family's folders),
    this keeps a file another user linked in (a hard link to a file only root can
    read) from being copied to the targets."""

    def __init__(self) -> None:
        self._groups: dict[int, set[int]] = {}

    def can_read(self, folder: os.stat_result, st: os.stat_result) -> bool:
        """Whether the owner of ``folder`` (the file's own) could read the file; and in
        a folder of photod's own user that others may write to (a shared inbox), whether
        those others could: only they can have linked a file of photod's user there."""
        owner = folder.st_uid
        if os.geteuid() == owner:
            if st.st_uid != owner:
                return True  # the system's own permissions already decided
            if folder.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_IROTH:
                return False
            return not (
                folder.st_mode & stat.S_IWGRP and not st.st_mode & (stat.S_IRGRP | stat.S_IROTH)
            )
        if st.st_uid == owner:
            return bool(st.st_mode & stat.S_IRUSR)
        if st.st_gid in self._groups_of(owner):
            return bool(st.st_mode & stat.S_IRGRP)
        return bool(st.st_mode & stat.S_IROTH)

    def _groups_of(self, uid: int) -> set[int]:
        if uid not in self._groups:
            try:
                user = pwd.getpwuid(uid)
                self._groups[uid] = set(os.getgrouplist(user.pw_name, user.pw_gid))
            except (KeyError, OSError):
                self._groups[uid] = set()
        return self._groups[uid]


class Ingestor:
    def __init__(
        self,
        settings: IngestConfig,
        roots: dict[str, Path],
        catalog: Catalog,
        replicator: Replicator,
    ) -> None:
        """``roots``: where each source's files are (``Config.source_roots``)."""
        self.settings = settings
        # Whether a still not recorded yet is on its way in (its movie and sidecars then
        # wait for it): the watch folders' intake knows, and sets this.
        self.lead_pending: Callable[[str, Path], bool] = lambda source, lead: False
        self.catalog = catalog
        self.replicator = replicator
        self.roots = roots
        self.ignore = settings.ignore_patterns
        self._refused: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._owners = _Owners()
        self._refused_lock = threading.Lock()
        self._refused_cap = REFUSED_KEPT  # remembered refusals before the gone are forgotten
        self.companion_wait = CUT_SHORT_WAIT  # seconds a lone companion waits (``_alone``)

    def relpath(self, source: str, path: Path) -> str:
        return path.relative_to(self.roots[source]).as_posix()

    def _refuse(self, source: str, rel: str, st: os.stat_result, reason: str) -> IngestResult:
        """Say once why a file is not taken: every rescan finds it again, and only a
        change to it (size, mtime, type) is news."""
        if self._news(source, rel, st):
            log.info("file_skipped", source=source, path=rel, reason=reason)
        return IngestResult.SKIPPED

    def _unreadable(self, source: str, rel: str, st: os.stat_result, exc: OSError) -> IngestResult:
        """A file photod cannot read (no permission, a failing disk): said once while it
        stays the same (a warning, notified: it is not backed up), tried at every scan."""
        if self._news(source, rel, st):
            log.warning("file_unreadable", source=source, path=rel, error=exc.strerror or str(exc))
        return IngestResult.SKIPPED

    def _news(self, source: str, rel: str, st: os.stat_result) -> bool:
        """Whether a file refused is to be said (not said as it is now); remembered.
        What is remembered of files since gone or changed is forgotten whenever the
        memory doubles: files that come and go (a sync client's, an export's) would
        otherwise be kept for as long as the daemon runs."""
        seen = (st.st_mode, st.st_size, st.st_mtime_ns)
        with self._refused_lock:
            if self._refused.get((source, rel)) == seen:
                return False
            self._refused[(source, rel)] = seen
            if sweep := len(self._refused) > self._refused_cap:  # (one sweep at a time)
                self._refused_cap, kept = 2 * len(self._refused), list(self._refused.items())
        if sweep:  # each asked outside the lock: a mount that hangs holds up no other
            gone = [(k, was) for k, was in kept if _changed(self.roots[k[0]] / k[1], was)]
            with self._refused_lock:
                for k, was in gone:
                    if self._refused.get(k) == was:  # (refused again meanwhile: kept)
                        del self._refused[k]
                self._refused_cap = max(REFUSED_KEPT, 2 * len(self._refused))
        return True

    def ingest(
        self,
        source: str,
        path: Path,
        lead: str | None = None,
        sha256: str | None = None,
        tag: str = "",
    ) -> IngestResult:
        """Take one complete file; returns what happened (an ``IngestResult``).  Raises
        SourceChanged when it changed under us, LeadPending when it is a movie or
        sidecar whose still is on its way in (``lead_pending``).

        A phone import passes what it already knows: ``lead`` (the source path of the
        still a movie, sidecar or edit belongs with), ``sha256`` (hashed while it was
        read from the phone into photod's private staging: a local target on the same
        disk may take that very file by a link, ``NewFile.staged_sha256``) and, for a
        rendered edit, the ``tag`` its name gets."""
        rel = self.relpath(source, path)
        if is_ignored(rel, self.ignore):
            return IngestResult.IGNORED
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return IngestResult.GONE
        if stat.S_ISLNK(st.st_mode):
            return self._refuse(source, rel, st, LINK)
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or a device node would block or never end a read: never opened.
            return self._refuse(source, rel, st, NOT_A_FILE)
        seen = self.catalog.source_file(source, rel)
        if seen and not changed_since_read(seen, st):
            return IngestResult.UNCHANGED
        # From here on, one descriptor, opened beneath the source's root through no link,
        # is what is probed, hashed and copied: a folder swapped for a link, or a file
        # swapped between two reads, can bring in nothing but what was opened.
        try:
            f, folder = self._open(source, rel)
        except LinkRefused as exc:
            return self._refuse(source, rel, st, f"{LINK} ({exc.strerror})")
        except FileNotFoundError:
            return IngestResult.GONE
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket took its place
                return self._refuse(source, rel, st, NOT_A_FILE)
            return self._unreadable(source, rel, st, exc)
        with f:
            return self._take(source, rel, path, f, folder, lead, sha256, tag)

    def _open(self, source: str, rel: str) -> tuple[BinaryIO, os.stat_result]:
        """The file, opened beneath the source's root through no link, and the status
        of the folder it is in (whose owner's right to read it decides)."""
        folder_rel, _, name = rel.rpartition("/")
        root = open_root(self.roots[source])
        try:
            folder = (
                open_beneath(root, folder_rel, os.O_RDONLY | os.O_DIRECTORY)
                if folder_rel
                else os.dup(root)
            )
        finally:
            os.close(root)
        try:
            folder_st = os.fstat(folder)
            # O_NONBLOCK: a FIFO put where a photo was is opened without waiting for a
            # writer, then refused below; a regular file reads as it always does.
            fd = open_beneath(folder, name, os.O_RDONLY | os.O_NONBLOCK)
        except LinkRefused as exc:
            parts = rel.split("/")
            raise LinkRefused(rel, parts, len(parts) - 1) from exc
        finally:
            os.close(folder)
        return os.fdopen(fd, "rb"), folder_st

    def _take(
        self,
        source: str,
        rel: str,
        path: Path,
        f: BinaryIO,
        folder: os.stat_result,
        lead: str | None,
        sha256: str | None,
        tag: str,
    ) -> IngestResult:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return self._refuse(source, rel, st, NOT_A_FILE)
        if not self._owners.can_read(folder, st):
            return self._refuse(source, rel, st, "the owner of its folder (or whoever may "
                                "write there) may not read it: a link to someone else's file? "
                                "It is never copied")  # fmt: skip
        if st.st_size >= SPARSE_MIN and st.st_blocks * 512 < st.st_size // 16:
            # Mostly holes: no camera or phone writes such a file (a disk image, or a
            # placeholder of a file kept elsewhere); reading it would copy gigabytes
            # of zeros to every target.
            return self._refuse(source, rel, st, f"sparse file: {st.st_size:,} bytes long "
                                f"but {st.st_blocks * 512:,} on disk; not a photo or video "
                                "original, so it is not copied")  # fmt: skip
        try:
            info = probe(f, path.name, st.st_mtime, self.settings.decode_check)
        except OSError as exc:
            return self._unreadable(source, rel, st, exc)
        if info is None:  # said once, as a refusal is; still "ignored" for the bookkeeping
            self._refuse(source, rel, st, "not a photo, video or sidecar (by its content and "
                         "its name): left alone")  # fmt: skip
            return IngestResult.IGNORED
        if st.st_size == 0:
            return self._refuse(source, rel, st, "empty file")
        if sha256 is None and _cut_short(info, st, time.time()):
            raise StillArriving(str(path))
        if sha256 is not None and self.catalog.asset(sha256) is not None:
            self.catalog.saw_source_file(source, rel, st.st_size, st.st_mtime_ns, sha256)
            log.info("asset_seen_again", asset=sha256, source=source, path=rel)
            return IngestResult.KNOWN
        if sha256 is None and self.catalog.has_size(st.st_size):
            # Something of this size is known: hash first, so a duplicate (the same photo
            # exported twice, a re-synced folder) is never written to the targets again.
            sha = hash_open(f, st.st_size, st.st_mtime_ns, str(path))
            if self.catalog.asset(sha) is not None:
                self.catalog.saw_source_file(source, rel, st.st_size, st.st_mtime_ns, sha)
                log.info("asset_seen_again", asset=sha, source=source, path=rel)
                return IngestResult.KNOWN
        # (A phone's file is staged whole, its still known: it never waits for one.)
        key = self._key(source, path, info, lead, tag, f if sha256 is None else None)
        new = NewFile(source, rel, path, st.st_size, st.st_mtime_ns, info, key, f, sha256)
        failpoints.hit("ingest_storing")  # a slow disk, for the test of `workers`
        # (A staged file whose bytes are not ``sha256`` raises SourceChanged there.)
        sha, is_new = self.replicator.store_new(new)
        return IngestResult.STORED if is_new else IngestResult.KNOWN

    def _key(
        self,
        source: str,
        path: Path,
        info: Probe,
        lead_rel: str | None = None,
        tag: str = "",
        arrived: BinaryIO | None = None,
    ) -> str:
        """The layout key; a Live Photo's movie or an edit's sidecar follows its still.
        ``arrived``: a watch folder's file, open; with no still beside it, it may wait
        for one (``_alone``)."""
        layout = self.settings.layout
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
                if self.lead_pending(source, lead):
                    # Its key may yet carry a suffix, or be an older copy's key: a name
                    # worked out now could put this beside another camera's still.
                    raise LeadPending(self.relpath(source, path), rel)
                # Never coming (refused, unreadable): named after the key it would get.
                lead_info = None
                try:
                    f, folder = self._open(source, rel)
                    with f:
                        st = os.fstat(f.fileno())
                        if stat.S_ISREG(st.st_mode) and self._owners.can_read(folder, st):
                            lead_info = probe(f, lead.name, st.st_mtime, "off")
                except OSError:  # gone, unreadable, or a link: not a lead to follow
                    pass
                if lead_info is not None:
                    lead_key = layout_key(
                        layout, lead.name, lead_info.captured_at, lead_info.kind, source
                    )
                    return companion_key(lead_key, path.name)
            elif arrived is not None:
                self._alone(source, path, info, arrived)
        return layout_key(layout, path.name, info.captured_at, info.kind, source)

    def _alone(self, source: str, path: Path, info: Probe, f: BinaryIO) -> None:
        """A movie or sidecar with no still beside it.  One that belongs with a still
        (``waits_for_still``) and came within CUT_SHORT_WAIT waits for it (LeadPending):
        a sync client often delivers the small .AAE and .MOV first, and a name worked
        out now (its own date, no suffix) would part it from its still for good, since
        no copy is ever moved.  Its ctime says when it came: a sync client keeps the
        original mtime.  Past the wait it is taken alone, and said so; a still that
        comes later is named as any still, under its own date."""
        live = info.kind is Kind.VIDEO and is_isobmff(f) and bool(content_identifier(f))
        if not waits_for_still(path.name, live):
            return  # (a video of its own: taken at once, never read for this again)
        rel = self.relpath(source, path)
        if 0 <= time.time() - os.fstat(f.fileno()).st_ctime < self.companion_wait:
            raise LeadPending(rel)
        log.info("companion_taken_alone", source=source, path=rel,
                 detail="no still of its name beside it; filed under its own date")  # fmt: skip

    @staticmethod
    def _lead(path: Path) -> Path | None:
        """The still beside a movie or sidecar (``media.lead_of``, the rule a phone's
        listing follows too)."""
        stem = stem_of(path.name)
        stems = {stem, stem_of(stem)}  # IMG_0001.HEIC.xmp belongs with IMG_0001.HEIC
        try:
            with os.scandir(path.parent) as it:
                same = [
                    e.name
                    for e in it
                    if stem_of(e.name) in stems and e.is_file(follow_symlinks=False)
                ]
        except OSError:
            return None
        lead = lead_of(path.name, still_index(same))
        return path.with_name(lead) if lead else None


def _changed(path: Path, was: tuple[int, int, int]) -> bool:
    """A refused file gone or changed since (not one that cannot be told of)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return isinstance(exc, (FileNotFoundError, NotADirectoryError))
    return (st.st_mode, st.st_size, st.st_mtime_ns) != was
