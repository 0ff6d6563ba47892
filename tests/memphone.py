"""iPhones in memory, for tests of the phones' session that run in milliseconds.

``MemUsbmux`` stands where usbmuxd does: its ``watch`` and ``connect`` are what
``DeviceManager`` takes (``sources.phone.Watch`` and ``Connect``), and its links are
``sources.phone.PhoneLink``s.  A ``MemPhone`` holds its files as bytes; a test steers it
the way a person would (tap Trust or Don't Trust, unlock, unplug) and injects the faults
of a real link (an unplug or a stall after N bytes, an original only iCloud has).  Every
trouble is raised as photod's own error, from the call the real adapter
(``sources/iphone.py``) raises it from:

    connect       DeviceGone (not plugged in)
    pair          DeviceLocked, DeviceUntrusted (Trust not tapped in time), PairingDenied
    start_files   DeviceLocked
    open_file     FileUnreadable (no such file)
    read          FileUnreadable (iCloud keeps the original), DeviceGone, DeviceStalled
    any call      DeviceGone once the phone is unplugged

The wire-level fake (``tests/fakephone.py``) stays for the integration tests, which run
pymobiledevice3's own client code.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from photod.errors import (
    DeviceGone,
    DeviceLocked,
    DeviceStalled,
    DeviceUntrusted,
    FileUnreadable,
    PairingDenied,
)
from photod.sources.phone import PhoneFile

READ_SIZE = 4 * 1024 * 1024  # AFC's largest read, as the real link asks for
MTIME_NS = 1_790_000_000_000_000_000  # 2026-09-21: AFC times have microseconds only


@dataclass
class MemPhone:
    """One phone: ``files`` by AFC path (/DCIM/100APPLE/IMG_0001.JPG) -> bytes."""

    udid: str
    files: dict[str, bytes] = field(default_factory=dict)
    name: str = "Test iPhone"
    model: str = "iPhone 13 mini"
    ios: str = "17.5.1"
    paired: bool = True  # trusts this computer already (a pairing record exists)
    trust: str = "trusted"  # the answer to a Trust dialog: 'trusted', 'pending', 'denied'
    trust_wait: float = 0.02  # how long one pairing request waits for that answer
    locked: bool = False
    unreadable: set[str] = field(default_factory=set)  # originals only iCloud has
    cut_after: int | None = None  # unplugged once this many file bytes were served
    stall_after: int | None = None  # reads stop answering once this many were served
    piece: int = READ_SIZE  # the most one read answers (a phone may answer less)
    # Called with each path read, before it is served: the phone writing as it is read.
    on_read: Callable[[str], None] | None = None
    # What the phone was asked for: tests assert what photod read.
    opened: Counter[str] = field(default_factory=Counter)
    bytes_read: Counter[str] = field(default_factory=Counter)
    seeks: list[tuple[str, int]] = field(default_factory=list)
    served: int = 0
    connects: int = 0
    pair_attempts: int = 0
    plugged: bool = False
    plugs: int = 0  # links from an earlier plug-in are gone

    def reset_counters(self) -> None:
        self.opened.clear()
        self.bytes_read.clear()
        self.seeks.clear()
        self.served = 0


class MemUsbmux:
    """usbmuxd in memory.  ``plug``/``unplug`` may be called from the test's thread."""

    def __init__(self) -> None:
        self.phones: dict[str, MemPhone] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached: Callable[[str], None] = lambda udid: None
        self._detached: Callable[[str], None] = lambda udid: None

    async def watch(
        self,
        attached: Callable[[str], None],
        detached: Callable[[str], None],
        usbmuxd: Callable[[bool], None],
    ) -> None:
        """``sources.phone.Watch``: the phones plugged in now, then each plug and unplug."""
        usbmuxd(True)
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._attached, self._detached = attached, detached
            present = [p.udid for p in self.phones.values() if p.plugged]
        for udid in present:  # as usbmuxd replays the attached phones after Listen
            attached(udid)
        try:
            await asyncio.Event().wait()
        finally:
            with self._lock:
                self._loop = None

    def plug(self, phone: MemPhone) -> None:
        with self._lock:
            self.phones[phone.udid] = phone
            phone.plugged = True
            phone.plugs += 1
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._attached, phone.udid)

    def unplug(self, phone: MemPhone) -> None:
        with self._lock:
            phone.plugged = False
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._detached, phone.udid)

    async def connect(self, udid: str, pair_dir: Path, timeout: float) -> MemLink:
        """``sources.phone.Connect``."""
        phone = self.phones.get(udid)
        if phone is None or not phone.plugged:
            raise DeviceGone(f"connect to lockdownd: DeviceNotFoundError: {udid}")
        phone.connects += 1
        return MemLink(self, phone, timeout)


