"""The scheduler's rules: cron lines, and catching up a run missed while photod was
not running."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from photod import clock, jobs, schedules
from photod.activity import Activity
from photod.jobs import CronLine, _missed
from photod.schedules import interval
from tests.conftest import wait_for


@pytest.mark.parametrize(
    ("line", "seconds"),
    [("30 3 * * *", 86400), ("0 4 * * sun", 7 * 86400), ("*/15 * * * *", 900), ("0 * * * *", 3600)],
)
def test_interval_between_runs(line: str, seconds: float) -> None:
    """The scrub spreads its cycle over the runs: it needs the time between two."""
    assert seconds == interval(line)


@pytest.mark.parametrize(
    "line",
    ["0 3 * * *", "59 23 * * *", "07 * * * *", "0 03 * * *", "0 24 * * *", "60 * * * *",
     "5 1,13 * * *", "5 */2 * * *", "0 3 1 * *", "0 3 * 2 *", "0 3 * * 0", "0 3 * * * *",
     "\u0663 3 * * *"],
)  # fmt: skip
def test_the_usual_lines_gap_is_the_cron_librarys_at_any_time(line: str) -> None:
    """`photod status` knows an hourly or daily line's gap without the cron library:
    whatever the line, the gap is the one the cron library gives for its next two runs
    (from now, and for a line whose gap never changes, from any time of the year)."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(line, datetime(2000, 1, 1))
    except (CronSimError, ValueError):
        return  # the config check refuses it: no schedule asks for its gap

    def gap(now: datetime) -> float:
        runs = CronSim(line, now)
        first = next(runs)
        return (next(runs) - first).total_seconds()

    year = {gap(datetime(2026, 1, 1) + timedelta(days=d, hours=d % 24)) for d in range(366)}
    assert interval(line) == gap(datetime.now(UTC).replace(tzinfo=None))
    assert len(year) > 1 or {interval(line)} == year


@pytest.mark.parametrize("line", ["every night", "61 * * * *", "0 4 * * 8", "* * * *", 7])
def test_bad_cron_line_says_what_is_allowed(line: object) -> None:
    """A cron line the scheduler cannot use is one ValueError naming the five fields."""
    with pytest.raises(ValueError, match="allowed"):
        schedules.check(line)


WED = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("line", "first"),
    [
        ("0 4 * * 0", datetime(2026, 12, 6, 4, 0, tzinfo=UTC)),  # 0 is Sunday, as in cron
        ("0 4 * * 7", datetime(2026, 12, 6, 4, 0, tzinfo=UTC)),  # and so is 7
        ("0 4 * * sun", datetime(2026, 12, 6, 4, 0, tzinfo=UTC)),
        ("0 4 * * 1-5", datetime(2026, 12, 3, 4, 0, tzinfo=UTC)),  # weekdays: Thursday next
        ("0 4 1 * 1", datetime(2026, 12, 7, 4, 0, tzinfo=UTC)),  # the 1st OR a Monday
        ("0 12 * * *", datetime(2026, 12, 2, 12, 0, tzinfo=UTC)),  # now itself is a run
    ],
)
def test_the_scheduler_fires_when_cron_would(line: str, first: datetime) -> None:
    """The trigger the scheduler runs reads a line as cron does (APScheduler's own
    from_crontab would take 0 as Monday and AND the two day fields)."""
    trigger = CronLine(line)
    trigger.zone = UTC  # the machine's zone is whatever it is: the test fixes it
    assert first == trigger.get_next_fire_time(None, WED)
    after = trigger.get_next_fire_time(first, first)
    assert after is not None and after > first


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (None, None),  # a new installation: nothing to catch up
        ((NOW - timedelta(hours=8)).isoformat(), None),  # ran last night: wait for 03:30
        ((NOW - timedelta(days=3)).isoformat(), NOW + timedelta(seconds=60)),  # was off
        # off from before last night's run until now: 30 h, not yet one and a half days
        ((NOW - timedelta(hours=30)).isoformat(), NOW + timedelta(seconds=60)),
        ((NOW + timedelta(days=300)).isoformat(), None),  # the clock set back since
    ],
)
def test_a_run_missed_while_photod_was_off_runs_soon_after_start(
    last: str | None, expected: datetime | None
) -> None:
    """When a 03:30 passed since the last daily scrub (photod stopped across it), the
    daemon runs it a minute after starting instead of waiting for the next 03:30; not
    when the last run is later than now (a clock set back: no run is known missed)."""
    assert expected == _missed((last, {}) if last else None, "30 3 * * *", NOW, UTC)


