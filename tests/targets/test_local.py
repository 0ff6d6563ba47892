"""What only a local folder target has to get right: a drive that goes away mid-copy,
and a phone's staged file taken by a link."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import struct
import sys
import tempfile
from pathlib import Path

import pytest

from photod.errors import ChecksumMismatch, FolderUnwritable, LinkInTarget, TargetUnavailable
from photod.models import VerifyMethod
from photod.private import COPY_MODE
from photod.targets.local import LocalTarget
from photod.targets.localwrite import write_atomic


def test_a_copy_never_recreates_a_drive_that_went_away(tmp_path: Path) -> None:
    """The drive's folder is renamed away (unplugged) and an empty folder takes its place
    (the mount point): a copy in flight fails, nothing is made under the empty folder,
    and the partial copy goes with the drive, where abort removes it."""
    root = tmp_path / "T7" / "photos"
    root.mkdir(parents=True)
    target = LocalTarget("t7", root, creates_root=False, relocatable=True)
    target.check(None)
    writer = target.open_writer("2024/2024-01-01/a.jpg")
    writer.write(b"x" * 1000)
    os.rename(tmp_path / "T7", tmp_path / "T7-away")
    root.mkdir(parents=True)  # the empty mount point
    with pytest.raises(TargetUnavailable):
        writer.write(b"y" * 1000)  # the fd still writes to the drive; commit must refuse
        writer.commit(
            "2024/2024-01-01/a.jpg", hashlib.sha256(b"x" * 1000 + b"y" * 1000).hexdigest()
        )
    assert [] == list(root.iterdir())
    away = tmp_path / "T7-away" / "photos"
    assert [] == [p.name for p in away.rglob("*") if p.is_file() and ".photod/" not in str(p)]
    with pytest.raises(TargetUnavailable):
        target.open_writer("2024/2024-01-02/b.jpg").write(b"z")
    assert [] == list(root.iterdir())


@pytest.mark.parametrize(
    ("frozen", "key"),
    [
        ("2024/2024-05-01", "2024/2024-05-01/a.jpg"),  # its temporary cannot be made there
        ("2024", "2024/2024-05-02/b.jpg"),  # its day's folder cannot be made there
    ],
)
def test_an_immutable_folder_in_a_target_is_named_with_the_fix(
    tmp_path: Path, frozen: str, key: str
) -> None:
    """A folder inside the target made immutable (`chattr +i`: not even root may write
    into it, EPERM): a copy into it raises FolderUnwritable naming that folder (not the
    root), its owner and mode, and that `chattr -i` is the fix; nothing is left there."""
    import subprocess

    root = tmp_path / "lib"
    (root / "2024" / "2024-05-01").mkdir(parents=True)
    for folder in (root / "2024", root / "2024" / "2024-05-01"):
        folder.chmod(0o755)
    target = LocalTarget("lib", root, creates_root=False)
    target.check(None)
    subprocess.run(["chattr", "+i", str(root / frozen)], check=True)
    try:
        with pytest.raises(FolderUnwritable) as refused:
            target.open_writer(key).write(b"x")
    finally:
        subprocess.run(["chattr", "-i", str(root / frozen)], check=True)
    expected = (f"{root / frozen} is not writable by user root (owner root, mode 0755, "
                "immutable: chattr -i): give root read and write permission on it (chmod, chown)")  # fmt: skip
    assert (root / frozen, expected) == (refused.value.path, refused.value.reason)
    assert [] == [p for p in root.rglob("*") if p.is_file() and ".photod" not in p.parts]


def test_a_drive_gone_under_a_listing_is_an_error_not_an_empty_target(tmp_path: Path) -> None:
    """A drive unplugged before its records or files are listed makes the listing fail
    (TargetUnavailable), never answer "nothing here": an empty answer would read as
    lost records, and every copy would be listed again or marked missing."""
    root = tmp_path / "T7" / "photos"
    root.mkdir(parents=True)
    target = LocalTarget("t7", root, creates_root=False, relocatable=True)
    target.check(None)
    target.put_meta("installations/a.aaaaaaaaaaaa/sums/x.sha256", b"")
    assert ["installations/a.aaaaaaaaaaaa/sums/x.sha256"] == target.list_meta("installations")
    os.rename(tmp_path / "T7", tmp_path / "T7-away")
    root.mkdir(parents=True)  # the empty mount point
    with pytest.raises(TargetUnavailable):
        target.list_meta("installations")
    with pytest.raises(TargetUnavailable):
        list(target.listing())


def test_a_link_in_a_target_is_neither_listed_nor_read_nor_moved_through(
    tmp_path: Path,
) -> None:
    """Whoever can write to a drive plants links in it: a link where a copy should be,
    and a folder that is a link to a private folder.  Neither is listed; the link-file
    reads as a bad copy (moved aside itself when discarded); the folder-link makes the
    target wait, naming it; nothing elsewhere is read, listed or moved."""
    root, private = tmp_path / "lib", tmp_path / "private"
    (root / "2024").mkdir(parents=True)
    private.mkdir()
    (private / "secret.jpg").write_bytes(b"secret")
    (root / "2024" / "a.jpg").write_bytes(b"mine")
    (root / "2024" / "b.jpg").symlink_to(private / "secret.jpg")
    (root / "2025").symlink_to(private)
    os.mkfifo(root / "2024" / "c.jpg")
    target = LocalTarget("lib", root, creates_root=True)
    target.check(None)
    assert ["2024/a.jpg"] == sorted(key for key, _ in target.listing())
    assert ["2024/a.jpg"] == sorted(target.keys())
    with target.open("2024/a.jpg") as f:
        assert b"mine" == f.read()
    with pytest.raises(OSError, match="symbolic link") as link_file:
        target.open("2024/b.jpg")
    assert not isinstance(link_file.value, TargetUnavailable)  # one bad copy, not an outage
    with pytest.raises(OSError, match="not a regular file"):
        target.open("2024/c.jpg")  # never blocks on the FIFO
    with pytest.raises(LinkInTarget) as link_folder:
        target.open("2025/secret.jpg")
    assert f"{root / '2025'} is a symbolic link" in link_folder.value.reason
    with pytest.raises(LinkInTarget):
        target.discard("2025/secret.jpg")
    target.discard("2024/b.jpg")  # the link itself goes aside
    assert (private / "secret.jpg").read_bytes() == b"secret"
    assert not (root / "2024" / "b.jpg").is_symlink()
    assert [] == [p for p in private.iterdir() if p.name != "secret.jpg"]


def test_a_failed_metadata_write_leaves_no_temporary(tmp_path: Path) -> None:
    """A small file under .photod/ that cannot be put in place (here a folder holds its
    name; a full disk or an unplugged drive fail the same way) raises, keeps what was
    there, and leaves no temporary behind: the next sweep only runs at the next start."""
    (tmp_path / "SHA256SUMS" / "inside").mkdir(parents=True)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            write_atomic(folder, "SHA256SUMS", b"abc  a.jpg\n", "e0f548bc8f1e-")
    finally:
        os.close(folder)
    assert ["SHA256SUMS"] == sorted(p.name for p in tmp_path.iterdir())
    assert (tmp_path / "SHA256SUMS" / "inside").is_dir()


def test_a_drive_away_at_start_is_swept_when_it_comes(tmp_path: Path) -> None:
    """What a crash of an earlier run left under .photod/ on a drive that was unplugged
    when photod started is removed at the first check that finds the drive.  (While
    photod runs, only the temporaries its own failed writes name are swept: the others
    may be writes in flight, tests/integration/test_mounts.py.)"""
    root = tmp_path / "T7" / "photos"
    root.mkdir(parents=True)
    LocalTarget("t7", root, creates_root=False, relocatable=True, owner="e0f548bc8f1e").check(None)
    left = root / ".photod" / "sums" / ".photod-e0f548bc8f1e-55480f844e8be05a.tmp"
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"half a list")  # (the earlier run's crash)
    os.rename(tmp_path / "T7", tmp_path / "T7-away")  # unplugged
    target = LocalTarget("t7", root, creates_root=False, relocatable=True, owner="e0f548bc8f1e")
    with pytest.raises(TargetUnavailable):
        target.check(None)
    os.rename(tmp_path / "T7-away", tmp_path / "T7")  # back
    target.check(None)
    assert not left.exists()


# -- a phone's staged file taken by a link (Writer.adopt) -------------------------------

KEY = "2026/2026-12-04/IMG_0001.JPG"
PHONE_MTIME = 1_700_000_000 * 10**9


def _staged(folder: Path, data: bytes) -> tuple[Path, os.stat_result]:
    """A file staged as photod's phone import stages one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "IMG_0001.JPG"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, COPY_MODE), "wb") as f:
        f.write(data)
    return path, os.stat(path)


