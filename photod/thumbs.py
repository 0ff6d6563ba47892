"""Thumbnails for the dashboard: made from local copies only, cached in the state folder.

A thumbnail is made from the first local copy of a photo that can be read and decoded (a
local target's replica, the watch folder's original), never fetched from a remote target,
and never written to any target: it is a cache, kept in ``<state_dir>/thumbs`` as
``<sha256>.jpg`` under a size cap that drops the least recently used first.  Every file
it reads was put there by someone else, so a bad one (damaged, truncated, a FIFO, a
decompression bomb) gives no thumbnail, never an exception; the cache folder itself is
used through one descriptor and no link.  Pillow loads at the first decode, not at import.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from photod.isobmff import is_isobmff, truncated_box
from photod.logs import log
from photod.media import EXTENSIONS, PROGRESSIVE_MAX, decoded_whole
from photod.models import Kind
from photod.safeopen import LinkRefused, open_beneath, open_root

__all__ = ["MAX_PIXELS", "Thumbnails"]

MAX_PIXELS = 200_000_000  # larger than any camera's photo; a bomb's header claims more
# What is decoded in full (no JPEG draft): 50 megapixels is 200 MB as RGBA, and a 48 MP
# phone photo still fits.
FULL_DECODE_MAX = 50_000_000
VIDEO_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,asf"  # ffmpeg demuxers
# Decodes at once, whatever the number of threads asking: a page of hostile images
# must not take the daemon's memory.
_DECODING = threading.BoundedSemaphore(2)
FFMPEG_TIMEOUT = 20.0
# The formats Pillow may open here: photos, never EPS and the like (Ghostscript).  A
# JPEG with several pictures opens as MPO through the JPEG opener.
_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "HEIF", "AVIF", "BMP")
_SHA = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[0-9a-f]{64}\.jpg")
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # a FIFO must not block
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STALE = 3600.0  # a temporary this old was left by a process that died while writing


class Thumbnails:
    """JPEG thumbnails of at most ``edge`` x ``edge`` pixels, cached in ``folder`` (made
    0700 at the first write; refused when it is a link) within ``cap_bytes``.  Safe to
    call from several threads at once."""

    def __init__(self, folder: Path, cap_bytes: int = 200 * 1024**2, edge: int = 256) -> None:
        if edge < 1 or cap_bytes < 0:
            raise ValueError(f"edge {edge} must be positive, cap_bytes {cap_bytes} not negative")
        self.folder = folder
        self.cap_bytes = cap_bytes
        self.edge = edge
        self._lock = threading.Lock()
        self._total: int | None = None  # the cache's bytes, scanned once at first use
        self._problem = ""  # the last reason the folder could not be used, logged once

    def get(self, sha256: str, sources: Iterable[Path | tuple[Path, str]]) -> bytes | None:
        """The thumbnail of the photo whose content hash is ``sha256``: from the cache,
        else made from the first of ``sources`` that decodes, then cached; None when
        none does.  A source is a file, or (root, path beneath it): then no link is
        followed anywhere on the way.  Raises ValueError for a ``sha256`` that is not
        64 lowercase hex."""
        found = self.cached(sha256)
        if found is not None:
            return found
        for source in sources:
            with _DECODING:
                data = _make(source, self.edge)
            if data is not None:
                self._store(sha256 + ".jpg", data)
                return data
        return None

    def cached(self, sha256: str) -> bytes | None:
        """The cached thumbnail (marked as just used), or None; never decodes."""
        if not _SHA.fullmatch(sha256):
            raise ValueError(f"not a sha256 in lowercase hex: {sha256!r}")
        folder = self._open_folder(create=False)
        if folder is None:
            return None
        try:
            f = _open_file(sha256 + ".jpg", folder)
        finally:
            os.close(folder)
        if f is None:
            return None
        with f:
            data = f.read()
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(f.fileno())  # the cap drops the least recently used first
        return data or None

    def _open_folder(self, create: bool) -> int | None:
        try:
            if create:
                self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # or a link: refused below
                    os.mkdir(self.folder, 0o700)
            fd = os.open(self.folder, _DIR)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a link (ELOOP), a file (ENOTDIR), no permission
            self._warn(str(exc))
            return None
        self._problem = ""
        return fd

    def _warn(self, reason: str) -> None:
        if reason != self._problem:
            self._problem = reason
            log.warning("thumbnails_uncached", folder=str(self.folder), reason=reason)

    def _store(self, name: str, data: bytes) -> None:
        """Write ``name`` atomically (a temporary with a random part, then a rename, so
        that two threads making the same thumbnail never mix their bytes), then keep
        the cache under its cap.  A failure costs only the caching."""
        folder = self._open_folder(create=True)
        if folder is None:
            return
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                         dir_fd=folder)  # fmt: skip
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(fd)  # never a torn thumbnail after a crash; a lost one is remade
            with self._lock:
                total = self._scan(folder)[0] if self._total is None else self._total
                try:
                    old = os.stat(name, dir_fd=folder, follow_symlinks=False).st_size
                except FileNotFoundError:
                    old = 0
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
                self._total = total - old + len(data)
                if self._total > self.cap_bytes:
                    self._evict(folder)
        except OSError as exc:
            self._warn(str(exc))
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
        finally:
            os.close(folder)

    def _scan(self, folder: int) -> tuple[int, list[tuple[float, str, int]]]:
        """The cache's total bytes and its thumbnails (mtime, name, size); temporaries
        left by a process that died are removed."""
        total, files = 0, []
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if _NAME.fullmatch(entry.name) and stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    files.append((st.st_mtime, entry.name, st.st_size))
                elif entry.name.endswith(".tmp") and st.st_mtime < time.time() - _STALE:
                    os.unlink(entry.name, dir_fd=folder)
        return total, files

    def _evict(self, folder: int) -> None:
        """Drop the least recently used thumbnails until under 90% of the cap (a fresh
        scan: another process may share the folder)."""
        total, files = self._scan(folder)
        for _, name, size in sorted(files):
            if total <= self.cap_bytes * 0.9:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder)
            total -= size
        self._total = total


def _open_beneath(root: Path, rel: str) -> IO[bytes] | None:
    """``rel`` beneath ``root`` through no link (``safeopen``), or None."""
    try:
        top = open_root(root)
    except (OSError, ValueError):
        return None
    try:
        fd = open_beneath(top, rel, _READ)
    except (OSError, ValueError, LinkRefused):
        return None
    finally:
        os.close(top)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return os.fdopen(fd, "rb")
    os.close(fd)
    return None


def _open_file(path: Path | str, dir_fd: int | None = None) -> IO[bytes] | None:
    """A regular file opened for reading, or None: missing, unreadable, a link, a
    directory, a FIFO (opened without blocking), a device."""
    try:
        fd = os.open(path, _READ, dir_fd=dir_fd)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return os.fdopen(fd, "rb")
    os.close(fd)
    return None


def _make(source: Path | tuple[Path, str], edge: int) -> bytes | None:
    """A thumbnail of one file, or None when it is not a regular file that decodes."""
    from PIL import UnidentifiedImageError

    f = _open_file(source) if isinstance(source, Path) else _open_beneath(*source)
    path = source if isinstance(source, Path) else Path(source[1])
    if f is None:
        return None
    with f:
        if EXTENSIONS.get(path.suffix.lower().lstrip(".")) is not Kind.VIDEO:
            try:
                return _thumbnail(f, edge)
            except UnidentifiedImageError:
                pass  # not an image Pillow knows: perhaps a video ffmpeg can read
            except Exception:  # damaged, truncated, a bomb: whatever Pillow raises
                return None
        frame = _first_frame(f.fileno(), edge)
        try:
            return _thumbnail(io.BytesIO(frame), edge) if frame else None
        except Exception:
            return None


@functools.cache
def _formats() -> tuple[str, ...]:
    """HEIF registered, and which of ``_FORMATS`` this Pillow has (AVIF: 11.2+)."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    Image.init()
    return tuple(f for f in _FORMATS if f in Image.OPEN)


