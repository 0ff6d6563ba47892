"""The upload window, the battery rule and the bandwidth limit."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from photod.targets.memory import MemoryTarget
from photod.throttle import LimitedWriter, TokenBucket, paused

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
    states = build_targets(config.parse(text, tmp_path / "photod.toml"))
    t7, b2 = states["t7"], states["b2"]
    assert t7.bucket is not None and 5 * 1024**2 == t7.bucket.rate
    assert ((22 * 60, 6 * 60), False, False) == (t7.window, t7.on_battery, t7.queued)
    assert (None, True, 4) == (b2.bucket, b2.queued, b2.transfers)
    for state in states.values():
        state.target.close()
