"""The upload window, the battery rule, the metered-connection rule (a fake
NetworkManager on a private D-Bus bus) and the bandwidth limit."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from photod.network import metered_now, nm_metered
from photod.targets.memory import MemoryTarget
from photod.throttle import LimitedWriter, TokenBucket, paused
from tests.fakenm import GUESS_NO, GUESS_YES, Bus, FakeNetworkManager

NIGHT = (60, 360)  # 01:00-06:00
WRAP = (22 * 60, 6 * 60)  # 22:00-06:00


@pytest.mark.parametrize(
    ("window", "on_battery", "hour", "battery", "expected"),
    [
        (None, True, 12, True, ""),  # no rules: always
        (NIGHT, True, 3, None, ""),
        (NIGHT, True, 1, None, ""),  # the start is inside
        (NIGHT, True, 6, None, "outside its upload window 01:00-06:00"),  # the end is not
        (NIGHT, True, 12, None, "outside its upload window 01:00-06:00"),
        (WRAP, True, 23, None, ""),
        (WRAP, True, 2, None, ""),
        (WRAP, True, 12, None, "outside its upload window 22:00-06:00"),
        (None, False, 12, True, "runs on battery"),
        (None, False, 12, False, ""),  # on mains
        (None, False, 12, None, ""),  # a desktop has no battery
        (None, True, 12, True, ""),  # uploads on battery allowed
        (NIGHT, False, 3, True, "runs on battery"),
    ],
)
def test_paused(
    window: tuple[int, int] | None, on_battery: bool, hour: int, battery: bool | None, expected: str
) -> None:
    """Uploads wait outside the window (which may wrap past midnight) and, with
    on_battery = false, while on battery; the reason says which."""
    why = paused(window, on_battery, datetime(2026, 11, 26, hour, 0), battery)
    assert (expected == "") == (why == "")
    assert expected in why


@pytest.mark.parametrize(
    ("window", "on_metered", "metered", "hour", "expected"),
    [
        (None, False, True, 12, "the connection is metered (on_metered = false); uploads "
                                "resume on an unmetered network"),
        (None, False, False, 12, ""),  # Wi-Fi at home
        (None, True, True, 12, ""),  # on_metered = true: a hotspot is fine
        (NIGHT, False, True, 12, "outside its upload window"),  # the window says it first
        (NIGHT, False, True, 3, "the connection is metered"),
    ],
)  # fmt: skip
def test_paused_on_a_metered_connection(
    window: tuple[int, int] | None, on_metered: bool, metered: bool, hour: int, expected: str
) -> None:
    """With on_metered = false, uploads wait while the connection is metered (a phone's
    hotspot), and the reason says so and when they resume."""
    why = paused(window, True, datetime(2026, 11, 26, hour, 0), None, on_metered, metered)
    assert (expected == "") == (why == "")
    assert expected in why


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    """A private bus where photod looks for the system bus."""
    bus = Bus(tmp_path / "bus")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    yield bus
    bus.close()


@pytest.mark.parametrize(
    ("value", "expected"), [(0, False), (1, True), (2, False), (3, True), (4, False)]
)
def test_networkmanager_says_whether_the_connection_is_metered(
    system_bus: Bus, value: int, expected: bool
) -> None:
    """NetworkManager's Metered property over the system D-Bus: yes and guess-yes are
    metered; no, guess-no and unknown are not."""
    nm = FakeNetworkManager(system_bus, value)
    try:
        assert (value, expected) == (nm_metered(), metered_now())
    finally:
        nm.close()


def test_without_networkmanager_or_a_bus_the_connection_is_not_metered(
    system_bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system bus where NetworkManager does not run answers at once (it is not
    started for the question), and no system bus at all: both are "not metered"."""
    started = time.monotonic()
    assert (None, False) == (nm_metered(), metered_now())
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing'}")
    assert (None, False) == (nm_metered(), metered_now())
    assert time.monotonic() - started < 1.5


