"""Two computers of a family on one NAS folder (or one SFTP server, through rclone), one
of them with its clock far off: its tidy of a crash's leftovers never takes the other
computer's write in flight for one."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Photod, wait_for, write_config
from tests.integration.test_truth import make_photos
from tests.servers import SSHServer

pytestmark = pytest.mark.integration

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def computer(
    top: Path,
    name: str,
    nas: Path,
    factory: Callable[[Path], Photod],
    targets: list[dict[str, object]] | None = None,
) -> Photod:
    home = top / name
    (home / "inbox").mkdir(parents=True)
    config = write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        targets or [{"name": "nas", "type": "local", "path": str(nas), "media": "nas"}],
        {"copies": len(targets or [1]), "media": 1, "offsite": 1 if targets else 0},
        f'\n[daemon]\ninstance = "{name}"\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n'
        'retry_interval = "1s"\nretry_max = "2s"\n[ingest]\nsettle = "0.5s"\n',
    )
    p = factory(config)
    p.home, p.output, p.log_dir = home, home / "photod.out", home / "log"
    p.env = {**p.env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700)
    return p


def started_ahead_beside(
    desktop: Photod, ahead: str, target: str, in_flight: Callable[[], list[Path]], what: str
) -> Path:
    """Waits for the laptop's one write in flight (``what``), then starts the desktop with
    its clock ``ahead`` (libfaketime) and lets its sweep of ``target`` run: the laptop's
    temporary must still be there.  The desktop is then ended as a power cut would: under
    libfaketime (which rewrites the timed waits of every thread) a SIGTERM went unanswered
    in full runs.  Returns the temporary."""
    if not os.path.exists(FAKETIME) or shutil.which("faketime") is None:
        pytest.fail("libfaketime not found: apt install faketime")
    wait_for(lambda: in_flight(), 30, what)
    [temp] = in_flight()
    desktop.env.update(LD_PRELOAD=FAKETIME, FAKETIME=ahead)
    desktop.start()
    desktop.wait_event("target_available", target=target, timeout=30)
    assert temp.exists(), "the desktop removed the laptop's write in flight"
    desktop.stop(signal.SIGKILL)
    return temp


def test_a_clock_hours_ahead_leaves_the_other_computers_write_in_flight(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """The laptop is writing a record on the NAS (its temporary written, not yet given
    its name) when the desktop, whose clock is three hours ahead (a dual-boot's clock
    kept in local time, no NTP yet), starts: the desktop's sweep of what a crash left
    judges age by the NAS's clock, not its own, and leaves the laptop's temporary be."""
    nas = tmp_path / "nas"
    nas.mkdir()
    laptop = computer(tmp_path, "laptop", nas, photod_factory)
    desktop = computer(tmp_path, "desktop", nas, photod_factory)
    make_photos(laptop.home / "inbox", 1, start=0)
    laptop.start()
    laptop.wait_protected(1, timeout=60)
    assert 0 == laptop.stop()

    # The first record the laptop writes now waits 45 s between its temporary and its name
    # (the desktop's start below must fit in it on a busy machine: 20 s did not, once).
    # A new photo gives it records to write: a restart with nothing new writes none.
    make_photos(laptop.home / "inbox", 1, start=1)
    laptop.env["PHOTOD_FAILPOINTS"] = "meta_written=1:sleep:45"
    laptop.start(wait=False)

    def in_flight() -> list[Path]:
        return [p for p in (nas / ".photod").rglob(".photod-*.tmp") if p.is_file()]

    temp = started_ahead_beside(
        desktop, "+3h", "nas", in_flight, "the laptop's record half written"
    )
    wait_for(lambda: not temp.exists(), 70, "the laptop's record written")
    assert 0 == laptop.stop(timeout=40)
    assert [] == laptop.events("snapshot_failed")  # "No such file or directory (…/nas)"


def test_a_clock_days_ahead_leaves_the_other_computers_upload_in_flight(
    tmp_path: Path, photod_factory: Callable[[Path], Photod], ssh_server: SSHServer
) -> None:
    """Both computers back up to one SFTP server through rclone.  The laptop's upload is
    whole under its temporary name in .photod/tmp/ (its time set by the laptop's
    rclone), not yet checked or moved, when the desktop, whose clock is two days ahead
    (a dead CMOS battery), starts: its sweep of what a crash left never removes another
    computer's temporary on its own clock's word, and the laptop's copy goes through."""
    shared = ssh_server.files / tmp_path.name
    shared.mkdir()
    cloud = {"name": "cloud", "type": "rclone", "remote": f"box:{shared}",
             "rclone_config": ssh_server.rclone_config(), "media": "cloud", "offsite": True}  # fmt: skip

    def targets(home: Path) -> list[dict[str, object]]:
        return [{"name": "lib", "type": "local", "path": str(home / "lib")}, cloud]

    laptop = computer(tmp_path, "laptop", shared, photod_factory, targets(tmp_path / "laptop"))
    desktop = computer(tmp_path, "desktop", shared, photod_factory, targets(tmp_path / "desktop"))
    make_photos(laptop.home / "inbox", 1, start=0)
    laptop.start()
    laptop.wait_protected(1, timeout=60)
    assert 0 == laptop.stop()

    # The laptop's next upload waits 45 s, whole, between its upload and its move.
    laptop.env["PHOTOD_FAILPOINTS"] = "rclone_uploaded=1:sleep:45"
    laptop.start()
    make_photos(laptop.home / "inbox", 1, start=1)

    def in_flight() -> list[Path]:
        return [p for p in (shared / ".photod" / "tmp").glob("*") if p.is_file()]

    what = "the laptop's upload whole under its temporary name"
    started_ahead_beside(desktop, "+2d", "cloud", in_flight, what)
    laptop.wait_protected(2, timeout=90)
    assert 0 == laptop.stop(timeout=60)
    failed = [e for e in laptop.events() if e.get("level") in ("warning", "error")]
    assert [] == [e for e in failed if e.get("target") == "cloud"]
