"""One phone's import: list it, read what is new, hand each file to ingest.

Each new file is copied into a staging file under the state dir (up to PARALLEL files
in flight: AFC answers requests in turn), hashed as it goes, then handed complete to the
same ``Ingestor.ingest`` as a watch-folder file, on the ingest workers.  Nothing reaches
a target before the whole file is on this computer; a large file's partial copy is
checkpointed so that the next plug-in resumes it (``phonecopy``).  Which files, in which
order, with which still, is ``phoneplan``'s to say.

Runs on the phones' event loop (``devices``); every catalog call from it goes through
the lane (``phonerecords.CatalogLane``), off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from photod import failpoints, isobmff, phonecopy, phoneplan, staging
from photod.catalog import IGNORED, DeviceFile, now_iso
from photod.config import IPhoneSource
from photod.errors import DeviceProblem, FileUnreadable, PhotodError, SourceChanged, Stopping
from photod.ingest import Ingestor
from photod.logs import log
from photod.media import kind_from_name
from photod.models import IngestResult, Kind
from photod.phonelib import PhoneLibraryStep
from photod.phonerecords import CatalogLane
from photod.sources.phone import PhoneFile, PhoneLink

PROGRESS_EVERY = 3.0  # seconds between device_import_progress events
PARALLEL = 4  # files in flight at once per phone
SetState = Callable[..., None]  # (udid, state, detail, **last_import): the phone's record


@dataclass
class ImportProgress:
    """Counters of one import, for progress and the final event."""

    files: int = 0
    bytes: int = 0
    done_files: int = 0
    done_bytes: int = 0
    imported: int = 0
    known: int = 0
    unreadable: int = 0
    failed: int = 0
    failed_paths: set[str] = field(default_factory=set)  # failed or unreadable, in this import
    held: int = 0  # files beside a still that failed now: read with it at the next plug-in
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)

    def eta(self) -> tuple[float, float | None]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done_bytes / elapsed
        left = self.bytes - self.done_bytes
        return rate, (left / rate if rate > 0 else None)


class PhoneImport:
    """Imports for every phone (one at a time per phone: its session calls ``run``)."""

    def __init__(
        self,
        lane: CatalogLane,
        ingestor: Ingestor,
        workers: Executor,
        roots: dict[str, Path],
        set_state: SetState,
        imported: Callable[[], None] = lambda: None,
    ) -> None:
        """``lane``: the catalog, from the loop; ``set_state``: the phone's record;
        ``imported``: called after each import (the catch-up then takes the library's
        sidecars to the targets)."""
        self.library = PhoneLibraryStep(lane)
        self.imported = imported
        self.db = lane.call  # every catalog call made on the loop
        self.catalog = lane.catalog  # for the ingest workers' bookkeeping, off the loop
        self.ingestor = ingestor
        self.workers = workers
        self.roots = roots
        self.set_state = set_state
        # Staging names of the files being read or handed over now (on the loop), folded:
        # two of a phone's paths may make one (on a disk blind to case, two that only
        # case tells apart), and neither file is there for the other's check.
        self._in_flight: set[str] = set()

    async def _list(
        self, link: PhoneLink, source: IPhoneSource
    ) -> tuple[list[PhoneFile], list[str]]:
        """The phone's files, and what it would not list (folders, files)."""
        tops = ["/DCIM", phoneplan.MUTATIONS] if source.include_edits else ["/DCIM"]
        if source.library:  # originals synced from the person's other devices
            tops.append(phoneplan.CPL_ASSETS)
        files: list[PhoneFile] = []
        skipped: list[str] = []
        for top in tops:
            async for f in link.walk(top, skipped):
                if top == phoneplan.MUTATIONS and not phoneplan.is_render(f.path):
                    continue
                files.append(f)
        if skipped:
            log.warning("device_listing_incomplete", device=link.name, udid=link.udid,
                        count=len(skipped), paths=skipped[:20], detail=INCOMPLETE)  # fmt: skip
        return files, skipped

    async def run(self, link: PhoneLink, source: IPhoneSource, progress: ImportProgress) -> None:
        """List the phone, read what is new (stills first), hand each file to ingest,
        and say how it went."""
        udid = link.udid
        listed, skipped = await self._list(link, source)
        # (taken: the earlier of its two times, should the phone's birth time be a copy's)
        listing = [DeviceFile(f.path, f.size, f.mtime_ns, _local_iso(min(f.birth_ns, f.mtime_ns)))
                   for f in listed]  # fmt: skip
        todo = await self.db(self.catalog.sync_device_files, udid, listing, skipped)
        todo.sort(key=lambda f: phoneplan.order(f.path))
        progress.files = len(todo)
        progress.bytes = sum(f.size for f in todo)
        self.set_state(udid, "importing", f"{len(todo)} new file(s)")
        log.info(
            "device_import_started",
            device=link.name,
            udid=udid,
            on_phone=len(listing),
            to_read=len(todo),
            bytes=progress.bytes,
        )
        stills = phoneplan.stills(f.path for f in listing)
        # Stills first, then what pairs with them (movies, sidecars), then edits: each
        # group is handed over completely before the next, so a movie always finds its
        # still in the catalog.
        for _, group in itertools.groupby(todo, key=lambda f: phoneplan.order(f.path)[0]):
            waited = await self.db(self.catalog.device_paths_with, udid, phoneplan.WAITS)
            files, held = phoneplan.hold(list(group), stills, progress.failed_paths, waited)
            for f in held:  # (not read now: a Live Photo's two halves stay together)
                await self.db(self.catalog.device_file_done, udid, f.path, None, phoneplan.WAITS)
            progress.held += len(held)
            try:
                if files:
                    await self._import_group(link, source, files, stills, progress)
            except BaseExceptionGroup as group_error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Unplugged (or photod stopping) as a file failed: the group raises
                    # the files' errors and drops the cancel, which must win, or the
                    # session would outlive its phone (and hold up the next plug-in's).
                    raise asyncio.CancelledError() from None
                raise _leaf(group_error) from None
        await self.db(staging.tidy, self.catalog, self.roots[source.name], source.name, udid,
                      {f.path for f in listing})  # fmt: skip
        unread = ""  # why the phone's library could not be read
        if source.library:  # after the files: they never wait on the library
            unread = await self.library.read(link, self.roots[source.name] / udid,
                                             (f.path for f in listed))  # fmt: skip
            await self.library.count_icloud(link)
        self.imported()
        rate, _ = progress.eta()
        counts = {
            "on_phone": len(listing),
            "imported": progress.imported,
            "known": progress.known,
            "unreadable": progress.unreadable,
            "finished_at": now_iso(),
            "unlisted": len(skipped),
            "library_unread": unread,
        }
        log.info(
            "device_import_finished",
            device=link.name,
            udid=udid,
            imported=progress.imported,
            skipped_known=progress.known + len(listing) - len(todo),
            unreadable=progress.unreadable,
            failed=progress.failed,
            bytes=progress.done_bytes,
            rate=round(rate),
            duration=round(time.monotonic() - progress.started, 3),
        )
        self.set_state(udid, "imported", _said(progress, len(skipped)), **counts)

    async def _import_group(
        self,
        link: PhoneLink,
        source: IPhoneSource,
        files: list[DeviceFile],
        stills: dict[str, dict[str, str]],
        progress: ImportProgress,
    ) -> None:
        """Up to PARALLEL files in flight (being read, or handed over to ingest): AFC
        answers requests in turn, so small files stop paying one round trip at a time,
        and staging never holds more than PARALLEL files."""
        slots = asyncio.Semaphore(PARALLEL)
        async with asyncio.TaskGroup() as tasks:
            started = []
            for f in files:
                await slots.acquire()
                one = self._import_one(link, source, f, stills, progress, slots)
                started.append(tasks.create_task(one))
            # Waited for here, not in the group's exit: on Python 3.11 a file failing
            # during the exit leaves this task marked as cancelled, which ``run`` would
            # take for an unplug.
            await asyncio.wait(started)

    async def _import_one(
        self,
        link: PhoneLink,
        source: IPhoneSource,
        f: DeviceFile,
        stills: dict[str, dict[str, str]],
        progress: ImportProgress,
        slots: asyncio.Semaphore,
    ) -> None:
        udid = link.udid
        mine: str | None = None
        try:
            counted, data = partial(self._counted, link, progress), None
            try:
                root = self.roots[source.name]
                staged = staging.staged_path(root, udid, f.path)
                if (key := staging.fold(staged)) in self._in_flight:  # another of its name
                    raise phonecopy.StagingTaken(f"{f.path}: {phonecopy.StagingTaken.busy}")
                self._in_flight.add(mine := key)
                if os.path.lexists(staged):  # (rare: what a crash or a wait left there)
                    other: str | None = await self.db(
                        staging.only_copy_at, self.catalog, root, source.name, staged, f
                    )
                    if other is not None and await asyncio.to_thread(staging.holds, staged, other):
                        raise phonecopy.StagingTaken(f"{f.path}: {phonecopy.StagingTaken.said}")
                if f.size < phonecopy.SMALL:  # staged by the ingest worker that takes it
                    sha, data = "", await phonecopy.read_small(link, f, counted)
                else:
                    sha = await phonecopy.fetch(link, f, staged, counted)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # (a quota: as full)
                    raise  # the staging disk is full: the whole import waits (one event)
                # This file cannot be staged here (its name, say): the others go on.
                await self._file_failed(link, f, progress, exc)
                return
            except (SourceChanged, phonecopy.StagingTaken) as exc:  # this file's alone
                await self._file_failed(link, f, progress, exc)
                return
            except FileUnreadable as exc:
                progress.unreadable += 1
                progress.done_files += 1
                progress.failed_paths.add(f.path)
                await self.db(self.catalog.device_file_done, udid, f.path, None, "unreadable")
                log.warning("device_file_unreadable", device=link.name, udid=udid, path=f.path,
                            error=exc.detail, action=FileUnreadable.action)  # fmt: skip
                return
            # The same ingest as a watch-folder file, on the ingest workers.
            try:
                lead = phoneplan.lead(f.path, stills)
                result = await asyncio.wrap_future(self.workers.submit(
                    self._hand_over, source.name, udid, f, staged, sha, lead, data))  # fmt: skip
            except phonecopy.NotStaged as exc:
                if exc.error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise exc.error from None  # as from ``fetch``: the whole import waits
                await self._file_failed(link, f, progress, exc.error)
                return
            except (Stopping, DeviceProblem):
                raise
            except Exception as exc:
                # One file that cannot be ingested must not hold up the rest of the
                # phone: say so, and try it again at the next plug-in.
                await self._file_failed(link, f, progress, exc)
                return
            self._count(result, progress)
            progress.done_files += 1
            self._progress(link, progress)
        finally:
            if mine is not None:
                self._in_flight.discard(mine)
            slots.release()

    async def _file_failed(
        self, link: PhoneLink, f: DeviceFile, progress: ImportProgress, exc: Exception
    ) -> None:
        progress.failed += 1
        progress.done_files += 1
        progress.failed_paths.add(f.path)
        await self.db(self.catalog.device_file_done, link.udid, f.path, None, f"failed: {exc}")
        log.warning(
            "device_file_failed",
            device=link.name,
            udid=link.udid,
            path=f.path,
            error=f"{type(exc).__name__}: {exc}",
            detail="not imported; retried at the next plug-in",
            exc_info=not isinstance(exc, OSError | PhotodError),  # a bug gets its traceback
        )

    @staticmethod
    def _count(result: IngestResult, progress: ImportProgress) -> None:
        progress.imported += result is IngestResult.STORED
        progress.known += result is not IngestResult.STORED

    def _counted(self, link: PhoneLink, p: ImportProgress, n: int) -> None:
        """n more bytes of the phone's files are on this computer."""
        p.done_bytes += n
        self._progress(link, p)

    def _progress(self, link: PhoneLink, p: ImportProgress) -> None:
        now = time.monotonic()
        if now - p.last_progress < PROGRESS_EVERY or p.done_files == p.files:
            return
        p.last_progress = now
        rate, eta = p.eta()
        log.info("device_import_progress", device=link.name, udid=link.udid,
                 files=p.done_files, of_files=p.files, bytes=p.done_bytes, of_bytes=p.bytes,
                 rate=round(rate), eta=None if eta is None else round(eta))  # fmt: skip

    def _hand_over(
        self, source: str, udid: str, f: DeviceFile, staged: Path, sha: str, lead: str | None,
        data: bytes | None = None,
    ) -> IngestResult:  # fmt: skip
        """On an ingest worker: the same ingest as a watch-folder file, then bookkeeping.
        The staging copy goes once a target holds a verified copy; until then it is the
        source that catch-up copies from.  ``data``: a small file's bytes, staged here."""
        if data is not None:
            sha = phonecopy.stage(data, f, staged)
        lead_rel = f"{udid}{lead}" if lead else None
        tag = "_edited" if f.path.startswith(phoneplan.MUTATIONS) else ""
        result = self.ingestor.ingest(source, staged, lead=lead_rel, sha256=sha, tag=tag)
        # Not a photo or video (or empty): nothing to protect, and no reason to read it
        # again while it stays the same; `photod status --device` leaves it out.
        problem = (
            f"{IGNORED}: {result}" if result in (IngestResult.IGNORED, IngestResult.SKIPPED) else ""
        )
        movie = not problem and kind_from_name(f.path) is Kind.VIDEO
        if movie:  # before the file is recorded done: it is never read again after that
            self._note_group(staged, sha)
        # (Asked once: a copy a catch-up lands meanwhile lets the next tidy remove it.)
        held = not problem and bool(self.catalog.replicas(sha))
        if not problem and not held:  # its only copy off the phone:
            staging.make_durable(staged, self.roots[source])  # on the disk before it counts
        self.catalog.device_file_done(udid, f.path, sha, problem)
        if movie:
            failpoints.hit("phone_movie_recorded")  # a power cut once a movie is in
        if problem or held:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        return result

    def _note_group(self, staged: Path, sha: str) -> None:
        """A Live Photo movie's content identifier, kept: the phone's library ties the
        movie to its still by it (``phonelib``), whatever their names.  A movie that
        cannot be read for it is only left ungrouped (the name rules still pair it)."""
        try:
            with open(staged, "rb") as movie:
                group = isobmff.content_identifier(movie)
        except (OSError, struct.error):
            return
        if group:
            self.catalog.set_media_group(sha, group.upper())


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to act on from a failed group of imports: a phone problem (unplugged,
    stalled, locked) before anything else."""
    leaves: list[BaseException] = []

    def collect(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                collect(inner)
        else:
            leaves.append(e)

    collect(group)
    return next((e for e in leaves if isinstance(e, DeviceProblem)), leaves[0])


INCOMPLETE = (
    "the phone would not list these: what photod knew of them is kept, and "
    "nothing on the phone is called safe to delete until a listing reads them"
)


def _said(progress: ImportProgress, unlisted: int) -> str:
    """The phone's state after an import, in a line."""
    parts = [
        # Every file left unreadable before was tried again in this import.
        f"{progress.unreadable} file(s) on the phone but not imported: {FileUnreadable.action}"
        if progress.unreadable else "",
        f"{progress.failed} file(s) failed, retried at the next plug-in" if progress.failed else "",
        f"{unlisted} folder(s) or file(s) the phone would not list, tried again at the next "
        "plug-in" if unlisted else "",
        f"{progress.held} file(s) wait for their still, read with it at the next plug-in"
        if progress.held else "",
    ]  # fmt: skip
    return "; ".join(p for p in parts if p) or "everything on the phone is imported"


def _local_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).isoformat(timespec="seconds")
