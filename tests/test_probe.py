"""Sniffing, capture times and decode checks on real sample files."""

from __future__ import annotations

import os
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from photod import exif
from photod.models import Kind
from photod.probe import classify, probe_file
from tests.conftest import make_mov


def run_probe(path: Path, name: str | None = None, decode: str = "fast"):  # type: ignore[no-untyped-def]
    return probe_file(str(path), name or path.name, path.stat().st_mtime, decode)


def test_iphone_heic_capture_time_with_offset(samples: Path) -> None:
    """HEIC capture time comes from EXIF DateTimeOriginal with its UTC offset."""
    info = run_probe(samples / "heic_mobile_iphone_13_pro_max.HEIC")
    assert (Kind.PHOTO, "heif", "exif") == (info.kind, info.format, info.capture_source)
    assert (
        datetime(2022, 2, 16, 12, 55, 41, tzinfo=timezone(timedelta(hours=1))) == info.captured_at
    )
    assert info.decodable is True


def test_jpeg_exif_time(samples: Path) -> None:
    """JPEG capture time comes from EXIF."""
    info = run_probe(samples / "jpg_Canon_40D.jpg")
    assert datetime(2008, 5, 30, 15, 56, 1) == info.captured_at


@pytest.mark.parametrize("name", ["jpg_invalid_image00971.jpg", "jpg_orientation_landscape_6.jpg"])
def test_no_exif_date_falls_back_to_file_time(samples: Path, name: str) -> None:
    """Without an EXIF date, the file's modification time is the capture time."""
    path = samples / name
    os.utime(path, (1_600_000_000, 1_600_000_000))
    info = run_probe(path)
    assert ("mtime", datetime.fromtimestamp(1_600_000_000)) == (
        info.capture_source,
        info.captured_at,
    )


def test_heic_named_file_that_is_a_jpeg(samples: Path) -> None:
    """A '.heic' whose bytes are a JPEG is still a photo, read as a JPEG."""
    fake = samples / "IMG_9999.HEIC"
    fake.write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes())
    info = run_probe(fake)
    assert (Kind.PHOTO, "jpeg", True) == (info.kind, info.format, info.decodable)


def test_jpeg_without_extension_is_sniffed(samples: Path) -> None:
    """A photo with no extension is recognised by its content."""
    bare = samples / "DSC0001"
    bare.write_bytes((samples / "jpg_gps_DSCN0010.jpg").read_bytes())
    assert Kind.PHOTO == run_probe(bare).kind


@pytest.mark.parametrize("decode", ["fast", "full"])
def test_truncated_jpeg_is_taken_but_undecodable(samples: Path, decode: str) -> None:
    """A photo cut in half is still taken (backed up byte for byte) and flagged."""
    data = (samples / "jpg_hdr_iphone_hdr_YES.jpg").read_bytes()
    cut = samples / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    info = run_probe(cut, decode=decode)
    assert (Kind.PHOTO, False) == (info.kind, info.decodable)
    assert "truncated" in info.problem


def test_text_claiming_to_be_a_photo(tmp_path: Path) -> None:
    """A '.jpg' that holds text is taken as an undecodable photo; a '.txt' is left alone."""
    (tmp_path / "notes.jpg").write_text("hello")
    (tmp_path / "notes.txt").write_text("hello")
    info = run_probe(tmp_path / "notes.jpg")
    assert (Kind.PHOTO, "unknown", False) == (info.kind, info.format, info.decodable)
    assert run_probe(tmp_path / "notes.txt") is None


def test_quicktime_creation_time(tmp_path: Path) -> None:
    """A MOV's capture time comes from its movie header, converted to local time."""
    when = datetime(2023, 7, 1, 10, 30, tzinfo=UTC)
    mov = make_mov(tmp_path / "IMG_0001.MOV", when)
    info = run_probe(mov)
    assert (Kind.VIDEO, "quicktime", "quicktime") == (info.kind, info.format, info.capture_source)
    assert when == info.captured_at
    assert info.decodable is True  # its container parses


