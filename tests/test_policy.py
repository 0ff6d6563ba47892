"""The pure rules as tables and properties: the 3-2-1 policy, and how the scrub
spreads its re-reads so every replica is read again within its cycle."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from photod.models import Media, PolicyRule, TargetInfo
from photod.policy import (
    achievable,
    counted,
    describe,
    evaluate,
    full_pass_seconds,
    scrub_pick,
    scrub_share,
    size,
)

TARGETS = {
    "library": TargetInfo("library", Media.INTERNAL, False),
    "backup": TargetInfo("backup", Media.INTERNAL, False),
    "t7": TargetInfo("t7", Media.EXTERNAL, False),
    "nas": TargetInfo("nas", Media.NAS, True),
    "b2": TargetInfo("b2", Media.CLOUD, True),
}
R321 = PolicyRule(3, 2, 1)


@pytest.mark.parametrize(
    ("held", "rule", "missing"),
    [
        (["library", "t7", "b2"], R321, ()),
        (["library", "t7", "nas", "b2"], R321, ()),
        ([], R321, ("3 more copies", "2 more kinds of media", "1 more offsite")),
        (["library"], R321, ("2 more copies", "1 more kind of media", "1 more offsite")),
        (["library", "backup", "t7"], R321, ("1 more offsite",)),
        (["library", "backup", "b2"], R321, ()),
        (["library", "t7"], R321, ("1 more copy", "1 more offsite")),
        (["library", "backup"], PolicyRule(2, 1, 0), ()),
        (["library", "library"], PolicyRule(2, 1, 0), ("1 more copy",)),
        (["gone", "library"], PolicyRule(2, 1, 0), ("1 more copy",)),
        (["nas", "b2"], PolicyRule(2, 2, 2), ()),
        (["b2"], PolicyRule(1, 1, 0), ()),
    ],
)
def test_evaluate(held: list[str], rule: PolicyRule, missing: tuple[str, ...]) -> None:
    """An asset is compliant exactly when copies, media kinds and offsite copies among
    configured targets reach the rule; duplicates and unknown targets do not count."""
    verdict = evaluate(rule, held, TARGETS)
    assert missing == verdict.missing
    assert (missing == ()) == verdict.compliant


@pytest.mark.parametrize(
    ("names", "rule", "problems"),
    [
        (["library", "t7", "b2"], R321, 0),
        (["library"], R321, 3),
        (["library", "backup", "t7"], R321, 1),
        (["library", "backup", "backup"], PolicyRule(3, 2, 0), 1),
        (["library"], PolicyRule(1, 1, 0), 0),
    ],
)
def test_achievable(names: list[str], rule: PolicyRule, problems: int) -> None:
    """A rule the configured targets can never meet is reported, once per reason."""
    assert problems == len(achievable(rule, [TARGETS[n] for n in names]))


def test_a_target_unseen_for_longer_than_the_cycle_holds_no_counted_copy() -> None:
    """Seen within the cycle of the last target seen, reachable now, or never seen (no
    copies yet): counted.  The clock plays no part: weeks with the computer off or
    asleep leave every target's last sighting where it was."""
    names = ("library", "week", "month", "back", "new")
    infos = {n: TargetInfo(n, Media.EXTERNAL, False) for n in names}
    day = 86400.0
    seen = {"library": 100 * day, "week": 93 * day, "month": 69 * day, "back": 0.0}
    kept = counted(infos, seen, 30 * day, here=["back"])
    assert ["back", "library", "new", "week"] == sorted(kept)


def test_a_sighting_ahead_of_the_clock_counts_only_while_the_target_is_here() -> None:
    """The clock set back a year (a computer without a battery for its clock): a drive
    last seen "in a year" and away now does not count (measured from it, it counted
    for as long as the clock stayed behind, and photos were called protected on it);
    plugged in, it does."""
    infos = {n: TargetInfo(n, Media.EXTERNAL, False) for n in ("library", "ext")}
    now, year = 1_800_000_000.0, 365 * 86400.0
    seen = {"library": now, "ext": now + year}
    assert ["library"] == sorted(counted(infos, seen, 30 * 86400.0, ["library"], now))
    assert ["ext", "library"] == sorted(counted(infos, seen, 30 * 86400.0, ["library", "ext"], now))
    seen["ext"] = now + 60  # (a clock set right by a minute: no matter)
    assert ["ext", "library"] == sorted(counted(infos, seen, 30 * 86400.0, ["library"], now))
    # The clock set back ten days: a drive away 35 days by the library's last sighting
    # (written before) still does not count, though by the clock it was 25 days.
    seen = {"library": now + 10 * 86400.0, "ext": now - 25 * 86400.0}
    assert ["library"] == sorted(counted(infos, seen, 30 * 86400.0, ["library"], now))


