"""iPhones through usbmuxd: the only module that imports pymobiledevice3.

``connect`` and ``watch`` here are the real ``sources.phone.Connect`` and ``Watch``, and
``UsbPhoneLink`` the real ``PhoneLink``.  Everything is asyncio (pymobiledevice3 11.x has
no sync API) and runs on the device thread's loop (``devices.py``).  It turns the
library's exceptions into photod's own (``DeviceLocked``, ``DeviceUntrusted``, ...) and
bounds every call to the phone with a timeout: a stalled USB link becomes
``DeviceStalled``, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pymobiledevice3 import exceptions as pmd
from pymobiledevice3 import usbmux
from pymobiledevice3.lockdown import LockdownClient, create_using_usbmux
from pymobiledevice3.service_connection import ServiceConnection
from pymobiledevice3.services.afc import AfcService

from photod.errors import (
    DeviceGone,
    DeviceLocked,
    DeviceProblem,
    DeviceRefused,
    DeviceStalled,
    DeviceUntrusted,
    FileUnreadable,
    PairingDenied,
)
from photod.library import printable
from photod.logs import log
from photod.sources.phone import READ_SIZE, PhoneFile

# The longest AFC reply read: a read's data, or a folder's listing of some 200,000 names
# (a phone's media folders hold a few thousand).
REPLY_MAX = 2 * READ_SIZE
AFC_HEADER = struct.Struct("<8sQQQQ")  # a reply's magic, lengths, packet number, operation
AFC_MAGIC, AFC_STATUS = b"CFA6LPAA", 1
STAT_BATCH = 128  # stats in flight at once: AFC answers them in order, one round trip
TRUST_WAIT = 60.0  # seconds one pairing request waits for the Trust dialog's answer
NAME_MAX = 80  # characters of the phone's name, model and version kept
WALK_DEPTH = 16  # folders deep a media folder may go (a photo's edit is 6 down)
WALK_ENTRIES = 1_000_000  # entries a media folder may hold (a full 1 TB phone: ~300,000)
T = TypeVar("T")

# The link is gone: usbmuxd closed, the phone was unplugged, a socket broke.
_GONE = (
    pmd.ConnectionFailedToUsbmuxdError,
    pmd.MuxException,
    pmd.DeviceNotFoundError,
    pmd.NoDeviceConnectedError,
    pmd.ConnectionTerminatedError,
    pmd.ConnectionFailedError,
    asyncio.IncompleteReadError,
    ConnectionError,
    EOFError,
)


# -- attach and detach ---------------------------------------------------------------


async def watch(
    attached: Callable[[str], None],
    detached: Callable[[str], None],
    usbmuxd: Callable[[bool], None],
    retry: float = 2.0,
) -> None:
    """Follow usbmuxd's Listen events forever.  ``usbmuxd(False)`` is called once when
    it cannot be reached (on Linux it only runs while a phone is plugged in) and
    ``usbmuxd(True)`` once when it can again; in between the socket is tried every
    ``retry`` seconds, quietly."""
    up: bool | None = None
    while True:
        try:
            mux = await usbmux.create_mux()
        except (*_GONE, OSError):
            if up is not False:
                usbmuxd(False)
                up = False
            await asyncio.sleep(retry)
            continue
        if up is not True:
            usbmuxd(True)
            up = True
        present: set[str] = set()
        try:
            await mux.listen()
            while True:
                # usbmuxd replays every attached phone right after Listen.
                await mux.receive_device_state_update()
                now = {d.serial for d in mux.devices if d.is_usb}
                for udid in sorted(now - present):
                    attached(udid)
                for udid in sorted(present - now):
                    detached(udid)
                present = now
        except (*_GONE, OSError):
            for udid in sorted(present):
                detached(udid)
            usbmuxd(False)
            up = False
            await asyncio.sleep(retry)
        finally:
            with contextlib.suppress(Exception):
                await mux.close()


# -- one phone -----------------------------------------------------------------------


async def connect(udid: str, pair_dir: Path, timeout: float) -> UsbPhoneLink:
    """Connect to lockdownd (name, model and iOS are known from here on).  A phone
    that does not trust this computer yet has no session: ``pair()`` next."""

    async def lockdown() -> LockdownClient:
        # autopair=False: the library's own pairing waits forever for the Trust
        # dialog; pair() below waits in bounded steps and says why it waits.
        return await create_using_usbmux(
            serial=udid, autopair=False, pairing_records_cache_folder=pair_dir
        )

    return UsbPhoneLink(udid, await _bounded(lockdown(), timeout, "connect to lockdownd"), timeout)


class UsbPhoneLink:
    """Lockdown and AFC to one phone (a ``sources.phone.PhoneLink``), made by
    ``connect``; every method raises a ``DeviceProblem`` subclass on trouble."""

    def __init__(self, udid: str, lockdown: LockdownClient, timeout: float) -> None:
        self.udid = udid
        self.lockdown = lockdown
        self.timeout = timeout
        self.afc: AfcService | None = None
        values = lockdown.all_values
        # What the phone says of itself reaches terminals, logs and notifications.
        self.name = printable(str(values.get("DeviceName") or "iPhone"))[:NAME_MAX]
        self.model = printable(str(lockdown.display_name or values.get("ProductType") or ""))[
            :NAME_MAX
        ]
        self.ios = printable(str(values.get("ProductVersion") or ""))[:NAME_MAX]

    @property
    def paired(self) -> bool:
        return bool(self.lockdown.paired)

    async def pair(self, waiting: Callable[[], None]) -> None:
        """Pair with a phone that does not trust this computer.  When its Trust dialog
        is open, ``waiting()`` is called and the same request is repeated every second
        (as pymobiledevice3 does) for up to TRUST_WAIT seconds; then DeviceUntrusted."""
        if self.lockdown.paired:
            return
        try:
            await _bounded(self.lockdown.pair(timeout=0), self.timeout, "pair")
        except DeviceUntrusted:
            waiting()
            await _bounded(
                self.lockdown.pair(timeout=TRUST_WAIT), TRUST_WAIT + self.timeout, "Trust"
            )
        if not await _bounded(self.lockdown.validate_pairing(), self.timeout, "start a session"):
            raise DeviceUntrusted("the phone did not accept the new pairing")
        values = self.lockdown.all_values  # complete now that a session is open
        self.name = printable(str(values.get("DeviceName") or self.name))[:NAME_MAX]
        self.ios = printable(str(values.get("ProductVersion") or self.ios))[:NAME_MAX]

    async def start_files(self) -> None:
        """Start AFC (the phone's media file service).  Refused while it is locked."""
        afc = AfcService(self.lockdown)
        await _bounded(afc.__aenter__(), self.timeout, "start the file service")
        conn = afc.service
        assert isinstance(conn, ServiceConnection), "connected by __aenter__"
        conn.recvall = _CheckedReplies(conn.recvall)  # type: ignore[method-assign]
        self.afc = afc

    async def close(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel (the
        # daemon stopping) that lands as the awaited close completes.
        if self.afc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.afc.aclose()
            self.afc = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.lockdown.close()

    def _files(self) -> AfcService:
        assert self.afc is not None, "start_files() first"
        return self.afc

    async def _call(self, what: str, coro: Awaitable[T]) -> T:
        return await _bounded(coro, self.timeout, what)

    async def walk(self, top: str, skipped: list[str]) -> AsyncIterator[PhoneFile]:
        """Every regular file under ``top`` (missing ``top``: nothing).  Stats go out in
        batches: one round trip each would make a 20,000-file listing slow."""
        afc = self._files()
        folders = [top]
        seen = 0  # entries met: a listing that never ends (a hostile phone's) is cut
        while folders:
            folder = folders.pop(0)
            try:
                names = await self._call(f"list {folder}", afc.listdir(folder))
            except FileUnreadable as exc:  # (gone, or refused: then the listing is not whole)
                if not isinstance(exc.__cause__, pmd.AfcFileNotFoundError):
                    skipped.append(folder)
                continue
            seen += len(names)
            deep = folder.count("/") - top.rstrip("/").count("/") >= WALK_DEPTH
            if seen > WALK_ENTRIES or deep:
                log.warning("device_listing_cut", device=self.name, udid=self.udid, folder=folder,
                            reason=f"more than {WALK_DEPTH} folders deep" if deep else
                            f"more than {WALK_ENTRIES:,} entries under {top}",
                            detail="no phone's media folders look like this; the rest "
                            "of it is not read")  # fmt: skip
                skipped.extend([folder, *folders])  # (what was known there is kept)
                return
            paths = [posixpath.join(folder, n) for n in sorted(names) if n not in ("", ".", "..")]
            for start in range(0, len(paths), STAT_BATCH):
                batch = paths[start : start + STAT_BATCH]
                stats = await self._call(
                    f"stat in {folder}",
                    asyncio.gather(*(afc.stat(p) for p in batch), return_exceptions=True),
                )
                subfolders = []
                for path, st in zip(batch, stats, strict=True):
                    if isinstance(st, pmd.AfcException):  # vanished, or refused
                        if not isinstance(st, pmd.AfcFileNotFoundError):
                            skipped.append(path)
                        continue
                    # The link's trouble (its own errors, the socket's) is the phone's; an
                    # answer it could not even parse (a time too large: EOVERFLOW) the file's.
                    if isinstance(
                        st, pmd.PyMobileDevice3Exception | ConnectionError | TimeoutError
                    ):
                        raise _translate(st, f"stat {path}") from st
                    try:
                        if isinstance(st, BaseException):
                            raise st
                        if st.get("st_ifmt") == "S_IFDIR":
                            subfolders.append(path)
                        elif st.get("st_ifmt") == "S_IFREG":
                            yield _file(path, st)
                    except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
                        # One answer that makes no sense (a hostile phone's): that file's.
                        log.warning("device_file_failed", device=self.name, udid=self.udid,
                                    path=path, error=f"its details make no sense: {exc}"[:300],
                                    detail="not imported")  # fmt: skip
                        skipped.append(path)
                folders.extend(subfolders)

    async def stat(self, path: str) -> PhoneFile | None:
        try:
            st = await self._call(f"stat {path}", self._files().stat(path))
        except FileUnreadable:  # no such file: AFC says so with an error
            return None
        if st.get("st_ifmt") != "S_IFREG":
            return None
        try:
            return _file(path, st)
        except (ValueError, TypeError, KeyError, OverflowError, OSError):
            return None  # (its details make no sense: said when the listing met it)

    async def open_file(self, path: str) -> int:
        return await self._call(f"open {path}", self._files().fopen(path))

    async def seek(self, handle: int, offset: int) -> None:
        await self._call("seek", self._files().fseek(handle, offset))

    async def read(self, handle: int, size: int = READ_SIZE) -> bytes:
        return await self._call("read", self._files().fread(handle, size))

    async def close_file(self, handle: int) -> None:
        with contextlib.suppress(DeviceProblem):
            await self._call("close", self._files().fclose(handle))


class _BadReply(ConnectionError):
    """An AFC reply no phone sends (a hostile device's)."""


class _CheckedReplies:
    """Each AFC reply's header, checked before pymobiledevice3 acts on it: its reader
    reads as many bytes as the header says (a 64-bit length) into memory, so one reply
    of a hostile device's could take all of the computer's memory, and a header it
    cannot parse ends in an assertion.  A reply longer than REPLY_MAX, or not framed as
    AFC frames replies, ends the link instead, and so does every read after it (the
    stream is past its framing).  Installed as the AFC connection's ``recvall``."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]]) -> None:
        self.read = read
        self.payload = 0  # bytes of the current reply still to come after its header
        self.refused: _BadReply | None = None

    async def __call__(self, size: int) -> bytes:
        if self.refused is not None:
            raise self.refused
        data = await self.read(size)
        if self.payload:  # the reader asks for a reply's body right after its header
            self.payload = 0
            return data
        magic, entire, _, _, operation = AFC_HEADER.unpack(data)
        length = entire - AFC_HEADER.size
        if magic != AFC_MAGIC or length < 0 or (operation == AFC_STATUS and length != 8):
            self.refused = _BadReply("it sent a reply that is not framed as AFC replies are")
        elif length > REPLY_MAX:
            self.refused = _BadReply(f"it sent a reply of {length:,} bytes; "
                                     f"no iPhone's is over {REPLY_MAX:,}")  # fmt: skip
        if self.refused is not None:
            raise self.refused
        self.payload = length
        return data


def _file(path: str, st: dict[str, Any]) -> PhoneFile:
    size = int(st["st_size"])
    if size < 0:
        raise ValueError(f"a size of {size}")
    return PhoneFile(path, size, _ns(st["st_mtime"]), _ns(st["st_birthtime"]))


def _ns(value: Any) -> int:
    """AFC reports naive local datetimes (microsecond precision) in pymobiledevice3."""
    return int(value.timestamp() * 1_000_000 + 0.5) * 1000


async def _bounded(coro: Awaitable[T], timeout: float, what: str) -> T:
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError as exc:
        raise DeviceStalled(f"no answer to '{what}' within {timeout:g} s") from exc
    except (pmd.PyMobileDevice3Exception, *_GONE, OSError) as exc:
        raise _translate(exc, what) from exc


def _translate(exc: BaseException, what: str) -> DeviceProblem:
    """photod's name for a library or socket error (anything else is a bug, and is
    left to propagate)."""
    if isinstance(exc, _BadReply):
        return DeviceRefused(str(exc))
    if isinstance(exc, pmd.PasswordRequiredError):
        return DeviceLocked()
    if isinstance(exc, pmd.PairingDialogResponsePendingError | pmd.NotPairedError):
        return DeviceUntrusted()
    if isinstance(exc, pmd.UserDeniedPairingError):
        return PairingDenied()
    if isinstance(exc, pmd.AfcException):  # an OSError too: test it before the link errors
        return FileUnreadable(f"{what}: {exc}")
    return DeviceGone(f"{what}: {type(exc).__name__}: {exc}")
