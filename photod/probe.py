"""Look inside a file: what it really is (magic bytes), when it was captured (EXIF,
QuickTime), and whether a photo decodes.  Pillow and pillow-heif are used here only."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, BinaryIO

from photod import exif
from photod.errors import Unloadable
from photod.isobmff import boxes, file_end, truncated_box
from photod.media import PROGRESSIVE_MAX, decoded_whole, kind_from_name
from photod.models import Kind, Probe

if TYPE_CHECKING:
    from PIL import Image

HEAD_BYTES = 512

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_MP4_BRANDS = {
    b"isom",
    b"iso2",
    b"iso4",
    b"iso5",
    b"iso6",
    b"mp41",
    b"mp42",
    b"M4V ",
    b"avc1",
    b"3gp4",
    b"3gp5",
    b"3gp6",
    b"3g2a",
    b"dash",
    b"mmp4",
    b"f4v ",
}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_PHOTO_FORMATS = {"jpeg", "png", "gif", "tiff", "webp", "heif", "avif", "jxl"}
_heif_registered = False


def sniff(head: bytes) -> tuple[Kind, str] | None:
    """The kind and container a file's first bytes show, or None when they show nothing
    photod knows.  The extension is not consulted: a '.heic' that is a JPEG is a JPEG."""
    if head[:3] == b"\xff\xd8\xff":
        return Kind.PHOTO, "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Kind.PHOTO, "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Kind.PHOTO, "gif"
    if head[:4] in (b"IIRO", b"IIRS", b"IIU\x00") or head[:15] == b"FUJIFILMCCD-RAW":
        return Kind.RAW, "raw"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Kind.PHOTO, "tiff"  # also the container of DNG, NEF, CR2, ARW: see classify
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind.PHOTO, "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Kind.VIDEO, "avi"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return Kind.PHOTO, "jxl"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Kind.VIDEO, "matroska"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return Kind.VIDEO, "mpeg-ts"
    if len(head) > 196 and head[4] == 0x47 and head[196] == 0x47:
        return Kind.VIDEO, "mpeg-ts"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return Kind.PHOTO, "avif"
        if brand in _HEIF_BRANDS:
            return Kind.PHOTO, "heif"
        if brand == b"crx ":
            return Kind.RAW, "raw"
        if brand == b"qt  ":
            return Kind.VIDEO, "quicktime"
        if brand in _MP4_BRANDS:
            return Kind.VIDEO, "mp4"
    if head[4:8] in _QT_ATOMS:
        return Kind.VIDEO, "quicktime"
    return None


def classify(name: str, head: bytes) -> tuple[Kind, str] | None:
    """Decide what a file is from its content first and its extension second.

    Returns None for files photod leaves alone.  A file whose extension claims a photo
    but whose content shows nothing known is still taken (format "unknown"): it is
    backed up byte for byte and reported as not decodable.
    """
    claimed = kind_from_name(name)
    if claimed is Kind.SIDECAR:
        return Kind.SIDECAR, "sidecar"
    found = sniff(head)
    if found is None:
        return (claimed, "unknown") if claimed else None
    kind, fmt = found
    if fmt == "tiff" and claimed is Kind.RAW:
        return Kind.RAW, "raw"
    return kind, fmt


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Pillow or pillow-heif loaded at the first photo, not at the start: a broken
    install (a library Pillow's own needs, gone with an upgrade) is said as what it is,
    the file's one failure, not a trace on an ingest worker."""
    try:
        yield
    except ImportError as exc:
        raise Unloadable(f"photod cannot load what reads photos (Pillow, pillow-heif): "
                         f"{exc}; its install is broken: reinstall photod") from exc  # fmt: skip


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        with _loading():
            import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


