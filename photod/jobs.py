"""APScheduler wiring: photod's periodic jobs, and the cron trigger they fire on."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import get_localzone, reload_localzone

from photod import clock, schedules
from photod.activity import Activity, Failing
from photod.errors import StateDirFull, Stopping, kind_of
from photod.logs import log

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from photod.config import Config
    from photod.pipeline import Pipeline

SETTLE_TICK = 0.25  # seconds between looks at files that are still being written
TARGET_PROBE = 5.0  # seconds between checks that a drive came or went
REWATCH = 5.0  # seconds between looks at whether a watch folder was made again or mounted over
REMIND = 15.0  # seconds between looks for reminders (each kind is sent at most `every`)
LOOK = 5.0  # seconds at most between two looks of the scheduler at its jobs and the clock
STEP = 2.0  # seconds the wall clock may move against the boot clock before it was set
REPLAN = timedelta(hours=3)  # a clock set back less: the cron lines' times stand (cron's rule)


class CronLine(BaseTrigger):  # type: ignore[misc]
    """A crontab line in the computer's local time, as ``schedules`` reads it: APScheduler
    runs the job, and when is the standard cron answer (APScheduler's own
    ``from_crontab`` takes 0 as Monday, and ANDs a day of month with a day of week)."""

    def __init__(self, line: str) -> None:
        self.line = schedules.check(line)
        self.zone = get_localzone()

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = previous_fire_time or now - timedelta(microseconds=1)  # now itself may fire
        after = schedules.next_after(self.line, start.astimezone(self.zone))
        while previous_fire_time is None and after < now:
            # In the hour the clocks go back, a time of day the line had in the first
            # pass of that hour is its answer from the second: an hour ago, run at once
            # (a daily 02:30 scrub ran again at a start or reload at 02:15 the second
            # time).  It ran then, or the computer was off: the next one after that.
            after = schedules.next_after(self.line, after)
        if previous_fire_time is not None and after <= now:
            # Runs missed while the computer slept or the clock was set forward: the
            # one due now stands for them all (APScheduler would list every one first:
            # a year of a minutely line), the next is the first after now.
            after = schedules.next_after(self.line, now.astimezone(self.zone))
        return after

    def __str__(self) -> str:
        return f"cron[{self.line}]"


class Every(IntervalTrigger):  # type: ignore[misc]
    """APScheduler's interval trigger, except after a suspend of days or a clock set
    forward: APScheduler lists every run missed meanwhile before it runs the job once (a
    job every 0.25 s, a week asleep: 2.4 million times in a list, and gigabytes for a
    clock set a year ahead, the daemon stuck building it).  The next run is the first
    after now instead."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        after: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if previous_fire_time is not None and after is not None and after <= now:
            return now + timedelta(seconds=self.interval_length)
        return after


def _rewound(job: Any, back: timedelta, now: datetime) -> datetime | None:
    """A job's next run once the wall clock was set back by ``back``: a cron line's next
    time on the clock as it is now (not a year away, the time on the old clock), or
    when it was set back less than ``REPLAN`` its time as planned (as cron does: a
    time of the line that passed on the old clock has run, and is not run again); a
    catch-up, a wake-up or an interval's run as far away as it was before."""
    due: datetime | None = job.next_run_time
    if due is None:
        return None
    trigger = job.trigger
    if isinstance(trigger, CronLine) and trigger.get_next_fire_time(None, due) == due:
        return due if back < REPLAN else trigger.get_next_fire_time(None, now)
    return max(now, due - back)


def _offset() -> float | None:
    """The wall clock less the boot clock (it changes only when the clock is set); None
    when the thread stalled between the readings (another thread holding the
    interpreter, a suspend just then): a stall of 3 s read as a clock set back 3 s."""
    before = clock.SYSTEM.boottime()
    wall = clock.SYSTEM.time()
    after = clock.SYSTEM.boottime()
    return None if after - before > STEP / 4 else wall - (before + after) / 2


