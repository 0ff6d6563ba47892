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


# File systems served over a network: no inotify for changes made by other computers
# (a watch folder there is polled), and a drive that may come and go.
NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb",
    "smb2",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "sshfs",
    "fuse.rclone",
    "9p",
    "afpfs",
    "davfs",
    "fuse.davfs2",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.s3fs",
    "webdav",
}
