"""On battery.  Linux shows a laptop's battery and charger in /sys/class/power_supply,
which psutil reads; here that is a folder the test writes, bind-mounted over the real
one in a private mount namespace of the daemon (the tests run as root, as in CI), so
the daemon reads a battery through the same files as on a laptop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import target_files
from tests.integration.conftest import Setup
from tests.servers import need

pytestmark = pytest.mark.integration


class Battery:
    """A battery and a charger as the kernel's power_supply class shows them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "BAT0").mkdir(parents=True)
        (folder / "AC").mkdir()
        (folder / "BAT0" / "capacity").write_text("80\n")
        self.unplug()

    def unplug(self) -> None:
        (self.folder / "BAT0" / "status").write_text("Discharging\n")
        (self.folder / "AC" / "online").write_text("0\n")

    def plug(self) -> None:
        (self.folder / "BAT0" / "status").write_text("Charging\n")
        (self.folder / "AC" / "online").write_text("1\n")

    def prefix(self) -> list[str]:
        unshare = need("unshare", "apt install util-linux")
        return [
            unshare, "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /sys/class/power_supply && exec "$@"', str(self.folder),
        ]  # fmt: skip


def test_scrubs_drills_and_uploads_wait_for_mains_power(setup: Setup, samples: Path) -> None:
    """With `[schedule] on_battery = false` and a target with `on_battery = false`, on
    battery: the scrub and the drill that fall due wait (`job_deferred`, and `photod
    status` says so), the target's copies wait (`target_paused`), and the library still
    takes every photo at once.  With the charger back, all of it runs by itself."""
    battery = Battery(setup.home / "power_supply")
    lib, nas = setup.home / "lib", setup.home / "nas"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)}, {"name": "nas", "path": str(nas),
                                              "on_battery": False}],
        extra='\n[schedule]\nscrub = "* * * * *"\ndrill = "* * * * *"\non_battery = false\n',
    )  # fmt: skip
    p.prefix = battery.prefix()
    p.start()
    names = sorted(f.name for f in samples.iterdir())
    for name in names:
        (setup.inbox / name).write_bytes((samples / name).read_bytes())
    paused = p.wait_event("target_paused", target="nas")[0]
    assert "runs on battery" in paused["reason"]
    p.wait_event("replica_written", count=len(names), target="lib")
    for job in ("scrub", "drill"):  # within the next cron minute
        p.wait_event("job_deferred", job=job, timeout=75)
    live = p.status()["daemon"]["live"]
    assert ["drill", "scrub"] == live["waiting_for_mains"]
    assert "scrub waits for mains power" in p.cli("status").stdout
    assert {} == target_files(nas)
    assert [] == p.events("scrub_finished") + p.events("drill_passed")

    battery.plug()
    for job in ("scrub", "drill"):
        p.wait_event("job_resumed", job=job, timeout=15)
    p.wait_event("scrub_finished", timeout=30)
    p.wait_event("drill_passed", target="lib", timeout=30)
    p.wait_protected(len(names))
    assert target_files(lib) == target_files(nas)
    assert [] == p.status()["daemon"]["live"]["waiting_for_mains"]
    assert 0 == p.stop()