def test_cut_video_is_flagged_undecodable(tmp_path: Path) -> None:
    """A MOV cut short (a box runs past the end) or without a movie header is flagged,
    with the reason; it is still a video to back up."""
    mov = make_mov(tmp_path / "IMG_0002.MOV", datetime(2023, 7, 1, tzinfo=UTC))
    data = mov.read_bytes()
    cut = tmp_path / "CUT.MOV"
    cut.write_bytes(data[:-10])
    info = run_probe(cut)
    assert (Kind.VIDEO, False) == (info.kind, info.decodable)
    assert "truncated" in info.problem
    wide = tmp_path / "WIDE.MOV"  # cut inside a box's 64-bit size (it raised before)
    wide.write_bytes(data[:20] + b"\x00\x00\x00\x01mdat\x00\x00\x00")
    info = run_probe(wide)
    assert (Kind.VIDEO, False) == (info.kind, info.decodable)
    assert "truncated" in info.problem
    absurd = tmp_path / "ABSURD.MP4"  # a 64-bit size no file has: seeking past it raised,
    # and the file was never backed up (ingest_failed at every rescan)
    absurd.write_bytes(data[:20] + b"\x00\x00\x00\x01mdat" + b"\xff" * 7 + b"\xf0" + b"\0" * 4096)
    info = run_probe(absurd)
    assert (Kind.VIDEO, False) == (info.kind, info.decodable)
    assert "truncated" in info.problem
    headless = tmp_path / "NOMOOV.MOV"
    headless.write_bytes(b"\x00\x00\x00\x10ftypqt  \x00\x00\x00\x00" + b"\x00\x00\x00\x08free")
    info = run_probe(headless)
    assert (Kind.VIDEO, False) == (info.kind, info.decodable)
    assert "moov" in info.problem


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b"\x00\x00\x00\x18ftypheic", "x.bin", (Kind.PHOTO, "heif")),
        (b"\x00\x00\x00\x18ftypmif1", "x", (Kind.PHOTO, "heif")),
        (b"\x00\x00\x00\x18ftypavif", "x", (Kind.PHOTO, "avif")),
        (b"\x00\x00\x00\x18ftypisom", "x.dat", (Kind.VIDEO, "mp4")),
        (b"\x00\x00\x00\x18ftypqt  ", "x", (Kind.VIDEO, "quicktime")),
        (b"\x00\x00\x00\x18ftypcrx ", "x", (Kind.RAW, "raw")),
        (b"II*\x00\x08\x00\x00\x00", "x.DNG", (Kind.RAW, "raw")),
        (b"II*\x00\x08\x00\x00\x00", "x.tif", (Kind.PHOTO, "tiff")),
        (b"\x89PNG\r\n\x1a\n", "x.jpg", (Kind.PHOTO, "png")),
        (b"<?xml version", "IMG_0001.AAE", (Kind.SIDECAR, "sidecar")),
        (b"plain text", "x.txt", None),
    ],
)
def test_classify(head: bytes, name: str, expected: tuple[Kind, str] | None) -> None:
    """Content decides the kind first; the extension only where content says nothing."""
    assert expected == classify(name, head + b"\x00" * 64)


