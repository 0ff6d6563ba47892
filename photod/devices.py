"""Phones: notice them, import what is new, say what is going on.

One thread runs an asyncio loop (pymobiledevice3 is asyncio-only) with:
- the usbmuxd watcher (``sources/iphone.watch``): attach and detach events;
- one session task per attached phone (so one import at a time per phone), which
  connects, waits for Trust or unlock where needed, and runs the import
  (``phoneimport``), retrying what failed;
- each phone's record (state, detail, last import) for `photod status`, saved to the
  catalog off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from photod import failpoints, usb
from photod.catalog import Catalog, DeviceRecord, now_iso
from photod.config import Config, IPhoneSource
from photod.errors import (
    DeviceGone,
    DeviceProblem,
    DeviceStalled,
    DeviceUntrusted,
    PairingDenied,
    Stopping,
)
from photod.ingest import Ingestor
from photod.logs import log
from photod.phoneimport import ImportProgress, PhoneImport

if TYPE_CHECKING:
    from photod.sources.iphone import PhoneLink

RETRY = 2.0  # seconds between tries while waiting for Trust, an unlock or a target


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
        self._imports: dict[str, ImportProgress] = {}  # the import running on each phone
        self.usbmuxd_up: bool | None = None
        self._stopping = False
        # Each phone's record is saved off the event loop, in order, by one thread: a
        # catalog busy with a long write must not stall every phone's session.
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="devices-save")
        self.importer = PhoneImport(catalog, ingestor, workers, self.roots, self._set)

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
        self._saver.shutdown(wait=True)  # the last states ("photod stopped") are saved

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
            log.info("usbmuxd_connected", socket=usb.usbmuxd_socket())
        elif self.usbmuxd_up is not False:
            installed = usb.usbmuxd_installed()
            (log.info if installed else log.warning)(
                "usbmuxd_waiting",
                socket=usb.usbmuxd_socket(),
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
                await self._begin(udid, source, product)
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

    async def _begin(self, udid: str, source: IPhoneSource, name: str = "") -> None:
        """A phone's record at attach: what the catalog knew of it, state 'attached'."""
        known = await asyncio.to_thread(self.catalog.devices)
        old = next((d for d in known if d.udid == udid), None)
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
            self._save(record)

    def _save(self, record: DeviceRecord) -> None:
        """The one way the event loop writes to the catalog: handed to the saver."""
        with contextlib.suppress(RuntimeError):  # shut down: photod is stopping
            self._saver.submit(self._save_now, record)

    def _save_now(self, record: DeviceRecord) -> None:
        try:
            self.catalog.save_device(record)
        except Exception as exc:  # a full state dir: status shows the phone a moment late
            log.warning("device_state_unsaved", udid=record.udid, error=str(exc))

    # -- one phone ----------------------------------------------------------------------

    async def _session(self, udid: str, source: IPhoneSource) -> None:
        from photod.sources.iphone import PhoneLink

        ending = self._ending.pop(udid, None)
        if ending is not None:  # a quick unplug and replug: let the last session finish
            await asyncio.gather(ending, return_exceptions=True)
        await self._begin(udid, source)
        self._save(self._records[udid])
        announced = False
        told: str | None = None  # the problem already logged, so a retry loop logs it once
        failures = 0  # imports in a row that failed on something other than the phone
        progress = ImportProgress()
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
                    progress = self._imports[udid] = ImportProgress()
                    await self.importer.run(link, source, progress)
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


class _NoTarget(Exception):
    pass
