"""The dashboard's thumbnails, made from the real sample photos and a real video:
sizes, orientation, the cache and its cap, bad files, and the cache folder's safety."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from photod.thumbs import Thumbnails


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def size_of(data: bytes | None) -> tuple[int, int]:
    """The size of a thumbnail, which must be a JPEG."""
    assert data is not None
    with Image.open(io.BytesIO(data)) as im:
        assert "JPEG" == im.format
        return im.size


def cache_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}


@pytest.fixture
def thumbs(tmp_path: Path) -> Thumbnails:
    return Thumbnails(tmp_path / "state" / "thumbs")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jpg_hdr_iphone_hdr_NO.jpg", (256, 192)),  # 3264x2448
        ("jpg_corrupted.jpg", (256, 192)),  # the collection's 'corrupted' case decodes
        ("heic_IMG_5195.HEIC", (198, 256)),  # 2566x3313
        ("heic_mobile_iphone_13_pro_max.HEIC", (192, 256)),  # 3024x4032
        ("heic_samplefilehub.heif", (256, 170)),  # 640x426
        ("jpg_Canon_40D.jpg", (100, 68)),  # smaller than the edge: never enlarged
    ],
)
def test_a_photo_gives_a_jpeg_within_the_edge_keeping_its_shape(
    samples: Path, thumbs: Thumbnails, name: str, expected: tuple[int, int]
) -> None:
    """A JPEG or a HEIC gives a JPEG thumbnail whose longest edge is at most 256 pixels,
    with the photo's aspect ratio."""
    data = thumbs.get(sha(name), [samples / name])
    assert expected == size_of(data)
    assert 0 < max(expected) <= 256


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "GIF", "BMP"])
def test_the_other_photo_formats(
    samples: Path, tmp_path: Path, thumbs: Thumbnails, fmt: str
) -> None:
    """PNG, TIFF, WebP, GIF and BMP copies of a 4:3 photo give 256x192 JPEGs."""
    path = tmp_path / f"photo.{fmt.lower()}"
    with Image.open(samples / "jpg_gps_DSCN0010.jpg") as im:
        im.save(path, fmt)
    assert (256, 192) == size_of(thumbs.get(sha(fmt), [path]))


def test_transparency_becomes_white(tmp_path: Path, thumbs: Thumbnails) -> None:
    """A transparent PNG (a screenshot, a logo) shows white where it is transparent,
    not black."""
    path = tmp_path / "logo.png"
    im = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    im.paste((200, 0, 0, 255), (100, 100, 300, 300))
    im.save(path)
    data = thumbs.get(sha(1), [path])
    assert (256, 256) == size_of(data)
    with Image.open(io.BytesIO(data or b"")) as thumb:
        corner, middle = thumb.getpixel((5, 5)), thumb.getpixel((128, 128))
    assert isinstance(corner, tuple)
    assert isinstance(middle, tuple)
    assert all(c > 245 for c in corner), corner
    assert middle[0] > 150 > middle[1], middle


def test_a_smaller_edge_is_honoured(samples: Path, tmp_path: Path) -> None:
    """``edge`` bounds both sides: a 64-pixel thumbnail of a 4:3 photo is 64x48."""
    small = Thumbnails(tmp_path / "thumbs", edge=64)
    assert (64, 48) == size_of(small.get(sha(1), [samples / "jpg_hdr_iphone_hdr_NO.jpg"]))


def test_exif_orientation_turns_the_thumbnail(samples: Path, thumbs: Thumbnails) -> None:
    """A photo stored 450x600 with EXIF orientation 6 (turn 90 degrees) is shown as it
    was taken, 600x450: its thumbnail is landscape, width and height swapped."""
    path = samples / "jpg_orientation_landscape_6.jpg"
    with Image.open(path) as im:
        assert ((450, 600), 6) == (im.size, im.getexif().get(0x0112))
    assert (256, 192) == size_of(thumbs.get(sha(6), [path]))


def test_the_second_get_reads_the_cache(samples: Path, tmp_path: Path) -> None:
    """Once made, a thumbnail is served from the cache: with its only source deleted,
    get() and cached() still give the same bytes, from a private file in a private
    folder that a new Thumbnails (a restarted daemon) also finds."""
    folder = tmp_path / "state" / "thumbs"
    source = samples / "heic_IMG_5195.HEIC"
    first = Thumbnails(folder).get(sha(1), [source])
    assert first is not None
    source.unlink()
    again = Thumbnails(folder)
    assert first == again.get(sha(1), [source])
    assert first == again.cached(sha(1))
    assert 0o700 == folder.stat().st_mode & 0o777
    assert {sha(1) + ".jpg": len(first)} == cache_files(folder)
    assert 0o600 == (folder / (sha(1) + ".jpg")).stat().st_mode & 0o777