@dataclass
class _Open:
    path: str
    position: int = 0


class MemLink:
    """A ``sources.phone.PhoneLink`` to a ``MemPhone``."""

    def __init__(self, mux: MemUsbmux, phone: MemPhone, timeout: float) -> None:
        self.mux = mux
        self.phone = phone
        self.timeout = timeout
        self.udid = phone.udid
        self.name = phone.name
        self.model = phone.model
        self.ios = phone.ios
        self._plug = phone.plugs
        self._files = False
        self._handles: dict[int, _Open] = {}
        self._next_handle = itertools.count(1)

    def _here(self, what: str) -> MemPhone:
        if not self.phone.plugged or self.phone.plugs != self._plug:
            raise DeviceGone(f"{what}: ConnectionTerminatedError: the phone was unplugged")
        return self.phone

    @property
    def paired(self) -> bool:
        return self.phone.paired

    async def pair(self, waiting: Callable[[], None]) -> None:
        phone = self._here("pair")
        if phone.paired:
            return
        answer = self._ask_trust()
        if answer == "pending":
            waiting()
            deadline = time.monotonic() + phone.trust_wait
            while answer == "pending" and time.monotonic() < deadline:
                await asyncio.sleep(0.001)  # the real link asks again every second
                answer = self._ask_trust()
            if answer == "pending":
                raise DeviceUntrusted()
        self.phone.paired = True
        self.name = phone.name
        self.ios = phone.ios

    def _ask_trust(self) -> str:
        phone = self._here("pair")
        phone.pair_attempts += 1
        if phone.locked:
            raise DeviceLocked()
        if phone.trust == "denied":
            raise PairingDenied()
        return phone.trust

    async def start_files(self) -> None:
        if self._here("start the file service").locked:
            raise DeviceLocked()
        self._files = True

    async def walk(self, top: str, skipped: list[str]) -> AsyncIterator[PhoneFile]:
        assert self._files, "start_files() first"
        for path, data in sorted(self._here(f"list {top}").files.items()):
            if path.startswith(top + "/"):
                await asyncio.sleep(0)
                self._here(f"stat {path}")
                yield PhoneFile(path, len(data), MTIME_NS, MTIME_NS)

    async def stat(self, path: str) -> PhoneFile | None:
        assert self._files, "start_files() first"
        data = self._here(f"stat {path}").files.get(path)
        return None if data is None else PhoneFile(path, len(data), MTIME_NS, MTIME_NS)

    async def open_file(self, path: str) -> int:
        assert self._files, "start_files() first"
        phone = self._here(f"open {path}")
        if path not in phone.files:
            raise FileUnreadable(f"open {path}: AfcException: no such file")
        handle = next(self._next_handle)
        self._handles[handle] = _Open(path)
        phone.opened[path] += 1
        return handle

    async def seek(self, handle: int, offset: int) -> None:
        phone = self._here("seek")
        self._handles[handle].position = offset
        phone.seeks.append((self._handles[handle].path, offset))

    async def read(self, handle: int) -> bytes:
        phone = self._here("read")
        opened = self._handles[handle]
        path = opened.path
        if path in phone.unreadable:
            raise FileUnreadable(f"read: AfcException: {path}: input/output error")
        if phone.cut_after is not None and phone.served >= phone.cut_after:
            phone.cut_after = None  # one unplug, as a person pulls the cable once
            self.mux.unplug(phone)
            raise DeviceGone("read: ConnectionTerminatedError: the phone was unplugged")
        await self._unless_stalled()
        if phone.on_read is not None:
            phone.on_read(path)
        limit = phone.piece
        for after in (phone.cut_after, phone.stall_after):
            if after is not None:
                limit = max(1, min(limit, after - phone.served))
        data = phone.files[path][opened.position : opened.position + limit]
        opened.position += len(data)
        phone.served += len(data)
        phone.bytes_read[path] += len(data)
        await asyncio.sleep(0)
        return data

    async def _unless_stalled(self) -> None:
        """A stalled link answers nothing: after the link's timeout, DeviceStalled (as
        the real link's bound on every call says it)."""
        deadline = time.monotonic() + self.timeout
        while (after := self.phone.stall_after) is not None and self.phone.served >= after:
            if time.monotonic() >= deadline:
                raise DeviceStalled(f"no answer to 'read' within {self.timeout:g} s")
            await asyncio.sleep(0.001)
            self._here("read")

    async def close_file(self, handle: int) -> None:
        self._handles.pop(handle, None)

    async def close(self) -> None:
        self._handles.clear()
