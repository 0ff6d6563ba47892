"""Photos that land while `photod run` starts are backed up at once: each folder is
watched before its first scan lists it, so a file written while the watches are set up
or while the scan walks is seen by the scan or by an event, never by neither (the next
rescan, an hour away here, is not what finds it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.fakephone import jpeg
from tests.integration.conftest import Setup

pytestmark = pytest.mark.integration


def test_photos_written_while_photod_starts_are_all_backed_up(setup: Setup) -> None:
    """A writer drops a photo every few milliseconds into deep folders of a tree of
    480 (the start walks them twice: the watches, then the scan), and into new deep
    folders, from before the spawn until after the first scan's end: every one is
    protected, without a rescan."""
    tree = [setup.inbox / f"{y}" / f"{m:02d}" / f"{d:02d}" for y in range(2000, 2020)
            for m in range(1, 13) for d in (1, 15)]  # fmt: skip
    for folder in tree:
        folder.mkdir(parents=True)
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     daemon='rescan_interval = "1h"')  # fmt: skip
    written: list[Path] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            # (every third into a folder made just now, three deep: its watch is added
            # by the event of its parent, or the scan lists it)
            new = setup.inbox / "new" / f"{i}" / "deep"
            written.append(jpeg((tree[i * 97 % len(tree)] if i % 3 else new) / f"{i}.jpg", i))
            i += 1
            time.sleep(0.005)

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    try:
        time.sleep(0.05)
        p.start()
        p.wait_event("scan_finished", source="inbox")
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
    p.wait_protected(len(written), timeout=120)
    assert 1 == len(p.events("scan_finished"))  # (found by the first scan or events)
    assert 0 == p.stop()
