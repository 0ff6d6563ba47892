"""A folder on a local disk, an external drive or a NAS mount.

The root holds ``.photod/target.json`` (the target's id: a drive mounted at another path
is still recognised, and a different drive at the same path is not mistaken for it) and
the records of every installation that uses it (``records.py``): their checksum lists
pass ``sha256sum -c`` from the root with no photod installed.

``LocalTarget`` is the target; its files under ``.photod/`` are ``LocalMeta``'s, and the
writes themselves (a copy, a small file replaced atomically) are in ``localwrite.py``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from photod.errors import LinkInTarget, NotAFile, TargetFull, TargetUnavailable
from photod.media import check_key
from photod.models import ManifestEntry
from photod.mounts import mount_of, mount_points, unmounted_fstab_point
from photod.safeopen import LinkRefused, folder_beneath, open_beneath, open_root
from photod.targets.base import (
    BESIDE_MAX,
    Identity,
    TargetReadOnly,
    now_stamp,
    quarantine_name,
    refuse_stranger,
    write_stream,
)
from photod.targets.localwrite import (
    CUT_SHORT,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    LocalWriter,
    create_atomic,
    sweep_temps,
    write_atomic,
    write_error,
)
from photod.targets.missing import make_root, missing_folder

META = ".photod"
MARKER = "target.json"
PREFETCH = 16 * 1024 * 1024  # bytes of a file read ahead by ``prefetch``; the rest streams


class LocalMeta:
    """The target's own small files under ``.photod/``: its marker (``check`` reads and
    makes it), the records' files (the target's ``*_meta`` and ``*_private``), and the
    sweep of what a crash left half written there."""

    def __init__(self, target: LocalTarget, owner: str) -> None:
        self.target = target
        # Tags this process's metadata temporaries (the installation's short id), so that
        # a crash's leftovers are told from another installation's writes in flight.
        self.owner = f"{owner}-" if owner else ""
        self.swept = False  # metadata temporaries of a crashed run removed (once)
        # This process's temporaries that a failed write could not remove (the disk turned
        # read-only or failing): removed by name at the next check, as only those may go
        # while photod runs (any other of its own may be a write in flight).
        self.left: set[str] = set()
        # The same beside a photo (a sidecar's, ``put_beside``): by its path in the target,
        # as no list names it and the sweep looks under .photod/ only.
        self.left_beside: set[str] = set()

    def read_marker(self, root: Path) -> str | None:
        try:
            top = open_root(root)
            try:
                fd = open_beneath(top, f"{META}/{MARKER}", os.O_RDONLY | os.O_NONBLOCK)
            finally:
                os.close(top)
            with open(fd, "rb") as f:  # a link, a FIFO or a huge file is no marker
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                data = json.loads(f.read(1 << 16))
            return str(data["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def create_marker(self, root: Path) -> str:
        """Give the empty folder ``root`` a marker; the id it holds."""
        # Two computers may find the same empty folder at once: the first marker
        # written wins, and the other takes the id it finds.
        name = self.target.name
        import uuid  # loads platform: only where a marker is made

        mine = json.dumps({"id": str(uuid.uuid4()), "name": name, "created_by": "photod"})
        try:
            top = open_root(root)
            try:
                meta = folder_beneath(top, META, create=True)
            finally:
                os.close(top)
            try:
                create_atomic(meta, MARKER, mine.encode(), self.owner, self.left)
            finally:
                os.close(meta)
        except OSError as exc:
            raise self.target.error(exc) from exc
        found = self.read_marker(root)
        if found is None:
            raise TargetUnavailable(name, f"{root / META / MARKER} cannot be read")
        return found

    def sweep(self, root: Path) -> None:
        """Remove what a crash left half written under ``.photod/`` (an atomic write's
        temporary).  All of this installation's at the first check of the process:
        nothing of this process writes there yet, and the state lock keeps any other
        photod of this installation away; later, only those named in ``left``.  Another
        installation's temporaries may be writes in flight: those go only once they are
        old by the folder's clock, not this computer's."""
        first = not self.swept and bool(self.owner)
        sweep_temps(root / META, self.owner, first, self.left)
        self.swept = True
        for rel in list(self.left_beside):
            try:
                self.target._unlink(rel)
            except OSError as exc:
                if exc.errno in CUT_SHORT:  # (read-only still: the next check's)
                    continue
            self.left_beside.discard(rel)

    def put(self, name: str, data: bytes) -> None:
        parent, _, base = f"{META}/{name}".rpartition("/")
        try:
            folder = self.target.folder(parent, create=True)
            try:
                write_atomic(folder, base, data, self.owner, self.left)
            finally:
                os.close(folder)
        except OSError as exc:
            raise write_error(self.target, exc, parent) from exc  # (another's folder: named)

    def create(self, name: str, data: bytes) -> bool:
        parent, _, base = f"{META}/{name}".rpartition("/")
        try:
            folder = self.target.folder(parent, create=True)
            try:
                return create_atomic(folder, base, data, self.owner, self.left)
            finally:
                os.close(folder)
        except OSError as exc:
            raise write_error(self.target, exc, parent) from exc  # (another's folder: named)

    def get(self, name: str) -> bytes | None:
        try:
            with self.target.open(f"{META}/{name}") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a link where a record should be is refused, not read
            raise self.target.error(exc) from exc

    def names(self, folder: str) -> list[str]:
        target = self.target
        target._proved()  # a folder missing because the drive is gone is not an empty one
        top = target.root / META
        if not (top / folder).is_dir():
            return []
        out = []
        errors: list[OSError] = []
        for where, _, names in os.walk(top / folder, onerror=errors.append):
            rel = os.path.relpath(where, top)
            out += [f"{rel}/{n}" for n in names if not n.startswith(TEMP_PREFIX)]
        if errors and not isinstance(errors[0], FileNotFoundError):
            raise target.error(errors[0])
        target._proved()
        return sorted(out)

    def delete(self, name: str) -> None:
        self.target._unlink(f"{META}/{name}")


def _find_moved(meta: LocalMeta, known: Identity) -> Path | None:
    """A drive mounted somewhere else: look for its marker at the same place under
    every mounted filesystem."""
    for mountpoint, _ in mount_points():
        candidate = Path(mountpoint) / known.mount_rel
        if meta.read_marker(candidate) == known.target_id:
            return candidate
    return None


def _writable(name: str, ident: Identity, writable: bool) -> Identity:
    """``ident``, or TargetReadOnly carrying it: a restore and a rebuild read it still."""
    if not writable:
        raise TargetReadOnly(name, f"{ident.root} is read-only", ident)
    return ident


class LocalTarget:
    encrypted = checks_bodies = False

    def __init__(
        self,
        name: str,
        path: Path,
        creates_root: bool,
        reserve: int = 0,
        relocatable: bool = False,
        owner: str = "",
    ) -> None:
        self.name = name
        self.configured = path
        self.root = path
        self.creates_root = creates_root
        self.reserve = reserve
        self.relocatable = relocatable
        self.root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the checked root
        self.meta = LocalMeta(self, owner)

    def error(self, exc: OSError, needed: int = 0) -> TargetUnavailable:
        """Map an OS error from a write to the target's transient errors."""
        if isinstance(exc, LinkRefused):  # a folder inside the target is a link
            return LinkInTarget(self.name, self.root / (exc.link or exc.rel))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return TargetFull(self.name, needed, self.free_bytes() or 0)
        if exc.errno == errno.EROFS:
            return TargetUnavailable(self.name, f"{self.root} is read-only")
        return TargetUnavailable(self.name, f"{exc.strerror or exc} ({self.root})")

    def check(self, known: Identity | None, prepare: bool = True) -> Identity:
        # (A write cut short while it was gone, read-only or failing names what it left
        # in ``meta.left``: swept here once it is back.)
        root = self.configured
        if prepare and not root.is_dir() and self.creates_root and known is None:
            make_root(self.name, root, drive=self.relocatable)
        found = self.meta.read_marker(root) if root.is_dir() else None
        if known is not None and found != known.target_id and self.relocatable:
            moved = _find_moved(self.meta, known)
            if moved is not None:
                root, found = moved, known.target_id
        if not root.is_dir():
            raise TargetUnavailable(self.name, missing_folder(root, known is None).reason)
        refuse_stranger(self.name, str(root), known, found, "is the drive mounted there?")
        if not (writable := os.access(root, os.W_OK)) and prepare:
            raise TargetUnavailable(self.name, f"{root} is read-only")
        self.root = root
        if found is None and not prepare:
            return _writable(self.name, Identity("", str(root)), writable)
        if found is None and self.relocatable and (why := unmounted_fstab_point(root)):
            raise TargetUnavailable(self.name, why)  # (its copies would be on the system disk)
        if found is None:
            found = self.meta.create_marker(root)
        st = os.stat(root)
        self.root_id = (st.st_dev, st.st_ino)
        if prepare and (not self.meta.swept or self.meta.left or self.meta.left_beside):
            self.meta.sweep(root)
        rel = str(root.resolve().relative_to(mount_of(root)[0]))
        return _writable(self.name, Identity(found, str(root), rel), writable)

    def folder(self, rel: str, create: bool = False) -> int:
        """A file descriptor of the folder ``rel`` under the root (made on the way when
        ``create``), opened from the root that ``check`` proved: if the root is gone or
        is another directory now (the drive unplugged, renamed, or replaced by an empty
        mount point), this raises instead of making folders where the drive was."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(fd)
        if self.root_id is not None and (st.st_dev, st.st_ino) != self.root_id:
            os.close(fd)
            raise FileNotFoundError(
                errno.ENOENT, "not the folder photod checked (unplugged or replaced?)",
                str(self.root),
            )  # fmt: skip
        if not rel:
            return fd
        try:
            return folder_beneath(fd, rel, create)  # a link in it: LinkRefused
        finally:
            os.close(fd)

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return max(0, st.f_bavail * st.f_frsize - self.reserve)

    def open_writer(self, key: str, hashed: bool = True) -> LocalWriter:
        return LocalWriter(self, key)

    def open(self, key: str) -> BinaryIO:
        """A stored file, read through no link: a link, a folder or a FIFO where a copy
        should be is not a copy (NotAFile, an OSError: verify calls it corrupt and moves
        it aside); a folder on the way that is a link makes the target wait
        (LinkInTarget)."""
        try:
            fd = self._open_beneath(key)
        except LinkRefused as exc:  # (the key's own name: the others are LinkInTarget)
            raise NotAFile(str(self.root / key), "a symbolic link") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO put there: never read
            os.close(fd)
            raise NotAFile(str(self.root / key), "not a regular file")
        return open(fd, "rb")

    def _open_beneath(self, key: str) -> int:
        try:
            root = self.folder("")
        except OSError as exc:
            raise self.error(exc) from exc
        try:
            return open_beneath(root, key, os.O_RDONLY | os.O_NONBLOCK)
        except LinkRefused as exc:
            if exc.last:
                raise
            raise self.error(exc) from exc
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.error(exc) from exc
        finally:
            os.close(root)

    def size(self, key: str) -> int | None:
        """None only for a file that is not on the proved root: the drive unplugged (its
        empty mount point) raises, and is no copy missing."""
        try:
            return os.lstat(self.root / key).st_size
        except FileNotFoundError:
            self._proved()
            return None

    def keys(self) -> Iterator[str]:
        for key, _ in self._walk(sized=False):
            yield key

    def listing(self) -> Iterator[tuple[str, int | None]]:
        return self._walk(sized=True)

    def _proved(self) -> None:
        """Raise TargetUnavailable unless the root is still the folder ``check`` proved:
        a drive unplugged under a listing must not read as an empty target."""
        try:
            st = os.stat(self.root)
        except OSError as exc:
            raise self.error(exc) from exc
        if self.root_id is not None and (st.st_dev, st.st_ino) != self.root_id:
            raise TargetUnavailable(self.name, f"{self.root} is not the folder photod checked "
                                    "(unplugged or replaced?)")  # fmt: skip

    def _walk(self, sized: bool) -> Iterator[tuple[str, int | None]]:
        """Every file, from one walk; a folder that cannot be read (or the drive gone
        under the walk) is an error, never a shorter listing."""
        self._proved()
        errors: list[OSError] = []
        yield from self._walk_files(sized, errors)
        errors = [e for e in errors if not isinstance(e, FileNotFoundError)]  # a folder gone
        if errors:
            raise self.error(errors[0])
        self._proved()

    def _walk_files(self, sized: bool, errors: list[OSError]) -> Iterator[tuple[str, int | None]]:
        """Regular files only: a link (to a file or a folder), a FIFO or a socket in a
        target is nothing photod wrote, and is neither listed nor followed."""
        folders = [""]
        while folders:
            rel = folders.pop()
            try:
                entries = os.scandir(os.path.join(self.root, rel))
            except OSError as exc:
                errors.append(exc)
                continue
            with entries:
                for entry in entries:
                    key = f"{rel}/{entry.name}" if rel else entry.name
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if key != META:
                                folders.append(key)
                            continue
                        if not entry.is_file(follow_symlinks=False) or (
                            entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)
                        ):
                            continue
                        size = entry.stat(follow_symlinks=False).st_size if sized else None
                    except FileNotFoundError:
                        continue  # gone meanwhile
                    yield key, size

    def delete_temp(self, temp_key: str, alone: bool = False) -> None:
        name = temp_key.rpartition("/")[2]
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):  # (never anything else)
            try:
                self._unlink(temp_key)
            except OSError as exc:  # (read-only, or gone again: it stays recorded till then)
                raise self.error(exc) from exc

    def _unlink(self, rel: str) -> None:
        """Remove one file of the target, reached through no link."""
        parent, _, name = rel.rpartition("/")
        with contextlib.suppress(FileNotFoundError):
            fd = self.folder(parent)
            try:
                os.unlink(name, dir_fd=fd)
            finally:
                os.close(fd)

    # The files under ``.photod/`` are ``LocalMeta``'s.
    def put_meta(self, name: str, data: bytes) -> None:
        self.meta.put(name, data)

    def create_meta(self, name: str, data: bytes) -> bool:
        return self.meta.create(name, data)

    def get_meta(self, name: str) -> bytes | None:
        return self.meta.get(name)

    def list_meta(self, folder: str) -> list[str]:
        return self.meta.names(folder)

    def delete_meta(self, name: str) -> None:
        self.meta.delete(name)

    def put_beside(self, key: str, data: bytes, replace: bool) -> bool:
        parent, _, name = check_key(key).rpartition("/")
        left: set[str] = set()  # (its temporary, should the disk not let it be removed)
        try:
            folder = self.folder(parent)  # the original's folder: there already
            try:
                if replace:
                    write_atomic(folder, name, data, self.meta.owner, left)
                    return True
                return create_atomic(folder, name, data, self.meta.owner, left)
            finally:
                os.close(folder)
        except OSError as exc:
            raise self.error(exc) from exc
        finally:
            self.meta.left_beside.update(f"{parent}/{t}" if parent else t for t in left)

    def get_beside(self, key: str) -> bytes | None:
        try:
            with self.open(key) as f:
                data = f.read(BESIDE_MAX + 1)
            return data if len(data) <= BESIDE_MAX else None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(exc) from exc

    def locate(self, key: str) -> str:
        return key

    def learn(self, entries: Iterable[ManifestEntry]) -> None:
        pass  # plain keys are the stored names

    def prefetch(self, key: str) -> None:
        try:
            fd = self._open_beneath(key)
        except (OSError, TargetUnavailable):
            return  # the read itself reports what is wrong
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.posix_fadvise(fd, 0, PREFETCH, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def discard(self, key: str) -> None:
        rel = f"{META}/{quarantine_name(key, now_stamp())}"
        parent, _, name = key.rpartition("/")
        into, _, aside = rel.rpartition("/")
        try:
            # Both folders reached through no link: what is moved aside is the file (or
            # link) in the target, never what a link planted on the way points to.
            src = self.folder(parent)
            try:
                dst = self.folder(into, create=True)
                try:
                    os.rename(name, aside, src_dir_fd=src, dst_dir_fd=dst)  # never a copy
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self.error(exc) from exc

    put_private = put_meta
    get_private = get_meta

    def put_private_file(self, name: str, src: BinaryIO) -> None:
        key = f"{META}/{name}"  # (its temporary tagged as the metadata's: swept at start)
        write_stream(self.name, LocalWriter(self, key, self.meta.owner), key, src)

    def open_private(self, name: str) -> BinaryIO:
        return self.open(f"{META}/{name}")

    def close(self) -> None:
        pass