def _library(tmp_path: Path) -> tuple[LocalTarget, Path]:
    root = tmp_path / "library"
    target = LocalTarget("lib", root, creates_root=True)
    target.check(None)
    return target, root


def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """An ACL as the kernel keeps it in an xattr (posix_acl_xattr.h: a version, then
    tag, permissions and id for each entry, sorted by tag)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


NO_ID = 0xFFFFFFFF


def _default_acl_group_read(folder: Path) -> None:
    """What `setfacl -d -m g::r-x` leaves: new files there give their group read."""
    value = _acl([(0x01, 7, NO_ID), (0x04, 5, NO_ID), (0x20, 0, NO_ID)])
    os.setxattr(folder, "system.posix_acl_default", value)


def _acl_for_nobody(path: Path) -> None:
    """What `setfacl -m u:nobody:r` leaves: one more user may read the file."""
    entries = [(0x01, 6, NO_ID), (0x02, 4, 65534), (0x04, 0, NO_ID), (0x10, 4, NO_ID)]
    os.setxattr(path, "system.posix_acl_access", _acl([*entries, (0x20, 0, NO_ID)]))


NODUMP = 0x40  # chattr +d
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602


def _flags(path: Path) -> int:
    buf = bytearray(8)
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), FS_IOC_GETFLAGS, buf, True)
    return int.from_bytes(buf[:4], sys.byteorder)


def _add_flag(path: Path, flag: int) -> None:
    with open(path, "rb") as f:
        value = (_flags(path) | flag).to_bytes(4, sys.byteorder) + bytes(4)
        fcntl.ioctl(f.fileno(), FS_IOC_SETFLAGS, value)


def test_a_staged_file_on_the_same_disk_becomes_the_copy_proved_by_its_read_back(
    tmp_path: Path,
) -> None:
    """No second write: the copy in the library is the staged file itself (one inode),
    published only after it was synced and read back; it carries the phone's time."""
    target, root = _library(tmp_path)
    data = os.urandom(300_000)
    staged, st = _staged(tmp_path / "state" / "staging", data)
    writer = target.open_writer(KEY)
    assert writer.adopt(staged, st)
    method = writer.commit(KEY, hashlib.sha256(data).hexdigest(), PHONE_MTIME)
    assert VerifyMethod.READBACK == method
    copy = os.stat(root / KEY)
    assert (copy.st_dev, copy.st_ino) == (st.st_dev, st.st_ino)
    assert PHONE_MTIME == copy.st_mtime_ns
    assert data == (root / KEY).read_bytes()
    staged.unlink()  # the import's end: the library's copy stays whole
    assert data == (root / KEY).read_bytes()
    assert [KEY] == list(target.keys())


