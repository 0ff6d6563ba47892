"""Writing into a local target (``local.py``) through folder descriptors: a copy
(``LocalWriter``), and the small files under ``.photod/`` replaced or created
atomically.  A crash leaves the old file or the new one, never a mix, and at most a
temporary named ``TEMP_PREFIX…TEMP_SUFFIX`` that the target knows to remove.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import pwd
import stat
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

from photod import failpoints
from photod.errors import ChecksumMismatch, FolderUnwritable, KeyExists, TargetUnavailable
from photod.models import VerifyMethod
from photod.private import COPY_MODE
from photod.targets.base import CHUNK

TEMP_PREFIX = ".photod-"
TEMP_SUFFIX = ".tmp"
# A metadata temporary of another installation (sharing the target) is removed only
# once it is this old: it may be a write in flight.
FOREIGN_TEMP_AGE = 3600.0
# A disk that turned read-only or failing under a write: what it cut short may stay there
# (a temporary the journal committed), so ``sweep_temps`` runs again when it is back.
CUT_SHORT = (errno.EROFS, errno.EIO)


def _write_temp(folder: int, name: str, data: bytes, owner: str, left: set[str] | None) -> str:
    """A temporary beside ``name`` in the folder ``folder``, written and synced."""
    tmp = f"{TEMP_PREFIX}{owner}{os.urandom(8).hex()}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(tmp, flags, 0o644, dir_fd=folder), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:  # a full disk, an unplugged drive: leave no half-written temporary
        _discard(folder, tmp, left)
        raise
    failpoints.hit("meta_written")
    return tmp


def _discard(folder: int, tmp: str, left: set[str] | None = None) -> None:
    """Remove a temporary.  One the disk will not remove now (turned read-only, failing)
    is named in ``left``: the target removes it by that name once it is writable, and
    never another of this process's temporaries, which may be writes in flight."""
    try:
        os.unlink(tmp, dir_fd=folder)
    except FileNotFoundError:
        pass
    except OSError:
        if left is not None:
            left.add(tmp)


def folder_now(folder: int, owner: str, left: set[str] | None = None) -> float | None:
    """Now, by the clock that stamps the files in ``folder`` (a NAS's own: this
    computer's may be hours off): the time of a file made there; None when none can be."""
    tmp = f"{TEMP_PREFIX}{owner}{os.urandom(8).hex()}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=folder)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        _discard(folder, tmp, left)


def sweep_temps(top: Path, owner: str, first: bool, left: set[str]) -> None:
    """Remove the temporaries under ``top`` (a target's ``.photod/``) named in ``left``,
    every one of ``owner`` when ``first`` (``LocalMeta.sweep`` says when), and others'
    once they are old by the folder's clock.  One the disk will not remove now stays in
    ``left``; one the whole walk did not find leaves it."""
    mine = f"{TEMP_PREFIX}{owner}" if first else None
    old: float | None = None
    looked_for, still = set(left), set()  # (one named meanwhile: the next check's)
    errors: list[OSError] = []
    try:  # fwalk: through descriptors, never into a link (a link's writes are refused)
        for _, _, names, dirfd in os.fwalk(top, follow_symlinks=False, onerror=errors.append):
            if old is None:  # (``top`` itself, first; unwritable: none is old)
                now = folder_now(dirfd, owner, left)
                old = now - FOREIGN_TEMP_AGE if now is not None else float("-inf")
            for name in names:
                if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
                    continue
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                    if name in left or (mine and name.startswith(mine)) or st.st_mtime < old:
                        os.unlink(name, dir_fd=dirfd)
                    left.discard(name)
                except FileNotFoundError:
                    left.discard(name)
                except OSError as exc:
                    if exc.errno in CUT_SHORT:  # (read-only still: by name, next check)
                        left.add(name)
                        still.add(name)
    except OSError as exc:  # (no .photod yet: nothing to sweep)
        errors.append(exc)
    if all(isinstance(e, FileNotFoundError) for e in errors):
        # A name the whole walk did not find is not there (the disk did not keep it, or
        # it was a photo's copy, beside the photo: the catalog's tidy removes that):
        # forgotten, or every check after would sweep again, and write there.
        left.difference_update(looked_for - still)