def _exif_time(im: Image.Image) -> datetime | None:
    """When the photo was taken: DateTimeOriginal with its offset, else DateTime."""
    block = im.info.get("exif")
    fields: Mapping[int, object] | None = None
    if isinstance(block, bytes):
        fields = exif.time_fields(block)
    if fields is None:  # no block, or one only Pillow can follow
        ifd0 = im.getexif()
        sub = ifd0.get_ifd(exif.EXIF_POINTER)
        fields = {tag: sub.get(tag) for tag in (exif.ORIGINAL, exif.OFFSET, exif.OFFSET_ORIGINAL)}
        fields[exif.IFD0_TIME] = ifd0.get(exif.IFD0_TIME)
    for when, offset in (
        (fields.get(exif.ORIGINAL), fields.get(exif.OFFSET_ORIGINAL)),
        (fields.get(exif.IFD0_TIME), fields.get(exif.OFFSET)),
    ):
        if not isinstance(when, str):
            continue
        try:
            stamp = datetime.strptime(when.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        if isinstance(offset, str):
            try:
                sign = -1 if offset.startswith("-") else 1
                hours, minutes = offset.strip("+-\x00 ").split(":")
                delta = timedelta(hours=int(hours), minutes=int(minutes))
                return stamp.replace(tzinfo=timezone(sign * delta))
            except ValueError:
                pass
        return stamp
    return None


def _quicktime_time(f: BinaryIO) -> datetime | None:
    """Creation time from the movie header ('moov'/'mvhd'), seconds since 1904 in UTC."""
    for typ, body, end in boxes(f, file_end(f)):
        if typ != b"moov":
            continue
        f.seek(body)
        for sub, sub_body, _ in boxes(f, end):
            if sub != b"mvhd":
                continue
            f.seek(sub_body)
            version = f.read(1)
            f.read(3)
            raw = f.read(8 if version == b"\x01" else 4)
            seconds = int.from_bytes(raw, "big")
            if seconds == 0:
                return None
            return (datetime(1904, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).astimezone()
    return None


def _container_problem(f: BinaryIO) -> str:
    """For QuickTime/MP4 videos: the top-level boxes must fit in the file and include
    the movie header ('moov'); decoding frames is left to video players."""
    problem = truncated_box(f, "video")
    if problem:
        return problem
    if not any(typ == b"moov" for typ, _, _ in boxes(f, file_end(f))):
        return "video has no movie header ('moov' box): it cannot be played"
    return ""


def _look(f: BinaryIO, fmt: str, decode: str) -> tuple[datetime | None, str]:
    """A photo's capture time (None when it has none, or it cannot be read), and its
    decode problem (empty when it decodes, or ``decode`` is "off"), from one open."""
    _register_heif()
    problem = ""
    load = decode != "off"
    try:
        if load and fmt in ("heif", "avif"):
            # libheif decodes a cut file without complaint, so check the container first;
            # HEVC has no scaled decode (a 12 MP HEIC takes ~0.5 s), so "fast" stops here.
            problem = truncated_box(f)
            load = not problem and decode == "full"
        f.seek(0)
        from PIL import Image  # (here: a start that finds nothing new never loads Pillow)

        im = Image.open(f)  # (a file object photod opened: Pillow leaves it open)
    except Exception as exc:  # Pillow raises many types for broken files
        return None, (f"{type(exc).__name__}: {exc}" if load else problem)
    with im:
        failed = False
        if load and fmt == "jpeg" and im.width * im.height > PROGRESSIVE_MAX:
            # A JPEG libjpeg keeps whole (1.5 GB for a 3 MB file of 13,000 x 13,000
            # pixels) is not decoded past this size: it is backed up unchecked.
            load = not decoded_whole(f)
        if load:
            try:
                if decode == "fast" and fmt == "jpeg":
                    # DCT scaling decodes every block at 1/8 size: it still reads the whole
                    # entropy-coded stream, so a truncated or garbled file fails, ~20x faster.
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            except Exception as exc:
                problem, failed = f"{type(exc).__name__}: {exc}", True
        if not failed:
            return _time_of(im), problem
    # The pixels did not decode: the time is read from a fresh open, as if they had not
    # been read (a failed decode can leave the image unusable).
    f.seek(0)
    try:
        with Image.open(f) as again:
            return _time_of(again), problem
    except Exception:
        return None, problem


def _time_of(im: Image.Image) -> datetime | None:
    try:
        return _exif_time(im)
    except Exception:  # unreadable metadata: the caller falls back to the file time
        return None


def probe_file(path: str, name: str, mtime: float, decode: str = "fast") -> Probe | None:
    """``probe`` of a file photod made itself (a temporary, a restored copy)."""
    with open(path, "rb") as f:
        return probe(f, name, mtime, decode)


def probe(f: BinaryIO, name: str, mtime: float, decode: str = "fast") -> Probe | None:
    """Everything photod needs to know about an open file (seekable; the one
    descriptor that is then hashed and copied) before copying it, or None when photod
    leaves the file alone.  ``decode`` is "full", "fast" or "off"."""
    f.seek(0)
    head = f.read(HEAD_BYTES)
    found = classify(name, head)
    if found is None:
        return None
    kind, fmt = found
    captured: datetime | None = None
    source = "mtime"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF; a photo is a photo
        with _loading():
            from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # panoramas are legitimate; nothing is displayed
        problem = ""
        if fmt in _PHOTO_FORMATS or kind is Kind.RAW:
            # A raw file's pixels are not checked: only its time is read.
            checked = decode if kind is Kind.PHOTO else "off"
            captured, problem = _look(f, fmt, checked)
            source = "exif"
        elif fmt in ("quicktime", "mp4"):
            try:
                f.seek(0)
                captured, source = _quicktime_time(f), "quicktime"
            except Exception:  # unreadable metadata: fall back to the file time
                captured = None
        decodable: bool | None = None
        if kind is Kind.PHOTO and decode != "off":
            problem = "content is not a known image format" if fmt == "unknown" else problem
            decodable = not problem
        elif kind is Kind.VIDEO and fmt in ("quicktime", "mp4") and decode != "off":
            try:
                problem = _container_problem(f)
            except OSError as exc:
                problem = f"cannot read the container: {exc}"
            decodable = not problem
    if captured is None:
        captured, source = file_time(mtime), "mtime"
    return Probe(kind, fmt, captured, source, decodable, problem)


def file_time(mtime: float) -> datetime:
    """A file time as a local datetime; one beyond what datetime holds (year 10000
    and later, before year 1) is the nearest it holds, never an error."""
    try:
        return datetime.fromtimestamp(mtime)
    except (ValueError, OverflowError, OSError):
        return datetime.max if mtime > 0 else datetime.min
