"""A fake usbmuxd with fake iPhones behind it, speaking the real wire protocols on a
local socket, so that pymobiledevice3's own client code runs unmodified in tests.

- usbmux: 16-byte little-endian header (length, version 1, type 8 = plist, tag) and an
  XML plist; after a ``Connect`` answered with Result 0 the same socket carries the
  device stream for the asked port.
- lockdownd (port 62078): 4-byte big-endian length and an XML plist; no TLS
  (``EnableSessionSSL``/``EnableServiceSSL`` are false).
- AFC: 40-byte header ``<8sQQQQ`` (magic, entire length, this length, packet number,
  operation) and a payload; replies echo the packet number.

Each phone serves a real folder as its ``/var/mobile/Media``.  Tests steer the phone the
way a person would (tap Trust, unlock, unplug) and inject faults (unreadable originals,
an unplug or a stall after N bytes, usbmuxd going away).  Everything runs in one
asyncio loop on a thread of its own; the public methods are safe to call from tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import plistlib
import posixpath
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LOCKDOWN_PORT = 62078
AFC_MAGIC = b"CFA6LPAA"
AFC_HEADER = struct.Struct("<8sQQQQ")
# AFC operations and status codes (the subset a photo import uses).
OP_STATUS, OP_DATA, OP_READ_DIR, OP_GET_FILE_INFO, OP_GET_DEVINFO = 0x1, 0x2, 0x3, 0xA, 0xB
OP_FILE_OPEN, OP_FILE_OPEN_RES, OP_READ, OP_FILE_SEEK, OP_FILE_CLOSE = 0xD, 0xE, 0xF, 0x11, 0x14
AFC_OK, AFC_NOT_FOUND, AFC_NOT_SUPPORTED, AFC_IO_ERROR, AFC_INVALID_ARG = 0, 8, 15, 20, 7

_DEVICE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DEVICE_PUBLIC_KEY = _DEVICE_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
)
T = TypeVar("T")


class LyingReply(bytes):
    """An AFC reply whose header gives ``entire`` as its length (a hostile phone's): the
    fake sends 256 MB of zeros after it, then waits for the computer to hang up."""

    entire: int

    def __new__(cls, entire: int) -> LyingReply:
        reply = super().__new__(cls, b"")
        reply.entire = entire
        return reply


@dataclass
class FakePhone:
    """One phone.  ``media`` is the folder served as /var/mobile/Media."""

    udid: str
    media: Path
    name: str = "Test iPhone"
    product_type: str = "iPhone14,5"
    ios: str = "17.5.1"
    trust: str = "trusted"  # 'trusted', 'pending' (Trust dialog open) or 'denied'
    locked: bool = False
    paired_hosts: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)  # AFC paths whose reads fail
    unlistable: set[str] = field(default_factory=set)  # AFC paths it will not list or stat
    cut_after: int | None = None  # unplug once this many file bytes were served
    stall_after: int | None = None  # stop answering once this many file bytes were served
    # What the phone was asked for: tests assert what photod read.
    opened: Counter[str] = field(default_factory=Counter)
    bytes_read: Counter[str] = field(default_factory=Counter)
    seeks: list[tuple[str, int]] = field(default_factory=list)
    served: int = 0
    afc_sessions: int = 0  # AFC connections being served now
    pair_attempts: int = 0
    # Directory entries a broken or malicious phone could send: (folder, name) -> the
    # local file served for it.  The name may hold "..", slashes, control characters,
    # bytes that are not UTF-8 (as surrogate escapes), or be absolute.
    hostile: dict[tuple[str, str], Path] = field(default_factory=dict)

    def afc_path(self, path: str) -> Path:
        for (folder, name), local in self.hostile.items():
            if posixpath.join(folder, name) == path:
                return local
        rel = os.path.normpath("/" + path).lstrip("/")
        return self.media / rel

    def reset_counters(self) -> None:
        self.opened.clear()
        self.bytes_read.clear()
        self.seeks.clear()
        self.served = 0


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


class FakeUsbmuxd:
    """usbmuxd on an AF_UNIX socket; ``plug``/``unplug`` phones, ``stop``/``start`` the
    daemon itself (on Linux usbmuxd exits when the last phone is unplugged)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.base_events.Server | None = None
        self.phones: dict[int, FakePhone] = {}  # usbmux DeviceID -> phone
        self.pair_records: dict[str, bytes] = {}  # udid -> plist bytes (usbmuxd keeps them)
        self._ids = itertools.count(1)
        self._ports = itertools.count(49152)
        self._services: dict[tuple[str, int], str] = {}  # (udid, port) -> service name
        self._listeners: list[_Conn] = []
        self._conns: set[_Conn] = set()
        self._device_conns: dict[str, list[_Conn]] = {}
        self._unstall: dict[str, asyncio.Event] = {}
        self.listen_count = 0
        self.connects = 0

    # -- test controls (thread-safe) --------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        """usbmuxd exits: the socket disappears, every connection drops."""
        self._call(self._stop())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
            self._call(asyncio.sleep(0.1))  # let the aborted connections finish
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def plug(self, phone: FakePhone, paired_host: bool = True) -> None:
        """Plug a phone in.  ``paired_host``: this computer paired with it before
        (usbmuxd holds a pair record and the phone knows the host)."""
        if paired_host and phone.udid not in self.pair_records:
            host_id = f"HOST-{phone.udid}"
            phone.paired_hosts.add(host_id)
            record = {"HostID": host_id, "SystemBUID": "FAKE-BUID", "WiFiMACAddress": "00:00"}
            self.pair_records[phone.udid] = plistlib.dumps(record)
        self._call(self._plug(phone))

    def unplug(self, phone: FakePhone) -> None:
        self._call(self._unplug(phone))

    def unstall(self, phone: FakePhone) -> None:
        phone.stall_after = None
        self.loop.call_soon_threadsafe(self._unstall_event(phone).set)

    def plugged(self) -> list[str]:
        return [p.udid for p in self.phones.values()]

    # -- daemon ------------------------------------------------------------------------

    async def _start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=1 << 20
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in self._listeners:
            conn.abort()
        self._listeners.clear()
        for conn in list(self._conns):
            conn.abort()
        self._device_conns.clear()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _plug(self, phone: FakePhone) -> None:
        device_id = next(self._ids)
        self.phones[device_id] = phone
        for conn in list(self._listeners):
            await self._send_mux(conn, 0, self._attached(device_id, phone))

    async def _unplug(self, phone: FakePhone) -> None:
        for device_id, p in list(self.phones.items()):
            if p is phone:
                del self.phones[device_id]
                for conn in list(self._listeners):
                    await self._send_mux(
                        conn, 0, {"MessageType": "Detached", "DeviceID": device_id}
                    )
        for conn in self._device_conns.pop(phone.udid, []):
            conn.abort()

    def _unstall_event(self, phone: FakePhone) -> asyncio.Event:
        return self._unstall.setdefault(phone.udid, asyncio.Event())

    @staticmethod
    def _attached(device_id: int, phone: FakePhone) -> dict[str, Any]:
        return {
            "MessageType": "Attached",
            "DeviceID": device_id,
            "Properties": {
                "ConnectionType": "USB",
                "DeviceID": device_id,
                "SerialNumber": phone.udid,
                "ProductID": 0x12A8,
                "LocationID": device_id,
            },
        }

    async def _send_mux(self, conn: _Conn, tag: int, message: dict[str, Any]) -> None:
        payload = plistlib.dumps(message)
        conn.writer.write(struct.pack("<IIII", 16 + len(payload), 1, 8, tag) + payload)
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(reader, writer)
        self._conns.add(conn)
        try:
            while True:
                header = await reader.readexactly(16)
                length, _version, _type, tag = struct.unpack("<IIII", header)
                request = plistlib.loads(await reader.readexactly(length - 16))
                kind = request.get("MessageType")
                if kind == "ReadBUID":
                    await self._send_mux(conn, tag, {"BUID": "FAKE-BUID"})
                elif kind == "ListDevices":
                    devices = [self._attached(i, p) for i, p in self.phones.items()]
                    await self._send_mux(conn, tag, {"DeviceList": devices})
                elif kind == "Listen":
                    self.listen_count += 1
                    await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 0})
                    self._listeners.append(conn)
                    for device_id, phone in list(self.phones.items()):
                        await self._send_mux(conn, 0, self._attached(device_id, phone))
                elif kind == "ReadPairRecord":
                    record = self.pair_records.get(request["PairRecordID"])
                    if record is None:
                        await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 2})
                    else:
                        await self._send_mux(conn, tag, {"PairRecordData": record})
                elif kind == "SavePairRecord":
                    self.pair_records[request["PairRecordID"]] = request["PairRecordData"]
                    await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 0})
                elif kind == "Connect":
                    phone = self.phones.get(request["DeviceID"])
                    port = socket.ntohs(request["PortNumber"])
                    service = "lockdown" if port == LOCKDOWN_PORT else None
                    if phone is not None and service is None:
                        service = self._services.get((phone.udid, port))
                    if phone is None or service is None:
                        await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 3})
                        continue
                    self.connects += 1
                    await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 0})
                    self._device_conns.setdefault(phone.udid, []).append(conn)
                    if service == "lockdown":
                        await self._lockdown(conn, phone)
                    else:
                        await self._afc(conn, phone)
                    return
                else:
                    await self._send_mux(conn, tag, {"MessageType": "Result", "Number": 1})
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(conn)
            if conn in self._listeners:
                self._listeners.remove(conn)
            writer.close()

    # -- lockdownd ---------------------------------------------------------------------

    def _values(self, phone: FakePhone) -> dict[str, Any]:
        return {
            "UniqueDeviceID": phone.udid,
            "DeviceName": phone.name,
            "ProductType": phone.product_type,
            "ProductVersion": phone.ios,
            "BuildVersion": "21F90",
            "DeviceClass": "iPhone",
            "UniqueChipID": 1234567890,
            "DevicePublicKey": DEVICE_PUBLIC_KEY,
            "WiFiAddress": "00:11:22:33:44:55",
            "PasswordProtected": phone.locked,
        }

    async def _lockdown(self, conn: _Conn, phone: FakePhone) -> None:
        session = False
        while True:
            (length,) = struct.unpack(">I", await conn.reader.readexactly(4))
            request = plistlib.loads(await conn.reader.readexactly(length))
            name = request.get("Request")
            answer: dict[str, Any] = {"Request": name}
            if name == "QueryType":
                answer["Type"] = "com.apple.mobile.lockdown"
            elif name == "GetValue":
                values = self._values(phone)
                key = request.get("Key")
                answer["Value"] = values.get(key) if key else values
                if key and key not in values:
                    answer = {"Request": name, "Error": "MissingValue"}
            elif name == "StartSession":
                if request.get("HostID") in phone.paired_hosts:
                    session = True
                    answer.update(SessionID="FAKE-SESSION", EnableSessionSSL=False)
                else:
                    answer["Error"] = "InvalidHostID"
            elif name == "StopSession":
                session = False
                answer["Result"] = "Success"
            elif name == "Pair":
                phone.pair_attempts += 1
                if phone.locked:
                    answer["Error"] = "PasswordProtected"
                elif phone.trust == "pending":
                    answer["Error"] = "PairingDialogResponsePending"
                elif phone.trust == "denied":
                    answer["Error"] = "UserDeniedPairing"
                else:
                    phone.paired_hosts.add(request["PairRecord"]["HostID"])
                    answer["EscrowBag"] = b"fake-escrow-bag"
            elif name == "StartService":
                if not session:
                    answer["Error"] = "InvalidConnection"
                elif phone.locked:
                    answer["Error"] = "PasswordProtected"
                elif request.get("Service") != "com.apple.afc":
                    answer["Error"] = "InvalidService"
                else:
                    port = next(self._ports)
                    self._services[(phone.udid, port)] = "afc"
                    answer.update(Service="com.apple.afc", Port=port, EnableServiceSSL=False)
            else:
                answer["Error"] = "UnknownRequest"
            try:
                payload = plistlib.dumps(answer)
            except ValueError:  # text XML cannot carry (a hostile name): as a binary plist
                payload = plistlib.dumps(answer, fmt=plistlib.FMT_BINARY)
            conn.writer.write(struct.pack(">I", len(payload)) + payload)
            await conn.writer.drain()

    # -- AFC ---------------------------------------------------------------------------

    async def _afc(self, conn: _Conn, phone: FakePhone) -> None:
        handles: dict[int, tuple[str, int]] = {}  # handle -> (AFC path, fd)
        positions: dict[int, int] = {}
        next_handle = itertools.count(1)
        phone.afc_sessions += 1
        try:
            while True:
                header = await conn.reader.readexactly(AFC_HEADER.size)
                magic, entire, _this, number, op = AFC_HEADER.unpack(header)
                if magic != AFC_MAGIC:
                    return
                body = await conn.reader.readexactly(entire - AFC_HEADER.size)
                reply_op, data = await self._afc_op(
                    phone, op, body, handles, positions, next_handle
                )
                if reply_op is None:  # the phone went away mid-request
                    return
                entire = AFC_HEADER.size + len(data)
                if isinstance(data, LyingReply):
                    entire = data.entire
                conn.writer.write(
                    AFC_HEADER.pack(AFC_MAGIC, entire, AFC_HEADER.size, number, reply_op)
                )
                conn.writer.write(data)
                await conn.writer.drain()
                if isinstance(data, LyingReply):
                    for _ in range(256):  # (bounded: a computer that reads it all survives)
                        conn.writer.write(bytes(1 << 20))
                        await conn.writer.drain()
                    await conn.reader.read()  # until the computer hangs up
                    return
        finally:
            phone.afc_sessions -= 1
            for _, fd in handles.values():
                os.close(fd)

    @staticmethod
    def _status(code: int) -> tuple[int, bytes]:
        return OP_STATUS, struct.pack("<Q", code)

    async def _afc_op(
        self,
        phone: FakePhone,
        op: int,
        body: bytes,
        handles: dict[int, tuple[str, int]],
        positions: dict[int, int],
        next_handle: itertools.count[int],
    ) -> tuple[int | None, bytes]:
        if op == OP_READ_DIR:
            path = body.rstrip(b"\0").decode(errors="surrogateescape")
            local = phone.afc_path(path)
            if path in phone.unlistable:  # a folder the phone cannot read now
                return self._status(AFC_IO_ERROR)
            if not local.is_dir():
                return self._status(AFC_NOT_FOUND)
            names = [".", "..", *sorted(os.listdir(local))]
            names += [name for folder, name in phone.hostile if folder == path]
            return OP_DATA, b"".join(n.encode(errors="surrogateescape") + b"\0" for n in names)
        if op == OP_GET_FILE_INFO:
            path = body.rstrip(b"\0").decode(errors="surrogateescape")
            if path in phone.unlistable:
                return self._status(AFC_IO_ERROR)
            try:
                st = os.stat(phone.afc_path(path))
            except OSError:
                return self._status(AFC_NOT_FOUND)
            kind = "S_IFDIR" if os.path.isdir(phone.afc_path(path)) else "S_IFREG"
            info = {
                "st_size": st.st_size,
                "st_blocks": (st.st_size + 511) // 512,
                "st_nlink": 1,
                "st_ifmt": kind,
                "st_mtime": st.st_mtime_ns,
                "st_birthtime": st.st_mtime_ns,
            }
            return OP_DATA, b"".join(f"{k}\0{v}\0".encode() for k, v in info.items())
        if op == OP_GET_DEVINFO:
            info = {"Model": phone.product_type, "FSTotalBytes": 128 * 10**9, "FSBlockSize": 4096}
            return OP_DATA, b"".join(f"{k}\0{v}\0".encode() for k, v in info.items())
        if op == OP_FILE_OPEN:
            (_mode,) = struct.unpack_from("<Q", body)
            path = body[8:].rstrip(b"\0").decode(errors="surrogateescape")
            try:
                fd = os.open(phone.afc_path(path), os.O_RDONLY)
            except OSError:
                return self._status(AFC_NOT_FOUND)
            handle = next(next_handle)
            handles[handle] = (path, fd)
            positions[handle] = 0
            phone.opened[path] += 1
            return OP_FILE_OPEN_RES, struct.pack("<Q", handle)
        if op == OP_READ:
            handle, size = struct.unpack_from("<QQ", body)
            if handle not in handles:
                return self._status(AFC_INVALID_ARG)
            path, fd = handles[handle]
            if path in phone.unreadable:  # iCloud keeps the original; only a stub here
                return self._status(AFC_IO_ERROR)
            if phone.cut_after is not None and phone.served >= phone.cut_after:
                phone.cut_after = None
                await self._unplug(phone)
                return None, b""
            if phone.stall_after is not None and phone.served >= phone.stall_after:
                await self._unstall_event(phone).wait()
                self._unstall_event(phone).clear()
            limit = size
            if phone.cut_after is not None:
                limit = max(1, min(size, phone.cut_after - phone.served))
            if phone.stall_after is not None:
                limit = max(1, min(limit, phone.stall_after - phone.served))
            data = os.pread(fd, limit, positions[handle])
            positions[handle] += len(data)
            phone.served += len(data)
            phone.bytes_read[path] += len(data)
            return OP_DATA, data
        if op == OP_FILE_SEEK:
            handle, whence, offset = struct.unpack_from("<QQq", body)
            if handle not in handles:
                return self._status(AFC_INVALID_ARG)
            base = {0: 0, 1: positions[handle], 2: os.fstat(handles[handle][1]).st_size}[whence]
            positions[handle] = base + offset
            phone.seeks.append((handles[handle][0], positions[handle]))
            return self._status(AFC_OK)
        if op == OP_FILE_CLOSE:
            (handle,) = struct.unpack_from("<Q", body)
            entry = handles.pop(handle, None)
            positions.pop(handle, None)
            if entry is not None:
                os.close(entry[1])
            return self._status(AFC_OK)
        return self._status(AFC_NOT_SUPPORTED)


