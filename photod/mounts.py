"""Which mounted filesystem a path is on (psutil is used here only)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROC_MOUNTS = Path("/proc/self/mounts")


def mount_points() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of everything mounted, bind and FUSE mounts included."""
    if sys.platform.startswith("linux"):
        # The kernel's own table, as psutil reads it on Linux, without psutil's import
        # (a sixth of `photod status`'s start): a local target's check asks for it.
        try:
            return _proc_mounts(PROC_MOUNTS.read_text(encoding="utf-8", errors="surrogateescape"))
        except OSError:
            pass
    import psutil

    return [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


def _proc_mounts(table: str) -> list[tuple[str, str]]:
    """``/proc/self/mounts``: one mount a line, 'device mountpoint fstype options 0 0',
    with a space, tab, newline or backslash in a path written as octal (``\\040``)."""
    out = []
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) >= 3:
            out.append((_OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[1]), fields[2]))
    return out


_OCTAL = re.compile(r"\\([0-7]{3})")


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


def present(folder: Path) -> bool:
    """The folder is there to read.  A dead network or FUSE mount (ENOTCONN, ESTALE,
    EIO) is as good as gone: Python's ``is_dir`` raises those instead of saying False."""
    try:
        return folder.is_dir()
    except OSError:
        return False
