"""What checking the config file's exact bytes gave, kept between runs while the file and
photod have not changed: the schema check (``config.cache``: commands skip building
pydantic's validators, most of their start) and `photod status`'s plain settings
(``status.cache``, see ``statusconfig``: it loads no pydantic at all).

Private files in the state dir.  What is read back counts only if all of this holds;
else the caller validates in full (and keeps that result instead):

- the file is ours: a regular file of this user, mode 600, reached through no link;
- its key is the SHA-256 of the config's bytes and of the code that checks them, and
  its contents match the checksum written with them (a torn or damaged file fails);
- it unpickles naming no class but those the caller allows: a forged file runs no code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import io
import os
import pickle
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

NAME = "config.cache"
_MAGIC = b"photod config cache 1\n"
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def key(text: bytes, code: Iterable[str]) -> bytes:
    """What a kept check stands for: these bytes, checked by this code.  Empty when a
    module or its file cannot be found: then nothing is kept."""
    names = tuple(code)
    part = _code.get(names)
    if part is None:
        part = _code[names] = _code_of(names)
    return hashlib.sha256(text + b"\0" + part).hexdigest().encode() if part else b""


# The code's part of a key, taken once in a process, the first time it is asked: a
# daemon running for months keys what it checks by the code it runs, not by an upgrade
# installed on disk meanwhile (its reload kept what the old code decided under the new
# code's key, and the new daemon started on it).
_code: dict[tuple[str, ...], bytes] = {}


def _code_of(names: tuple[str, ...]) -> bytes:
    """Python's version and each named module's file as it is now: where it is, its size
    and times, its inode and change time (an edit or an upgrade changes them, even one
    that keeps sizes and file times, as Nix's store does: no tool sets a ctime).  A
    module not loaded is found without being loaded.  Empty when one cannot be found."""
    h = hashlib.sha256(sys.version.encode())
    try:
        for name in names:
            path = _file_of(name)
            st = os.stat(path)
            h.update(f"\0{name} {path} {st.st_size} {st.st_mtime_ns} {st.st_ino} "
                     f"{st.st_ctime_ns}".encode())  # fmt: skip
    except (KeyError, ImportError, ValueError, OSError):
        return b""
    return h.hexdigest().encode()


def _file_of(module: str) -> str:
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded.__file__ or ""
    parent = module.rpartition(".")[0]
    where = sys.modules[parent].__path__ if parent else None  # KeyError: parent not loaded
    spec = importlib.machinery.PathFinder.find_spec(module, where)  # found, not loaded
    return (spec.origin if spec else None) or ""


def read(folder: Path, want: bytes, classes: Iterable[type], name: str = NAME) -> Any:
    """The value kept under the key ``want`` in ``folder``; None when there is none,
    it is another key's, not ours, or damaged in any way."""
    try:
        fd = os.open(folder / name, _OPEN)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        data = f.read()
    head, _, body = data.partition(b"\n\n")
    if head != _head(want, body):
        return None
    try:
        return _Allowed(body, {(c.__module__, c.__qualname__): c for c in classes}).load()
    except Exception:  # whatever a damaged pickle raises (many kinds): not used
        return None


def write(folder: Path, want: bytes, value: object, name: str = NAME) -> None:
    """Keep ``value`` under the key ``want``: a temporary renamed over the file, so a
    reader sees the old file or the new one.  Only in a folder of this user (never in
    another user's state dir, whoever runs the command).  Not fsynced: a file a crash
    tore fails its checksum and is written again.  Best effort: a cache that cannot be
    written is simply not there next time."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError, ValueError):
        st = os.stat(folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_head(want, body) + b"\n\n" + body)
            os.replace(tmp, folder / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _head(want: bytes, body: bytes) -> bytes:
    return _MAGIC + want + b" " + hashlib.sha256(body).hexdigest().encode()


class _Allowed(pickle.Unpickler):
    """An unpickler that makes nothing but the allowed classes (the pickle module's own
    advice for data that is not fully trusted)."""

    def __init__(self, data: bytes, classes: Mapping[tuple[str, str], type]) -> None:
        super().__init__(io.BytesIO(data))
        self.classes = classes

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.classes[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed here") from None
