"""The event log: JSON lines with ts/level/event, rotation, and reading it back."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from photod import logs
from tests.servers import BUCKET, S3Server


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
    """The log rotates before a file would pass its size limit, every event written
    once; reading walks rotated files oldest first."""
    for i in range(60):
        logger.info("tick", n=i)
    files = sorted(tmp_path.glob(f"{logs.LOG_NAME}*"))
    assert len(files) == 3  # about 4,000 bytes of events in files of at most 2,000
    assert all(0 < f.stat().st_size <= 2000 for f in files)
    assert list(range(60)) == [e["n"] for _, e in logs.read_events(tmp_path)]


@pytest.mark.parametrize("kind", ["/dev/null", "pipe"])
def test_a_log_that_is_no_regular_file_gets_every_event_and_is_never_rotated(
    tmp_path: Path, kind: str
) -> None:
    """The log file linked to /dev/null (someone wants no log), or a named pipe that a
    collector reads: every event goes to it, and it is never renamed away."""
    path = tmp_path / logs.LOG_NAME
    got: list[str] = []
    reader = None
    if kind == "pipe":
        os.mkfifo(path)

        def read() -> None:
            with open(path) as f:
                got.extend(f)

        reader = threading.Thread(target=read)
        reader.start()
    else:
        path.symlink_to(kind)
    logs.setup(tmp_path, console=False, max_bytes=2000, keep=3)
    try:
        for i in range(60):
            structlog.get_logger("photod").info("tick", n=i)
    finally:
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
            h.close()
        structlog.reset_defaults()
    if reader is not None:
        reader.join(10)
        assert list(range(60)) == [json.loads(line)["n"] for line in got]
    assert not path.is_file()
    assert [] == list(tmp_path.glob(f"{logs.LOG_NAME}.*"))


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
        },
        tty=False,
    )
    assert 'WARNING  replica_failed  asset=abababababab target=t7 error="disk full"' in line


def test_render_leaves_out_none_and_shows_nested_values_readably() -> None:
    """No ``target=None``; a list of names reads ``a,b``, a table ``k:v`` (a nested one in
    braces), every 64-hex hash as its first 12 digits, never escaped JSON."""
    line = logs.render(
        {
            "ts": "2026-01-02T03:04:05Z",
            "level": "info",
            "event": "scrub_finished",
            "target": None,
            "targets": ["lib", "mirror"],
            "checked": {"lib": 3, "mirror": {"bytes": 10, "ok": True}},
            "assets": ["ab" * 32, "cd" * 32],
        },
        tty=False,
    )
    expected = (
        "scrub_finished  targets=lib,mirror checked=lib:3,mirror:{bytes:10,ok:true} "
        "assets=abababababab,cdcdcdcdcdcd"
    )
    assert expected == line.split("  ", 2)[2].lstrip()
    assert "None" not in line and "\\" not in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "k=plain"),
        ("two words", 'k="two words"'),
        ("", 'k=""'),
        ('say "hi"', 'k="say \\"hi\\""'),
        ("Anna's", "k=Anna's"),
        (["a b", "c"], 'k="a b,c"'),
        ("tab\there", 'k="tab\\there"'),
        # A file named to look like another: a direction override, a C1 control (ESC [).
        ("photo\u202egpj.exe", 'k="photo\\u202egpj.exe"'),
        ("a\x9b2Jb.jpg", 'k="a\\u009b2Jb.jpg"'),
        ("Café 😀.jpg", 'k="Café 😀.jpg"'),
    ],
)
def test_render_has_one_quoting_rule(value: object, shown: str) -> None:
    """A value is in double quotes (JSON's escapes) exactly when it is empty or holds a
    space, a quote, a backslash or a control character, whatever its type was; a
    character a terminal would not show as text (a direction override, a C1 control,
    which JSON leaves as they are) is escaped too: `photod logs`, the daemon's terminal
    and the dashboard's events show a file's name as it is, not as it pretends to be."""
    line = logs.render({"ts": "2026-01-02T03:04:05Z", "level": "info", "event": "e", "k": value})
    assert line.endswith(f"e  {shown}")


def test_render_colours_warnings_and_errors_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal WARNING is yellow and ERROR red, INFO plain; off a terminal, or with
    NO_COLOR set to anything (no-color.org), no escape at all."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)

    def line(level: str, tty: bool) -> str:
        return logs.render({"ts": "2026-01-02T03:04:05Z", "level": level, "event": "e"}, tty=tty)

    assert "\033[33mWARNING\033[0m  e" in line("warning", True)
    assert "\033[31mERROR\033[0m    e" in line("error", True)
    assert "\033[" not in line("info", True)
    assert "\033[" not in line("error", False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in line("error", True)
    assert "ERROR    e" in line("error", True)


def test_local_time_is_the_one_time_style(monkeypatch: pytest.MonkeyPatch) -> None:
    """A UTC stamp (``Z`` or ``+00:00``) is shown in local time, ``YYYY-MM-DD HH:MM``
    (seconds when asked), no zone letter; a local stamp with no zone stays as it is."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert "2026-01-02 12:04" == logs.local_time("2026-01-02T03:04:05Z")
        assert "2026-01-02 12:04:05" == logs.local_time("2026-01-02T03:04:05+00:00", seconds=True)
        assert "2026-01-02 03:04:05" == logs.local_time("2026-01-02T03:04:05", seconds=True)
        line = logs.render({"ts": "2026-01-02T03:04:05Z", "level": "info", "event": "e"})
        assert line.startswith("2026-01-02 12:04:05  INFO")
    finally:
        monkeypatch.undo()
        time.tzset()


def _console(monkeypatch: pytest.MonkeyPatch, no_color: str | None) -> str:
    """What the daemon's console handler writes to a terminal (a pseudo-terminal) for
    one info and one warning event."""
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.delenv("TERM", raising=False)
    main, tty = pty.openpty()
    stream = os.fdopen(tty, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        logs.setup(None, console=True)
        log = structlog.get_logger("photod")
        log.info("replica_written", asset="ab" * 32, target="lib", source=None, n=[1, 2])
        log.warning("target_unavailable", target="usb", reason="not mounted")
        stream.flush()
        out = b""
        while select.select([main], [], [], 0.5)[0]:
            out += os.read(main, 65536)
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        structlog.reset_defaults()
        stream.close()
        os.close(main)
    return out.decode().replace("\r\n", "\n")


def test_console_on_a_terminal_prints_the_timeline_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon on a terminal prints the very line `photod logs` prints (short hash,
    no None, lists as a,b), the warning's level in colour; not structlog's own."""
    out = _console(monkeypatch, None).splitlines()
    assert 2 == len(out), out
    assert out[0].endswith("INFO     replica_written  asset=abababababab target=lib n=1,2")
    assert out[1].endswith(
        '\033[33mWARNING\033[0m  target_unavailable  target=usb reason="not mounted"'
    )
    assert "ab" * 32 not in "".join(out)


@pytest.mark.parametrize("value", ["1", "true", "0"])
def test_console_honours_no_color(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """NO_COLOR with any non-empty value: the same lines on the terminal, no colour."""
    out = _console(monkeypatch, value)
    assert "\033[" not in out
    assert 'WARNING  target_unavailable  target=usb reason="not mounted"' in out


def test_an_s3_probe_leaves_no_boto3_chatter_in_the_log(
    tmp_path: Path, logger, s3_server: S3Server
) -> None:  # type: ignore[no-untyped-def]
    """boto3's "Found credentials in shared credentials file" (at every S3 probe) does
    not reach the event log; photod's own events do."""
    from photod.targets.s3 import S3Target

    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    target = S3Target("s3", BUCKET, "probe", s3_server.endpoint, credentials_file=creds)
    try:
        target.check(None)
    finally:
        target.close()
    logger.info("probe_done")
    text = (tmp_path / logs.LOG_NAME).read_text()
    assert "Found credentials" not in text
    assert "probe_done" in text


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


def test_the_log_loads_without_rich_and_rich_still_loads_after(tmp_path: Path) -> None:
    """structlog would load rich (0.1 s of every daemon start) for renderers photod does
    not use: the daemon's log comes up without it, a failure still carries its
    traceback in the JSON log, and rich (which pymobiledevice3 uses) imports after."""
    script = f"""
import sys
from pathlib import Path
from photod import logs
logs.setup(Path({str(tmp_path)!r}), console=False)
loaded_with_log = "rich" in sys.modules
try:
    raise ValueError("a bad day")
except ValueError:
    logs.log.exception("job_failed", job="scrub")
import rich.pretty
print(loaded_with_log, "rich.pretty" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert ["False", "True"] == out
    event = json.loads((tmp_path / logs.LOG_NAME).read_text().splitlines()[-1])
    assert "job_failed" == event["event"]
    assert "a bad day" in json.dumps(event["exception"])