def write_atomic(
    folder: int, name: str, data: bytes, owner: str = "", left: set[str] | None = None
) -> None:
    """Temp file in the same directory, fsync, rename over, fsync the directory: the
    file is either the old one or the new one after a crash, never a mix.  ``folder``
    is a descriptor opened through no link: nothing is written anywhere else.  A
    temporary that a failure left on the disk is named in ``left`` (``_discard``)."""
    tmp = _write_temp(folder, name, data, owner, left)
    try:
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError:
        _discard(folder, tmp, left)
        raise
    os.fsync(folder)


def create_atomic(
    folder: int, name: str, data: bytes, owner: str = "", left: set[str] | None = None
) -> bool:
    """Like ``write_atomic``, but only when nothing is at ``name``: link() refuses an
    existing name, so of two writers exactly one wins.  False when one was there."""
    if _lexists(folder, name):
        return False  # the usual case once written: no temporary, no fsync
    tmp = _write_temp(folder, name, data, owner, left)
    at = {"src_dir_fd": folder, "dst_dir_fd": folder}
    try:
        os.link(tmp, name, **at, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:  # FAT/exFAT have no hard links: check, then rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if _lexists(folder, name):
            return False
        os.rename(tmp, name, **at)
    finally:
        _discard(folder, tmp, left)
    os.fsync(folder)
    return True


def _lexists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def write_error(target: Folders, exc: OSError, rel: str) -> TargetUnavailable:
    """What a write into the folder ``rel`` of a target that failed is: the target's
    error (``LocalTarget.error``), or, for a write refused (EACCES, EPERM) because of a
    folder inside the target, that folder named (``unwritable``)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        refused = unwritable(target.name, target.root, rel)
        if refused is not None:
            return refused
    return target.error(exc)


def unwritable(target: str, root: Path, rel: str) -> FolderUnwritable | None:
    """The folder inside a target that refused a write into its folder ``rel``: the
    deepest folder of ``rel`` there is (where the file, or the next folder, is made),
    when photod's user may not list it, write into it or enter it (``open_to``).  None when that is not the
    reason (the root itself, whose check says so; a folder fine by now).  The look goes
    by path: it only names the folder, nothing is written through it."""
    folder = root
    for part in rel.split("/") if rel else ():
        try:
            if not stat.S_ISDIR(os.lstat(folder / part).st_mode):
                break  # (a link, or a file: not this reason)
        except OSError:
            break  # missing, made in ``folder``; or ``folder`` cannot be entered
        folder = folder / part
    if folder == root or open_to(folder):
        return None
    try:
        st, flags = os.stat(folder, follow_symlinks=False), _folder_flags(folder)
    except OSError:
        return None  # (gone meanwhile)
    whose = f"owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"
    if flags & _IMMUTABLE:  # (root may not write there either: no mode is the reason)
        whose += ", immutable: chattr -i"
    return FolderUnwritable(target, folder, _user(os.geteuid()), whose)


def open_to(folder: Path | str) -> bool:
    """Whether photod's user may list, enter and write into a folder (each copy opens
    its folders to read: one it may write into but not list refused it as well), by its
    effective ids, the ones its writes are judged by."""
    return os.access(folder, os.R_OK | os.W_OK | os.X_OK, effective_ids=True)


def _folder_flags(folder: Path) -> int:
    """A folder's inode flags (chattr); 0 for one photod's user may not even open."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return _flags(fd)
    finally:
        os.close(fd)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # (a uid no account has: a folder copied from another computer)
        return f"uid {uid}"


class Sweeps(Protocol):
    left: set[str]  # temporaries under .photod/ a failed write left (``LocalMeta.sweep``)


class Folders(Protocol):
    """What a writer needs of its target (a ``LocalTarget``)."""

    name: str
    root: Path  # the folder its check proved

    def folder(self, rel: str, create: bool = False) -> int: ...

    def error(self, exc: OSError, needed: int = 0) -> TargetUnavailable: ...

    @property
    def meta(self) -> Sweeps: ...


