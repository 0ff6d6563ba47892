"""The scrub's and the drill's schedule with a real daemon on the worst days: the
wall clock jumping while photod runs (a suspend of weeks, a clock set forward or back)."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Photod
from tests.integration.conftest import Setup, backed_up_twice
from tests.integration.test_truth import make_photos

pytestmark = pytest.mark.integration


def _faked(p: Photod, offset: Path) -> None:
    """The wall clock of ``p``'s processes moved by what ``offset`` says (libfaketime;
    the monotonic clocks are left alone, as the kernel leaves them).  Its thread-safe
    build: the plain one, reading the file at every call, gave a thread now and then
    the real time (a race on its buffer, about one reading in 150 with four threads
    asking): a scheduler that read it once took a job as due weeks ago and ran it."""
    libs = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    if not libs:
        pytest.fail("libfaketime not found: apt-get install faketime (CI does)")
    p.env |= {"LD_PRELOAD": str(libs[0]), "FAKETIME_TIMESTAMP_FILE": str(offset),
              "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}  # fmt: skip


def _on_a_faked_clock(setup: Setup, scrub: str) -> tuple[Photod, Path]:
    """A photod with one library and ``scrub`` as its scrub's line, not started, its
    wall clock moved by what the returned file says ("+0" for now)."""
    offset = setup.home / "faketime.rc"
    offset.write_text("+0\n")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     extra=f'\n[schedule]\nscrub = "{scrub}"\n')  # fmt: skip
    _faked(p, offset)
    return p, offset


def test_a_scrub_still_runs_on_time_after_the_clock_is_set_back_a_year(
    setup: Setup, samples: Path
) -> None:
    """The daemon runs with a scrub every minute when the computer's clock is set back a
    year (NTP correcting a clock that ran ahead): a new photo is still taken at once,
    and the next scrub comes at the next minute on the corrected clock, not a year later
    (the scheduler kept the times it had computed on the old clock: nothing settled, no
    scrub or drill, until a restart)."""
    p, offset = _on_a_faked_clock(setup, "* * * * *")
    p.start()
    try:
        offset.write_text("-365d\n")
        time.sleep(6)
        photo = setup.inbox / "a.jpg"
        shutil.copy2(sorted(samples.iterdir())[0], photo)
        p.wait_event("asset_ingested", timeout=20)
        p.wait_event("scrub_finished", timeout=90)
    finally:
        p.stop(signal.SIGKILL)  # (under libfaketime a SIGTERM may go unanswered)


def test_a_clock_set_back_then_right_again_does_not_run_the_scrub_at_once(
    setup: Setup,
) -> None:
    """The clock is set back 5 hours (by mistake, a flapping time server), across the
    time of the daily scrub, then right again a few seconds later: the scrub keeps the
    time it had, tomorrow's (it was planned on the clock set back, that time had passed
    on the clock set right, and the scrub ran at once, as if missed: a drill on that
    line would have downloaded its sample from S3)."""
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) - timedelta(hours=5) + timedelta(minutes=3)
    p, offset = _on_a_faked_clock(setup, f"{at.minute} {at.hour} * * *")
    p.env["TZ"] = "UTC"
    p.start()
    try:
        time.sleep(2)
        offset.write_text("-5h\n")
        p.wait_event("clock_set_back", timeout=20)
        time.sleep(2)
        offset.write_text("+0\n")
        time.sleep(8)
        assert [] == p.events("scrub_started")
    finally:
        p.stop(signal.SIGKILL)


def _peak_rss_mb(p: Photod) -> float:
    assert p.proc is not None
    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_clock_set_weeks_ahead_runs_each_job_once_and_takes_no_memory(
    setup: Setup, samples: Path
) -> None:
    """The clock jumps three weeks ahead while the daemon runs (as the wall clock does
    after a suspend of three weeks): the scrub that fell due runs once, a new photo is
    still taken at once, and the daemon's memory stays where it was.  (APScheduler
    listed every run missed meanwhile before running a job once: 7 million for the
    0.25 s settle tick, hundreds of megabytes, the scheduler stuck building the list;
    a year ahead took gigabytes.)"""
    p, offset = _on_a_faked_clock(setup, "0 3 * * *")
    p.start()
    try:
        time.sleep(2)
        before = _peak_rss_mb(p)
        offset.write_text("+21d\n")
        p.wait_event("scrub_finished", timeout=30)
        photo = setup.inbox / "a.jpg"
        shutil.copy2(sorted(samples.iterdir())[0], photo)
        p.wait_event("asset_ingested", timeout=20)
        time.sleep(6)  # (a second scrub, were the missed days run one by one)
        assert 1 == len(p.events("scrub_finished"))
        grew = _peak_rss_mb(p) - before
        assert grew < 60, f"the daemon's memory grew by {grew:.0f} MB"
    finally:
        p.stop(signal.SIGKILL)


def test_a_scrub_missed_while_photod_was_stopped_runs_soon_after_it_starts(
    setup: Setup,
) -> None:
    """The last scrub ran 30 hours ago and photod was stopped across the nightly 03:30
    since: it runs a minute after `photod run` starts, not a day late (a run was only
    called missed after one and a half days, and a weekly drill after ten and a half:
    stopped from Saturday to Monday, a drill came a week late)."""
    offset = setup.home / "faketime.rc"
    offset.write_text("-30h\n")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     extra='\n[schedule]\nscrub = "30 3 * * *"\n')  # fmt: skip
    env = dict(p.env)
    _faked(p, offset)
    r = p.cli("verify")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert 1 == len(p.events("scrub_finished"))
    p.env = env  # the clock right again
    p.start()
    try:
        p.wait_event("scrub_finished", count=2, timeout=90)
    finally:
        assert 0 == p.stop()


def test_one_targets_verify_or_drill_is_not_taken_for_the_scheduled_run(
    setup: Setup, samples: Path
) -> None:
    """`photod verify --target lib` and `photod drill --target lib` check one target:
    `photod status` still says when the whole scrub last ran, and neither is taken for
    the scheduled run (which then skipped its catch-up: the other targets and the
    watch folders went unread while status said the scrub had just run)."""
    import sqlite3

    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")},
                      {"name": "usb", "path": str(setup.home / "usb")}])  # fmt: skip
    shutil.copy2(sorted(samples.iterdir())[0], setup.inbox / "a.jpg")
    p.start()
    p.wait_protected(1)
    assert 0 == p.stop()

    def last(job: str) -> str:
        with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:
            [(at,)] = db.execute("SELECT at FROM runs WHERE job=?", (job,)).fetchall()
        return str(at)

    for command in ("verify", "drill"):
        assert 0 == p.cli(command).returncode
    whole = {"scrub": last("scrub"), "drill": last("drill")}
    assert whole["scrub"] == p.status()["last_scrub"]
    time.sleep(1.1)
    for command in ("verify", "drill"):
        r = p.cli(command, "--target", "lib")
        assert 0 == r.returncode, r.stdout + r.stderr
    assert whole == {"scrub": last("scrub"), "drill": last("drill")}
    assert whole["scrub"] == p.status()["last_scrub"]


def test_status_shows_the_last_drill_even_after_the_clock_was_set_back(
    setup: Setup, samples: Path
) -> None:
    """A drill passed while the clock ran a year ahead; the clock is put right and the
    next drill FAILS (a copy rotted): `photod status` shows that failure, not the
    earlier pass (the latest drill was picked by its time, and the pass dated a year
    ahead hid every failure for a year)."""
    p, _, ext, originals = backed_up_twice(setup, samples, "\n[schedule]\ndrill_sample = 100\n")
    offset = setup.home / "faketime.rc"
    offset.write_text("+365d\n")
    env = dict(p.env)
    _faked(p, offset)
    r = p.cli("drill", "--target", "ext")
    assert 0 == r.returncode and "ext: drill passed" in r.stdout, r.stdout + r.stderr
    p.env = env  # the clock put right
    (ext / sorted(originals)[0]).write_bytes(b"rotten")
    r = p.cli("drill", "--target", "ext")
    assert 1 == r.returncode and "ext: drill FAILED" in r.stdout, r.stdout + r.stderr
    drills = {t["name"]: t["last_drill"] for t in p.status()["targets"]}
    assert not drills["ext"]["passed"], drills
    assert "FAILED" in p.cli("status").stdout


def test_a_scrub_due_during_a_pause_runs_when_the_pause_ends(setup: Setup) -> None:
    """A scheduled scrub falls due while photod is paused: it waits (`job_deferred`),
    and runs as soon as `photod resume` ends the pause, not at its next time (it was
    dropped without a word: a nightly scrub lost to an evening's pause, a weekly drill
    put off a week)."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     extra='\n[schedule]\nscrub = "* * * * *"\n')  # fmt: skip
    p.start()
    try:
        assert 0 == p.cli("pause").returncode
        time.sleep(61 - time.time() % 60 + 2)  # past the next minute's run
        assert [] == p.events("scrub_started")
        assert 0 == p.cli("resume").returncode
        p.wait_event("scrub_finished", timeout=15)
        assert p.events("job_deferred")[0]["job"] == "scrub"
    finally:
        assert 0 == p.stop()