def _thumbnail(f: IO[bytes], edge: int) -> bytes | None:
    from PIL import Image, ImageOps

    if is_isobmff(f) and truncated_box(f):  # HEIF/AVIF: libheif paints a cut file green
        return None
    with Image.open(f, formats=_formats()) as im:
        # Pillow's own limit is a global other modules set; this one is per call.
        pixels = im.width * im.height
        if pixels > MAX_PIXELS or (im.format != "JPEG" and pixels > FULL_DECODE_MAX):
            return None
        if im.format == "JPEG" and pixels > PROGRESSIVE_MAX and decoded_whole(f):
            return None
        im.draft("RGB", (edge, edge))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        im.thumbnail((edge, edge))
        ImageOps.exif_transpose(im, in_place=True)
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            rgba = im.convert("RGBA")  # transparent parts white, not black
            rgb = Image.new("RGB", rgba.size, "white")
            rgb.paste(rgba, mask=rgba.getchannel("A"))
        else:
            rgb = im.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=80)
    return out.getvalue()


def _first_frame(fd: int, edge: int) -> bytes | None:
    """A video's first frame as a JPEG within ``edge``, by ffmpeg (None without it).
    ffmpeg reads the descriptor already opened and checked, not the path again."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    scale = f"scale={edge}:{edge}:force_original_aspect_ratio=decrease"
    # Only video containers: a playlist (HLS, concat) names other files for ffmpeg to
    # open, and a watch folder's "video" could show any of the daemon's files.
    command = [ffmpeg, "-nostdin", "-v", "error", "-format_whitelist", VIDEO_FORMATS,
               "-i", f"/dev/fd/{fd}", "-frames:v", "1",
               "-an", "-sn", "-vf", scale, "-f", "image2pipe", "-vcodec", "mjpeg", "-"]  # fmt: skip
    try:
        run = subprocess.run(command, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=FFMPEG_TIMEOUT)  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # cannot start, or timed out (killed)
        return None
    return run.stdout if run.returncode == 0 and run.stdout else None
