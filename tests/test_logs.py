"""The event log: JSON lines with ts/level/event, rotation, and reading it back."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from photod import logs


@pytest.fixture
def logger(tmp_path: Path):  # type: ignore[no-untyped-def]
    logs.setup(tmp_path, console=False, max_bytes=2000, keep=3)
    yield structlog.get_logger("photod")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    structlog.reset_defaults()


def test_events_are_json_lines_with_ts_level_event(tmp_path: Path, logger) -> None:  # type: ignore[no-untyped-def]
    """Each event is one JSON object, ts (ISO UTC) first, then level and event; a
    foreign library's warnings come through the same way, but not the scheduler's
    chatter about a busy tick it did not double."""
    logger.info("replica_written", asset="a" * 64, target="t7", bytes=10)
    logging.getLogger("apscheduler.scheduler").warning("Execution of job skipped")
    logging.getLogger("watchdog.observers.inotify_c").warning("a foreign library speaks")
    lines = (tmp_path / logs.LOG_NAME).read_text().splitlines()
    assert 2 == len(lines)
    first = json.loads(lines[0])
    assert ["ts", "level", "event", "asset", "target", "bytes"] == list(first)[:6]
    assert first["ts"].endswith("Z")
    assert ("warning", "a foreign library speaks") == (
        json.loads(lines[1])["level"],
        json.loads(lines[1])["event"],
    )


def test_rotation_keeps_order_when_read(tmp_path: Path, logger) -> None:  # type: ignore[no-untyped-def]
    """The log rotates at its size limit; reading walks rotated files oldest first."""
    for i in range(60):
        logger.info("tick", n=i)
    assert (tmp_path / f"{logs.LOG_NAME}.1").exists()
    ns = [e["n"] for _, e in logs.read_events(tmp_path)]
    assert ns == sorted(ns)
    assert 59 == ns[-1]


def test_failures_and_since_filters(tmp_path: Path, logger) -> None:  # type: ignore[no-untyped-def]
    """--failures keeps warnings and errors; --since drops older events."""
    logger.info("fine")
    logger.warning("target_unavailable", target="t7")
    logger.error("config_invalid")
    assert ["target_unavailable", "config_invalid"] == [
        e["event"] for _, e in logs.read_events(tmp_path, failures=True)
    ]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert [] == list(logs.read_events(tmp_path, since=future))


def test_render_is_one_readable_line() -> None:
    """A timeline line: local time, level, event, then key=value with a short asset id."""
    line = logs.render(
        {
            "ts": "2026-01-02T03:04:05Z",
            "level": "warning",
            "event": "replica_failed",
            "asset": "ab" * 32,
            "target": "t7",
            "error": "disk full",
        }
    )
    assert 'WARNING  replica_failed  asset=abababababab target=t7 error="disk full"' in line


@pytest.mark.parametrize(("text", "hours"), [("2h", 2), ("30m", 0.5), ("1d", 24)])
def test_parse_since(text: str, hours: float) -> None:
    """--since takes durations ago."""
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert now - timedelta(hours=hours) == logs.parse_since(text, now)


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        (logs.Filter(device="Anna's iPhone"), ["device_attached", "device_import_finished"]),
        (
            logs.Filter(device="00008030-001A2B3C4D5E6F70"),
            ["device_attached", "device_import_finished"],
        ),
        (logs.Filter(target="t7"), ["replica_written", "replica_checked", "scrub_finished"]),
        (logs.Filter(target="b2"), ["catalog_snapshot_written"]),
        (
            logs.Filter(asset="ABCDEF123456"),
            ["asset_ingested", "replica_written", "replica_checked"],
        ),
        (logs.Filter(asset="abcdef", failures=True), []),
        (logs.Filter(target="t7", failures=True), []),
    ],
)
def test_filters_follow_one_device_target_or_photo(
    tmp_path: Path, logger, only: logs.Filter, expected: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """--device (name or UDID, any case, with or without the dash), --target (also in
    summaries that list targets) and --asset (a hash prefix, any case) keep exactly
    the events about it; they combine with --failures."""
    photo, other = "abcdef123456" + "0" * 52, "ffff" * 16
    logger.info("device_attached", device="Anna's iPhone", udid="00008030001A2B3C4D5E6F70")
    logger.info("asset_ingested", asset=photo, source="iphone")
    logger.info("replica_written", asset=photo, target="t7")
    logger.info("replica_written", asset=other, target="library")
    logger.info("device_import_finished", device="Anna's iPhone", udid="00008030001A2B3C4D5E6F70")
    logger.info("replica_checked", asset=photo, target="t7", method="readback")
    logger.info("scrub_finished", targets={"t7": {"checked": 1}, "library": {}})
    logger.info("catalog_snapshot_written", targets=["library", "b2"])
    got = [e["event"] for _, e in logs.read_events(tmp_path, only=only)]
    assert expected == got