# -- camera rolls ------------------------------------------------------------------------


def jpeg(path: Path, seed: int, taken: str = "2026:10:01 12:00:00") -> Path:
    """A small, unique, decodable JPEG with an EXIF capture time."""
    from PIL import Image

    img = Image.new("RGB", (32, 32), ((seed * 37) % 256, (seed * 91) % 256, seed // 256 % 256))
    img.putpixel((seed % 32, seed // 32 % 32), (255, 255, 255))
    exif = Image.Exif()
    exif[0x8769] = {0x9003: taken}  # ExifIFD: DateTimeOriginal
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", exif=exif, quality=90)
    return path


AAE = b"""<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>adjustmentFormatIdentifier</key>
<string>com.apple.photo</string><key>n</key><integer>{n}</integer></dict></plist>
"""


@dataclass
class CameraRoll:
    """What a test phone holds, by AFC path, and which files pair with which."""

    media: Path
    files: dict[str, Path] = field(default_factory=dict)

    def add(self, afc_path: str, local: Path) -> None:
        self.files[afc_path] = local

    def path(self, afc_path: str) -> Path:
        return self.media / afc_path.lstrip("/")


def camera_roll(
    media: Path,
    samples: Path,
    photos: int = 200,
    live: int = 10,
    big_video: int = 0,
    start: int = 1,
) -> CameraRoll:
    """A phone's /DCIM: ``photos`` JPEGs split over 100APPLE and 101APPLE (numbers
    restart, so names repeat across the folders), ``live`` Live Photos (a real HEIC
    sample and a movie with the same stem) each with an .AAE sidecar, and one movie of
    ``big_video`` bytes when asked."""
    from tests.conftest import make_mov

    roll = CameraRoll(media)
    heics = sorted(p for p in samples.iterdir() if p.suffix.upper() == ".HEIC")
    for i in range(start, start + photos):
        folder = "100APPLE" if i % 2 else "101APPLE"
        afc = f"/DCIM/{folder}/IMG_{(i // 2) % 10000:04d}.JPG"
        roll.add(afc, jpeg(roll.path(afc), i, f"2026:09:{1 + i % 28:02d} 10:00:{i % 60:02d}"))
    for j in range(live):
        n = 5000 + start + j
        still = f"/DCIM/100APPLE/IMG_{n:04d}.HEIC"
        tag = f"photod-test-{start}-{j}".encode()  # unique bytes, in a valid 'free' box
        data = heics[j % len(heics)].read_bytes() + struct.pack(">I4s", 8 + len(tag), b"free") + tag
        roll.path(still).write_bytes(data)
        roll.add(still, roll.path(still))
        movie = still.replace(".HEIC", ".MOV")
        when = datetime(2026, 9, 15, 12, j % 60, tzinfo=UTC)
        roll.add(movie, make_mov(roll.path(movie), when, payload=os.urandom(20000)))
        aae = still.replace(".HEIC", ".AAE")
        roll.path(aae).write_bytes(AAE.replace(b"{n}", str(n).encode()))
        roll.add(aae, roll.path(aae))
    if big_video:
        afc = f"/DCIM/100APPLE/IMG_{9000 + start:04d}.MOV"
        path = roll.path(afc)
        when = datetime(2026, 9, 20, 8, 0, tzinfo=UTC)
        make_mov(path, when, payload=b"")
        with open(path, "ab") as f:  # a big mdat's worth of bytes after the header
            left = big_video
            while left:
                chunk = os.urandom(min(left, 8 * 1024 * 1024))
                f.write(chunk)
                left -= len(chunk)
        roll.add(afc, path)
    return roll
