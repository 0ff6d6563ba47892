"""The 3-2-1 policy as a table: which replicas satisfy which rule."""

from __future__ import annotations

import pytest

from photod.models import Media, PolicyRule, TargetInfo
from photod.policy import achievable, evaluate

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