def test_a_weekly_drill_missed_while_photod_was_off_runs_soon_after_start() -> None:
    """A weekly drill whose Sunday passed while photod was stopped (from Saturday to
    the Monday after next: nine days since the last drill, under one and a half weeks) runs a minute
    after the start, not a week late."""
    sat = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # drilled on Sunday 15th, then by hand
    monday = sat + timedelta(days=9)  # Monday 30th: Sunday 29th 04:00 passed while off
    assert monday + timedelta(seconds=60) == _missed((sat.isoformat(), {}), "0 4 * * sun",
                                                     monday, UTC)  # fmt: skip


def test_a_job_woken_while_it_runs_runs_once_more() -> None:
    """A wake-up that comes while the job runs (new files while the uploads run) is not
    lost, as APScheduler would skip it: the job runs again when it ends, once however
    many wake-ups came; `photod status` sees it running meanwhile."""
    import threading

    activity = Activity()
    runs: list[int] = []
    inside, go = threading.Event(), threading.Event()

    def upload_pending() -> None:
        runs.append(1)
        if len(runs) == 1:
            inside.set()
            go.wait(5)

    run = jobs._guarded(upload_pending, activity=activity)
    worker = threading.Thread(target=run)
    worker.start()
    assert inside.wait(5)
    assert ["upload_pending"] == activity.now()
    assert (True, True) == (activity.wake_running("upload_pending"),
                            activity.wake_running("upload_pending"))  # fmt: skip
    go.set()
    worker.join(5)
    assert (2, []) == (len(runs), activity.now())
    assert not activity.wake_running("upload_pending")  # idle: the scheduler wakes it


def test_a_job_failing_at_each_run_is_said_once_and_its_end_too() -> None:
    """The target probe runs every 5 s: a bug in it was a `job_failed` with its trace
    every 5 s, for ever.  The same failure again is said once; another kind of failure
    is news; the heartbeat's line names the job while it fails; its first good run is
    `job_recovered` with how many runs failed."""
    from structlog.testing import capture_logs

    from photod.activity import Failing

    failing = Failing(lambda: 1_767_225_600.0)  # 2026-01-01 00:00 UTC
    errors = [OSError(5, "Input/output error", f"/tmp/x{i}") for i in range(4)]
    errors += [ValueError("a bug"), None]

    def probe_targets() -> None:
        error = errors.pop(0)
        if error is not None:
            raise error

    run = jobs._guarded(probe_targets, failing=failing)
    with capture_logs() as events:
        for _ in range(5):
            run()
        lines = failing.lines()
        run()
    failed = [e for e in events if e["event"] == "job_failed"]
    assert ["[Errno 5] Input/output error: '/tmp/x0'", "a bug"] == [e["error"] for e in failed]
    assert all(e.get("exc_info") for e in failed)  # each with its trace
    assert ["the job probe_targets has failed at each of its last 5 run(s) since "
            "2026-01-01 00:00 UTC: a bug"] == lines  # fmt: skip
    assert [5] == [e["failed_runs"] for e in events if e["event"] == "job_recovered"]
    assert [] == failing.lines()