@pytest.mark.parametrize("decode", ["fast", "full"])
def test_truncated_heic_is_flagged(samples: Path, decode: str) -> None:
    """A HEIC cut short is flagged undecodable in both fast and full modes."""
    data = (samples / "heic_IMG_5195.HEIC").read_bytes()
    cut = samples / "cut.HEIC"
    cut.write_bytes(data[: len(data) * 2 // 3])
    info = run_probe(cut, decode=decode)
    assert (Kind.PHOTO, False) == (info.kind, info.decodable)
    assert "truncated" in info.problem.lower() or "error" in info.problem.lower()


def test_a_live_photo_movies_content_identifier_is_read_as_exiftool_reads_it(
    tmp_path: Path, samples: Path
) -> None:
    """The identifier that ties a Live Photo's movie to its still, from the movie's
    QuickTime metadata: where the iPhone puts it (``moov/meta``) and where ffmpeg does
    (``moov/udta/meta``, a full box), the same as the stock exiftool reads; nothing
    from a movie without one, a still, or a cut file."""
    import shutil
    import subprocess

    from photod.isobmff import content_identifier

    def exiftool(path: Path) -> str:
        out = subprocess.run(["exiftool", "-s3", "-Keys:ContentIdentifier", str(path)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip()

    for tool in ("ffmpeg", "exiftool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install ffmpeg libimage-exiftool-perl")
    when = datetime(2026, 9, 1, tzinfo=UTC)
    phone = make_mov(
        tmp_path / "phone.mov", when, content_id="570F1469-09C7-4E50-9875-05F21D5BD166"
    )
    other = tmp_path / "ffmpeg.mov"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5",
                    "-t", "1", "-c:v", "mpeg4", "-movflags", "use_metadata_tags", "-metadata",
                    "com.apple.quicktime.content.identifier=0F1E2D3C-1111-2222-3333-444455556666",
                    str(other)], check=True)  # fmt: skip
    plain = make_mov(tmp_path / "plain.mov", when)
    cut = tmp_path / "cut.mov"
    cut.write_bytes(phone.read_bytes()[:-40])
    for path in (phone, other):
        with open(path, "rb") as f:
            assert exiftool(path) == content_identifier(f) != ""
    for path in (plain, cut, samples / "heic_IMG_5195.HEIC"):
        with open(path, "rb") as f:
            assert "" == content_identifier(f)


def _pillows_fields(block: bytes) -> dict[int, object]:
    """The four time fields as Pillow reads them from an EXIF block."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as the probe reads it
        ifd0 = Image.Exif()
        ifd0.load(block)
        sub = ifd0.get_ifd(exif.EXIF_POINTER)
        found = {tag: sub.get(tag) for tag in (exif.ORIGINAL, exif.OFFSET, exif.OFFSET_ORIGINAL)}
        found[exif.IFD0_TIME] = ifd0.get(exif.IFD0_TIME)
    return {tag: value for tag, value in found.items() if isinstance(value, str)}


def test_the_time_fields_are_read_as_pillow_reads_them_from_every_sample(samples: Path) -> None:
    """photod's own reader of the four EXIF time fields (Pillow's unpacks every tag, a
    sixth of a small photo's ingest) gives what Pillow gives, on every sample with EXIF."""
    from PIL import Image

    from photod.probe import _register_heif

    _register_heif()
    read = 0
    for path in sorted(samples.iterdir()):
        try:
            with Image.open(path) as im:
                block = im.info.get("exif")
        except Exception:
            continue  # not an image Pillow opens (README, a corrupted sample)
        if not block:
            continue
        assert exif.time_fields(block) == _pillows_fields(block), path.name
        read += 1
    assert read >= 6


def _block(order: str, entries: list[tuple[int, int, bytes]], sub: list[tuple[int, int, bytes]],
           cut: int) -> bytes:  # fmt: skip
    """An EXIF block: IFD0 with ``entries`` and a pointer to a sub-directory with
    ``sub`` (each (tag, type, raw value)); values over 4 bytes placed after them."""
    import struct

    def directory(at: int, items: list[tuple[int, int, bytes]]) -> tuple[bytes, bytes]:
        head = struct.pack(order + "H", len(items))
        tail = b""
        data_at = at + 2 + 12 * len(items) + 4
        for tag, kind, raw in items:
            if len(raw) <= 4:
                field = raw.ljust(4, b"\x00")
            else:
                field = struct.pack(order + "I", data_at + len(tail))
                tail += raw
            count = len(raw) // 4 if kind == 4 else len(raw)  # a LONG is 4 bytes
            head += struct.pack(order + "HHI", tag, kind, count) + field
        return head + b"\x00\x00\x00\x00", tail

    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    ifd0_at = 8
    # IFD0 laid out once with a blank pointer: its length says where the sub-directory goes.
    blank, blank_tail = directory(ifd0_at, [*entries, (exif.EXIF_POINTER, 4, b"\0" * 4)])
    sub_at = ifd0_at + len(blank) + len(blank_tail)
    pointer = (exif.EXIF_POINTER, 4, struct.pack(order + "I", sub_at))
    ifd0, tail0 = directory(ifd0_at, [*entries, pointer])
    subdir, tail1 = directory(sub_at, sub)
    block = (
        b"Exif\x00\x00" + magic + struct.pack(order + "I", ifd0_at) + ifd0 + tail0 + subdir + tail1
    )
    return block[: len(block) - cut] if cut else block


def test_the_time_fields_are_read_as_pillow_reads_them_from_any_block() -> None:
    """Either endianness, values inline or placed after, a tag written twice, a field of
    another type, an empty one, a block cut short: the reader gives Pillow's fields, or
    None (then the probe asks Pillow), and never raises; a whole block whose fields are
    each written once it reads itself."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(alphabet="0123456789:+- \x00", max_size=24).map(lambda s: s.encode("latin-1"))
    entry = st.tuples(
        st.sampled_from([exif.IFD0_TIME, exif.ORIGINAL, exif.OFFSET, exif.OFFSET_ORIGINAL, 0x010F]),
        st.sampled_from([2, 2, 2, 7, 1]),
        text,
    )

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from("<>"), st.lists(entry, max_size=4), st.lists(entry, max_size=5),
           st.integers(0, 40))  # fmt: skip
    def check(order: str, top: list[tuple[int, int, bytes]], sub: list[tuple[int, int, bytes]],
              cut: int) -> None:  # fmt: skip
        block = _block(order, top, sub, cut)
        mine = exif.time_fields(block)
        if mine is not None:
            assert mine == _pillows_fields(block)
        else:  # only a cut block, or a field written twice, is left to Pillow
            twice = any(
                len([t for t, _, raw in items if raw]) > len({t for t, _, raw in items if raw})
                for items in (top, sub)
            )
            assert cut or twice, "a whole, well-formed block was not read"

    check()
