"""Phones: notice them, import what is new, say what is going on.

One thread runs an asyncio loop (pymobiledevice3 is asyncio-only) with:
- the attach and detach watcher (usbmuxd's, ``sources/iphone.watch``), and the look at
  the USB bus for a phone usbmuxd hides until it trusts this computer;
- one session task per attached phone (so one import at a time per phone), which
  connects, waits for Trust or unlock where needed, runs the import and retries what
  failed (``phonesession``);
- each phone's record (state, detail, last import) for `photod status`, saved to the
  catalog off the loop (``phonerecords``).

How a phone is reached is injected (``sources.phone.Connect`` and ``Watch``); by default
through usbmuxd, whose library loads only when the thread starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from photod import failpoints, usb
from photod.catalog import Catalog
from photod.config import DaemonConfig, IPhoneSource
from photod.errors import DeviceUntrusted
from photod.ingest import Ingestor
from photod.logs import log
from photod.phoneimport import PhoneImport
from photod.phonerecords import CatalogLane, PhoneRecords
from photod.phonesession import RETRY, PhoneSession, SessionContext
from photod.sources.phone import Connect, PhoneLink, Watch


class DeviceManager:
    """Phones for every ``type = "iphone"`` source."""

    def __init__(
        self,
        sources: list[IPhoneSource],
        timing: DaemonConfig,
        roots: dict[str, Path],
        pair_dir: Path,
        catalog: Catalog,
        ingestor: Ingestor,
        workers: Executor,
        targets_ready: Callable[[], bool],
        *,
        connect: Connect | None = None,
        watch: Watch | None = None,
        on_bus: Callable[[], dict[str, str]] = usb.apple_phones,
        retry: float = RETRY,
        imported: Callable[[], None] = lambda: None,
    ) -> None:
        """``timing``: the retry and rescan intervals; ``roots``: where each phone's
        files are staged; ``pair_dir``: where pairing records are kept.  ``connect``
        and ``watch``: how phones are reached and followed (default: usbmuxd);
        ``on_bus``: the Apple phones on the USB bus (serial -> product); ``retry``:
        seconds between tries while waiting for Trust, an unlock or a target;
        ``imported``: called after each import."""
        self.sources = sources
        self.pair_dir = pair_dir
        self._watch_phones = watch
        self._on_bus = on_bus
        self.retry = retry
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devices", daemon=True)
        self._main: asyncio.Task[None] | None = None
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._phones: dict[str, PhoneSession] = {}  # the session of each attached phone
        self._ending: dict[str, asyncio.Task[None]] = {}  # cancelled, still cleaning up
        self._visible: set[str] = set()  # UDIDs usbmuxd lists now, without dashes
        self.usbmuxd_up: bool | None = None
        self._stopping = False
        # Every catalog call from the loop goes through the lane, off the loop: a
        # catalog busy with a long write must not stall every phone's session.
        self.lane = CatalogLane(catalog)
        self.records = PhoneRecords(self.lane)
        self.importer = PhoneImport(self.lane, ingestor, workers, roots, self.records.set, imported)
        self._context = SessionContext(
            connect=connect or _usbmuxd_connect,
            pair_dir=pair_dir,
            records=self.records,
            importer=self.importer,
            targets_ready=targets_ready,
            timing=timing,
            roots=roots,
            stopping=lambda: self._stopping,
            retry=retry,
        )

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

        # Cancelled again each second: a cancel can be swallowed on its way (Python
        # 3.11's asyncio.wait_for loses one that lands as what it awaits completes),
        # and a session that missed it would sleep on to its next look.
        deadline = time.monotonic() + 30
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):  # the loop closed as its thread ends
                self.loop.call_soon_threadsafe(cancel)
            self._thread.join(timeout=1)
        self.lane.close()  # the last states ("photod stopped") are saved

    def alive(self) -> bool:
        return self._thread.is_alive()

    def live(self) -> list[dict[str, Any]]:
        """Each phone attached now: its state and, while it imports, how far it got
        (for `photod status` through the control socket; read from another thread, so
        only copies are taken)."""
        out = []
        for udid, record in self.records.items():
            session = self._phones.get(udid)
            if udid not in self._sessions or session is None:
                continue
            row: dict[str, Any] = {"device": record.name, "udid": udid, "state": record.state,
                                   "detail": record.detail}  # fmt: skip
            p = session.progress
            if record.state == "importing":
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
        watch = self._watch_phones
        if watch is None:
            from photod.sources import iphone  # pymobiledevice3 loads only for a phone source

            watch = iphone.watch
        self.pair_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        hidden = asyncio.create_task(self._watch_untrusted())
        try:
            await watch(self._attached, self._detached, self._usbmuxd)
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
            await asyncio.sleep(self.retry)
            on_bus = await asyncio.to_thread(self._on_bus) if self.usbmuxd_up else {}
            for serial, product in on_bus.items():
                if not usb.valid(serial):
                    continue  # (not an iPhone's id: `_attached` says so if usbmuxd lists it)
                udid = usb.dashed(serial)
                source = self._source_for(udid)
                if serial in self._visible or serial in told or source is None:
                    continue
                told.add(serial)
                await self.records.begin(udid, source.name, product)
                self.records.problem(udid, DeviceUntrusted(), log.info)
            for serial in list(told):
                if serial in self._visible:
                    told.discard(serial)  # trusted now: its session took over
                elif serial not in on_bus:
                    told.discard(serial)  # unplugged before tapping Trust
                    self.records.set(usb.dashed(serial), "detached", "unplugged before Trust")

    def _source_for(self, udid: str) -> IPhoneSource | None:
        for source in self.sources:
            if not source.udids or usb.normal(udid) in {usb.normal(u) for u in source.udids}:
                return source
        return None

    def _attached(self, udid: str) -> None:
        failpoints.hit("device_attached")  # the fault campaign's thread that dies
        if not usb.valid(udid):  # (a hostile device: its id names staging folders)
            log.warning("device_refused", udid=udid, detail="its id is not an iPhone's "
                        "UDID (24 or 40 hexadecimal digits): nothing is read from it")  # fmt: skip
            return
        self._visible.add(usb.normal(udid))
        source = self._source_for(udid)
        if source is None:
            log.info("device_ignored", udid=udid, detail="not in any iphone source's udids")
            return
        running = self._sessions.get(udid)
        if running is not None and not running.done():
            return
        session = self._phones[udid] = PhoneSession(udid, source, self._context)
        self._sessions[udid] = self.loop.create_task(self._session(udid, session))

    def _detached(self, udid: str) -> None:
        self._visible.discard(usb.normal(udid))
        self._phones.pop(udid, None)
        task = self._sessions.pop(udid, None)
        if task is not None:
            task.cancel()
            self._ending[udid] = task

    async def _session(self, udid: str, session: PhoneSession) -> None:
        ending = self._ending.pop(udid, None)
        if ending is not None:  # a quick unplug and replug: let the last session finish
            await asyncio.gather(ending, return_exceptions=True)
            # Let go of it: this frame lives on in this session's cancel's traceback, and
            # each session would hold the one before it, every plug-in since the start.
            del ending
        await session.run()


async def _usbmuxd_connect(udid: str, pair_dir: Path, timeout: float) -> PhoneLink:
    from photod.sources import iphone  # pymobiledevice3 loads only when a phone is reached

    return await iphone.connect(udid, pair_dir, timeout)
