"""Why a local target's folder is not there, and what to do: said by the target when it
waits, and by `photod doctor`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from photod.errors import TargetUnavailable
from photod.mounts import mount_of
from photod.paths import other_form


class MissingFolder(NamedTuple):
    found: str  # what is wrong
    fix: str  # what to do (`photod doctor` says it after the finding)
    blocked: bool = False  # a file is in the way: it never comes right by itself
    advised: bool = False  # the log and `photod status` say the fix too

    @property
    def reason(self) -> str:
        return f"{self.found}: {self.fix}" if self.advised else self.found


def _deepest(path: Path) -> Path:
    """The deepest folder of ``path`` (or ``path`` itself) that exists."""
    return next(p for p in (path, *path.parents) if os.path.lexists(p))


def on_system_disk(path: Path) -> bool:
    """The deepest folder of ``path`` that exists is on the system disk's filesystem or
    the home's: no drive is mounted for it (an unplugged drive's empty mount point).
    Judged by mount point and by device, so that a bind mount of a system folder
    (systemd's ReadWritePaths makes them) is the system disk too, and so is a btrfs
    subvolume of it that is not mounted on its own (a device number of its own)."""
    existing = _deepest(path)
    home = Path.home()
    if mount_of(existing)[0] in (Path("/"), mount_of(home)[0]):
        return True
    try:
        return os.stat(existing).st_dev in {os.stat("/").st_dev, os.stat(home).st_dev}
    except OSError:
        return False


def in_memory(path: Path) -> bool:
    """The deepest folder of ``path`` that exists is on a filesystem in RAM (tmpfs:
    ``/run/media/$USER``, where udisks mounts drives): nothing made there outlives a
    reboot."""
    existing = _deepest(path)
    return mount_of(existing)[1] in ("tmpfs", "ramfs")


def missing_folder(root: Path, first_use: bool = True) -> MissingFolder:
    """Why a target's folder is not there, and what to do.  A file in its place is a
    mistake in the config.  Else the deepest folder that exists tells whether the drive
    is plugged in: on a filesystem mounted for it (neither the system disk's nor the
    home's), only the folder is missing (first use: create it; else another drive is
    there).  An empty mount point is on the system disk, where a folder made would
    fill the system disk: then the advice is to plug the drive in, never to create it."""
    existing = _deepest(root)
    if existing != root and (twin := other_form(root)):
        return MissingFolder(f"{root} does not exist", twin, blocked=True, advised=True)
    if existing == root or not existing.is_dir():
        what = "a file, not a folder" if existing.is_file() else "not a folder"
        fix = "move it away, or point the target's path at a folder"
        return MissingFolder(f"{existing} is {what}", fix, blocked=True)
    if on_system_disk(existing):
        return MissingFolder(f"{root} does not exist (drive not connected?)", "plug the drive in")
    mount, _ = mount_of(existing)
    found = f"{root} does not exist on the drive mounted at {mount}"
    if not first_use:
        return MissingFolder(found, "plug in the drive that holds it (is another drive "
                             "mounted there?)", advised=True)  # fmt: skip
    return MissingFolder(found, "create the folder, or set `create = true` for the target",
                         advised=True)  # fmt: skip


def make_root(name: str, root: Path, drive: bool) -> None:
    """Make a target's missing folder.  A drive's (create = true) only on the drive:
    under its empty mount point it would fill the system disk and count as the drive
    (the check says "drive not connected?" then)."""
    if drive and on_system_disk(root):
        return
    if drive and in_memory(root):
        raise TargetUnavailable(name, f"{root} does not exist, and is not made in memory "
                                "(a tmpfs: gone at the next reboot): drive not connected?")  # fmt: skip
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        pass  # a file where a folder should be: said by the check
    except OSError as exc:
        raise TargetUnavailable(name, f"cannot create {root}: {exc.strerror}") from exc