def _zone() -> tuple[object, ...]:
    """This computer's time zone as the C library has it now, read again (``tzset``:
    ``TZ``, else /etc/localtime): a laptop's automatic time zone changes it under a
    running daemon, which read it once (at the first local time it gave)."""
    time.tzset()
    return time.tzname, time.timezone, time.altzone


def _missed(
    last: tuple[str, object] | None, line: str, now: datetime, zone: Any = None
) -> datetime | None:
    """When a run was missed while photod was not running at all (the computer was
    off), run it a minute after start; else None: the cron line decides.  (A run due
    while the computer slept is run on waking by the scheduler itself.)  Missed: the
    line had a time between the last run and now (photod stopped across last night's
    03:30, or across Sunday's drill, is not "one and a half intervals" away yet).
    ``zone``: the line's (the computer's by default)."""
    if last is None:
        return None  # never ran: this is a new installation, nothing to catch up on
    then = datetime.fromisoformat(last[0].replace("Z", "+00:00"))
    if schedules.next_after(line, then.astimezone(zone or get_localzone())) <= now:
        return now + timedelta(seconds=60)
    return None


def _guarded(
    job: Callable[[], None],
    paused: Callable[[], bool] = lambda: False,
    activity: Activity | None = None,
    full: Callable[[StateDirFull], None] = lambda exc: None,
    failing: Failing | None = None,
) -> Callable[[], None]:
    """A job boundary: a failure becomes one event and the daemon goes on; the job
    simply runs again at its next time.  A heavy job does not start while ``paused``;
    while it runs its name is in ``activity.running``.  A full state dir is not a
    failure of the job: ``full`` says it once, and the work waits for room.  With
    ``failing`` (a scheduled job), the same failure at every run is said once, and its
    end (``job_recovered``)."""
    name = job.__name__

    @functools.wraps(job)
    def run() -> None:
        if paused():
            return
        if activity is not None:
            activity.begin(name)
        try:
            while True:
                try:
                    job()
                except Stopping:
                    pass
                except StateDirFull as exc:
                    full(exc)
                except Exception as exc:
                    if failing is None or failing.failed(name, kind_of(exc), str(exc)):
                        log.exception("job_failed", job=name, error=str(exc))
                else:
                    if failing is not None and (runs := failing.ran(name)):
                        log.info("job_recovered", job=name, failed_runs=runs)
                if activity is None or not activity.rerun(name) or paused():
                    return
        finally:
            if activity is not None:
                activity.end(name)

    return run