class LocalWriter:
    """One copy being written.  Every step goes through file descriptors of folders
    opened from the target's root (``LocalTarget.folder``), never through paths: a
    drive unplugged or renamed mid-copy makes the next step fail, and can never make
    photod recreate the folders on the disk underneath (the empty mount point) and
    write a "copy" there."""

    def __init__(self, target: Folders, key: str, owner: str = "") -> None:
        self.target = target
        self.folder_rel = key.rpartition("/")[0]
        # ``owner``: a file under .photod/ (``put_private_file``), tagged as its atomic
        # writes' temporaries are (``LocalMeta.sweep``)
        self.temp_name = f"{TEMP_PREFIX}{owner}{os.urandom(8).hex()}{TEMP_SUFFIX}"
        self.temp_key = f"{self.folder_rel}/{self.temp_name}" if self.folder_rel else self.temp_name
        # The temporary is created by the first write, not here: the caller records
        # ``temp_key`` in the catalog in between, so a crash at any moment leaves no
        # temporary that the next start does not know to remove.
        self.f: BinaryIO | None = None
        self.dir_fd: int | None = None  # the folder the temporary is in
        self.opened = False
        self.left = False  # its temporary may be on the drive still: its removal failed

    def _open(self) -> BinaryIO:
        try:
            self.dir_fd = self.target.folder(self.folder_rel, create=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(self.temp_name, flags, COPY_MODE, dir_fd=self.dir_fd)
        except OSError as exc:
            self._close_dir()
            raise write_error(self.target, exc, self.folder_rel) from exc
        self.f = open(fd, "wb", buffering=0)  # noqa: SIM115
        self.opened = True
        failpoints.hit("replica_opened")
        return self.f

    def sha256(self) -> str | None:
        return None  # proved by reading the file back at commit

    def adopt(self, path: Path, st: os.stat_result) -> bool:
        """A hard link to the staged file as the temporary (Linux): the bytes are
        already on this disk, so they are not written twice.  The commit then syncs,
        drops the pages and reads the copy back from the device like any other."""
        if self.opened or not hasattr(os, "listxattr"):
            return False  # (no xattrs to compare: macOS)
        made = False
        # Any failure (another disk, links refused as on FAT, a full or unplugged drive)
        # leaves the bytes to be written as usual: that write says what is wrong.
        try:
            self.dir_fd = self.target.folder(self.folder_rel, create=True)
            os.link(path, self.temp_name, dst_dir_fd=self.dir_fd, follow_symlinks=False)
            made = True
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(self.temp_name, flags, dir_fd=self.dir_fd)
            self.f = open(fd, "rb", buffering=0)  # noqa: SIM115
            linked = os.fstat(fd)
            # The file the ingest opened, linked nowhere else (the staging and here:
            # a second target on this disk gets its own bytes, a copy of its own), and
            # what a file written here would be.
            taken = (
                (linked.st_dev, linked.st_ino) == (st.st_dev, st.st_ino)
                and linked.st_nlink == 2
                and _like_a_new_file(self.dir_fd, fd, linked)
            )
        except OSError:
            taken = False
        if not taken:
            if made:
                self.abort()
            else:
                self._close_dir()
            return False
        self.opened = True
        return True

    def write(self, data: bytes) -> None:
        f = self.f if self.opened else self._open()
        assert f is not None
        try:
            f.write(data)
        except OSError as exc:
            error = self.target.error(exc, len(data))  # the free space before the clean-up
            self.abort()
            raise error from exc

    def commit(
        self, key: str, sha256: str, mtime_ns: int | None = None, captured_at: str = ""
    ) -> VerifyMethod:
        if not self.opened:
            self._open()  # an empty object: nothing was written
        assert self.dir_fd is not None
        try:
            if self.f is not None:
                fd = self.f.fileno()
                if mtime_ns is not None:  # on the descriptor: a name could be swapped
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                os.fsync(fd)
                # Drop the pages we just wrote so the read-back below comes from the
                # device, not from memory: it proves what is on the disk.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                written = os.fstat(fd)
                self.f.close()
                self.f = None
                actual = _hash_at(self.dir_fd, self.temp_name, written)
                if actual != sha256:
                    self.abort()
                    raise ChecksumMismatch(f"{self.target.name}:{key}", sha256, actual)
                failpoints.hit("replica_synced")
            folder_rel, _, name = key.rpartition("/")
            final_fd = self.target.folder(folder_rel, create=True)  # may be another folder
            try:
                self._publish(final_fd, name, key)
                os.fsync(final_fd)
            finally:
                os.close(final_fd)
        except OSError as exc:
            self.abort()
            raise write_error(self.target, exc, key.rpartition("/")[0]) from exc
        self._close_dir()
        return VerifyMethod.READBACK

    def _publish(self, final_fd: int, name: str, key: str) -> None:
        # link() fails when the name exists, so a replica is never replaced, even by a
        # race with another writer.  Drives formatted FAT/exFAT have no hard links: there
        # we check, then rename (the gap is tiny and only photod writes there).
        where = {"src_dir_fd": self.dir_fd, "dst_dir_fd": final_fd}
        try:
            os.link(self.temp_name, name, **where, follow_symlinks=False)
        except FileExistsError:
            raise KeyExists(key) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            try:
                os.stat(name, dir_fd=final_fd, follow_symlinks=False)
                raise KeyExists(key) from None
            except FileNotFoundError:
                pass
            os.rename(self.temp_name, name, **where)
            return
        os.unlink(self.temp_name, dir_fd=self.dir_fd)

    def _close_dir(self) -> None:
        if self.dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.dir_fd)
            self.dir_fd = None

    def abort(self) -> bool:
        if self.f is not None:
            with contextlib.suppress(OSError):
                self.f.close()
            self.f = None
        if self.dir_fd is not None:
            try:
                os.unlink(self.temp_name, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            except OSError:  # the drive went read-only or away mid-copy: what it kept of
                self.left = True  # the copy stays recorded, for the tidy at its return
                self.target.meta.left.add(self.temp_name)  # (under .photod/: swept by name)
        self._close_dir()
        return not self.left


_IMMUTABLE = 0x00000010  # chattr +i (linux/fs.h): not even root may write into it
# Inode flags (chattr, linux/fs.h) that change what a file is or how it is kept.
_SPECIAL_FLAGS = (
    0x000000FF  # secure deletion, undelete, compressed, sync, immutable, append, no dump/atime
    | 0x00000400  # no compression
    | 0x00000800  # encrypted (fscrypt): unreadable once its owner's key is locked away
    | 0x0000C000  # data journalling, no tail merging
    | 0x00100000  # verity
    | 0x00800000  # no copy-on-write (btrfs: no checksums)
    | 0x02000000  # DAX
    | 0x60000000  # project inheritance, case-folding
)
_FS_IOC_GETFLAGS = 0x80086601


def _like_a_new_file(dir_fd: int, fd: int, st: os.stat_result) -> bool:
    """Whether the linked file ``fd`` is what a file written into this folder would be.
    A link keeps the staged file's group, ACL, labels and flags; a copy must not carry
    the state dir's, nor miss what the folder gives its files (a setgid group or a
    default ACL for a family's shared library, an SELinux type, encryption)."""
    folder = os.fstat(dir_fd)
    if st.st_gid != folder.st_gid:
        return False  # (equal: whether the folder's group or ours is given, it is this)
    if not folder.st_mode & stat.S_ISGID and st.st_gid != os.getegid():
        return False
    if _flags(fd) & _SPECIAL_FLAGS or _flags(dir_fd) & _SPECIAL_FLAGS:
        return False
    mine, theirs = _xattrs(fd), _xattrs(dir_fd)
    if any(n.startswith("system.") and n != "system.posix_acl_access" for n in theirs):
        return False  # a default ACL (POSIX, NFSv4, CIFS): new files inherit from it
    labels = {n for n in (*mine, *theirs) if n.startswith("security.")}
    return set(mine) <= labels and all(mine.get(n) == theirs.get(n) for n in labels)


def _flags(fd: int) -> int:
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
    except OSError:
        return 0  # a filesystem without such flags
    return int.from_bytes(buf[:4], sys.byteorder)


def _xattrs(fd: int) -> dict[str, bytes]:
    try:
        return {n: os.getxattr(fd, n) for n in os.listxattr(fd)}
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}  # a filesystem without extended attributes: no ACL, no label
        raise


def _hash_at(dir_fd: int, name: str, written: os.stat_result) -> str:
    """The SHA-256 of the temporary read back from the disk: the very file written (a
    name another writer of the folder swapped meanwhile is no proof: a mismatch)."""
    h = hashlib.sha256()
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with open(os.open(name, flags, dir_fd=dir_fd), "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != (written.st_dev, written.st_ino):
            return "not the file written"
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