def test_copies_re_read_while_the_clock_ran_ahead_are_not_left_unread_for_a_year(
    setup: Setup, samples: Path
) -> None:
    """Every copy was re-read while the clock ran a year ahead; the clock is put right
    and a new photo comes in.  The next scrub re-reads a copy whose last re-read is
    dated ahead of the clock (when it really was is not known), not the new photo's
    just proved (the oldest-first order put the ones dated a year ahead last: unread
    for a year, far past `scrub_cycle`, while status said they had been read)."""
    p, _, _, originals = backed_up_twice(setup, samples, '\n[schedule]\nscrub_budget = "1KiB"\n')
    offset = setup.home / "faketime.rc"
    offset.write_text("+365d\n")
    env = dict(p.env)
    _faked(p, offset)
    assert 0 == p.cli("verify", "--all").returncode
    p.env = env  # the clock put right
    new = sorted(samples.iterdir())[0].read_bytes() + b"\0"
    (setup.inbox / "new.jpg").write_bytes(new)
    assert 0 == p.cli("run", "--once").returncode
    import hashlib

    fresh = hashlib.sha256(new).hexdigest()
    before = len(p.events("replica_checked"))
    r = p.cli("verify")
    assert 0 == r.returncode, r.stdout + r.stderr
    read = {e["asset"] for e in p.events("replica_checked")[before:]}
    assert read and fresh not in read, read
    assert read <= set(originals.values())


