"""Two computers of a family on one NAS folder, one of them with its clock far off: its
tidy of a crash's leftovers never takes the other computer's write in flight for one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Photod, wait_for, write_config
from tests.integration.test_truth import make_photos

pytestmark = pytest.mark.integration

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def computer(top: Path, name: str, nas: Path, factory: Callable[[Path], Photod]) -> Photod:
    home = top / name
    (home / "inbox").mkdir(parents=True)
    config = write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        [{"name": "nas", "type": "local", "path": str(nas), "media": "nas"}],
        {"copies": 1, "media": 1, "offsite": 0},
        f'\n[daemon]\ninstance = "{name}"\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n'
        'retry_interval = "1s"\nretry_max = "2s"\n[ingest]\nsettle = "0.5s"\n',
    )
    p = factory(config)
    p.home, p.output, p.log_dir = home, home / "photod.out", home / "log"
    p.env = {**p.env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700)
    return p


def test_a_clock_hours_ahead_leaves_the_other_computers_write_in_flight(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """The laptop is writing a record on the NAS (its temporary written, not yet given
    its name) when the desktop, whose clock is three hours ahead (a dual-boot's clock
    kept in local time, no NTP yet), starts: the desktop's sweep of what a crash left
    judges age by the NAS's clock, not its own, and leaves the laptop's temporary be."""
    if not os.path.exists(FAKETIME) or shutil.which("faketime") is None:
        pytest.fail("libfaketime not found: apt install faketime")
    nas = tmp_path / "nas"
    nas.mkdir()
    laptop = computer(tmp_path, "laptop", nas, photod_factory)
    desktop = computer(tmp_path, "desktop", nas, photod_factory)
    make_photos(laptop.home / "inbox", 1, start=0)
    laptop.start()
    laptop.wait_protected(1, timeout=60)
    assert 0 == laptop.stop()

    # The first record the laptop writes now waits 20 s between its temporary and its name.
    laptop.env["PHOTOD_FAILPOINTS"] = "meta_written=1:sleep:20"
    laptop.start(wait=False)

    def in_flight() -> list[Path]:
        return [p for p in (nas / ".photod").rglob(".photod-*.tmp") if p.is_file()]

    wait_for(lambda: in_flight(), 30, "the laptop's record half written")
    [temp] = in_flight()

    desktop.env.update(LD_PRELOAD=FAKETIME, FAKETIME="+3h")
    desktop.start()
    desktop.wait_event("target_available", target="nas", timeout=30)
    assert temp.exists(), "the desktop removed the laptop's write in flight"
    assert 0 == desktop.stop()
    wait_for(lambda: not temp.exists(), 40, "the laptop's record written")
    assert 0 == laptop.stop(timeout=40)
    assert [] == laptop.events("snapshot_failed")  # "No such file or directory (…/nas)"
