"""Phones: notice them, import what is new, say what is going on.

One thread runs an asyncio loop (pymobiledevice3 is asyncio-only) with:
- the usbmuxd watcher (``sources/iphone.watch``): attach and detach events;
- one session task per attached phone (so one import at a time per phone), which
  connects, waits for Trust or unlock where needed, lists ``/DCIM`` and imports.

An import reads each new file in 4 MiB chunks into a staging file under the state dir,
hashing as it goes, then hands the complete file to the same ``Ingestor.ingest`` as a
watch-folder file, on the ingest workers.  Nothing reaches a target before the whole
file is on this computer, so an unplug mid-file leaves nothing partial anywhere; a
large file's partial staging copy is checkpointed (fsync) so that the next attach
resumes it with a seek.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from photod import failpoints, usb
from photod.catalog import Catalog, DeviceFile, DeviceRecord, now_iso
from photod.config import Config, IPhoneSource
from photod.errors import (
    DeviceGone,
    DeviceProblem,
    DeviceStalled,
    DeviceUntrusted,
    FileUnreadable,
    PairingDenied,
    Stopping,
)
from photod.ingest import Ingestor
from photod.logs import log
from photod.media import MAX_NAME_BYTES, kind_from_name, safe_name, stem_of
from photod.models import Kind

if TYPE_CHECKING:
    from photod.sources.iphone import PhoneFile, PhoneLink

CHECKPOINT = 32 * 1024 * 1024  # a partial file is made durable (and resumable) this often
PROGRESS_EVERY = 3.0  # seconds between device_import_progress events
RETRY = 2.0  # seconds between tries while waiting for Trust, an unlock or a target
PARALLEL = 4  # files in flight at once per phone
MUTATIONS = "/PhotoData/Mutations"
IGNORED = "not backed up"  # device_files.problem of a file that is not media


@dataclass
class _Import:
    """Counters of one import, for progress and the final event."""

    files: int = 0
    bytes: int = 0
    done_files: int = 0
    done_bytes: int = 0
    imported: int = 0
    known: int = 0
    unreadable: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)

    def eta(self) -> tuple[float, float | None]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done_bytes / elapsed
        left = self.bytes - self.done_bytes
        return rate, (left / rate if rate > 0 else None)


class DeviceManager:
    """Phones for every ``type = "iphone"`` source."""

    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        ingestor: Ingestor,
        workers: Executor,
        targets_ready: Callable[[], bool],
    ) -> None:
        self.cfg = cfg
        self.sources = cfg.iphones
        self.catalog = catalog
        self.ingestor = ingestor
        self.workers = workers
        self.targets_ready = targets_ready
        self.roots = cfg.source_roots()
        self.pair_dir = cfg.state_dir / "pairing"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devices", daemon=True)
        self._main: asyncio.Task[None] | None = None
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._ending: dict[str, asyncio.Task[None]] = {}  # cancelled, still cleaning up
        self._visible: set[str] = set()  # UDIDs usbmuxd lists now, without dashes
        self._records: dict[str, DeviceRecord] = {}
        self._imports: dict[str, _Import] = {}  # the import running on each phone
        self.usbmuxd_up: bool | None = None
        self._stopping = False

    # -- life cycle (called from the daemon's thread) ----------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        self._stopping = True

        def cancel() -> None:
            if self._main is not None:
                self._main.cancel()

        self.loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout=30)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def live(self) -> list[dict[str, Any]]:
        """Each phone attached now: its state and, while it imports, how far it got
        (for `photod status` through the control socket; read from another thread, so
        only copies are taken)."""
        out = []
        for udid, record in list(self._records.items()):
            if udid not in self._sessions:
                continue
            row: dict[str, Any] = {"device": record.name, "udid": udid, "state": record.state,
                                   "detail": record.detail}  # fmt: skip
            p = self._imports.get(udid)
            if p is not None and record.state == "importing":
                rate, eta = p.eta()
                row.update(files=p.done_files, of_files=p.files, bytes=p.done_bytes,
                           of_bytes=p.bytes, rate=round(rate),
                           eta=None if eta is None else round(eta))  # fmt: skip
            out.append(row)
        return out

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._main = self.loop.create_task(self._watch())
        try:
            self.loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug: say so; `alive()` turns false for the watchdog
            log.exception("device_watcher_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.loop.close()

    async def _watch(self) -> None:
        from photod.sources import iphone  # pymobiledevice3 loads only when a phone source exists

        self.pair_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        hidden = asyncio.create_task(self._watch_untrusted())
        try:
            await iphone.watch(self._attached, self._detached, self._usbmuxd)
        finally:
            hidden.cancel()
            tasks = [hidden, *self._sessions.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- usbmuxd events (on the loop) -------------------------------------------------

    def _usbmuxd(self, up: bool) -> None:
        if up:
            log.info("usbmuxd_connected", socket=usbmuxd_socket())
        elif self.usbmuxd_up is not False:
            installed = usbmuxd_installed()
            (log.info if installed else log.warning)(
                "usbmuxd_waiting",
                socket=usbmuxd_socket(),
                detail="usbmuxd is not running; on Linux it starts when an iPhone is "
                "plugged in; photod keeps listening"
                if installed
                else "usbmuxd is not installed: install it (Debian/Ubuntu: "
                "sudo apt install usbmuxd), then plug the iPhone in",
            )
        self.usbmuxd_up = up

    async def _watch_untrusted(self) -> None:
        """A phone on the USB bus that usbmuxd does not list is waiting for Trust (on
        Linux usbmuxd hides it until then).  Looked for only while usbmuxd runs, which on
        Linux is only while a phone is plugged in."""
        told: set[str] = set()
        while True:
            await asyncio.sleep(RETRY)
            on_bus = await asyncio.to_thread(usb.apple_phones) if self.usbmuxd_up else {}
            for serial, product in on_bus.items():
                udid = usb.dashed(serial)
                source = self._source_for(udid)
                if serial in self._visible or serial in told or source is None:
                    continue
                told.add(serial)
                self._begin(udid, source, product)
                self._problem(udid, DeviceUntrusted(), log.info)
            for serial in list(told):
                if serial in self._visible:
                    told.discard(serial)  # trusted now: its session took over
                elif serial not in on_bus:
                    told.discard(serial)  # unplugged before tapping Trust
                    self._set(usb.dashed(serial), "detached", "unplugged before Trust")

    def _source_for(self, udid: str) -> IPhoneSource | None:
        for source in self.sources:
            if not source.udids or usb.normal(udid) in {usb.normal(u) for u in source.udids}:
                return source
        return None

    def _attached(self, udid: str) -> None:
        failpoints.hit("device_attached")  # the fault campaign's thread that dies
        self._visible.add(usb.normal(udid))
        source = self._source_for(udid)
        if source is None:
            log.info("device_ignored", udid=udid, detail="not in any iphone source's udids")
            return
        running = self._sessions.get(udid)
        if running is not None and not running.done():
            return
        self._sessions[udid] = self.loop.create_task(self._session(udid, source))

    def _detached(self, udid: str) -> None:
        self._visible.discard(usb.normal(udid))
        task = self._sessions.pop(udid, None)
        if task is not None:
            task.cancel()
            self._ending[udid] = task

    # -- state, as events and as rows for `photod status` -------------------------------

    def _begin(self, udid: str, source: IPhoneSource, name: str = "") -> None:
        """A phone's record at attach: what the catalog knew of it, state 'attached'."""
        old = next((d for d in self.catalog.devices() if d.udid == udid), None)
        self._records[udid] = DeviceRecord(
            udid,
            source.name,
            old.name if old else name,
            old.model if old else "",
            old.ios if old else "",
            "attached",
            "",
            now_iso(),
            last_import=old.last_import if old else {},
        )

    def _set(self, udid: str, state: str, detail: str = "", **last: Any) -> None:
        record = self._records[udid]
        if (record.state, record.detail) != (state, detail) or last:
            since = now_iso() if record.state != state else record.since
            merged = {**record.last_import, **last} if last else record.last_import
            record = replace(record, state=state, detail=detail, since=since, last_import=merged)
            self._records[udid] = record
            self.catalog.save_device(record)

    # -- one phone ----------------------------------------------------------------------

    async def _session(self, udid: str, source: IPhoneSource) -> None:
        from photod.sources.iphone import PhoneLink

        ending = self._ending.pop(udid, None)
        if ending is not None:  # a quick unplug and replug: let the last session finish
            await asyncio.gather(ending, return_exceptions=True)
        self._begin(udid, source)
        self.catalog.save_device(self._records[udid])
        announced = False
        told: str | None = None  # the problem already logged, so a retry loop logs it once
        failures = 0  # imports in a row that failed on something other than the phone
        progress = _Import()
        link: PhoneLink | None = None
        try:
            while True:
                try:
                    link = await PhoneLink.connect(udid, self.pair_dir, source.timeout)
                    if not announced:
                        self._records[udid] = replace(
                            self._records[udid], name=link.name, model=link.model, ios=link.ios
                        )
                        self._set(udid, "attached")
                        log.info(
                            "device_attached",
                            device=link.name,
                            model=link.model,
                            ios=link.ios,
                            udid=udid,
                            source=source.name,
                        )
                        announced = True
                    if not link.paired:

                        def waiting() -> None:
                            nonlocal told
                            if told != DeviceUntrusted.state:
                                self._problem(udid, DeviceUntrusted(), log.info)
                                told = DeviceUntrusted.state

                        await link.pair(waiting)
                        self._records[udid] = replace(
                            self._records[udid], name=link.name, ios=link.ios
                        )
                    await link.start_files()
                    if not self.targets_ready():
                        raise _NoTarget()
                    progress = self._imports[udid] = _Import()
                    await self._import(link, source, progress)
                    told, failures = None, 0
                    await link.close()
                    link = None
                    # Stay attached; look again now and then for photos taken meanwhile.
                    await asyncio.sleep(self.cfg.daemon.rescan_interval)
                except _NoTarget:
                    if told != "no_target":
                        log.warning(
                            "device_waiting",
                            device=self._records[udid].name,
                            udid=udid,
                            detail="no target is available to copy to; the import starts "
                            "when one is",
                        )
                        self._set(udid, "waiting", "no target is available")
                        told = "no_target"
                    await asyncio.sleep(RETRY)
                except PairingDenied as exc:
                    self._problem(udid, exc, log.warning)
                    await asyncio.Event().wait()  # until the phone is unplugged
                except DeviceProblem as exc:
                    if isinstance(exc, DeviceGone):
                        # Usually an unplug: the detach event cancels this session
                        # within a moment; only a phone still listed is worth a line.
                        await asyncio.sleep(RETRY)
                    if told != exc.state:
                        level = log.warning if isinstance(exc, DeviceStalled) else log.info
                        self._problem(udid, exc, level)
                        told = exc.state
                    if isinstance(exc, DeviceGone | DeviceStalled):
                        told = None  # each drop or stall is news
                    await asyncio.sleep(RETRY)
                except (Stopping, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a session boundary: log, retry with backoff
                    error = f"{type(exc).__name__}: {exc}"
                    failures += 1
                    delay = min(
                        self.cfg.daemon.retry_max,
                        self.cfg.daemon.retry_interval * 2 ** (failures - 1),
                    )
                    if told != error:  # the same failure again is not news
                        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
                        (log.warning if full else log.exception)(
                            "device_import_failed",
                            device=self._records[udid].name,
                            udid=udid,
                            error=error,
                            detail=f"no space left to stage files in "
                            f"{self.roots[source.name]}; free some space there (or move "
                            "[daemon] state_dir)"
                            if full
                            else "retried with backoff",
                            retry_in=round(delay),
                        )
                        self._set(udid, "error", error)
                        told = error
                    await asyncio.sleep(delay)
                finally:
                    if link is not None:
                        await link.close()
                        link = None
        except asyncio.CancelledError:
            self._imports.pop(udid, None)
            unfinished = progress.files - progress.done_files
            if self._stopping:
                self._set(udid, "detached", "photod stopped")
                raise
            log.info(
                "device_detached",
                device=self._records[udid].name,
                udid=udid,
                unfinished=unfinished,
                detail=f"{unfinished} file(s) left to import at the next plug-in"
                if unfinished
                else "nothing left to import",
            )
            self._set(
                udid, "detached", f"{unfinished} file(s) not imported yet" if unfinished else ""
            )
            raise

    def _problem(self, udid: str, exc: DeviceProblem, level: Callable[..., Any]) -> None:
        record = self._records[udid]
        level(
            f"device_{exc.state}",
            device=record.name,
            udid=udid,
            action=exc.action,
            detail=exc.detail if exc.detail != exc.action else "",
        )
        self._set(udid, exc.state, exc.action)

    # -- the import -----------------------------------------------------------------------

    async def _list(self, link: PhoneLink, source: IPhoneSource) -> list[PhoneFile]:
        tops = ["/DCIM", MUTATIONS] if source.include_edits else ["/DCIM"]
        files = []
        for top in tops:
            async for f in link.walk(top):
                if top == MUTATIONS and not _is_render(f.path):
                    continue
                files.append(f)
        return files

    async def _import(self, link: PhoneLink, source: IPhoneSource, progress: _Import) -> None:
        udid = link.udid
        listed = await self._list(link, source)
        listing = [DeviceFile(f.path, f.size, f.mtime_ns, _local_iso(f.birth_ns)) for f in listed]
        todo = await asyncio.to_thread(self.catalog.sync_device_files, udid, listing)
        todo.sort(key=_order)
        progress.files = len(todo)
        progress.bytes = sum(f.size for f in todo)
        self._set(udid, "importing", f"{len(todo)} new file(s)")
        log.info(
            "device_import_started",
            device=link.name,
            udid=udid,
            on_phone=len(listing),
            to_read=len(todo),
            bytes=progress.bytes,
        )
        stills = _stills([f.path for f in listing])
        # Stills first, then what pairs with them (movies, sidecars), then edits: each
        # group is handed over completely before the next, so a movie always finds its
        # still in the catalog.
        for _, group in itertools.groupby(todo, key=lambda f: _order(f)[0]):
            try:
                await self._import_group(link, source, list(group), stills, progress)
            except BaseExceptionGroup as group_error:
                raise _leaf(group_error) from None
        await asyncio.to_thread(self._tidy, source.name, udid, {f.path for f in listing})
        rate, _ = progress.eta()
        counts = {
            "on_phone": len(listing),
            "imported": progress.imported,
            "known": progress.known,
            "unreadable": progress.unreadable,
            "finished_at": now_iso(),
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
        # Every file left unreadable before was tried again in this import.
        unread = progress.unreadable
        detail = "; ".join(
            part
            for part in (
                f"{unread} file(s) on the phone but not imported: {FileUnreadable.action}"
                if unread
                else "",
                f"{progress.failed} file(s) failed, retried at the next plug-in"
                if progress.failed
                else "",
            )
            if part
        )
        detail = detail or "everything on the phone is imported"
        self._set(udid, "imported", detail, **counts)

    async def _import_group(
        self,
        link: PhoneLink,
        source: IPhoneSource,
        files: list[DeviceFile],
        stills: dict[tuple[str, str], str],
        progress: _Import,
    ) -> None:
        """Up to PARALLEL files in flight (being read, or handed over to ingest): AFC
        answers requests in turn, so small files stop paying one round trip at a time,
        and staging never holds more than PARALLEL files."""
        slots = asyncio.Semaphore(PARALLEL)
        async with asyncio.TaskGroup() as tasks:
            for f in files:
                await slots.acquire()
                tasks.create_task(self._import_one(link, source, f, stills, progress, slots))

    async def _import_one(
        self,
        link: PhoneLink,
        source: IPhoneSource,
        f: DeviceFile,
        stills: dict[tuple[str, str], str],
        progress: _Import,
        slots: asyncio.Semaphore,
    ) -> None:
        udid = link.udid
        try:
            try:
                staged, sha = await self._fetch(link, f, source, progress)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise  # the staging disk is full: the whole import waits (one event)
                # This file cannot be staged here (its name, say): the others go on.
                await self._file_failed(link, f, progress, exc)
                return
            except FileUnreadable as exc:
                progress.unreadable += 1
                progress.done_files += 1
                await asyncio.to_thread(
                    self.catalog.device_file_done, udid, f.path, None, "unreadable"
                )
                log.warning(
                    "device_file_unreadable",
                    device=link.name,
                    udid=udid,
                    path=f.path,
                    error=exc.detail,
                    action=FileUnreadable.action,
                )
                return
            # The same ingest as a watch-folder file, on the ingest workers.
            try:
                result = await asyncio.wrap_future(
                    self.workers.submit(
                        self._hand_over, source.name, udid, f, staged, sha, _lead(f.path, stills)
                    )
                )
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
            slots.release()

    async def _file_failed(
        self, link: PhoneLink, f: DeviceFile, progress: _Import, exc: Exception
    ) -> None:
        progress.failed += 1
        progress.done_files += 1
        await asyncio.to_thread(
            self.catalog.device_file_done, link.udid, f.path, None, f"failed: {exc}"
        )
        log.warning(
            "device_file_failed",
            device=link.name,
            udid=link.udid,
            path=f.path,
            error=f"{type(exc).__name__}: {exc}",
            detail="not imported; retried at the next plug-in",
            exc_info=not isinstance(exc, OSError),  # a bug gets its traceback
        )

    @staticmethod
    def _count(result: str, progress: _Import) -> None:
        if result == "stored":
            progress.imported += 1
        else:
            progress.known += 1

    def _progress(self, link: PhoneLink, p: _Import) -> None:
        now = time.monotonic()
        if now - p.last_progress < PROGRESS_EVERY or p.done_files == p.files:
            return
        p.last_progress = now
        rate, eta = p.eta()
        log.info(
            "device_import_progress",
            device=link.name,
            udid=link.udid,
            files=p.done_files,
            of_files=p.files,
            bytes=p.done_bytes,
            of_bytes=p.bytes,
            rate=round(rate),
            eta=None if eta is None else round(eta),
        )

    def _staged(self, source: str, udid: str, path: str) -> Path:
        # AFC paths come from the phone: keep them inside the staging root whatever
        # they hold (the layout key, not this path, decides where copies go).
        parts = [_stage_name(p) for p in path.split("/") if p not in ("", ".", "..")]
        return self.roots[source].joinpath(udid, *parts)

    async def _fetch(
        self, link: PhoneLink, f: DeviceFile, source: IPhoneSource, progress: _Import
    ) -> tuple[Path, str]:
        """Copy one file from the phone into staging, hashing it; resume a partial copy
        left by an unplug when the file on the phone is unchanged."""
        staged = self._staged(source.name, link.udid, f.path)
        part = staged.with_name(staged.name + ".part")
        meta = staged.with_name(staged.name + ".part.json")
        staged.parent.mkdir(parents=True, exist_ok=True)
        offset, h = await asyncio.to_thread(_resume_point, part, meta, f.size, f.mtime_ns)
        try:
            await self._read_into(link, f, part, meta, offset, h, progress)
        except BaseException:
            if not meta.exists():  # nothing worth resuming: leave no debris in staging
                part.unlink(missing_ok=True)
            raise
        os.utime(part, ns=(f.mtime_ns, f.mtime_ns))  # copies keep the phone's mtime
        os.replace(part, staged)
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        return staged, h.hexdigest()

    async def _read_into(
        self,
        link: PhoneLink,
        f: DeviceFile,
        part: Path,
        meta: Path,
        offset: int,
        h: Any,
        progress: _Import,
    ) -> None:
        handle = await link.open_file(f.path)
        try:
            progress.done_bytes += offset
            if offset:
                await link.seek(handle, offset)
                log.info(
                    "device_import_resumed",
                    device=link.name,
                    udid=link.udid,
                    path=f.path,
                    offset=offset,
                    size=f.size,
                )
            with open(part, "r+b" if offset else "wb") as out:
                out.seek(offset)
                done = offset
                checkpoint = offset + CHECKPOINT
                nxt = asyncio.ensure_future(link.read(handle))
                try:
                    while True:
                        chunk = await nxt
                        if not chunk:
                            break
                        # Ask for the next chunk before hashing and writing this one.
                        nxt = asyncio.ensure_future(link.read(handle))
                        await asyncio.to_thread(_write_hashed, out, h, chunk)
                        done += len(chunk)
                        progress.done_bytes += len(chunk)
                        self._progress(link, progress)
                        if done >= checkpoint and done < f.size:
                            await asyncio.to_thread(_checkpoint, out, meta, f, done)
                            checkpoint = done + CHECKPOINT
                finally:
                    if not nxt.done():
                        nxt.cancel()
                        with contextlib.suppress(BaseException):
                            await nxt
            if done != f.size:
                raise DeviceGone(f"{f.path}: read {done} of {f.size} bytes")
        finally:
            await link.close_file(handle)

    def _hand_over(
        self, source: str, udid: str, f: DeviceFile, staged: Path, sha: str, lead: str | None
    ) -> str:
        """On an ingest worker: the same ingest as a watch-folder file, then bookkeeping.
        The staging copy goes once a target holds a verified copy; until then it is the
        source that catch-up copies from."""
        lead_rel = f"{udid}{lead}" if lead else None
        tag = "_edited" if f.path.startswith(MUTATIONS) else ""
        result = self.ingestor.ingest(source, staged, lead=lead_rel, sha256=sha, tag=tag)
        # Not a photo or video (or empty): nothing to protect, and no reason to read it
        # again while it stays the same; `photod status --device` leaves it out.
        problem = f"{IGNORED}: {result}" if result in ("ignored", "skipped") else ""
        self.catalog.device_file_done(udid, f.path, sha, problem)
        if problem or self.catalog.replicas(sha):
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        return result

    def _tidy(self, source: str, udid: str, on_phone: set[str]) -> None:
        """Remove staging files that are no longer needed: copies already on a target,
        and partial files of files no longer on the phone."""
        top = self.roots[source] / udid
        if not top.is_dir():
            return
        for folder, _, names in os.walk(top):
            for name in names:
                path = Path(folder) / name
                phone_path = "/" + path.relative_to(top).as_posix()
                if name.endswith(".part") or name.endswith(".part.json"):
                    if phone_path.removesuffix(".json").removesuffix(".part") not in on_phone:
                        path.unlink(missing_ok=True)
                    continue
                seen = self.catalog.source_file(source, f"{udid}{phone_path}")
                if seen is not None and self.catalog.replicas(seen.asset):
                    path.unlink(missing_ok=True)


def usbmuxd_socket() -> str:
    """Where pymobiledevice3 looks for usbmuxd: $USBMUXD_SOCKET_ADDRESS (a path, or
    host:port for TCP), else /var/run/usbmuxd on Linux and macOS."""
    return os.environ.get("USBMUXD_SOCKET_ADDRESS") or "/var/run/usbmuxd"


def usbmuxd_installed() -> bool:
    """macOS has usbmuxd built in; Linux needs the 'usbmuxd' package."""
    if sys.platform == "darwin" or "USBMUXD_SOCKET_ADDRESS" in os.environ:
        return True
    return any(
        Path(d, "usbmuxd").exists() for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin")
    )


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


class _NoTarget(Exception):
    pass


def _stage_name(part: str) -> str:
    """A phone's path component as a name on this computer's disk: itself when any disk
    takes it; else (over MAX_NAME_BYTES, or bytes that are not UTF-8) a safe name
    plus a hash of the original, so that two odd names never share a staging file."""
    raw = part.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES and raw.decode("utf-8", "replace") == part:
        return part
    stem, dot, ext = safe_name(part).rpartition(".")
    if not dot:
        stem, ext = ext, ""
    return f"{stem}~{hashlib.sha256(raw).hexdigest()[:8]}{dot}{ext}"


def _resume_point(part: Path, meta: Path, size: int, mtime_ns: int) -> tuple[int, Any]:
    """Where to start: the last checkpoint of a partial copy of the same file (same size
    and mtime on the phone), with the hash of the bytes before it; else 0."""
    h = hashlib.sha256()
    try:
        saved = json.loads(meta.read_text())
        if (saved["size"], saved["mtime_ns"]) != (size, mtime_ns):
            return 0, h
        offset = int(saved["offset"])
        with open(part, "r+b") as f:
            f.truncate(offset)  # bytes after the checkpoint may not have reached the disk
            remaining = offset
            while remaining:
                chunk = f.read(min(remaining, 4 * 1024 * 1024))
                if not chunk:
                    return 0, hashlib.sha256()
                h.update(chunk)
                remaining -= len(chunk)
        return offset, h
    except (OSError, ValueError, KeyError):
        return 0, hashlib.sha256()


def _write_hashed(out: BinaryIO, h: Any, chunk: bytes) -> None:
    h.update(chunk)
    out.write(chunk)


def _checkpoint(out: BinaryIO, meta: Path, f: DeviceFile, offset: int) -> None:
    out.flush()
    os.fsync(out.fileno())
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps({"size": f.size, "mtime_ns": f.mtime_ns, "offset": offset}))
    os.replace(tmp, meta)


def _local_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).isoformat(timespec="seconds")