# In a process of its own: if the stop hangs, APScheduler's pool thread (not a daemon
# thread) would keep this one from ever exiting.
WAKE_WHILE_STOPPING = """
import threading, time
from datetime import UTC, datetime
from photod import jobs
from photod.activity import Activity

scheduler, activity = jobs.scheduler(), Activity()
waker = jobs.Waker(scheduler, activity)
inside, go, woke = threading.Event(), threading.Event(), threading.Event()

def probe_targets():
    inside.set()
    go.wait(10)
    waker("upload")  # what a probe does when a drive came back
    woke.set()

def upload_pending():
    pass

scheduler.add_job(jobs._guarded(probe_targets, activity=activity), "interval", seconds=5,
                  id="probe", next_run_time=datetime.now(UTC))  # as the daemon's probe
scheduler.add_job(jobs._guarded(upload_pending, activity=activity), "interval", hours=1,
                  id="upload")
scheduler.start()
assert inside.wait(10), "the probe job never started"
stopper = threading.Thread(target=jobs.stop, args=(scheduler, waker), daemon=True)
stopper.start()
deadline = time.monotonic() + 5
while scheduler.state != 0 and time.monotonic() < deadline:  # 0: STATE_STOPPED
    time.sleep(0.01)
time.sleep(0.3)  # the shutdown now waits for the probe, holding its lock
go.set()
stopper.join(10)
print("hung" if stopper.is_alive() else "stopped", woke.is_set(), activity.now(), flush=True)
import os
os._exit(0)
"""


def test_a_job_that_wakes_another_while_the_daemon_stops_does_not_hang_the_stop() -> None:
    """APScheduler's shutdown holds its job-store lock while it waits for running jobs.
    A job that wakes another just then (a target probe that sees a drive come back wakes
    the uploads) must not wait for that lock forever: the stop ends, and the wake-up is
    dropped (the next start runs every job)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WAKE_WHILE_STOPPING], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "stopped True []" == out.stdout.strip(), "the stop hung: a job's wake-up waits"


def test_a_job_asked_for_as_the_daemon_stops_is_refused_not_silently_dropped() -> None:
    """`photod verify` or `photod drill` asked just as a reload or a stop shuts the
    scheduler down: the job would be filed where a stopped scheduler never looks, so
    the request is refused (the command says to ask again) instead of answered "ok"."""
    import threading
    import time

    scheduler = jobs.scheduler()
    scheduler.start()
    ran = threading.Event()
    assert jobs.run_now(scheduler, "verify-now", ran.set)
    assert ran.wait(5), "a job asked for while the scheduler runs runs"
    deadline = time.monotonic() + 5
    while scheduler.get_job("verify-now") is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # a one-off job is dropped once it ran
    scheduler.shutdown()
    ran.clear()
    assert not jobs.run_now(scheduler, "verify-now", ran.set)
    assert not ran.wait(0.5)


@contextlib.contextmanager
def stopped_as_it_calls(
    scheduler: Any, call: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[threading.Thread, list[BaseException | None]]]:
    """``scheduler`` started; the moment its own thread calls ``call``, a stop (or a
    reload) begins: it marks the scheduler stopped, then waits for its lock.  Yields
    the stopping thread and the errors any thread died of; on leaving, the stop has
    been waited for (10 s at most)."""
    from apscheduler.schedulers.base import STATE_STOPPED

    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    stopping = threading.Thread(target=scheduler.shutdown)

    def tracer(frame: Any, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_name == call and not stopping.is_alive():
            threading.settrace(None)
            sys.settrace(None)
            stopping.start()
            while scheduler.state != STATE_STOPPED:
                time.sleep(0.001)

    threading.settrace(tracer)  # (the scheduler's thread starts below)
    try:
        scheduler.start()
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    yield stopping, died
    deadline = time.monotonic() + 10
    while stopping.ident is None and time.monotonic() < deadline:
        time.sleep(0.01)  # (the scheduler's thread begins the stop)
    stopping.join(10)


def test_a_one_off_job_that_starts_as_the_daemon_stops_leaves_no_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`photod verify` asked a moment before a stop: APScheduler marks itself stopped
    before it takes its lock, then drops the one-off job it has just started and looks
    for it where a stopped scheduler keeps jobs. Its thread died of that, a
    JobLookupError trace on stderr (the journal). Now the stop is quiet, and the job
    that started still runs to its end."""
    ran = threading.Event()
    scheduler = jobs.scheduler()
    # (as the scheduler's thread drops the job it has just handed over)
    with stopped_as_it_calls(scheduler, "remove_job", monkeypatch) as (stopping, died):
        jobs.run_now(scheduler, "verify-now", lambda: (time.sleep(0.2), ran.set()))
    assert not stopping.is_alive() and ran.is_set()
    assert [] == died


