"""The event log as the daemon writes it: photod's own events and a library's records
in one file and one console, whole lines from many threads, through rotation and a
crash, each listener told of every event."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from photod import logs


def _teardown() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    structlog.reset_defaults()


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The daemon's set-up under a service manager: the JSON log in tmp_path, standard
    error a file (the journal: not a terminal); yields that file."""
    out = tmp_path / "stderr.txt"
    stream = open(out, "w", buffering=1)  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stderr", stream)
    logs.setup(tmp_path, console=True)
    try:
        yield out
    finally:
        _teardown()
        stream.close()


def _lines(log_dir: Path) -> list[dict[str, Any]]:
    """Every line of every file of the log, each parsed (a line that is not JSON fails)."""
    return [json.loads(raw) for f in logs._files(log_dir) for raw in f.read_text().splitlines()]


def test_many_threads_logging_through_rotation_leave_only_whole_lines(tmp_path: Path) -> None:
    """Eight threads log at once, photod's events and a library's warnings, while the
    log rotates every few dozen lines: every line of every file is one JSON event with
    ts, level and event first, none lost, none twice, each file within its limit."""
    logs.setup(tmp_path, console=False, max_bytes=20_000, keep=1000)
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for i in range(300):
            if i % 10:
                logs.log.info("asset_ingested", asset=f"{n:02d}{i:04d}" + "a" * 58, source="é")
            else:
                logging.getLogger("watchdog.observers").warning("watch %s lost", f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        _teardown()
    events = _lines(tmp_path)
    assert all(["ts", "level", "event"] == list(e)[:3] for e in events)
    ours = sorted(e["asset"][:6] for e in events if e["event"] == "asset_ingested")
    assert sorted(f"{n:02d}{i:04d}" for n in range(8) for i in range(300) if i % 10) == ours
    theirs = sorted(e["event"] for e in events if e["level"] == "warning")
    assert sorted(f"watch {n}-{i} lost" for n in range(8) for i in range(0, 300, 10)) == theirs
    files = list(tmp_path.glob(f"{logs.LOG_NAME}*"))
    assert len(files) > 10
    assert all(f.stat().st_size <= 20_000 for f in files)


def test_a_line_a_crash_cut_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    """A log whose last line a crash (or a full disk) cut short: the next start's first
    event is a line of its own, read back by `photod logs`; the cut line is passed over."""
    (tmp_path / logs.LOG_NAME).write_text('{"ts": "2026-01-02T03:04:05Z", "level": "info", "ev')
    logs.setup(tmp_path, console=False)
    try:
        logs.log.info("daemon_started", version="1")
    finally:
        _teardown()
    assert ["daemon_started"] == [e["event"] for _, e in logs.read_events(tmp_path)]


def test_a_killed_writer_leaves_whole_lines_but_perhaps_its_last(tmp_path: Path) -> None:
    """photod killed (SIGKILL) while four threads write long events: every line in the
    log is whole but perhaps the last (the kernel stops a write at a page when the
    process is killed), and the next start's first event is a line of its own after
    it, so `photod logs` reads every event but the cut one."""
    script = f"""
import threading
from pathlib import Path
from photod import logs
logs.setup(Path({str(tmp_path)!r}), console=False, max_bytes=10**9)
def work(n):
    for i in range(10**9):
        logs.log.info("asset_ingested", n=n, i=i, path="x" * 20000)
for n in range(4):
    threading.Thread(target=work, args=(n,)).start()
"""
    writer = subprocess.Popen([sys.executable, "-c", script])
    log = tmp_path / logs.LOG_NAME
    try:
        while not log.exists() or log.stat().st_size < 2_000_000:
            assert writer.poll() is None, "the writer ended by itself"
            threading.Event().wait(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    logs.setup(tmp_path, console=False, max_bytes=10**9)
    try:
        logs.log.info("daemon_started")
    finally:
        _teardown()
    lines = log.read_text().splitlines()
    cut = [n for n, line in enumerate(lines) if not line.endswith("}")]
    assert cut in ([], [len(lines) - 2])
    events = [e["event"] for _, e in logs.read_events(tmp_path)]
    assert len(lines) - len(cut) == len(events)
    assert {"asset_ingested"} == set(events[:-1])
    assert "daemon_started" == events[-1]


def test_a_second_set_up_takes_photod_s_events_where_it_says(tmp_path: Path) -> None:
    """The log set up again in the same process (a command after another, another log
    folder): photod's next event goes to the new log, none to the old one."""
    first, second = tmp_path / "first", tmp_path / "second"
    logs.setup(first, console=False)
    try:
        logs.log.info("daemon_started", n=1)
        logs.setup(second, console=False)
        logs.log.info("daemon_started", n=2)
    finally:
        _teardown()
    assert ([1], [2]) == ([e["n"] for e in _lines(first)], [e["n"] for e in _lines(second)])


def test_a_library_record_is_a_line_like_photod_s_own(tmp_path: Path) -> None:
    """A stdlib logger's record (photod's signal handler, a library) has ts, level and
    event first, its ``extra`` fields, and its exception as structlog's dicts without
    the frames' locals (they may hold a file's contents or a password)."""
    logs.setup(tmp_path, console=False)
    try:
        password = "hunter2-local"  # the local a traceback must not show
        try:
            raise OSError(f"no {len(password)}")
        except OSError:
            logging.getLogger("photod").exception("signal_failed", extra={"signal": 15})
    finally:
        _teardown()
    [event] = _lines(tmp_path)
    assert ["ts", "level", "event", "signal"] == list(event)[:4]
    assert ("error", "signal_failed", 15) == (event["level"], event["event"], event["signal"])
    assert "OSError" == event["exception"][0]["exc_type"]
    assert "hunter2" not in (tmp_path / logs.LOG_NAME).read_text()


def test_photod_s_line_keeps_its_shape(tmp_path: Path) -> None:
    """The JSON line as `photod logs`, --failures and a person's grep read it: ts, level,
    event first, `"level": "info"` spelled so, non-ASCII as it is, a file name that is
    not UTF-8 escaped (and read back as it was), an exception without locals."""
    logs.setup(tmp_path, console=False)
    try:
        logs.log.info("asset_ingested", asset="ab" * 32, path="Café 😀.jpg", odd="bad-\udcff.jpg")
        password = "hunter2-local"
        try:
            raise ValueError(len(password))
        except ValueError:
            logs.log.exception("job_failed", job="scrub")
    finally:
        _teardown()
    first, second = (tmp_path / logs.LOG_NAME).read_text().splitlines()
    assert first.startswith('{"ts": "') and '"level": "info", "event": "asset_ingested"' in first
    assert '"path": "Café 😀.jpg"' in first
    assert "bad-\udcff.jpg" == json.loads(first)["odd"]
    event = json.loads(second)
    assert ("error", "job_failed", "ValueError") == (
        event["level"],
        event["event"],
        event["exception"][0]["exc_type"],
    )
    assert "hunter2" not in second
    assert logs.may_be_failure(second) and not logs.may_be_failure(first)


def test_a_journal_gets_warnings_the_log_and_listeners_every_event(
    tmp_path: Path, journal: Path
) -> None:
    """Standard error not a terminal: the timeline line of each warning and error (an
    exception's traceback below it), a library's warning too, no info; the JSON log has
    every event, each with the context bound for the running job; every listener (the
    notifier, the dashboard) is told of every event of photod's own."""
    heard: list[dict[str, Any]] = []
    logs.listeners.append(heard.append)
    try:
        with structlog.contextvars.bound_contextvars(job="scrub"):
            logs.log.info("scrub_started", target="t7")
            logs.log.warning("target_unavailable", target="t7", reason="not mounted")
            try:
                raise OSError("gone")
            except OSError:
                logs.log.exception("job_failed", error="gone")
        logging.getLogger("apscheduler.scheduler").error("Job missed by 1 second")
    finally:
        logs.listeners.remove(heard.append)
    shown = journal.read_text()
    assert "scrub_started" not in shown
    assert 'WARNING  target_unavailable  target=t7 reason="not mounted" job=scrub' in shown
    assert "ERROR    job_failed  error=gone job=scrub\nTraceback (most recent call last):" in shown
    assert "OSError: gone" in shown
    assert "ERROR    Job missed by 1 second" in shown
    events = _lines(tmp_path)
    expected = ["scrub_started", "target_unavailable", "job_failed", "Job missed by 1 second"]
    assert expected == [e["event"] for e in events]
    assert ["scrub"] * 3 == [e.get("job") for e in events[:3]]
    assert expected[:3] == [e["event"] for e in heard]
    assert all("scrub" == e["job"] and e["ts"] for e in heard)


class _Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_an_event_whose_fields_json_cannot_take_returns_and_is_written_as_text(
    journal: Path, tmp_path: Path
) -> None:
    """An event with a field JSON cannot take (a dict keyed by a tuple) or a value whose
    repr raises returns to the code that logged it, as it did through logging (it raised
    there, in an error's own handler maybe), and is written: each field as text, and
    why; the next event is written as ever."""
    logs.log.error("replica_failed", counts={(1, 2): 3}, asset="a1", targets=["nas", "b2"])
    logs.log.warning("target_unavailable", thing=_Unshowable(), target="nas")
    logs.log.info("asset_ingested", asset="a2")
    _teardown()
    events = _lines(tmp_path)
    assert ["replica_failed", "target_unavailable", "asset_ingested"] == [
        e["event"] for e in events
    ]
    first, second, third = events
    assert ["ts", "level", "event"] == list(first)[:3]
    assert ("error", "a1", "{(1, 2): 3}") == (first["level"], first["asset"], first["counts"])
    assert ["nas", "b2"] == first["targets"]  # (what JSON takes stays as it is)
    assert "could not be written" in first["log_error"]
    assert "<a _Unshowable that cannot be shown>" == second["thing"]
    assert "log_error" not in third
    said = journal.read_text()  # the journal still shows both warnings
    assert "replica_failed" in said and "target_unavailable" in said


def test_reading_the_log_while_the_daemon_rotates_away_a_file_goes_on(tmp_path: Path) -> None:
    """`photod logs` reads the files the log had when it began, whatever the running
    daemon's rotation renames or removes meanwhile: every event, in order (one removed
    was a FileNotFoundError's traceback; one renamed, a whole file passed over)."""
    names = [f"{logs.LOG_NAME}.2", f"{logs.LOG_NAME}.1", logs.LOG_NAME]
    for n, name in enumerate(names):
        line = {"ts": f"2026-12-06T10:0{n}:00Z", "level": "info", "event": f"e{n}"}
        (tmp_path / name).write_text(json.dumps(line) + "\n")
    events = logs.read_events(tmp_path)
    assert "e0" == next(events)[1]["event"]
    (tmp_path / names[0]).unlink()  # the daemon's rotation, meanwhile: .2 goes,
    (tmp_path / names[1]).rename(tmp_path / names[0])  # .1 becomes .2,
    (tmp_path / names[2]).rename(tmp_path / names[1])  # the current one .1,
    (tmp_path / names[2]).write_text('{"ts": "2026-12-06T10:09:00Z", "event": "e9"}\n')
    assert ["e1", "e2"] == [e["event"] for _, e in events]
