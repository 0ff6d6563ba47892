"""When a file being written counts as complete."""

from __future__ import annotations

import time
from pathlib import Path

from photod.ingest import Settler


def drain(s: Settler, seconds: float) -> list[Path]:
    got: list[Path] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got += [p for _, p in s.due()]
        time.sleep(0.05)
    return got


def test_closed_file_is_due_quickly(tmp_path: Path) -> None:
    """A file a writer closed is taken after a short grace, not the full settle time."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x" * 10)
    s = Settler(settle=30)
    s.touch("in", f, "closed")
    assert [f] == drain(s, 1.0)


def test_quiet_file_is_due_after_settle(tmp_path: Path) -> None:
    """A file moved in (no close seen) is taken once size and mtime hold for settle."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    s = Settler(settle=0.5)
    s.touch("in", f, "created")
    assert [] == drain(s, 0.3)
    assert [f] == drain(s, 0.6)


def test_growing_file_waits(tmp_path: Path) -> None:
    """A file that keeps growing is not taken while it grows."""
    f = tmp_path / "a.jpg"
    s = Settler(settle=0.4)
    s.touch("in", f.parent / "a.jpg", "created")
    with open(f, "wb") as out:
        for _ in range(8):
            out.write(b"x" * 100)
            out.flush()
            s.touch("in", f, "changed")
            assert [] == [p for _, p in s.due()]
            time.sleep(0.1)
    assert [f] == drain(s, 1.0)


def test_open_writer_pausing_is_not_taken(tmp_path: Path) -> None:
    """With inotify, a file modified and not yet closed waits past the settle time."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    s = Settler(settle=0.2, open_wait=5)
    s.touch("in", f, "modified")
    assert [] == drain(s, 0.8)
    s.touch("in", f, "closed")
    assert [f] == drain(s, 1.0)


def test_vanished_file_is_dropped(tmp_path: Path) -> None:
    """A file renamed away before it settled is forgotten, not reported."""
    s = Settler(settle=0.1)
    s.touch("in", tmp_path / "gone.jpg.part", "created")
    assert ([], 0) == (drain(s, 0.3), len(s))
