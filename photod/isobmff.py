"""The ISO base media file format's boxes (HEIF/HEIC, AVIF, MP4, QuickTime), read
without a decoder: what the probe and the thumbnails need to tell a cut file, which
libheif would otherwise decode with its missing tiles painted green, without a word."""

from __future__ import annotations

import struct
from typing import IO


def boxes(f: IO[bytes], end: int) -> list[tuple[bytes, int, int]]:
    """ISO base media boxes from the current position to ``end``: (type, body, box end)."""
    found = []
    while f.tell() + 8 <= end:
        start = f.tell()
        header = f.read(8)
        if len(header) < 8:
            break
        size, typ = struct.unpack(">I4s", header)
        body = start + 8
        if size == 1:
            wide = f.read(8)
            if len(wide) < 8:  # cut inside the 64-bit size: this box runs past the end
                found.append((typ, start + 16, start + 16))
                break
            size = struct.unpack(">Q", wide)[0]
            body = start + 16
        elif size == 0:
            size = end - start
        if size < 8:
            break
        found.append((typ, body, start + size))
        if start + size > end:  # (runs past the end: cut, or a size no file has, 2^64)
            break
        f.seek(start + size)
    return found


def file_end(f: IO[bytes]) -> int:
    f.seek(0, 2)
    end = f.tell()
    f.seek(0)
    return end


def truncated_box(f: IO[bytes], what: str = "image") -> str:
    """A box that runs past the end of the file means the file was cut: said, else ''."""
    size = file_end(f)
    for typ, _, end in boxes(f, size):
        if end > size:
            return f"{what} file is truncated: box {typ.decode('latin-1')!r} needs {end} bytes, file has {size}"
    return ""


def is_isobmff(f: IO[bytes]) -> bool:
    """Whether the file starts with an 'ftyp' box (rewound after)."""
    f.seek(0)
    found = f.read(8)[4:] == b"ftyp"
    f.seek(0)
    return found


CONTENT_ID = b"com.apple.quicktime.content.identifier"


def content_identifier(f: IO[bytes]) -> str:
    """A Live Photo movie's content identifier: the UUID that ties it to its still (the
    still carries it in Apple's maker note, tag 17; Photos' database calls it the media
    group).  It is a QuickTime metadata item (``mdta`` keys) of the movie, in
    ``moov/meta`` as the iPhone writes it or ``moov/udta/meta`` as other tools do.  ''
    when the file has none; only box headers and the small metadata boxes are read."""
    end = file_end(f)
    moov = next(((body, stop) for typ, body, stop in boxes(f, end) if typ == b"moov"), None)
    if moov is None:
        return ""
    for meta in _metas(f, *moov):
        found = _item(f, *meta, CONTENT_ID)
        if found:
            return found.decode("utf-8", "replace").strip("\0 ")
    return ""


def _children(f: IO[bytes], body: int, stop: int) -> list[tuple[bytes, int, int]]:
    f.seek(body)
    return boxes(f, stop)


def _metas(f: IO[bytes], body: int, stop: int) -> list[tuple[int, int]]:
    """The ``meta`` boxes under ``moov`` and under ``moov/udta``, as (contents, end): a
    QuickTime ``meta`` holds its boxes at once, an ISO one after a version and flags."""
    found = []
    for typ, start, end in _children(f, body, stop):
        if typ == b"udta":
            found += [(s, e) for t, s, e in _children(f, start, end) if t == b"meta"]
        elif typ == b"meta":
            found.append((start, end))
    out = []
    for start, end in found:
        f.seek(start + 4)
        full = f.read(4) not in (b"hdlr", b"keys", b"ilst")  # a box type at once: QuickTime
        out.append((start + 4 if full else start, end))
    return out


_MAX_META = 1 << 20  # a metadata box larger than this is not what a camera writes


def _item(f: IO[bytes], body: int, stop: int, name: bytes) -> bytes:
    """The value of the ``mdta`` item ``name`` in one ``meta`` box; b'' when absent."""
    parts = {t: (s, e) for t, s, e in _children(f, body, stop) if t in (b"keys", b"ilst")}
    if len(parts) < 2 or any(e - s > _MAX_META for s, e in parts.values()):
        return b""
    start, end = parts[b"keys"]
    f.seek(start)
    keys = f.read(end - start)
    index, at, n = 0, 8, 0  # version and flags, then the count
    count = struct.unpack(">I", keys[4:8])[0] if len(keys) >= 8 else 0
    while n < count and at + 8 <= len(keys):
        size = struct.unpack(">I", keys[at : at + 4])[0]
        n += 1
        if size < 8:
            return b""
        if keys[at + 4 : at + 8] == b"mdta" and keys[at + 8 : at + size] == name:
            index = n
            break
        at += size
    if not index:
        return b""
    for typ, s, e in _children(f, *parts[b"ilst"]):
        if struct.unpack(">I", typ)[0] == index:
            for dtyp, ds, de in _children(f, s, e):
                if dtyp == b"data" and de - ds >= 8:
                    f.seek(ds + 8)  # the type indicator and the locale
                    return f.read(min(de - ds - 8, 1024))
    return b""
