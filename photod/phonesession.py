"""One attached phone, from plug-in to unplug: its retry state machine.

Each go connects, pairs where needed, starts the file service, and imports when a
target can take the files; then the phone stays attached and is looked at again every
``rescan_interval``.  What stops a go is said once (a retry loop must not flood the log)
and shown as the phone's state, then the next go comes:

    untrusted       the Trust dialog is open: the link waits a while for the answer,
                    then asked again after ``retry`` seconds
    locked          the phone must be unlocked: tried again after ``retry``
    waiting         no target can take the files: tried again after ``retry``
    disconnected    the link broke (usually an unplug, whose detach ends the session
                    meanwhile): said each time, tried again after ``retry``
    stalled         the phone stopped answering: said each time, tried again
    pairing_denied  Don't Trust was tapped: nothing more until the phone is plugged in again
    refused         the device answers as no iPhone does: nothing more until plugged in again
    error           anything else (a full staging disk, a bug): retried with backoff,
                    ``retry_interval`` doubling up to ``retry_max``

Cancelled at unplug (state 'detached', with what is left to import) or when photod stops.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from photod.config import DaemonConfig, IPhoneSource
from photod.errors import (
    DeviceGone,
    DeviceProblem,
    DeviceRefused,
    DeviceStalled,
    DeviceUntrusted,
    PairingDenied,
    Stopping,
    kind_of,
)
from photod.logs import log
from photod.phoneimport import ImportProgress, PhoneImport
from photod.phonerecords import PhoneRecords
from photod.sources.phone import Connect, PhoneLink

RETRY = 2.0  # seconds between tries while waiting for Trust, an unlock or a target


@dataclass(frozen=True)
class SessionContext:
    """What every phone's session shares (made once, by ``DeviceManager``)."""

    connect: Connect
    pair_dir: Path  # the pairing records
    records: PhoneRecords
    importer: PhoneImport
    targets_ready: Callable[[], bool]
    timing: DaemonConfig  # rescan_interval, and the backoff of failed imports
    roots: dict[str, Path]  # each source's staging folder
    stopping: Callable[[], bool]  # photod is stopping (else a cancel is an unplug)
    retry: float = RETRY


class PhoneSession:
    """One phone's session: ``run()`` until cancelled."""

    def __init__(self, udid: str, source: IPhoneSource, context: SessionContext) -> None:
        self.udid = udid
        self.source = source
        self.context = context
        self.records = context.records
        self.progress = ImportProgress()  # of the import running now (`photod status`)
        self._told: str | None = None  # the problem already said, so a retry says it once
        self._failures = 0  # imports in a row that failed on something other than the phone
        self._announced = False

    async def run(self) -> None:
        await self.records.begin(self.udid, self.source.name)
        self.records.save(self.records[self.udid])
        try:
            while True:
                await self._go()
        except asyncio.CancelledError:
            self._ended()
            raise

    async def _go(self) -> None:
        """One go: connect and import, then rest; or say what stopped it, and wait."""
        link: PhoneLink | None = None
        try:
            link = await self.context.connect(self.udid, self.context.pair_dir, self.source.timeout)
            await self._import(link)
            self._told, self._failures = None, 0
            await self._close(link)
            link = None
            # Stay attached; look again now and then for photos taken meanwhile.
            await asyncio.sleep(self.context.timing.rescan_interval)
        except _NoTarget:
            if self._told != "no_target":
                log.warning(
                    "device_waiting",
                    device=self.records[self.udid].name,
                    udid=self.udid,
                    detail="no target is available to copy to; the import starts when one is",
                )
                self.records.set(self.udid, "waiting", "no target is available")
                self._told = "no_target"
            await asyncio.sleep(self.context.retry)
        except (PairingDenied, DeviceRefused) as exc:
            self.records.problem(self.udid, exc, log.warning)
            await asyncio.Event().wait()  # until the phone is unplugged
        except DeviceProblem as exc:
            await self._device_problem(exc)
        except (Stopping, asyncio.CancelledError):
            raise
        except Exception as exc:  # a session boundary: log, retry with backoff
            await self._failed(exc)
        finally:
            if link is not None:
                await self._close(link)

    @staticmethod
    async def _close(link: PhoneLink) -> None:
        """Close the link; a cancel (unplugged, photod stopping) that the close swallowed
        on its way (pymobiledevice3's AFC close suppresses one; Python 3.11's wait_for
        loses one that lands as what it awaits completes) is raised again: the session
        must not outlive its phone."""
        await link.close()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError()

    async def _import(self, link: PhoneLink) -> None:
        if not self._announced:
            self.records.describe(self.udid, name=link.name, model=link.model, ios=link.ios)
            self.records.set(self.udid, "attached")
            log.info(
                "device_attached",
                device=link.name,
                model=link.model,
                ios=link.ios,
                udid=self.udid,
                source=self.source.name,
            )
            self._announced = True
        if not link.paired:
            await link.pair(self._waiting_for_trust)
            self.records.describe(self.udid, name=link.name, ios=link.ios)
        await link.start_files()
        if not self.context.targets_ready():
            raise _NoTarget()
        self.progress = ImportProgress()
        await self.context.importer.run(link, self.source, self.progress)

    def _waiting_for_trust(self) -> None:
        if self._told != DeviceUntrusted.state:
            self.records.problem(self.udid, DeviceUntrusted(), log.info)
            self._told = DeviceUntrusted.state

    async def _device_problem(self, exc: DeviceProblem) -> None:
        if isinstance(exc, DeviceGone):
            # Usually an unplug: the detach event cancels this session within a
            # moment; only a phone still listed is worth a line.
            await asyncio.sleep(self.context.retry)
        if self._told != exc.state:
            level = log.warning if isinstance(exc, DeviceStalled) else log.info
            self.records.problem(self.udid, exc, level)
            self._told = exc.state
        if isinstance(exc, DeviceGone | DeviceStalled):
            self._told = None  # each drop or stall is news
        await asyncio.sleep(self.context.retry)

    async def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self._failures += 1
        timing = self.context.timing
        delay = min(timing.retry_max, timing.retry_interval * 2 ** (self._failures - 1))
        # The same failure again is not news, whichever file or folder it struck: a
        # full disk fails the next folder the next time round.
        kind = kind_of(exc)
        if self._told != kind:
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            (log.warning if full else log.exception)(
                "device_import_failed",
                device=self.records[self.udid].name,
                udid=self.udid,
                error=error,
                detail=f"no space left to stage files in {self.context.roots[self.source.name]}; "
                "free some space there (or move [daemon] state_dir)"
                if full
                else "retried with backoff",
                retry_in=round(delay),
            )
            self._told = kind
        self.records.set(self.udid, "error", error)  # shown until a retry gets further
        await asyncio.sleep(delay)

    def _ended(self) -> None:
        """Cancelled: unplugged (say what is left for the next plug-in), or photod stops."""
        unfinished = self.progress.files - self.progress.done_files
        if self.context.stopping():
            self.records.set(self.udid, "detached", "photod stopped")
            return
        log.info(
            "device_detached",
            device=self.records[self.udid].name,
            udid=self.udid,
            unfinished=unfinished,
            detail=f"{unfinished} file(s) left to import at the next plug-in"
            if unfinished
            else "nothing left to import",
        )
        self.records.set(
            self.udid, "detached", f"{unfinished} file(s) not imported yet" if unfinished else ""
        )


class _NoTarget(Exception):
    pass
