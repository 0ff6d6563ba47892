"""When a file being written counts as complete.

Time is a ``ManualClock`` moved by hand: each case says exactly how long a file stayed
quiet, and none sleeps.
"""

from __future__ import annotations

from pathlib import Path

from photod.clock import ManualClock
from photod.ingest import Settler


def due(s: Settler) -> list[Path]:
    return [p for _, p in s.due()]


def test_renamed_file_is_due_quickly(tmp_path: Path) -> None:
    """A file renamed into place (a sync client's last step) is taken after a short
    grace, not the full settle time."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x" * 10)
    clock = ManualClock()
    s = Settler(settle=30, clock=clock)
    s.touch("in", f, "moved")
    assert [] == due(s)  # the first look notes its size and time
    clock.advance(Settler.RENAMED_GRACE - 0.01)
    assert [] == due(s)
    clock.advance(0.02)
    assert [f] == due(s)
    assert 0 == len(s)


def test_a_file_closed_after_each_chunk_is_taken_whole(tmp_path: Path) -> None:
    """A writer that appends a chunk at a time closes the file after each (a resumed
    download, `cat >>`): a close is not the end, the file waits ``settle`` of quiet."""
    f = tmp_path / "a.mp4"
    clock = ManualClock()
    s = Settler(settle=2.0, clock=clock)
    for chunk in range(5):
        s.touch("in", f, "modified")
        with f.open("ab") as out:
            out.write(b"x" * (chunk + 1))
        s.touch("in", f, "closed")
        assert [] == due(s), f"taken after chunk {chunk}"
        clock.advance(1.0)  # the writer's pause between chunks
    clock.advance(1.0)
    assert [f] == due(s)


def test_quiet_file_is_due_after_settle(tmp_path: Path) -> None:
    """A file moved in (no close seen) is taken once size and mtime hold for settle."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    clock = ManualClock()
    s = Settler(settle=2.0, clock=clock)
    s.touch("in", f, "created")
    assert [] == due(s)
    clock.advance(1.99)
    assert [] == due(s)
    clock.advance(0.02)
    assert [f] == due(s)


def test_growing_file_waits(tmp_path: Path) -> None:
    """A file that keeps growing is not taken while it grows: each change starts the
    settle time again."""
    f = tmp_path / "a.jpg"
    clock = ManualClock()
    s = Settler(settle=2.0, clock=clock)
    s.touch("in", f, "created")
    with open(f, "wb") as out:
        for _ in range(8):
            out.write(b"x" * 100)
            out.flush()
            s.touch("in", f, "changed")
            assert [] == due(s)
            clock.advance(1.5)  # less than settle since the last change
    assert [] == due(s)  # 1.5 s since the last write
    clock.advance(0.49)
    assert [] == due(s)
    clock.advance(0.02)
    assert [f] == due(s)


def test_a_change_the_watcher_missed_is_seen_by_the_look(tmp_path: Path) -> None:
    """Events are hints: a file that grew without an event still waits, because each
    look compares its size with the last."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    clock = ManualClock()
    s = Settler(settle=2.0, clock=clock)
    s.touch("in", f, "created")
    assert [] == due(s)
    clock.advance(1.9)
    f.write_bytes(b"xy")  # no event
    assert [] == due(s)
    clock.advance(1.9)
    assert [] == due(s)
    clock.advance(0.2)
    assert [f] == due(s)


def test_open_writer_pausing_is_not_taken(tmp_path: Path) -> None:
    """With inotify, a file modified and not yet closed waits past the settle time, up
    to ``open_wait``; after its close it is due once quiet for ``settle``."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    clock = ManualClock()
    s = Settler(settle=2.0, open_wait=60, clock=clock)
    s.touch("in", f, "modified")
    assert [] == due(s)
    clock.advance(30)  # quiet far longer than settle, but still open
    assert [] == due(s)
    s.touch("in", f, "closed")
    clock.advance(2.0)
    assert [f] == due(s)


def test_a_writer_that_never_closes_is_taken_after_open_wait(tmp_path: Path) -> None:
    """A writer that holds a file open and silent for ``open_wait`` has stopped: the
    file is taken rather than waiting forever."""
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    clock = ManualClock()
    s = Settler(settle=2.0, open_wait=60, clock=clock)
    s.touch("in", f, "modified")
    assert [] == due(s)
    clock.advance(59.9)
    assert [] == due(s)
    clock.advance(0.2)
    assert [f] == due(s)


def test_vanished_file_is_dropped(tmp_path: Path) -> None:
    """A file renamed away before it settled is forgotten, not reported."""
    clock = ManualClock()
    s = Settler(settle=0.1, clock=clock)
    s.touch("in", tmp_path / "gone.jpg.part", "created")
    clock.advance(1)
    assert ([], 0) == (due(s), len(s))


def test_a_due_file_kept_until_it_is_handed_over_is_still_settling(tmp_path: Path) -> None:
    """The intake looks at the settler's files without taking them out, and takes
    them out only as it hands them over: meanwhile they still count as settling (a
    movie asks whether its still is on its way in), and a file not handed over stays."""
    still, other = tmp_path / "IMG_0001.JPG", tmp_path / "b.jpg"
    for f in (still, other):
        f.write_bytes(b"x")
    clock = ManualClock()
    s = Settler(settle=1.0, clock=clock)
    for f in (still, other):
        s.touch("in", f, "closed")
    s.due()
    clock.advance(1.0)
    ready = s.due(leave=False)
    assert {still, other} == {p for _, p in ready}
    assert ("in", str(still)) in s and 2 == len(s)
    s.discard([("in", still)])
    assert ("in", str(still)) not in s and ("in", str(other)) in s
