"""What only a local folder target has to get right: a drive that goes away mid-copy,
and a phone's staged file taken by a link."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path

import pytest

from photod.errors import ChecksumMismatch, LinkInTarget, TargetUnavailable
from photod.models import VerifyMethod
from photod.targets.local import LocalTarget
from photod.targets.localwrite import COPY_MODE, write_atomic


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


def test_a_drive_that_comes_back_is_swept_again(tmp_path: Path) -> None:
    """A metadata write cut short by the drive going away (a read-only remount, an
    unplug) leaves its temporary there; the sweep, done once at start, runs again when
    the drive is back, in the same process."""
    root = tmp_path / "T7" / "photos"
    root.mkdir(parents=True)
    target = LocalTarget("t7", root, creates_root=False, relocatable=True, owner="e0f548bc8f1e")
    known = target.check(None)
    left = root / ".photod" / "sums" / ".photod-e0f548bc8f1e-55480f844e8be05a.tmp"
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"half a list")
    os.rename(tmp_path / "T7", tmp_path / "T7-away")  # unplugged
    with pytest.raises(TargetUnavailable):
        target.check(known)
    os.rename(tmp_path / "T7-away", tmp_path / "T7")  # back
    target.check(known)
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


def _default_acl_group_read(folder: Path) -> None:
    """A default ACL on ``folder`` (what `setfacl -d -m g::r-x` leaves): new files
    there give their group read.  The xattr's format is the kernel's (posix_acl_xattr.h:
    a version, then tag, permissions and id for each entry)."""
    entries = [(0x01, 7), (0x04, 5), (0x20, 0)]  # user::rwx, group::r-x, other::---
    value = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in entries
    )
    os.setxattr(folder, "system.posix_acl_default", value)


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


@pytest.mark.parametrize("why", ["another disk", "setgid folder", "default ACL"])
def test_where_a_link_would_not_be_a_copy_like_the_others_the_bytes_are_written(
    tmp_path: Path, why: str
) -> None:
    """Staged on another disk (no link can be made), or a library folder whose new
    files get its group (setgid) or a default ACL (a family's shared library): the
    staged file is not taken, and the copy written there is what any copy there is."""
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
    else:
        _default_acl_group_read(day)
    data = os.urandom(100_000)
    try:
        staged, st = _staged(staging, data)
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
