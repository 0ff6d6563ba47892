"""Which mounted filesystem a path is on (psutil is used here only)."""

from __future__ import annotations

from pathlib import Path

import psutil


def mount_points() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of everything mounted, bind and FUSE mounts included."""
    return [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


def mount_of(path: Path) -> tuple[Path, str]:
    """The mount point a path lives under, and its filesystem type.  A longest-prefix
    match on the mount table: unlike os.path.ismount it also sees bind mounts."""
    target = str(path.resolve())
    best, fstype = "/", ""
    for mp, fs in mount_points():
        if (target == mp or target.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, fs
    return Path(best), fstype
