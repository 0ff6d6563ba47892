"""Opening a path that somebody else controls: beneath its root, through no link.

A watch folder, a restore destination, a target's folders, a phone's staging folder:
whoever can write there can swap a folder for a link to elsewhere at any moment, and a
path opened twice may name two different files.  So every such path is opened once,
beneath a descriptor of its root, refusing a link in any component: ``openat2`` with
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it (Linux 5.6 and later),
else one component at a time with O_NOFOLLOW (macOS, older kernels).  Whatever is then
read, hashed and copied is that one descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import sys
from typing import Any

__all__ = ["LinkRefused", "folder_beneath", "open_beneath", "open_root"]

_BASE = os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _BASE
SYS_OPENAT2 = 437  # the same on every architecture but MIPS and Alpha (they walk instead)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08


class LinkRefused(OSError):
    """A symbolic link (or a way out) in a path that must stay beneath its root."""

    def __init__(self, rel: str, parts: list[str] | None = None, at: int = -1) -> None:
        parts = parts or []
        part = parts[at] if at >= 0 else ".."
        where = f"{part!r} in {rel!r}" if part != rel else repr(rel)
        what = "is a symbolic link" if at >= 0 else "leads out of its folder"
        super().__init__(errno.ELOOP, f"{where} {what}; photod follows no link")
        self.rel = rel
        self.part = part
        self.at = at
        self.link = "/".join(parts[: at + 1])  # the link itself, beneath the root
        self.last = at >= 0 and at == len(parts) - 1  # the file itself, not a folder on the way


# Until the kernel says otherwise (ENOSYS, seccomp), or the C library cannot be reached.
_has_openat2 = sys.platform.startswith("linux") and not os.uname().machine.startswith(
    ("mips", "alpha")
)


@functools.cache
def _libc() -> tuple[Any, Any, Any]:
    """ctypes, the C library's syscall() and openat2's ``struct open_how``: loaded at
    the first open beneath a root, not at import (ctypes would cost every read-only
    command, ``status`` among them, a few ms)."""
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                    ("resolve", ctypes.c_uint64)]  # fmt: skip

    try:
        return ctypes, ctypes.CDLL(None, use_errno=True).syscall, OpenHow
    except (OSError, AttributeError):
        return ctypes, None, OpenHow


def _openat2(dir_fd: int, rel: str, flags: int, mode: int) -> int:
    ctypes, syscall, OpenHow = _libc()
    if syscall is None:
        raise OSError(errno.ENOSYS, "no syscall() in the C library")  # walk instead
    mode = mode if flags & os.O_CREAT else 0  # openat2 refuses a mode it would not use
    # The raw syscall gets no O_LARGEFILE from the C library: a 32-bit system (a
    # Raspberry Pi) would refuse every file over 2 GiB, a video among them.
    flags |= getattr(os, "O_LARGEFILE", 0)
    how = OpenHow(flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    fd = syscall(SYS_OPENAT2, ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(rel)),
                 ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return int(fd)


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or rel.startswith("/"):
        raise LinkRefused(rel)  # never a way up or out
    return parts


def open_root(path: str | os.PathLike[str]) -> int:
    """A descriptor of a root folder itself (a link in the configured path is the
    owner's choice and is followed; nothing below it is)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _BASE)


def open_beneath(root_fd: int, rel: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of ``rel`` beneath the folder ``root_fd``; LinkRefused when any
    component is a link, FileNotFoundError and other OSErrors as ``open`` raises them.
    ``flags`` are those of ``os.open``; the last component is never followed either."""
    global _has_openat2
    parts = _parts(rel)
    flags |= os.O_NOFOLLOW | _BASE
    sandboxed = False
    if _has_openat2:
        try:
            return _openat2(root_fd, "/".join(parts), flags, mode)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV):
                raise LinkRefused(rel, parts, _first_link(root_fd, parts)) from None
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
            sandboxed = True  # an old kernel, or a sandbox that forbids openat2: walk
    try:
        fd = folder_beneath(root_fd, "/".join(parts[:-1])) if len(parts) > 1 else os.dup(root_fd)
    except LinkRefused as exc:
        raise LinkRefused(rel, parts, exc.at) from None
    try:
        try:
            opened = os.open(parts[-1], flags, mode, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or _is_link(fd, parts[-1]):
                raise LinkRefused(rel, parts, len(parts) - 1) from None
            raise
    finally:
        os.close(fd)
    if sandboxed:
        _has_openat2 = False  # the walk works where openat2 did not: walk from now on
    return opened


def folder_beneath(
    root_fd: int,
    rel: str,
    create: bool = False,
    mode: int = 0o755,
    exact: bool = False,
    owner: tuple[int, int] | None = None,
) -> int:
    """A descriptor of the folder ``rel`` beneath ``root_fd`` (made on the way when
    ``create``, with ``mode`` under the umask, or exactly ``mode`` when ``exact``),
    through no link; ``rel`` '' is the root.  With ``owner`` (uid, gid), what is made
    is given to them, and a folder of anyone else's on the way is refused
    (PermissionError): root writes there for that user only where they could."""
    fd = os.dup(root_fd)
    try:
        parts = _parts(rel) if rel else []
        for i, part in enumerate(parts):
            made = False
            try:
                # Opened first, made only when missing: a folder is almost always there
                # already (a target's year and month), and a copy asked for it twice.
                try:
                    inner = os.open(part, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, mode, dir_fd=fd)
                        made = True
                    inner = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, part):
                    raise LinkRefused(rel, parts, i) from None
                raise
            os.close(fd)
            fd = inner
            if made and owner is not None:
                os.fchown(fd, *owner)
            elif owner is not None and os.fstat(fd).st_uid != owner[0]:
                where = "/".join(parts[: i + 1])
                raise PermissionError(errno.EACCES, f"{where} is another user's folder")
            if made and exact:
                os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _first_link(root_fd: int, parts: list[str]) -> int:
    """Which component is the first link (for the message), walking with O_NOFOLLOW."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            if _is_link(fd, part):
                return i
            try:
                inner = os.open(part, _DIR, dir_fd=fd)
            except OSError:
                return i
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    return len(parts) - 1