def test_cached_never_decodes(samples: Path, thumbs: Thumbnails) -> None:
    """cached() of a photo never made is None, and makes nothing."""
    assert thumbs.cached(sha(1)) is None
    assert not thumbs.folder.exists()


def bad_sources(samples: Path, tmp_path: Path) -> dict[str, Path]:
    """Files a watch folder or a damaged disk may hold, none of which decodes."""
    out = tmp_path / "bad"
    out.mkdir()
    jpeg = (samples / "jpg_hdr_iphone_hdr_NO.jpg").read_bytes()
    (out / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    heic = (samples / "heic_IMG_5195.HEIC").read_bytes()
    (out / "truncated.heic").write_bytes(heic[: len(heic) // 2])
    (out / "garbage.jpg").write_bytes(bytes(range(256)) * 40)
    (out / "text.png").write_text("not a picture\n")
    (out / "empty.jpg").write_bytes(b"")
    (out / "folder.jpg").mkdir()
    os.mkfifo(out / "fifo.jpg")
    (out / "link.jpg").symlink_to(samples / "jpg_Canon_40D.jpg")
    return {p.name: p for p in out.iterdir()} | {"missing.jpg": out / "missing.jpg"}


BAD = ["truncated.jpg", "truncated.heic", "garbage.jpg", "text.png", "empty.jpg",
       "folder.jpg", "fifo.jpg", "link.jpg", "missing.jpg"]  # fmt: skip


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_source_gives_none_and_the_next_one_is_used(
    samples: Path, tmp_path: Path, thumbs: Thumbnails, bad: str
) -> None:
    """A damaged, truncated, empty or missing file, a folder, a FIFO (which must not
    block) and a link (photod follows none) give no thumbnail and no exception; with a
    good copy next in the list, that copy's thumbnail is served and cached."""
    path = bad_sources(samples, tmp_path)[bad]
    assert thumbs.get(sha(1), [path]) is None
    assert thumbs.cached(sha(1)) is None
    good = samples / "jpg_hdr_iphone_hdr_NO.jpg"
    data = thumbs.get(sha(1), [path, good])
    assert (256, 192) == size_of(data)
    assert data == thumbs.cached(sha(1))


def test_no_source_at_all_gives_none(thumbs: Thumbnails) -> None:
    """A photo with no local copy gives None (the dashboard shows a placeholder)."""
    assert thumbs.get(sha(1), []) is None


def bomb_png(path: Path, side: int) -> Path:
    """A whole, valid black PNG of side x side pixels at one bit a pixel: a few hundred
    kilobytes on disk that Pillow would decode (and a dashboard would show)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * ((side // 8 + 1) * side))  # each row: filter byte, bits
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_a_decompression_bomb_is_refused_even_without_pillows_limit(
    tmp_path: Path, thumbs: Thumbnails, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image decoded in full (not a JPEG, which is decoded at a fraction of its size)
    over 50 megapixels gives None (a 64-megapixel PNG of 250 KB would take half a GB to
    decode), also when another module has lifted Pillow's global limit (the probe
    does: panoramas are legitimate backups); one just under (49 megapixels) is made."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert thumbs.get(sha(1), [bomb_png(tmp_path / "bomb.png", 8000)]) is None
    assert (256, 256) == size_of(thumbs.get(sha(2), [bomb_png(tmp_path / "big.png", 7000)]))


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        pytest.fail("ffmpeg not found: apt-get install ffmpeg")
    return found


@pytest.mark.parametrize("name", ["out.mp4", "clip.dat"])
def test_a_video_gives_its_first_frame(tmp_path: Path, thumbs: Thumbnails, name: str) -> None:
    """A 320x240 video gives a 256x192 thumbnail of its first frame, by its extension
    or, under a name that says nothing, because Pillow cannot open it and ffmpeg can."""
    video = tmp_path / name
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1",
                    "-t", "1", "-f", "mp4", str(video)], check=True, timeout=60)  # fmt: skip
    assert (256, 192) == size_of(thumbs.get(sha(1), [video]))


def test_the_cap_drops_the_least_recently_used(samples: Path, tmp_path: Path) -> None:
    """With room for three thumbnails, making twenty keeps the folder under the cap
    after every one; the thumbnail looked at between them survives, the others the
    oldest first; a restarted Thumbnails counts what is there and keeps the cap."""
    source = samples / "jpg_hdr_iphone_hdr_NO.jpg"
    one = Thumbnails(tmp_path / "probe").get(sha(0), [source])
    assert one is not None
    cap = len(one) * 7 // 2
    folder = tmp_path / "state" / "thumbs"
    thumbs = Thumbnails(folder, cap_bytes=cap)
    assert one == thumbs.get(sha("kept"), [source])
    for n in range(20):
        time.sleep(0.02)  # file times are as coarse as the kernel's clock tick
        assert one == thumbs.get(sha(n), [source])
        assert sum(cache_files(folder).values()) <= cap
        time.sleep(0.02)
        assert one == thumbs.cached(sha("kept"))  # looked at: the most recently used
    assert {sha("kept"), sha(18), sha(19)} == {name[:64] for name in cache_files(folder)}
    time.sleep(0.02)
    assert one == Thumbnails(folder, cap_bytes=cap).get(sha(20), [source])
    assert {sha("kept"), sha(19), sha(20)} == {name[:64] for name in cache_files(folder)}


def test_a_link_planted_at_the_thumbs_folder_is_refused(samples: Path, tmp_path: Path) -> None:
    """A link in place of the thumbs folder (to a folder, or dangling) is not followed:
    the thumbnail is still served, but nothing is written or read through the link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    for target in (elsewhere, tmp_path / "nowhere"):
        (state / "thumbs").unlink(missing_ok=True)
        (state / "thumbs").symlink_to(target)
        thumbs = Thumbnails(state / "thumbs")
        data = thumbs.get(sha(1), [samples / "jpg_hdr_iphone_hdr_NO.jpg"])
        assert (256, 192) == size_of(data)
        assert thumbs.cached(sha(1)) is None
        assert [] == list(elsewhere.iterdir())
        assert not (tmp_path / "nowhere").exists()
        assert (state / "thumbs").is_symlink()


def test_a_link_planted_at_a_thumbnail_is_not_read(samples: Path, thumbs: Thumbnails) -> None:
    """A link named like a cached thumbnail is not served; making the thumbnail
    replaces the link itself and leaves the file it pointed at untouched."""
    thumbs.folder.mkdir(parents=True)
    victim = samples / "jpg_Canon_40D.jpg"
    before = victim.read_bytes()
    (thumbs.folder / (sha(1) + ".jpg")).symlink_to(victim)
    assert thumbs.cached(sha(1)) is None
    data = thumbs.get(sha(1), [samples / "jpg_hdr_iphone_hdr_NO.jpg"])
    assert data == thumbs.cached(sha(1))
    assert not (thumbs.folder / (sha(1) + ".jpg")).is_symlink()
    assert before == victim.read_bytes()


@pytest.mark.parametrize("bad", ["", "0" * 63, "0" * 65, "A" * 64, "../" + "0" * 61, "g" * 64])
def test_an_invalid_sha_raises_value_error(thumbs: Thumbnails, bad: str) -> None:
    """The sha becomes a file name: anything but 64 lowercase hex digits is refused."""
    with pytest.raises(ValueError, match="sha256"):
        thumbs.get(bad, [])
    with pytest.raises(ValueError, match="sha256"):
        thumbs.cached(bad)


def test_threads_making_the_same_thumbnail_at_once(samples: Path, thumbs: Thumbnails) -> None:
    """Eight web requests for one photo at once all get the same thumbnail, and the
    cache holds exactly one whole file (no temporary left)."""
    source = samples / "heic_IMG_5195.HEIC"
    results: list[bytes | None] = []
    threads = [threading.Thread(target=lambda: results.append(thumbs.get(sha(1), [source])))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 8 == len(results)
    assert 1 == len({r for r in results if r is not None})
    assert None not in results
    assert {sha(1) + ".jpg": len(results[0] or b"")} == cache_files(thumbs.folder)


def test_importing_the_module_does_not_load_pillow() -> None:
    """Short commands import photod's modules; Pillow loads at the first decode only."""
    code = "import sys, photod.thumbs; print('PIL' in sys.modules, 'pillow_heif' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert "False False" == run.stdout.strip()


def test_a_source_beneath_a_root_is_read_through_no_link(
    samples: Path, tmp_path: Path, thumbs: Thumbnails
) -> None:
    """(root, path beneath it), as the dashboard gives a target's copy: a folder on the
    way that is a link (swapped in by whoever writes the watch folder) gives None,
    even when it leads to a photo; the real path gives the thumbnail."""
    root, outside = tmp_path / "inbox", tmp_path / "private"
    (root / "2024").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(samples / "jpg_Canon_40D.jpg", root / "2024" / "a.jpg")
    shutil.copy(samples / "jpg_Canon_40D.jpg", outside / "a.jpg")
    (root / "trip").symlink_to(outside)
    assert thumbs.get(sha(1), [(root, "trip/a.jpg")]) is None
    assert thumbs.get(sha(2), [(root, "../private/a.jpg")]) is None
    assert (100, 68) == size_of(thumbs.get(sha(3), [(root, "2024/a.jpg")]))


def test_a_playlist_posing_as_a_video_shows_nothing_else(
    tmp_path: Path, thumbs: Thumbnails
) -> None:
    """A watch folder's "video" that is an HLS playlist naming another file: ffmpeg
    followed it and the thumbnail showed any video the daemon's user can read.  Only
    video containers are opened now: no thumbnail."""
    secret = tmp_path / "elsewhere" / "secret.mp4"
    secret.parent.mkdir()
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1",
                    "-t", "1", "-f", "mp4", str(secret)], check=True, timeout=60)  # fmt: skip
    playlist = tmp_path / "other.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile://{secret}\n"
                        "#EXT-X-ENDLIST\n")  # fmt: skip
    assert thumbs.get(sha(1), [playlist]) is None
    assert (256, 192) == size_of(thumbs.get(sha(2), [secret]))  # a real video still is


def test_a_large_progressive_jpeg_is_neither_thumbnailed_nor_decoded(tmp_path: Path) -> None:
    """A progressive JPEG is not decoded at a smaller scale: libjpeg keeps every
    coefficient (a 3 MB file of 13,000 x 13,000 pixels took 1-2 GB, enough for the OOM
    killer on a small NAS).  Past 25 megapixels it gets no thumbnail and no decode
    check (it is backed up as it is); the memory of both, measured in a child
    process (its high-water mark: ``ru_maxrss`` keeps its parent's across exec),
    stays small."""
    big = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 4400), (200, 40, 40)).save(big, "JPEG", progressive=True,
                                                      subsampling=0)  # fmt: skip
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from photod.probe import probe_file\n"
        "from photod.thumbs import Thumbnails\n"
        "p = Path(sys.argv[1])\n"
        "t = Thumbnails(p.parent / 'thumbs').get('a' * 64, [p])\n"
        "probe_file(str(p), p.name, 0.0, 'full')\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(t is None, int(peak.split()[1]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()  # fmt: skip
    assert "True" == out[0]
    assert int(out[1]) < 120, f"peak {out[1]} MB"