@pytest.mark.parametrize("back", [timedelta(seconds=5), timedelta(minutes=40)])
def test_a_clock_set_back_just_after_a_scrub_does_not_run_it_again(back: timedelta) -> None:
    """NTP steps the clock back a few seconds (or the minutes a clock ran fast) just
    after the 03:30 scrub ran: the scrub is not run a second time at 03:30 on the
    corrected clock (it was replanned to the first 03:30 after now, the one that had
    just run); it stays at tomorrow's, as cron keeps it.  Set back a year, it still
    comes at its next time on the clock as it is now."""
    trigger = CronLine("30 3 * * *")
    trigger.zone = UTC
    ran = datetime(2026, 12, 5, 3, 30, tzinfo=UTC)
    tomorrow = trigger.get_next_fire_time(ran, ran + timedelta(seconds=2))
    assert datetime(2026, 12, 6, 3, 30, tzinfo=UTC) == tomorrow
    job = jobs.scheduler().add_job(print, trigger, id="scrub", next_run_time=tomorrow)
    now = ran + timedelta(seconds=2) - back
    assert tomorrow == jobs._rewound(job, back, now)
    year = timedelta(days=365)
    assert datetime(2025, 12, 6, 3, 30, tzinfo=UTC) == jobs._rewound(
        job, year, ran + timedelta(seconds=2) - year
    )