def test_a_metered_connection_pauses_remote_targets_only(tmp_path: Path, system_bus: Bus) -> None:
    """On a hotspot, a remote target (on_metered false by default) waits with the
    reason `photod status` shows; one with on_metered = true and a local target do
    not.  Off the hotspot, none waits; the property is read once per check."""
    from photod import config
    from photod.fleet import build_targets

    text = (
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
        f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{tmp_path / "lib"}"\n'
        '[[targets]]\nname = "b2"\ntype = "s3"\nbucket = "photos"\nendpoint = "http://127.0.0.1:9"\n'
        '[[targets]]\nname = "box"\ntype = "rclone"\nremote = "box:photos"\non_metered = true\n'
    )
    states = build_targets(config.parse(text, tmp_path / "photod.toml").targets_settings())
    nm = FakeNetworkManager(system_bus, GUESS_YES)
    try:
        assert (True, False, True) == tuple(s.on_metered for s in states.values())
        why = {name: state.paused() for name, state in states.items()}
        assert "" == why["lib"] == why["box"]
        assert why["b2"].startswith("the connection is metered")
        assert 1 == nm.asked
        nm.metered = GUESS_NO
        assert {"lib": "", "b2": "", "box": ""} == {n: s.paused() for n, s in states.items()}
    finally:
        nm.close()
        for state in states.values():
            state.target.close()


def test_on_metered_is_for_remote_targets(tmp_path: Path) -> None:
    """A local target copies over no metered link: on_metered there is an unknown key,
    named with the keys a local target takes."""
    from photod import config
    from photod.errors import ConfigError

    text = (
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
        f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{tmp_path}"\non_metered = true\n'
    )
    with pytest.raises(ConfigError) as err:
        config.parse(text, tmp_path / "photod.toml")
    assert "targets[0]" in str(err.value)
    assert "unknown key 'on_metered'" in str(err.value)


def test_bandwidth_limit_holds_uploads_to_the_rate() -> None:
    """4 MiB through a 1 MiB/s limit (one second of burst) take about 3 s, and every
    byte arrives; two writers sharing the limit share the rate."""
    target = MemoryTarget("m")
    bucket = TokenBucket(1024**2, threading.Event())
    data = b"x" * (2 * 1024**2)
    started = time.monotonic()

    def upload(key: str) -> None:
        w = LimitedWriter(target.open_writer(key), bucket)
        for i in range(0, len(data), 256 * 1024):
            w.write(data[i : i + 256 * 1024])
        w.commit(key, hashlib.sha256(data).hexdigest())

    threads = [threading.Thread(target=upload, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    assert {"a": data, "b": data} == target.objects
    assert 2.7 < took < 6, took


def test_a_stopping_daemon_does_not_wait_for_the_limit() -> None:
    """A stop interrupts the wait for tokens at once."""
    stop = threading.Event()
    bucket = TokenBucket(1000, stop)
    bucket.take(1000)
    stop.set()
    started = time.monotonic()
    bucket.take(100_000)  # 100 s worth
    assert time.monotonic() - started < 0.5


def test_config_rules_reach_the_targets(tmp_path: Path) -> None:
    """bandwidth_limit, window and on_battery from the config are what the daemon's
    targets obey; remote kinds are queued behind the local copies, 4 at a time."""
    from photod import config
    from photod.fleet import build_targets

    text = (
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
        f'[[targets]]\nname = "t7"\ntype = "local"\npath = "{tmp_path / "t7"}"\n'
        'bandwidth_limit = "5MiB/s"\nwindow = "22:00-06:00"\non_battery = false\n'
        '[[targets]]\nname = "b2"\ntype = "s3"\nbucket = "photos"\nendpoint = "http://127.0.0.1:9"\n'
    )
    states = build_targets(config.parse(text, tmp_path / "photod.toml").targets_settings())
    t7, b2 = states["t7"], states["b2"]
    assert t7.bucket is not None and 5 * 1024**2 == t7.bucket.rate
    assert ((22 * 60, 6 * 60), False, False) == (t7.window, t7.on_battery, t7.queued)
    assert (None, True, 4) == (b2.bucket, b2.queued, b2.transfers)
    for state in states.values():
        state.target.close()
