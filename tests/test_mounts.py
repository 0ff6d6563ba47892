"""The mount table as photod reads it: a drive mounted at a path with a space or a tab
in its name (as desktops mount a drive labelled "My Photos") is found, and the table
says what psutil says."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from photod.mounts import mount_of, mount_points


@pytest.fixture
def bind_mounted(tmp_path: Path) -> Iterator[Path]:
    """A folder bind-mounted at a path with a space and a tab in its name."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a folder: run it as root (as CI does)")
    src, at = tmp_path / "drive", tmp_path / "My Photos\t2024"
    src.mkdir()
    at.mkdir()
    done = subprocess.run(["mount", "--bind", str(src), str(at)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"mount --bind failed ({done.stderr.strip()}): apt-get install mount")
    try:
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)


def test_a_mount_point_with_a_space_and_a_tab_is_found(bind_mounted: Path) -> None:
    (bind_mounted / "DCIM").mkdir()
    assert (bind_mounted, _fs(bind_mounted)) == mount_of(bind_mounted / "DCIM")
    theirs = [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    assert theirs == mount_points()
    assert (str(bind_mounted), _fs(bind_mounted)) in mount_points()


def _fs(path: Path) -> str:
    return next(p.fstype for p in psutil.disk_partitions(all=True) if p.mountpoint == str(path))
