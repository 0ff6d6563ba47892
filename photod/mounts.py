"""Which mounted filesystem a path is on (psutil is used here only)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROC_MOUNTS = Path("/proc/self/mounts")
FSTAB = Path("/etc/fstab")


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


def unmounted_fstab_point(path: Path) -> str:
    """Why ``path`` is not its drive's yet, when the mount point ``/etc/fstab`` gives for
    it (the deepest of them above it) has nothing mounted on it now: a drive or NAS
    share not plugged in or not up, its mount point an empty folder on the system disk,
    never to be claimed as the drive.  Empty otherwise."""
    try:
        table = FSTAB.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ""
    target = str(path.resolve())  # (a link to the mount point is the mount point)
    points = [
        _OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[1])
        for line in table.splitlines()
        if len(fields := line.split()) >= 2 and not fields[0].startswith("#")
    ]
    above = [p for p in points if p.startswith("/") and p != "/" and (
        target == p.rstrip("/") or target.startswith(p.rstrip("/") + "/"))]  # fmt: skip
    if not above:
        return ""
    deepest = max(above, key=len).rstrip("/")
    if deepest in {mp.rstrip("/") or "/" for mp, _ in mount_points()}:
        return ""
    return (f"nothing is mounted on {deepest} (its line in /etc/fstab): is the drive "
            "plugged in, the share up?")  # fmt: skip


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