def test_a_start_in_the_hour_the_clocks_go_back_does_not_run_the_nightly_scrub_again(
    setup: Setup,
) -> None:
    """The night summer time ends in Berlin (2026-10-25: 03:00 CEST becomes 02:00 CET),
    photod starts at 02:15 the second time round, an hour after the 02:30 scrub ran: it
    plans the scrub for 02:30 tomorrow.  (The first 02:30 of the night, an hour past,
    was taken for its next time, and the scrub ran at once, a second time that night:
    at a start, a reload or a computer switched on then.)"""
    from datetime import UTC, datetime

    p, offset = _on_a_faked_clock(setup, "30 2 * * *")
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, after 02:15 CEST
    offset.write_text(f"{second_pass.timestamp() - time.time():+.0f}\n")
    p.env["TZ"] = "Europe/Berlin"
    p.start()
    try:
        time.sleep(8)
        assert [] == p.events("scrub_started")
        r = p.cli("status")
        assert "next scrub 2026-10-26 02:30" in r.stdout, r.stdout
    finally:
        p.stop(signal.SIGKILL)


def test_a_copy_that_failed_while_the_clock_ran_a_year_ahead_is_retried_once_it_is_right(
    setup: Setup,
) -> None:
    """The computer's clock ran a year ahead when a copy to the drive failed (the drive
    full); the clock is put right and there is room again: the copy is made at once,
    as its retry time (a second later on the clock then) has passed.  (It waited for
    that time on the clock put right: a year with no copy on the drive.)"""
    make_photos(setup.inbox, 1)
    lib, t7 = setup.home / "lib", setup.home / "T7"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)},
         {"name": "t7", "path": str(t7), "media": "external", "reserve": "1000TB"}],
        policy={"copies": 1, "media": 1, "offsite": 0},
    )  # fmt: skip
    offset = setup.home / "faketime.rc"
    offset.write_text("+365d\n")
    env = dict(p.env)
    _faked(p, offset)
    p.start()
    try:
        p.wait_event("replica_written", target="lib")
        t7.mkdir()  # (plugged in now: no room for the copy under its reserve)
        p.wait_event("replica_failed", target="t7")
    finally:
        p.stop(signal.SIGKILL)
    p.env = env  # the clock put right
    p.config.write_text(p.config.read_text().replace('"1000TB"', '"1MB"'))  # room made
    p.start()
    try:
        p.wait_event("replica_written", target="t7", timeout=20)
    finally:
        assert 0 == p.stop()