def test_a_clock_set_back_as_the_daemon_stops_leaves_no_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler sees the clock set back and moves a job back just as a stop (or a
    reload) marks it stopped: the job is no longer where a stopped scheduler looks, and
    the scheduler's thread died of JobLookupError (a trace in the journal at a stop).
    Now the stop is quiet."""
    scheduler = jobs.scheduler()
    scheduler.add_job(print, "interval", hours=1, id="reconcile")
    scheduler.offset = 3600.0 + clock.SYSTEM.time() - clock.SYSTEM.boottime()  # set back 1 h
    # (as the scheduler's thread moves the job back)
    with stopped_as_it_calls(scheduler, "modify_job", monkeypatch) as (stopping, died):
        pass
    assert stopping.ident is not None, "the scheduler never moved the job back"
    assert not stopping.is_alive()
    assert [] == died


def test_a_step_forward_after_a_clock_set_back_a_year_keeps_the_scrub_on_the_clock() -> None:
    """The clock ran a year ahead and NTP set it right: the scrub is planned on the
    clock as it is now.  A step of seconds forward later (NTP again) is not the clock
    set a year ahead again: the scrub stays where it is, not back a year away."""
    trigger = CronLine("30 3 * * *")
    trigger.zone = UTC
    now = datetime.now(UTC)
    ahead = trigger.get_next_fire_time(None, now + timedelta(days=365))
    scheduler = jobs.scheduler()
    scheduler.add_job(print, trigger, id="scrub", next_run_time=ahead)
    year = 365 * 86400.0
    scheduler.offset = year + clock.SYSTEM.time() - clock.SYSTEM.boottime()
    scheduler.start()
    try:

        def due() -> datetime:
            for _ in range(200):
                moved = scheduler.get_job("scrub").next_run_time
                if moved != ahead:
                    return moved  # type: ignore[no-any-return]
                time.sleep(0.01)
            return ahead  # type: ignore[no-any-return]

        on_the_clock = trigger.get_next_fire_time(None, now)
        assert on_the_clock == due()
        time.sleep(0.2)  # (that look ends)
        scheduler.offset -= 5.0  # the clock stepped 5 s forward
        scheduler.wakeup()
        time.sleep(0.5)
        assert on_the_clock == scheduler.get_job("scrub").next_run_time
    finally:
        scheduler.shutdown()


def test_a_stall_between_reading_the_two_clocks_is_not_taken_for_a_clock_set_back() -> None:
    """The scheduler's thread stalls for 3 s between reading the wall clock and the
    boot clock (another thread holding the interpreter, a swapping computer, a suspend
    just then): the clock was not set, so no job moves (it was taken for one set back:
    `clock_set_back` logged, every job moved 3 s that never were)."""
    import threading

    stalled = threading.Event()

    def stall(frame: Any, event: str, arg: object) -> None:
        if event == "return" and not stalled.is_set():
            time.sleep(3)  # just after the wall clock was read
            stalled.set()

    def tracer(frame: Any, event: str, arg: object) -> Any:
        if frame.f_code.co_name == "time" and frame.f_globals.get("__name__") == "photod.clock":
            return stall
        return None

    scheduler = jobs.scheduler()
    ran = threading.Event()
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduler.add_job(ran.set, "interval", hours=1, id="reconcile", next_run_time=later)
    scheduler.offset = clock.SYSTEM.time() - clock.SYSTEM.boottime()
    threading.settrace(tracer)  # (the scheduler's thread starts below)
    try:
        scheduler.start()
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    try:
        assert stalled.wait(10), "the scheduler never read the clock"
        time.sleep(0.5)
        assert (later, False) == (scheduler.get_job("reconcile").next_run_time, ran.is_set())
    finally:
        scheduler.shutdown()


def test_a_clock_stepped_back_seconds_is_not_a_failure() -> None:
    """A time server stepping the clock back a few seconds now and then (a virtual
    machine's drifting clock): nothing the scrub or the drill plans changes, so the
    `clock_set_back` it logs is news, not a failure (a warning each time, it filled
    `photod logs --failures` and the dashboard's failures, 500 shown, in a day of steps
    every few minutes, pushing the real ones out).  Set back hours, it is a warning."""

    from structlog.testing import capture_logs

    def levels(back: float) -> list[str]:
        scheduler = jobs.scheduler()
        scheduler.add_job(print, "interval", hours=1, id="reconcile")
        scheduler.offset = back + clock.SYSTEM.time() - clock.SYSTEM.boottime()
        with capture_logs() as events:
            scheduler.start()
            said_within(events, "clock_set_back")
            scheduler.shutdown()
        return [e["log_level"] for e in events if e["event"] == "clock_set_back"]

    assert ["info"] == levels(5.0)
    assert ["warning"] == levels(4 * 3600.0)


def said_within(events: list[dict[str, Any]], name: str, seconds: float = 10) -> bool:
    """Whether the event ``name`` is among ``events`` (captured as the scheduler's
    thread logs them) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(e["event"] == name for e in events):
            return True
        time.sleep(0.01)
    return False


def test_a_scrub_follows_the_computer_to_another_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon runs in Berlin with the scrub at 03:30; the laptop is flown to
    California and its time zone follows (automatic time zone): the scrub's next run is
    03:30 in California, and `time_zone_changed` says so.  (The daemon kept the zone it
    read at its start: the scrub ran at 18:30 California time, in the middle of the
    day, until a restart; a reload did not help.)"""
    from zoneinfo import ZoneInfo

    import tzlocal
    from structlog.testing import capture_logs

    def move_to(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        tzlocal.reload_localzone()

    move_to("Europe/Berlin")
    trigger = CronLine("30 3 * * *")
    now = datetime.now(UTC)
    scheduler = jobs.scheduler()
    scheduler.add_job(
        print, trigger, id="scrub", next_run_time=trigger.get_next_fire_time(None, now)
    )
    scheduler.offset = clock.SYSTEM.time() - clock.SYSTEM.boottime()
    try:
        with capture_logs() as events:
            scheduler.start()
            # Its first look, in Berlin (a fixed 0.2 s was not enough on a loaded machine:
            # its thread looked after the move, took California for the zone it began in)
            wait_for(lambda: scheduler.zone is not None, 10, "the scheduler's first look")
            move_to("America/Los_Angeles")
            scheduler.wakeup()
            said = said_within(events, "time_zone_changed")
        due = scheduler.get_job("scrub").next_run_time.astimezone(ZoneInfo("America/Los_Angeles"))
        assert (3, 30) == (due.hour, due.minute)
        assert timedelta(0) < due - now <= timedelta(days=1)
        assert said
    finally:
        scheduler.shutdown()
        monkeypatch.undo()
        time.tzset()
        tzlocal.reload_localzone()