def scheduler() -> BackgroundScheduler:
    """The daemon's scheduler, not started yet: the pipeline is built with its
    ``waker`` before ``start`` gives it the jobs."""
    # Loaded here: `photod status` and the config check need the cron lines, not this.
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import STATE_STOPPED

    class Scheduler(BackgroundScheduler):  # type: ignore[misc]
        """APScheduler 3.11's ``shutdown`` marks the scheduler stopped before it takes
        its lock. A one-off job (``run_now``) handed to its executor just then is
        dropped where a stopped scheduler keeps jobs, is not found there, and the
        scheduler's thread died of ``JobLookupError`` (a trace in the journal at a
        stop). Once stopped, a job that is not found is gone: nothing to drop."""

        def remove_job(self, job_id: str, jobstore: str | None = None) -> None:
            try:
                super().remove_job(job_id, jobstore)
            except JobLookupError:
                if self.state != STATE_STOPPED:
                    raise

        # APScheduler waits for the next job's time on the wall clock: one set back a
        # year (NTP correcting a clock that ran ahead) left every job a year away, the
        # scrub and the drill too, and it never looked again.  It looks every LOOK
        # seconds now, and a wall clock that moved back against the boot clock (which a
        # setting of the clock does not move) moves the jobs back with it.  Set forward
        # again (within REPLAN of where it was: a clock set back by mistake, then right)
        # before the time a scrub or drill had before, that time is its next again: the
        # time planned on the clock set back had passed, and it ran at once, as if
        # missed.  (A step of seconds forward later is not the clock set right again.)
        offset: float | None = None
        planned: dict[str, tuple[datetime, datetime]] | None = None  # id: (before, moved)
        zone: tuple[object, ...] | None = None  # (``_zone``, at the last look)
        before = 0.0  # the offset before the clock was set back (when planned)

        def _move(self, job: Any, due: datetime) -> bool:
            """False when a stop began: the jobs are gone, nothing to move."""
            try:
                job.modify(next_run_time=due)
            except JobLookupError:
                if self.state != STATE_STOPPED:
                    raise
                return False
            return True

        def _set_back(self, old: float, offset: float) -> None:
            now, planned = datetime.now(UTC), self.planned or {}
            back = timedelta(seconds=old - offset)
            self.before = self.before if planned else old
            for job in self.get_jobs():
                due = _rewound(job, back, now)
                if due is None or due == job.next_run_time:
                    continue
                if isinstance(job.trigger, CronLine):
                    was = planned.get(job.id)  # (set back twice: the time before both)
                    first = was[0] if was and was[1] == job.next_run_time else job.next_run_time
                    planned[job.id] = (first, due)
                if not self._move(job, due):
                    return
            self.planned = planned
            # (a step of seconds moves no scrub or drill: news, not a failure to look at)
            said = log.warning if back >= REPLAN else log.info
            said("clock_set_back", seconds=round(back.total_seconds()))

        def _set_forward(self, offset: float) -> None:
            if offset < self.before - REPLAN.total_seconds():
                return  # a step forward, not the clock set right again
            now, planned, self.planned = datetime.now(UTC), self.planned or {}, None
            for job in self.get_jobs():
                was = planned.get(job.id)
                still = was is not None and was[1] == job.next_run_time and now < was[0]
                if was is not None and still and not self._move(job, was[0]):
                    return

        def _rezone(self) -> None:
            """The time zone changed (a laptop flown to another): each cron line's
            next time is its time of day in the new zone, not in the old one (a 03:30
            scrub at home ran at 18:30 in California, until a restart)."""
            try:
                local = reload_localzone()
            except Exception as exc:  # (a zone tzlocal cannot name: the lines keep theirs)
                log.warning("time_zone_unknown", error=str(exc))
                return
            now = datetime.now(UTC)
            for job in self.get_jobs():
                trigger, due = job.trigger, job.next_run_time
                if not isinstance(trigger, CronLine) or trigger.zone == local:
                    continue
                planned = due is not None and trigger.get_next_fire_time(None, due) == due
                trigger.zone = local  # (a catch-up, a wake-up: kept as it is)
                due = trigger.get_next_fire_time(None, now)
                if planned and due is not None and not self._move(job, due):
                    return
            log.info("time_zone_changed", zone=str(local))

        def _process_jobs(self) -> float:
            zone = _zone()
            if self.zone is not None and zone != self.zone:
                self._rezone()
            self.zone = zone
            offset = _offset()
            if offset is None or self.offset is None:
                pass  # (a stall between the readings: the next look reads them again)
            elif offset < self.offset - STEP:
                self._set_back(self.offset, offset)
            elif offset > self.offset + STEP and self.planned:
                self._set_forward(offset)
            self.offset = self.offset if offset is None else offset
            wait = super()._process_jobs()
            return LOOK if wait is None else min(wait, LOOK)

    return Scheduler(
        timezone=UTC,
        # A laptop that slept through a run does it when it wakes, once.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )


class Waker:
    """Runs a job now (``Pipeline``'s ``wake``).  A job that is running runs once more
    when it ends; before ``start`` a wake-up is a no-op (every job runs at once when the
    scheduler starts); once ``close``d, nothing.

    It is closed before the scheduler stops because APScheduler's ``shutdown(wait=True)``
    holds its job-store lock while it waits for the running jobs: a running job that then
    woke another through ``get_job`` would wait for that lock forever, and the daemon with
    it (seen as a ``photod run`` that never exits after ``daemon_stopping``).  APScheduler
    once split those locks for this reason (agronholm/apscheduler#268); 3.11 takes both
    again."""

    def __init__(self, scheduler: BackgroundScheduler, busy: Activity) -> None:
        self._scheduler, self._busy = scheduler, busy
        self._lock = threading.Lock()  # a wake-up in progress ends before ``close`` returns
        self._open = True

    def __call__(self, job_id: str) -> None:
        with self._lock:
            if not self._open:
                return
            job = self._scheduler.get_job(job_id)
            if job is not None and not self._busy.wake_running(job.func.__name__):
                job.modify(next_run_time=datetime.now(UTC))
                self._scheduler.wakeup()

    def close(self) -> None:
        with self._lock:
            self._open = False


def _every(seconds: float) -> Every:
    return Every(seconds=seconds, timezone=UTC)


def start(scheduler: BackgroundScheduler, pipeline: Pipeline, cfg: Config) -> None:
    """Give the scheduler photod's periodic jobs and start it; a reconcile scan runs at
    once."""
    now = datetime.now(UTC)
    full = pipeline.note_full
    guard = functools.partial(_guarded, failing=pipeline.failing)  # (each said once)
    scheduler.add_job(guard(pipeline.settle_tick, full=full), _every(SETTLE_TICK), id="settle")
    scheduler.add_job(guard(pipeline.probe_targets, full=full), _every(TARGET_PROBE), id="probe")
    scheduler.add_job(guard(pipeline.intake.rewatch), _every(REWATCH), id="rewatch")
    busy = pipeline.activity
    scheduler.add_job(
        guard(pipeline.retry_local, pipeline.paused, busy, full),
        _every(cfg.daemon.retry_interval),
        id="retry",
        next_run_time=now,
    )
    scheduler.add_job(
        guard(pipeline.upload_pending, pipeline.paused, busy, full),
        _every(cfg.daemon.retry_interval),
        id="upload",
        next_run_time=now,
    )
    scheduler.add_job(
        guard(pipeline.reconcile, pipeline.paused, busy, full),
        _every(cfg.daemon.rescan_interval),
        id="reconcile",
        next_run_time=now,
    )

    scheduler.add_job(guard(pipeline.remind, full=full), _every(REMIND), id="remind")

    def scrub() -> None:  # (the job's name: what `photod status` calls it)
        prove(pipeline, None, False)

    for job, line in (("scrub", cfg.schedule.scrub), ("drill", cfg.schedule.drill)):
        missed = _missed(pipeline.catalog.last_run(job), line, now)
        # (next_run_time=None would add the job paused: pass it only when set.)
        # A scrub or a drill also waits for mains power where the config says so.
        waits = functools.partial(pipeline.heavy_waits, job)
        scheduler.add_job(
            guard(scrub if job == "scrub" else pipeline.drill, waits, busy, full),
            CronLine(line),
            id=job,
            **({"next_run_time": missed} if missed else {}),
        )

    # A target away at a scrub is scrubbed when it comes (woken by the probe); hourly
    # too, and at the start, for one owed before a restart.
    def scrub_owed() -> None:
        pay_owed_scrubs(pipeline)

    scheduler.add_job(guard(scrub_owed, activity=busy, full=full), _every(3600.0),
                      id="scrub_owed", next_run_time=now)  # fmt: skip
    scheduler.start()


def prove(pipeline: Pipeline, only: str | None, everything: bool) -> None:
    """A scrub (of every target, or ``only`` one).  One that found a target away owes
    it a scrub (in the catalog: a restart keeps it), paid when it comes."""
    report = pipeline.scrubber.run(only, everything)
    for name, done in report.targets.items():
        if done.skipped:
            pipeline.catalog.set_meta(f"scrub_owed:{name}", "1")
        else:
            pipeline.catalog.delete_meta(f"scrub_owed:{name}")


def pay_owed_scrubs(pipeline: Pipeline) -> None:
    """Scrub each target a scrub found away, once it is here (a drive plugged in only
    between scrubs was never re-read); a pause or the battery defer it."""
    owed = [n for n in pipeline.fleet.available() if pipeline.catalog.meta(f"scrub_owed:{n}")]
    if not owed or pipeline.heavy_waits("scrub_owed"):
        return
    for name in owed:
        if not pipeline.stop_event.is_set():
            log.info("scrub_owed", target=name, detail="away at the last scrub")
            prove(pipeline, name, False)


def run_now(
    scheduler: BackgroundScheduler,
    job_id: str,
    func: Callable[[], object],
    activity: Activity | None = None,
) -> bool:
    """Run a one-off job at once (a repeated request while it waits runs it once).
    False when the scheduler stopped meanwhile (a reload or a stop began): the job will
    not run, and the request must say so."""

    def job() -> None:
        func()

    job.__name__ = job_id
    scheduler.add_job(_guarded(job, activity=activity), "date", id=job_id, replace_existing=True)
    # (add_job waits while a shutdown holds the scheduler's lock, then files the job
    # where a stopped scheduler never looks.)
    return bool(scheduler.running)


STOPPING = "the daemon is stopping or reloading: nothing was started; ask again in a moment"


def verify_now(pipeline: Pipeline, scheduler: Any, target: str | None, everything: bool
                ) -> dict[str, Any]:  # fmt: skip
    """`photod verify` with the daemon running: the daemon verifies, in the background."""
    if target is not None and target not in pipeline.targets:
        return {"ok": False, "message": f"no target named {target!r}"}

    def verify() -> None:
        prove(pipeline, target, everything)

    if not run_now(scheduler, "verify-now", verify, pipeline.activity):
        return {"ok": False, "message": STOPPING}
    return {"ok": True, "message": "the daemon is verifying now; "
            "`photod logs --since 10m` shows what it finds"}  # fmt: skip


def drill_now(pipeline: Pipeline, scheduler: Any, only: object) -> dict[str, Any]:
    """`photod drill` while the daemon runs: the scheduled drill, now (one target or all)."""
    state = pipeline.targets.get(only) if isinstance(only, str) else None
    if only is not None and state is None:
        return {"ok": False, "message": f"no target named {only!r}; configured: "
                + ", ".join(pipeline.targets)}  # fmt: skip
    if state is not None and not state.available:
        return {"ok": False, "message": f"target {only!r} is unavailable: {state.reason}"}
    pick = {n: s for n, s in pipeline.targets.items() if s.available and only in (None, n)}
    if not pick:
        return {"ok": False, "message": "nothing to drill: no target is available now"}
    sample, scratch = pipeline.cfg.schedule.drill_sample, pipeline.cfg.state_dir

    def drill_picked() -> None:
        from photod.drill import drill  # (asked for: not among what a start loads)
        from photod.restore import open_targets

        targets = open_targets(pipeline.catalog, pick)
        drill(pipeline.catalog, targets, sample, pipeline.stop_event, scratch, only is None)

    if not run_now(scheduler, "drill-now", drill_picked, pipeline.activity):
        return {"ok": False, "message": STOPPING}
    away = [f"{n}: not drilled: {s.reason or 'unavailable'}" for n, s in pipeline.targets.items()
            if not s.available and only is None]  # fmt: skip
    said = ("the daemon is running the drill now; `photod logs --since 10m` says whether "
            "it passed, `photod status` keeps each target's last")  # fmt: skip
    return {"ok": not away, "message": "\n".join([said, *away])}


def schedule(scheduler: BackgroundScheduler) -> dict[str, str | None]:
    """Each job's next run (ISO UTC; None while it is paused or running once)."""
    return {
        job.id: job.next_run_time.astimezone(UTC).isoformat() if job.next_run_time else None
        for job in scheduler.get_jobs()
    }


def stop(scheduler: BackgroundScheduler, waker: Waker) -> None:
    """Wait for running jobs; they check the pipeline's stop event between files.  No
    wake-up reaches the scheduler from here on (see ``Waker``)."""
    waker.close()
    if scheduler.running:  # (not when the daemon failed before it started it)
        scheduler.shutdown(wait=True)
