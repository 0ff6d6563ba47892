"""Which Apple phones are on the USB bus, from Linux sysfs, and where usbmuxd is.

usbmuxd on Linux shows a phone to its clients only once the phone trusts this computer:
while the Trust dialog is open the phone is on the bus but not in usbmuxd's list.  This
is how photod can still say "unlock the iPhone and tap Trust".  Reading a few sysfs
files is cheap and needs no privileges; elsewhere (macOS) it finds nothing.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

SYSFS = Path(os.environ.get("PHOTOD_USB_SYSFS", "/sys/bus/usb/devices"))
APPLE = 0x05AC
# iPhone, iPad and iPod touch product ids, as usbmuxd's own udev rule matches them.
MOBILE_PRODUCTS = range(0x1290, 0x12B0)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def apple_phones(root: Path = SYSFS) -> dict[str, str]:
    """USB serial (the phone's UDID without a dash) -> product name, for every Apple
    mobile device on the bus."""
    found: dict[str, str] = {}
    try:
        entries = list(root.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            vendor = int(_read(entry / "idVendor") or "0", 16)
            product = int(_read(entry / "idProduct") or "0", 16)
        except ValueError:
            continue
        serial = _read(entry / "serial")
        if vendor == APPLE and product in MOBILE_PRODUCTS and serial:
            found[normal(serial)] = _read(entry / "product") or "iPhone"
    return found


def normal(udid: str) -> str:
    """A UDID as photod compares them: no dash, upper case (usbmuxd may drop the dash)."""
    return udid.replace("-", "").upper()


_UDID = re.compile(r"[0-9A-F]{24}|[0-9A-F]{40}")


def valid(udid: str) -> bool:
    """Whether a device id is an iPhone's UDID: 24 hexadecimal digits (with or without
    the dash after the eighth) or 40 (before the iPhone XS).  It names folders and files
    of photod's: a device that says ``../x`` or ``/home`` is refused, not followed."""
    return bool(_UDID.fullmatch(normal(udid))) and udid.count("-") <= 1


def dashed(serial: str) -> str:
    """A UDID as usbmuxd writes it (and so the phone's records are named): 24 digits as
    8, a dash, 16, in upper case; the 40 digits of an older phone in lower case."""
    s = normal(serial)
    return f"{s[:8]}-{s[8:]}" if len(s) == 24 else s.lower()


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