def _is_render(path: str) -> bool:
    """/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.heic"""
    parts = path.split("/")
    return (
        len(parts) == 8
        and parts[4].upper().endswith(("APPLE", "IMPRT", "CLOUD"))
        and parts[6] == "Adjustments"
        and parts[7].startswith("FullSizeRender.")
    )


def _stills(paths: list[str]) -> dict[tuple[str, str], str]:
    """(folder, lower-case stem) -> the still's path, for every still on the phone."""
    index: dict[tuple[str, str], str] = {}
    for path in sorted(paths, reverse=True):  # the first in name order wins
        folder, _, name = path.rpartition("/")
        if not path.startswith(MUTATIONS) and kind_from_name(name) in (Kind.PHOTO, Kind.RAW):
            index[(folder, stem_of(name))] = path
    return index


def _lead(path: str, stills: dict[tuple[str, str], str]) -> str | None:
    """The still a file belongs with: a Live Photo movie or an .AAE beside it (same
    folder, same stem), or the original of a rendered edit."""
    if path.startswith(MUTATIONS):
        parts = path.split("/")  # '', PhotoData, Mutations, DCIM, 100APPLE, IMG_0001, ...
        return stills.get(("/DCIM/" + parts[4], parts[5].lower()))
    folder, _, name = path.rpartition("/")
    if kind_from_name(name) in (Kind.PHOTO, Kind.RAW):
        return None
    return stills.get((folder, stem_of(name)))


def _order(f: DeviceFile) -> tuple[int, str]:
    """Stills first, so a movie, sidecar or edit finds its still already imported."""
    if f.path.startswith(MUTATIONS):
        return 2, f.path
    return (0 if kind_from_name(f.path) in (Kind.PHOTO, Kind.RAW) else 1), f.path