def test_a_linked_file_whose_bytes_are_not_its_hash_is_never_published(tmp_path: Path) -> None:
    """The staged bytes are not what the phone sent (rot, a bug): the read-back fails,
    nothing appears in the library, no temporary is left, and the staged file is
    untouched for the next try."""
    target, root = _library(tmp_path)
    staged, st = _staged(tmp_path / "state" / "staging", b"rotten bytes" * 1000)
    writer = target.open_writer(KEY)
    assert writer.adopt(staged, st)
    with pytest.raises(ChecksumMismatch):
        writer.commit(KEY, hashlib.sha256(b"what the phone sent").hexdigest(), PHONE_MTIME)
    assert [] == [p for p in root.rglob("*") if p.is_file() and ".photod" not in p.parts]
    assert b"rotten bytes" * 1000 == staged.read_bytes()
    assert 1 == os.stat(staged).st_nlink


@pytest.mark.parametrize(
    "why", ["another disk", "setgid folder", "default ACL", "staged file's ACL", "staged flag"]
)
def test_where_a_link_would_not_be_a_copy_like_the_others_the_bytes_are_written(
    tmp_path: Path, why: str
) -> None:
    """Staged on another disk (no link can be made); a library folder whose new files
    get its group (setgid) or a default ACL (a family's shared library); a staged file
    that carries what a copy must not (an ACL letting another user read it, an inode
    flag such as chattr's): the staged file is not taken, and the copy written there is
    what any copy there is."""
    target, root = _library(tmp_path)
    day = root / KEY.rpartition("/")[0]
    day.mkdir(parents=True)
    staging = tmp_path / "staging"
    if why == "another disk":
        staging = Path(tempfile.mkdtemp(dir="/dev/shm"))
        assert os.stat(staging).st_dev != os.stat(root).st_dev, "/dev/shm is this disk"
    elif why == "setgid folder":
        assert os.geteuid() == 0, "run the suite as root (CI does): it gives a folder a group"
        os.chown(day, -1, 65534)  # nogroup: not this process's group
        os.chmod(day, 0o2770)
    elif why == "default ACL":
        _default_acl_group_read(day)
    data = os.urandom(100_000)
    try:
        staged, st = _staged(staging, data)
        if why == "staged file's ACL":
            _acl_for_nobody(staged)
        elif why == "staged flag":
            _add_flag(staged, NODUMP)
            assert _flags(staged) & NODUMP, "this filesystem keeps no chattr flags"
        writer = target.open_writer(KEY)
        assert not writer.adopt(staged, st)
        writer.write(data)
        writer.commit(KEY, hashlib.sha256(data).hexdigest(), PHONE_MTIME)
    finally:
        if why == "another disk":
            shutil.rmtree(staging)
    copy = os.stat(root / KEY)
    assert copy.st_ino != st.st_ino
    assert data == (root / KEY).read_bytes()
    if why == "setgid folder":
        assert 65534 == copy.st_gid
    if why == "default ACL":
        assert copy.st_mode & stat.S_IRGRP, "the folder's default ACL gives the group read"
    assert "system.posix_acl_access" not in os.listxattr(root / KEY)
    assert not _flags(root / KEY) & NODUMP


def test_a_second_target_on_the_same_disk_does_not_take_the_same_file(tmp_path: Path) -> None:
    """Once the staged file is linked into one target, another target cannot adopt it:
    two copies must be two files."""
    target, _ = _library(tmp_path)
    other = LocalTarget("archive", tmp_path / "archive", creates_root=True)
    other.check(None)
    staged, st = _staged(tmp_path / "state" / "staging", b"photo" * 1000)
    first = target.open_writer(KEY)
    assert first.adopt(staged, st)
    second = other.open_writer(KEY)
    assert not second.adopt(staged, os.stat(staged))
    assert 2 == os.stat(staged).st_nlink  # the staging's name and the first target's
    first.abort()
    assert 1 == os.stat(staged).st_nlink
    assert [] == [
        p for p in (tmp_path / "archive").rglob("*") if ".photod" not in p.parts and p.is_file()
    ]
