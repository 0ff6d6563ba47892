"""The 3-2-1 rule, as pure functions: no I/O, no clock."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import TypeVar

from photod.models import Compliance, PolicyRule, TargetInfo

T = TypeVar("T")


def evaluate(
    rule: PolicyRule, verified_on: Iterable[str], targets: Mapping[str, TargetInfo]
) -> Compliance:
    """Judge one asset from the names of the targets that hold a verified replica of it.

    Replicas on targets that are no longer configured do not count: photod cannot vouch
    for a place it no longer watches.
    """
    held = [targets[name] for name in set(verified_on) if name in targets]
    copies = len(held)
    media = len({t.media for t in held})
    offsite = sum(1 for t in held if t.offsite)
    missing: list[str] = []
    if copies < rule.copies:
        missing.append(plural(rule.copies - copies, "more copy", "more copies"))
    if media < rule.media:
        missing.append(f"{plural(rule.media - media, 'more kind')} of media")
    if offsite < rule.offsite:
        missing.append(f"{rule.offsite - offsite} more offsite")
    return Compliance(copies=copies, media=media, offsite=offsite, missing=tuple(missing))


def counted(
    infos: Mapping[str, TargetInfo],
    last_seen: Mapping[str, float],
    cycle: float,
    here: Iterable[str] = (),
    now: float | None = None,
) -> dict[str, TargetInfo]:
    """The targets whose copies count now: those seen within ``cycle`` seconds of the
    last time photod saw any target (the scrub cycle: every copy is proven within one,
    and one on a target away for longer cannot have been), and those reachable now
    (``here``).  A drive in a drawer for months, a NAS that died, a cloud account
    closed: their copies stop counting, so that a photo is never called safe on copies
    nobody has seen.  Measured from the last target seen, not from the clock: weeks
    with the computer off or asleep, or a clock set forward, take no target away.  A
    target never seen has no copies.  A sighting later than ``now`` (the clock set back
    since: a computer without a battery for its clock, a reset) says nothing of how
    long that target has been away: it counts only while reachable (else, the newest,
    the one target away would count for as long as the clock stays behind).  It still
    measures the others: the clock went back, time did not."""
    reachable = set(here)
    ahead = (time.time() if now is None else now) + CLOCK_SLACK
    latest = max(last_seen.values(), default=0.0)
    return {
        name: info
        for name, info in infos.items()
        if name in reachable
        or name not in last_seen
        or (last_seen[name] <= ahead and latest - last_seen[name] <= cycle)
    }


CLOCK_SLACK = 3600.0  # seconds a sighting may be ahead of the clock (a clock set right)


def achievable(rule: PolicyRule, targets: Iterable[TargetInfo]) -> list[str]:
    """Say why the rule can never hold with these targets (empty when it can)."""
    all_targets = list(targets)
    problems = []
    if len(all_targets) < rule.copies:
        problems.append(
            f"copies = {rule.copies} needs at least {plural(rule.copies, 'target')}, "
            f"{len(all_targets)} configured"
        )
    kinds = {t.media for t in all_targets}
    if len(kinds) < rule.media:
        problems.append(
            f"media = {rule.media} needs targets on {plural(rule.media, 'kind')} of media, "
            f"configured: {', '.join(sorted(kinds)) or 'none'}"
        )
    offsite = sum(1 for t in all_targets if t.offsite)
    if offsite < rule.offsite:
        problems.append(
            f"offsite = {rule.offsite} needs {plural(rule.offsite, 'target')} with "
            f"offsite = true, {offsite} configured"
        )
    return problems


def describe(copies: int, media: int, offsite: int) -> str:
    """A rule as a person reads it: '3 copies, 2 kinds of media, 1 offsite'."""
    return (
        f"{plural(copies, 'copy', 'copies')}, {plural(media, 'kind')} of media, {offsite} offsite"
    )


# -- wording: counts and sizes as a person reads them -----------------------------------
# Here, in the pure core, so that every command and message words them the same way.


def plural(count: int, one: str, many: str = "") -> str:
    """'1 copy', '2 copies', '0 targets': the count and the word that agrees with it."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def size(count: int) -> str:
    """Bytes as a person reads them: '512 bytes', '1.2 kB', '3.4 MB', '2.0 GB' (SI units,
    as disks and `df -H` count them); never '0.0 MB' for a small file."""
    if count < 1000:
        return plural(count, "byte")
    value = count / 1000
    for unit in ("kB", "MB", "GB", "TB"):
        if value < 999.95:  # else it would round up to '1000.0'
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def scrub_share(total_bytes: int, cycle: float, interval: float) -> int:
    """Bytes one scrub run has to re-read so that runs every ``interval`` seconds
    re-read ``total_bytes`` within ``cycle`` seconds."""
    runs = max(1, math.floor(cycle / interval))
    return math.ceil(total_bytes / runs)


def scrub_pick(oldest_first: Iterable[tuple[T, int]], share: int, budget: int | None) -> list[T]:
    """Choose what one scrub run re-reads: replicas in order of their last full read,
    oldest first, until ``share`` bytes are chosen, never more than ``budget`` bytes
    (the first one is always taken, so a file larger than the budget is still read).

    Reading at least the share each run, oldest first, reads every replica once in any
    ``cycle / interval`` consecutive runs: the budget must allow the share plus one
    file (tests/test_policy.py proves it for random libraries).
    """
    picked: list[T] = []
    taken = 0
    for name, size in oldest_first:
        if taken >= share:
            break
        if picked and budget is not None and taken + size > budget:
            break
        picked.append(name)
        taken += size
    return picked


def full_pass_seconds(total_bytes: int, per_run: int | None, interval: float) -> float | None:
    """How long re-reading a whole target takes at ``per_run`` bytes a run (None: no
    byte limit, a run reads what it needs)."""
    if per_run is None or total_bytes == 0:
        return None
    return math.ceil(total_bytes / max(1, per_run)) * interval
