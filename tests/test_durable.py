"""Files written whole (``durable.write_atomic``): the dashboard's address, this
installation's id, the login links used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from photod.durable import LEFTOVER_AGE, write_atomic


def test_a_write_is_whole_private_and_through_no_planted_name(tmp_path: Path) -> None:
    """The file is the new bytes, 600; a link planted where the fixed temporary name
    was is never written through; a write that fails leaves no temporary."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine")
    (tmp_path / ".state.json.tmp").symlink_to(victim)  # the old fixed name
    target = tmp_path / "state.json"
    write_atomic(target, b"new")
    assert b"new" == target.read_bytes() and 0o600 == target.stat().st_mode & 0o777
    assert b"mine" == victim.read_bytes()
    (tmp_path / "adir").mkdir()  # the rename fails after the temporary was written
    (tmp_path / "adir" / "inside").write_bytes(b"")
    before = set(os.listdir(tmp_path))
    with pytest.raises(OSError):
        write_atomic(tmp_path / "adir", b"new")
    assert before == set(os.listdir(tmp_path)), "no temporary is left"


def test_what_a_crash_left_is_swept_by_the_next_write(tmp_path: Path) -> None:
    """A temporary left by a crash (older than a write takes) is removed by the next
    write of the same file; a young one (a write in progress) and other files stay."""
    target = tmp_path / "instance.json"
    old = tmp_path / ".instance.json.0badc0de.tmp"
    young = tmp_path / ".instance.json.12345678.tmp"
    other = tmp_path / ".dashboard.json.0badc0de.tmp"
    for f in (old, young, other):
        f.write_bytes(b"half")
    past = time.time() - LEFTOVER_AGE - 5
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    write_atomic(target, b"{}")
    assert not old.exists() and young.exists() and other.exists()
    assert b"{}" == target.read_bytes()
