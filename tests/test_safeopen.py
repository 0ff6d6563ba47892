"""Opening beneath a root through no link: both ways photod does it (openat2 on
Linux 5.6+, the O_NOFOLLOW walk on macOS and older kernels) refuse a link at every
depth, and never a way up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from photod import safeopen
from photod.safeopen import LinkRefused, folder_beneath, open_beneath, open_root


@pytest.fixture(params=["openat2", "walk"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "walk":
        monkeypatch.setattr(safeopen, "_has_openat2", False)  # as on macOS
    elif not safeopen._has_openat2:
        pytest.fail("this kernel has no openat2 (Linux 5.6 or later is needed for this test)")
    yield request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/a/b/photo.jpg, and a private folder elsewhere with a secret in it."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "photo.jpg").write_bytes(b"mine")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "photo.jpg").write_bytes(b"secret")
    (tmp_path / "private" / "b").mkdir()
    (tmp_path / "private" / "b" / "photo.jpg").write_bytes(b"secret")
    return root


def read(root: Path, rel: str) -> bytes:
    fd = open_root(root)
    try:
        with os.fdopen(open_beneath(fd, rel), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def test_a_file_beneath_its_root_opens(way: str, tree: Path) -> None:
    assert b"mine" == read(tree, "a/b/photo.jpg")
    assert b"mine" == read(tree, "./a//b/photo.jpg")


@pytest.mark.parametrize(
    ("link", "target", "part"),
    [
        ("a", "private", "a"),  # the top folder swapped for a link
        ("a/b", "private/b", "b"),  # a folder in the middle
        ("a/b/photo.jpg", "private/photo.jpg", "photo.jpg"),  # the file itself
    ],
)
def test_a_link_at_any_depth_is_refused(
    way: str, tree: Path, link: str, target: str, part: str
) -> None:
    place = tree / link
    if place.is_dir():
        place.rename(place.with_name(place.name + ".old"))
    else:
        place.unlink()
    place.symlink_to(tree.parent / target)
    with pytest.raises(LinkRefused) as caught:
        read(tree, "a/b/photo.jpg")
    assert part == caught.value.part
    assert "is a symbolic link" in str(caught.value)


def test_a_link_inside_the_root_is_refused_too(way: str, tree: Path) -> None:
    """Even a link that stays beneath the root: no link is followed, whatever it names."""
    (tree / "same").symlink_to(tree / "a")
    with pytest.raises(LinkRefused):
        read(tree, "same/b/photo.jpg")


@pytest.mark.parametrize(
    "rel", ["../private/photo.jpg", "a/../../private/photo.jpg", "/etc/passwd"]
)
def test_no_way_up_or_out(way: str, tree: Path, rel: str) -> None:
    with pytest.raises(LinkRefused) as caught:
        read(tree, rel)
    assert "leads out of its folder" in str(caught.value)


def test_a_fifo_opens_without_waiting_for_a_writer(way: str, tree: Path) -> None:
    os.mkfifo(tree / "a" / "fifo.jpg")
    fd = open_root(tree)
    try:
        opened = open_beneath(fd, "a/fifo.jpg", os.O_RDONLY | os.O_NONBLOCK)
    finally:
        os.close(fd)
    try:
        assert stat.S_ISFIFO(os.fstat(opened).st_mode)  # seen for what it is, never read
    finally:
        os.close(opened)


def test_folders_are_made_beneath_and_a_link_among_them_is_refused(way: str, tree: Path) -> None:
    fd = open_root(tree)
    try:
        made = folder_beneath(fd, "2026/2026-01-02", create=True, mode=0o750, exact=True)
        os.close(made)
        assert 0o750 == stat.S_IMODE((tree / "2026" / "2026-01-02").stat().st_mode)
        (tree / "2027").symlink_to(tree.parent / "private")
        with pytest.raises(LinkRefused) as caught:
            folder_beneath(fd, "2027/2027-01-02", create=True)
        assert "2027" == caught.value.part
    finally:
        os.close(fd)
    assert not (tree.parent / "private" / "2027-01-02").exists()
