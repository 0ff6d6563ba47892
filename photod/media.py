"""Pure rules about media files: which names are photos, which are junk, and where a
file goes on a target.  Nothing here touches the disk (sniffing and metadata reading
live in ``probe``)."""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import IO

from photod.errors import UnsafeName
from photod.models import Kind

# A JPEG that libjpeg keeps whole to decode (``decoded_whole``: progressive, or one
# component a scan) cannot be decoded at a smaller scale: a 3 MB file of 13,000 x
# 13,000 pixels took 1-2 GB.  Past this many pixels one is neither decoded nor
# thumbnailed.  (Cameras write baseline, interleaved JPEGs.)
PROGRESSIVE_MAX = 25_000_000
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}  # the SOF markers of progressive JPEGs
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # (C4, C8, CC: tables, reserved)


def decoded_whole(f: IO[bytes]) -> bool:
    """Whether libjpeg must keep every coefficient of this JPEG to decode it, at any
    scale (``PROGRESSIVE_MAX``): progressive, or its components in scans of their own
    (the first scan names fewer than the frame; Pillow flags only progressive ones).
    Reads the markers up to the first scan; the file's position is kept."""
    start = f.tell()
    try:
        f.seek(0)
        if f.read(2) != b"\xff\xd8":
            return False
        components = 0
        for _ in range(256):  # the segments before the first scan (junk: a bound)
            head = f.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                return False
            if head[1] == 0xFF:  # a fill byte before the marker
                f.seek(-3, 1)
                continue
            marker, length = head[1], int.from_bytes(head[2:4], "big")
            if length < 2:
                return False
            if marker == 0xDA:  # the first scan: how many components it holds
                named = f.read(1)
                return bool(named) and named[0] < components
            body = f.read(length - 2)
            if marker in _SOF:
                if marker in _PROGRESSIVE:
                    return True
                components = body[5] if len(body) > 5 else 0
        return False
    finally:
        f.seek(start)


EXTENSIONS: dict[str, Kind] = {}
for _kind, _exts in {
    Kind.PHOTO: "jpg jpeg jpe heic heif hif avif png gif webp tif tiff bmp jxl",
    Kind.RAW: "dng cr2 cr3 crw nef nrw arw srf sr2 raf orf rw2 pef srw x3f 3fr iiq erf mef mos rwl",
    Kind.VIDEO: "mov mp4 m4v 3gp 3g2 avi mts m2ts mkv webm mpg mpeg wmv",
    Kind.SIDECAR: "aae xmp thm",
}.items():
    for _ext in _exts.split():
        EXTENSIONS[_ext] = _kind

# Temporary, partial and placeholder files, and the cache folders of sync clients.
# Matched against every component of a path relative to the watch folder, ignoring case.
DEFAULT_IGNORE: tuple[str, ...] = (
    "*.part",
    "*.partial",
    "*.tmp",
    "*.temp",
    "*.crdownload",
    "*.download",
    "*.icloud",
    "*.!sync",  # Resilio Sync
    "*.!qB",  # qBittorrent
    "*.!ut",  # µTorrent
    ".goutputstream-*",  # GNOME's file writes
    "~$*",
    "._*",
    ".~*",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".dropbox",
    ".dropbox.cache",
    ".Trash*",
    ".Spotlight-V100",
    ".fseventsd",
    "@eaDir",
    ".stversions",
    ".photod",
)

DEFAULT_LAYOUT = "{year}/{year}-{month}-{day}/{name}"
LAYOUT_FIELDS = (
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "name",
    "stem",
    "ext",
    "kind",
    "source",
)

MAX_NAME_BYTES = 200  # leaves room under the 255-byte limit for a suffix and temp names
# Control characters and separators, plus what FAT/exFAT/NTFS refuse (external drives are
# often exFAT): a target tree must be writable on, and movable to, any filesystem.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f\\/<>:"|?*]')
# The device names Windows keeps (in any case, with any extension after them): NTFS,
# exFAT under Windows and SMB shares refuse a file by one of them, or take it for the device.
_RESERVED = re.compile(r"(?i)(?:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:\..*)?", re.S)


def kind_from_name(name: str) -> Kind | None:
    """The kind a file claims by its extension, in any case."""
    _, dot, ext = name.rpartition(".")
    return EXTENSIONS.get(ext.lower()) if dot else None


@functools.lru_cache(maxsize=8)
def ignore_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether one file or folder name matches any of the ignore patterns (any case):
    one compiled expression, as a scan asks it for every name."""
    if not patterns:
        return lambda name: False
    joined = re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns))
    return lambda name: joined.match(name.lower()) is not None


def is_ignored(relpath: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when any component of ``relpath`` matches an ignore pattern (any case)."""
    ignored = ignore_matcher(tuple(patterns))
    return any(ignored(part) for part in relpath.split("/"))


def portable(name: str) -> str:
    """``name`` as Windows-family file systems (NTFS, exFAT, an SMB share) can hold it,
    changed visibly and reversibly where they would refuse it or silently change it: a
    ``_`` after the first part of a device name Windows keeps (``CON.jpg`` becomes
    ``CON_.jpg``, ``nul`` ``nul_``), and at the end of a name that ends in a dot or a
    space (``photo.`` becomes ``photo._``).  Any other name is returned as it is."""
    if _RESERVED.fullmatch(name):
        stem, dot, rest = name.partition(".")
        name = f"{stem}_{dot}{rest}"
    return f"{name}_" if name.endswith((".", " ")) else name


