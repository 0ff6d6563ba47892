"""The 3-2-1 rule, as pure functions: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from photod.models import Compliance, PolicyRule, TargetInfo


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
        missing.append(
            f"{rule.copies - copies} more cop{'y' if rule.copies - copies == 1 else 'ies'}"
        )
    if media < rule.media:
        missing.append(
            f"{rule.media - media} more kind{'' if rule.media - media == 1 else 's'} of media"
        )
    if offsite < rule.offsite:
        missing.append(f"{rule.offsite - offsite} more offsite")
    return Compliance(copies=copies, media=media, offsite=offsite, missing=tuple(missing))


def achievable(rule: PolicyRule, targets: Iterable[TargetInfo]) -> list[str]:
    """Say why the rule can never hold with these targets (empty when it can)."""
    all_targets = list(targets)
    problems = []
    if len(all_targets) < rule.copies:
        problems.append(
            f"copies = {rule.copies} needs at least {rule.copies} targets, "
            f"{len(all_targets)} configured"
        )
    kinds = {t.media for t in all_targets}
    if len(kinds) < rule.media:
        problems.append(
            f"media = {rule.media} needs targets on {rule.media} kinds of media, "
            f"configured: {', '.join(sorted(kinds)) or 'none'}"
        )
    offsite = sum(1 for t in all_targets if t.offsite)
    if offsite < rule.offsite:
        problems.append(
            f"offsite = {rule.offsite} needs {rule.offsite} targets with offsite = true, "
            f"{offsite} configured"
        )
    return problems
