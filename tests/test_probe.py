"""Sniffing, capture times and decode checks on real sample files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

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
