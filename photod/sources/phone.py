"""What photod uses of a phone: the ``PhoneLink`` interface, and how links are made.

The session and the import (``phonesession``, ``phoneimport``) depend on this interface
only.  ``sources/iphone.py`` implements it over usbmuxd with pymobiledevice3 (the only
module that imports it, loaded when a real link is made); the tests implement it in
memory (``tests/memphone.py``).  Every implementation raises photod's own errors
(``errors.DeviceProblem`` and its subclasses) and nothing else for trouble with the
phone, so the session's retry rules hold whatever the link is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

READ_SIZE = 4 * 1024 * 1024  # what one read asks for: AFC's largest read request


@dataclass(frozen=True)
class PhoneFile:
    path: str  # AFC path, /DCIM/100APPLE/IMG_0001.HEIC
    size: int
    mtime_ns: int
    birth_ns: int


class PhoneLink(Protocol):
    """A connection to one phone's lockdown service (its name, its pairing) and, once
    ``start_files`` succeeded, to its media files.

    Every call is bounded: a phone that stops answering raises ``DeviceStalled``, never
    hangs.  Any call may raise ``DeviceGone`` (unplugged, usbmuxd gone, a broken link)
    or ``DeviceStalled``; what else each raises is said below."""

    udid: str
    name: str  # "Anna's iPhone"; complete once paired
    model: str  # the marketing name, "iPhone 13 mini"
    ios: str  # "17.5.1"

    @property
    def paired(self) -> bool:
        """Whether the phone trusts this computer (a session can be started)."""
        ...

    async def pair(self, waiting: Callable[[], None]) -> None:
        """Ask the phone to trust this computer.  ``waiting()`` is called once the Trust
        dialog is open, then the answer is awaited for a bounded time.  Raises
        ``DeviceUntrusted`` (not tapped in time), ``PairingDenied`` (Don't Trust) or
        ``DeviceLocked`` (the dialog needs the phone unlocked)."""
        ...

    async def start_files(self) -> None:
        """Start the media file service (AFC).  Raises ``DeviceLocked`` while locked."""
        ...

    def walk(self, top: str, skipped: list[str]) -> AsyncIterator[PhoneFile]:
        """Every regular file under ``top`` (a missing ``top``: none).  A folder or file
        the phone would not list or describe (not a missing one) is added to
        ``skipped``: the listing is not whole."""
        ...

    async def stat(self, path: str) -> PhoneFile | None:
        """One regular file's size and times; None when there is no such file."""
        ...

    async def open_file(self, path: str) -> int:
        """A handle to read ``path``; ``FileUnreadable`` if it cannot be opened."""
        ...

    async def seek(self, handle: int, offset: int) -> None: ...

    async def read(self, handle: int) -> bytes:
        """The next chunk, at most READ_SIZE bytes (b"" at the end; fewer than asked
        where the phone's own read met the end).  ``FileUnreadable``: the original is
        not on the phone (only iCloud has it)."""
        ...

    async def close_file(self, handle: int) -> None:
        """Never raises: a handle on a link that is gone is gone with it."""
        ...

    async def close(self) -> None:
        """Never raises."""
        ...


# connect(udid, pair_dir, timeout): a link to the phone, its pairing records kept in
# pair_dir, each call to it bounded by timeout seconds.  Raises DeviceGone or
# DeviceStalled; a phone that does not trust this computer yet connects unpaired.
Connect = Callable[[str, Path, float], Awaitable[PhoneLink]]

# watch(attached, detached, usbmuxd): follows the phones plugged in, forever, calling
# attached(udid) and detached(udid) on the event loop; usbmuxd(up) when the USB
# multiplexer can be reached (True) or not (False).  Cancelled to stop.
Watch = Callable[
    [Callable[[str], None], Callable[[str], None], Callable[[bool], None]], Awaitable[None]
]
