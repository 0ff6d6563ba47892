"""Uploads only when not metered: a real daemon reads NetworkManager's ``Metered``
property over D-Bus from a fake NetworkManager on a private bus (tests/fakenm.py),
found through ``DBUS_SYSTEM_BUS_ADDRESS`` as any D-Bus program finds the system bus,
and uploads to a real S3 server on 127.0.0.1 only while the connection is not
metered."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import Photod
from tests.fakenm import GUESS_NO, GUESS_YES, Bus, FakeNetworkManager
from tests.integration.conftest import Setup
from tests.servers import S3Server

pytestmark = pytest.mark.integration


def written(p: Photod, target: str) -> list[str]:
    """The keys of the copies written to ``target``, sorted."""
    return sorted(e["path"] for e in p.events("replica_written") if e.get("target") == target)


METERED = "the connection is metered (on_metered = false); uploads resume on an unmetered network"


def test_uploads_wait_on_a_hotspot_while_the_local_copies_go_on(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """On a phone's hotspot (NetworkManager guesses metered), the S3 target (on_metered
    false by default) waits: `target_paused` and `photod status` give the reason, and
    nothing is uploaded, while the local library takes every photo at once.  Back on an
    unmetered network, the same daemon uploads everything by itself."""
    bus = Bus(setup.home / "bus")
    nm = FakeNetworkManager(bus, GUESS_YES)
    try:
        creds = s3_server.credentials(setup.home / "aws-credentials")
        p = setup.photod(
            [
                {"name": "lib", "path": str(setup.home / "lib")},
                s3_server.target("b2", creds, prefix="metered/"),
            ],
            {"copies": 2, "media": 2, "offsite": 1},
        )
        p.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        p.start()
        assert METERED == p.wait_event("target_paused", target="b2")[0]["reason"]
        names = sorted(f.name for f in samples.iterdir())
        for name in names:
            shutil.copy2(samples / name, setup.inbox / name)
        p.wait_event("replica_written", count=len(names), target="lib")
        status = p.status()
        b2 = next(t for t in status["targets"] if t["name"] == "b2")
        assert (False, METERED, 0) == (b2["available"], b2["reason"], b2["replicas"])
        assert METERED in p.cli("status").stdout
        assert [] == written(p, "b2")

        nm.metered = GUESS_NO  # home again, on Wi-Fi
        status = p.wait_protected(len(names), timeout=90)
        b2 = next(t for t in status["targets"] if t["name"] == "b2")
        assert (True, len(names)) == (b2["available"], b2["replicas"])
        assert written(p, "lib") == written(p, "b2")
        assert 0 == p.stop()
    finally:
        nm.close()
        bus.close()