def test_achievable_says_one_target_not_1_targets() -> None:
    """The reasons agree with their numbers: "needs at least 1 target", "needs 1 target
    with offsite = true", "on 1 kind of media"."""
    assert [
        "copies = 1 needs at least 1 target, 0 configured",
        "media = 1 needs targets on 1 kind of media, configured: none",
        "offsite = 1 needs 1 target with offsite = true, 0 configured",
    ] == achievable(PolicyRule(1, 1, 1), [])
    assert ["copies = 3 needs at least 3 targets, 1 configured"] == achievable(
        PolicyRule(3, 1, 0), [TARGETS["library"]]
    )


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (PolicyRule(1, 1, 0), "1 copy, 1 kind of media, 0 offsite"),
        (PolicyRule(3, 2, 1), "3 copies, 2 kinds of media, 1 offsite"),
    ],
)
def test_a_rule_in_words(rule: PolicyRule, words: str) -> None:
    """A policy reads as a person would say it: never "1 copies, 1 kinds of media"."""
    assert words == describe(rule.copies, rule.media, rule.offsite)


@pytest.mark.parametrize(
    ("count", "words"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (512, "512 bytes"),
        (999, "999 bytes"),
        (1000, "1.0 kB"),
        (1234, "1.2 kB"),
        (999_949, "999.9 kB"),
        (999_950, "1.0 MB"),
        (3_400_000, "3.4 MB"),
        (2 * 10**9, "2.0 GB"),
        (5 * 10**12, "5.0 TB"),
        (7 * 10**15, "7.0 PB"),
    ],
)
def test_sizes_in_words(count: int, words: str) -> None:
    """A size says what it is at any scale: "512 bytes", "1.2 kB", never "0.0 MB"."""
    assert words == size(count)


@pytest.mark.parametrize(
    ("total", "cycle", "interval", "share"),
    [
        (30_000, 30 * 86400, 86400, 1000),  # daily runs, a 30-day cycle
        (30_001, 30 * 86400, 86400, 1001),  # rounded up, never down
        (7_000, 7 * 86400, 3600, 42),  # hourly runs in a week: 168 runs
        (5_000, 3600, 86400, 5_000),  # a cycle shorter than the runs: read it all
        (0, 30 * 86400, 86400, 0),
    ],
)
def test_scrub_share(total: int, cycle: float, interval: float, share: int) -> None:
    """Each run re-reads the library divided by the runs in a cycle, rounded up."""
    assert share == scrub_share(total, cycle, interval)


def test_scrub_pick_takes_oldest_first_within_the_budget() -> None:
    """The run takes replicas in the order given (oldest first) until the share is
    reached, stops before the budget is exceeded, and always takes the first one, so a
    file bigger than the budget is still read some day."""
    items = [("a", 40), ("b", 40), ("c", 40), ("d", 40)]
    assert ["a", "b"] == scrub_pick(items, share=50, budget=None)
    assert ["a", "b"] == scrub_pick(items, share=200, budget=100)
    assert ["a"] == scrub_pick([("a", 500), ("b", 1)], share=10, budget=100)
    assert [] == scrub_pick(items, share=0, budget=100)


def _simulate(sizes: list[int], cycle_runs: int, budget: int, rounds: int) -> int:
    """Run the scrub ``rounds`` times over a library whose replicas were all just
    written; returns the longest time (in runs) any replica went without a full read."""
    last = dict.fromkeys(range(len(sizes)), 0)  # replica -> run of its last full read
    worst = 0
    total = sum(sizes)
    for run in range(1, rounds + 1):
        # oldest first; ties in a stable order, as the catalog's (checked_at, asset)
        order = sorted(last, key=lambda i: (last[i], i))
        share = scrub_share(total, cycle_runs, 1)
        for i in scrub_pick(((i, sizes[i]) for i in order), share, budget):
            worst = max(worst, run - last[i])
            last[i] = run
    return max(worst, *(rounds - r for r in last.values()))


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5_000), min_size=1, max_size=80),
    cycle_runs=st.integers(1, 40),
    extra=st.integers(0, 10_000),
)
def test_every_replica_is_reread_within_its_cycle(
    sizes: list[int], cycle_runs: int, extra: int
) -> None:
    """For any library and any budget of at least the share plus the largest file,
    no replica goes longer than the cycle without a full re-read."""
    budget = scrub_share(sum(sizes), cycle_runs, 1) + max(sizes) + extra
    assert _simulate(sizes, cycle_runs, budget, rounds=3 * cycle_runs) <= cycle_runs


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 1_000), min_size=4, max_size=50), cycle_runs=st.integers(2, 20)
)
def test_a_small_budget_is_reported_behind(sizes: list[int], cycle_runs: int) -> None:
    """When the budget is below the share, a full pass takes longer than the cycle, and
    ``full_pass_seconds`` says so, which `photod status` shows as BEHIND."""
    total = sum(sizes)
    share = scrub_share(total, cycle_runs, 1)
    budget = max(1, share // 3)
    assume(budget < share)
    full_pass = full_pass_seconds(total, budget, 1)
    assert full_pass is not None and full_pass > cycle_runs
