"""One contract, every target kind: atomic publish, read-back check, no overwrite."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from photod.errors import ChecksumMismatch, KeyExists, TargetUnavailable
from photod.targets.base import Identity, hash_object
from photod.targets.local import LocalTarget
from photod.targets.memory import MemoryTarget

DATA = b"photo bytes " * 100_000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["memory", "local"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        t: Any = MemoryTarget("m")
    else:
        t = LocalTarget("l", tmp_path / "root", creates_root=True)
    t.check(None)
    yield t
    t.close()


def put(target: Any, key: str, data: bytes = DATA) -> None:
    w = target.open_writer(key)
    for i in range(0, len(data), 65536):
        w.write(data[i : i + 65536])
    w.commit(key, hashlib.sha256(data).hexdigest())


def test_put_then_read_back(target: Any) -> None:
    """What is committed reads back byte for byte under its key, and is listed."""
    put(target, "2024/2024-01-02/IMG_1.HEIC")
    assert SHA == hash_object(target, "2024/2024-01-02/IMG_1.HEIC")
    assert len(DATA) == target.size("2024/2024-01-02/IMG_1.HEIC")
    assert ["2024/2024-01-02/IMG_1.HEIC"] == list(target.keys())


def test_nothing_visible_before_commit(target: Any) -> None:
    """Bytes being written are not visible under the key, nor listed; abort leaves nothing."""
    w = target.open_writer("a/b.jpg")
    w.write(DATA)
    assert (None, []) == (target.size("a/b.jpg"), list(target.keys()))
    w.abort()
    assert [] == list(target.keys())


def test_never_overwrites(target: Any) -> None:
    """Committing over an existing key raises KeyExists and leaves the old bytes."""
    put(target, "x.jpg", b"first")
    w = target.open_writer("x.jpg")
    w.write(DATA)
    with pytest.raises(KeyExists):
        w.commit("x.jpg", SHA)
    w.commit("x~other.jpg", SHA)  # the writer stays usable under another key
    with target.open("x.jpg") as f:
        assert b"first" == f.read()
    assert SHA == hash_object(target, "x~other.jpg")


def test_checksum_mismatch_publishes_nothing(target: Any) -> None:
    """If the bytes read back do not match the expected hash, nothing is published."""
    w = target.open_writer("bad.jpg")
    w.write(DATA)
    with pytest.raises(ChecksumMismatch):
        w.commit("bad.jpg", "0" * 64)
    assert [] == list(target.keys())


def test_manifest_append_and_rewrite(target: Any) -> None:
    """The manifest grows with each verified copy and can be rewritten whole."""
    target.append_manifest([("a" * 64, "x.jpg")])
    target.append_manifest([("b" * 64, "y.jpg")])
    assert 2 == target.manifest_lines()
    target.rewrite_manifest([("c" * 64, "z.jpg")])
    assert 1 == target.manifest_lines()


# -- local specifics ---------------------------------------------------------------------


def test_local_marker_identity(tmp_path: Path) -> None:
    """A new local target gets a marker with an id; the same folder is recognised later,
    and a folder with another target's marker is refused."""
    t = LocalTarget("usb", tmp_path / "drive", creates_root=True)
    ident = t.check(None)
    marker = json.loads((tmp_path / "drive" / ".photod" / "target.json").read_text())
    assert ident.target_id == marker["id"]
    assert ident.target_id == t.check(ident).target_id
    other = Identity("someone-else", str(tmp_path / "drive"))
    with pytest.raises(TargetUnavailable, match="belongs to another target"):
        t.check(other)


def test_local_missing_drive_is_unavailable_and_not_created(tmp_path: Path) -> None:
    """An external drive's folder that does not exist is unavailable and is not created
    (an unplugged drive's mount point must not fill the system disk)."""
    t = LocalTarget("usb", tmp_path / "media" / "T7", creates_root=False)
    with pytest.raises(TargetUnavailable, match="does not exist"):
        t.check(None)
    assert not (tmp_path / "media").exists()


def test_local_marker_missing_for_known_target(tmp_path: Path) -> None:
    """An empty folder where a known drive used to be is not taken for that drive."""
    (tmp_path / "mnt").mkdir()
    t = LocalTarget("usb", tmp_path / "mnt", creates_root=False)
    with pytest.raises(TargetUnavailable, match=r"no \.photod/target\.json"):
        t.check(Identity("abc", str(tmp_path / "mnt")))


def test_local_temp_files_are_hidden_and_cleanable(tmp_path: Path) -> None:
    """A writer's temporary sits in the destination folder under a photod-only name;
    delete_temp removes it but refuses any other file."""
    t = LocalTarget("l", tmp_path / "r", creates_root=True)
    t.check(None)
    put(t, "d/keep.jpg")
    w = t.open_writer("d/new.jpg")
    w.write(b"partial")
    assert (tmp_path / "r" / w.temp_key).exists()
    assert ["d/keep.jpg"] == list(t.keys())
    t.delete_temp("d/keep.jpg")
    t.delete_temp(w.temp_key)
    assert not (tmp_path / "r" / w.temp_key).exists()
    assert (tmp_path / "r" / "d" / "keep.jpg").exists()
    w.abort()  # closes the handle a crashed writer would have lost


def test_local_preserves_mtime(tmp_path: Path) -> None:
    """A committed copy keeps the source file's modification time, like rsync -a."""
    t = LocalTarget("l", tmp_path / "r", creates_root=True)
    t.check(None)
    w = t.open_writer("a.jpg")
    w.write(DATA)
    w.commit("a.jpg", SHA, mtime_ns=1_500_000_000_000_000_000)
    assert 1_500_000_000 == int((tmp_path / "r" / "a.jpg").stat().st_mtime)
