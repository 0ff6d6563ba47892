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
            size = struct.unpack(">Q", f.read(8))[0]
            body = start + 16
        elif size == 0:
            size = end - start
        if size < 8:
            break
        found.append((typ, body, start + size))
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
