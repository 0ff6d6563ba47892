"""Cron lines: what a schedule key means, checked and measured without the scheduler.

photod has one cron semantics, the standard one (cronsim: 0 and 7 are Sunday; when both
the day of month and the day of week are restricted, either one matching is enough).
The config check, `photod status` and the scheduler's trigger (jobs.CronLine) all ask
this module, so a line means the same everywhere, and a command that only reads never
loads the scheduler.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["check", "interval", "next_after"]


ALLOWED = (
    "five fields 'minute hour day month weekday', e.g. '30 3 * * *' (03:30 daily) or '0 4 * * sun'"
)
# What each field takes, by cronsim's name for it (its errors say "Bad minute").
FIELDS = {
    "second": "the seconds field (a sixth, first) is wrong: it takes 0-59",
    "minute": "the minute field is wrong: it takes 0-59",
    "hour": "the hour field is wrong: it takes 0-23",
    "day-of-month": "the day field is wrong: it takes 1-31, a day some month has",
    "month": "the month field is wrong: it takes 1-12 or jan-dec",
    "day-of-week": "the weekday field is wrong: it takes 0-7 or sun-sat, Sunday being 0 or 7",
}


def check(line: object) -> str:
    """The line itself when it is a valid five-field cron line; else ValueError saying,
    in photod's words ("is '…'; allowed: …"), which field is wrong and what is allowed."""
    if not isinstance(line, str):
        raise ValueError(f"is {line!r}; allowed: a cron line like '30 3 * * *'")
    from cronsim import CronSim, CronSimError

    try:
        CronSim(line, datetime(2000, 1, 1))
    except (CronSimError, ValueError) as exc:
        field = FIELDS.get(str(exc).removeprefix("Bad "))
        raise ValueError(
            f"is {line!r}{f' ({field})' if field else ''}; allowed: {ALLOWED}"
        ) from None
    return line


def next_after(line: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` the line fires (in ``after``'s zone)."""
    from cronsim import CronSim  # a quarter of `photod status` when imported: see interval

    return next(CronSim(line, after))


def interval(line: str) -> float:
    """Seconds between two runs of a cron line (the scrub spreads its cycle over them):
    the gap after the next run, measured from now."""
    steady = _steady(line)
    if steady is not None:  # `photod status` asks this each run: no cron library for it
        return steady
    first = next_after(line, datetime.now(UTC).replace(tzinfo=None))
    second = next_after(line, first)
    return float((second - first).total_seconds())


def _steady(line: str) -> float | None:
    """The gap of a line that fires at one minute of every hour ('15 * * * *') or of
    every day ('30 3 * * *'), the usual ones: 3,600 or 86,400 s whenever it is asked
    (the times are UTC's, which has no summer time).  None for any other line."""
    fields = line.split()
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        return None
    minute, hour = fields[:2]
    if not (minute.isascii() and minute.isdigit() and int(minute) < 60):
        return None
    if hour == "*":
        return 3600.0
    return 86400.0 if hour.isascii() and hour.isdigit() and int(hour) < 24 else None