def safe_name(name: str) -> str:
    """Turn a file name from a device or folder into one that is safe on every target.

    NFC-normalised (macOS writes NFD); undecodable bytes, control characters and what
    FAT/exFAT/NTFS forbid (``<>:"|?*``) replaced, trailing dots dropped, a name they
    refuse otherwise made ``portable``; and cut to ``MAX_NAME_BYTES`` keeping the
    extension, so the same source name always gives the same target name.
    """
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = unicodedata.normalize("NFC", _UNSAFE.sub("_", name)).strip().rstrip(".")
    if name in ("", ".", ".."):
        name = "_" + name
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 10:
            stem, ext = name, ""
        keep = MAX_NAME_BYTES - len(ext.encode()) - 1
        stem = stem.encode()[:keep].decode("utf-8", "ignore")
        name = f"{stem}.{ext}" if ext else stem
    return portable(name)


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path on a target; raise UnsafeName if not.

    Keys are '/'-separated, relative, NFC, with no empty, '.' or '..' component, no
    backslash or control character, and no component over 255 bytes.
    """
    if not key or key.startswith("/"):
        raise UnsafeName(key, "must be a non-empty relative path")
    if unicodedata.normalize("NFC", key) != key:
        raise UnsafeName(key, "must be NFC-normalised")
    if re.search(r"[\x00-\x1f\x7f\\]", key):
        raise UnsafeName(key, "contains a control character or backslash")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeName(key, "has an empty, '.' or '..' component")
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise UnsafeName(key, "has a component longer than 255 bytes")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeName(key, "is not valid UTF-8") from exc
    return key


def layout_key(template: str, name: str, captured: datetime, kind: Kind, source: str) -> str:
    """Where a file goes on every target, from the layout template."""
    name = safe_name(name)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    fields = {
        "year": f"{captured.year:04d}",
        "month": f"{captured.month:02d}",
        "day": f"{captured.day:02d}",
        "hour": f"{captured.hour:02d}",
        "minute": f"{captured.minute:02d}",
        "second": f"{captured.second:02d}",
        "name": name,
        "stem": stem,
        "ext": ext,
        "kind": str(kind),
        "source": source,
    }
    key = posixpath.normpath(template.format(**fields))
    return check_key(key)


def suffixed(key: str, sha256: str) -> str:
    """The deterministic alternative name for a different file that wants the same key:
    ``IMG_0001.HEIC`` becomes ``IMG_0001~1a2b3c4d.HEIC`` (the start of its own hash)."""
    folder, _, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    new = f"{stem}~{sha256[:8]}.{ext}" if dot and stem else f"{name}~{sha256[:8]}"
    return f"{folder}/{new}" if folder else new


def companion_key(lead_key: str, name: str, tag: str = "") -> str:
    """Key for a Live Photo movie or an .AAE sidecar that must sit beside its still:
    same folder, same stem (suffix included) as the still, its own extension.  A
    rendered edit adds a ``tag`` (``IMG_0001_edited.HEIC``), which sorts right after
    the original and its movie."""
    folder, _, lead_name = lead_key.rpartition("/")
    lead_stem = lead_name.rpartition(".")[0] or lead_name
    name = safe_name(name)
    _, dot, ext = name.rpartition(".")
    new = f"{lead_stem}{tag}.{ext}" if dot else f"{lead_stem}{tag}"
    return check_key(f"{folder}/{new}" if folder else new)


def stem_of(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return (stem if dot else name).lower()


def is_still(name: str) -> bool:
    """A photo or a raw: what a Live Photo's movie or a sidecar belongs with."""
    return kind_from_name(name) in (Kind.PHOTO, Kind.RAW)


def still_index(names: Iterable[str]) -> dict[str, str]:
    """The stills of one folder by lower-case stem (the first in name order wins)."""
    index: dict[str, str] = {}
    for name in sorted(names, reverse=True):
        if is_still(name):
            index[stem_of(name)] = name
    return index


def waits_for_still(name: str, live: bool) -> bool:
    """Whether a file with no still beside it is one that belongs with a still all the
    same, so that a moment's wait for it is worth it (a sync client often delivers the
    small files first): an edit's ``.AAE`` (only ever a photo's), an ``.XMP`` named
    after a photo (``IMG_0001.HEIC.xmp``), a Live Photo's movie (``live``: it carries
    Apple's content identifier).  A video of its own, a ``.THM``, an ``.xmp`` with a
    plain name (a preset, a note) belong with nothing that may come: never held."""
    lower = name.lower()
    if lower.endswith(".xmp"):
        return is_still(name[: -len(".xmp")])
    return lower.endswith(".aae") or live


def lead_of(name: str, stills: Mapping[str, str]) -> str | None:
    """The one rule, for a watch folder and a phone alike: a file that is not a still
    (a Live Photo's movie, an .AAE or .XMP sidecar) belongs with the still of the same
    folder and the same stem, in any case; ``stills`` is that folder's ``still_index``."""
    if is_still(name):
        return None
    lead = stills.get(stem_of(name))
    if lead is None and name.lower().endswith(".xmp"):
        # IMG_0001.HEIC.xmp: how Photos' and osxphotos' exports name a sidecar.
        inner = name[: -len(".xmp")]
        lead = stills.get(stem_of(inner))
        lead = lead if lead is not None and lead.lower() == inner.lower() else None
    return lead if lead != name else None