@pytest.mark.parametrize(
    ("name", "container"),
    [("a.mkv", "matroska"), ("a.avi", "avi"), ("a.mts", "mpegts"), ("a.mpg", "mpeg"),
     ("a.wmv", "asf"), ("a.3gp", "3gp"), ("a.webm", "webm")],
)  # fmt: skip
def test_every_video_container_photod_imports_gets_its_frame(
    tmp_path: Path, thumbs: Thumbnails, name: str, container: str
) -> None:
    """The containers ffmpeg may open for a thumbnail are those of the videos photod
    imports: each still gives its first frame."""
    video = tmp_path / name
    codec = {"webm": ["-c:v", "libvpx"], "3gp": ["-c:v", "mpeg4"]}.get(container, [])
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "1", *codec, "-f", container, str(video)], check=True, timeout=60)  # fmt: skip
    assert (256, 192) == size_of(thumbs.get(sha(1), [video]))


def _jpeg_head(sof: int, frame: int, scan: int) -> bytes:
    """The markers of a JPEG up to its first scan's component count."""
    comps = b"".join(bytes([i + 1, 0x11, 0]) for i in range(frame))
    sof_body = b"\x08\x27\x10\x27\x10" + bytes([frame]) + comps  # 10000 x 10000
    return (b"\xff\xd8" + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + bytes([0xFF, sof]) + (2 + len(sof_body)).to_bytes(2, "big") + sof_body
            + b"\xff\xff\xda\x00\x08" + bytes([scan]) + b"\x01\x00\x00\x3f\x00")  # fmt: skip


@pytest.mark.parametrize(
    ("sof", "frame", "scan", "whole"),
    [(0xC0, 3, 3, False),  # baseline, interleaved: decoded at 1/8 scale, a block at a time
     (0xC0, 3, 1, True),  # baseline, one component a scan: libjpeg keeps it all
     (0xC2, 3, 3, True),  # progressive
     (0xC0, 1, 1, False)],  # greyscale
)  # fmt: skip
def test_which_jpegs_libjpeg_keeps_whole(sof: int, frame: int, scan: int, whole: bool) -> None:
    """Not only a progressive JPEG is kept whole by libjpeg: a baseline one whose
    components come in scans of their own is too (Pillow does not flag it; a 3.5 MB
    file of 100 megapixels took 1 GB), so the size limit looks at the scans."""
    from photod.media import decoded_whole

    f = io.BytesIO(_jpeg_head(sof, frame, scan))
    f.seek(7)
    assert whole == decoded_whole(f)
    assert 7 == f.tell()  # the position kept
