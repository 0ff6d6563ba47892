"""What only a local folder target has to get right: a drive that goes away mid-copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from photod.errors import TargetUnavailable
from photod.targets.local import LocalTarget


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
