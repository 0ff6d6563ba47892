"""The reminders no single event triggers: a target away longer than its
``expect_every``, and photos short of the policy for longer than ``[notify] grace``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from photod import policy
from photod.catalog import Catalog
from photod.clock import SYSTEM, Clock
from photod.config import Config
from photod.fleet import TargetState

if TYPE_CHECKING:
    from photod.notify import Notifier

POLICY_LOOK_MAX = 600.0  # seconds between looks for photos short of the policy, at most


class Reminders:
    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        targets: dict[str, TargetState],
        notifier: Notifier,
        clock: Clock = SYSTEM,
    ) -> None:
        """``cfg``: the targets' ``expect_every``, the policy and ``[notify] grace``."""
        self.targets_cfg = cfg.targets
        self.grace = cfg.notify.grace
        self.rule, self.infos = cfg.policy.rule(), cfg.target_infos()
        self.catalog = catalog
        self.targets = targets
        self.notifier = notifier
        self.clock = clock
        self._policy_looked = -POLICY_LOOK_MAX  # when the catalog was last grouped

    def remind(self) -> None:
        from photod.notify import Message  # smtplib and friends: only once there is one

        now = datetime.fromtimestamp(self.clock.time(), UTC)
        for key, title, body in self._targets_away(now):
            self.notifier.send(Message(key, title, body))
        # The policy look groups every asset: a grace of a day needs it every few
        # minutes, not every 15 s (at a million assets that would be an idle load).
        at = self.clock.monotonic()
        if at - self._policy_looked < min(max(self.grace / 4, 0.0), POLICY_LOOK_MAX):
            return
        self._policy_looked = at
        cutoff = (now - timedelta(seconds=self.grace)).isoformat(timespec="seconds")
        short = sum(n for held, n in self.catalog.holdings_before(cutoff.replace("+00:00", "Z"))
                    if not policy.evaluate(self.rule, held, self.infos).compliant)  # fmt: skip
        if short:
            self.notifier.send(Message(
                "policy",
                "photod: photos are not protected",
                f"{short} photo(s) have been short of the 3-2-1 policy for more than "
                f"{_span(self.grace)}; `photod status` says what is missing",
            ))  # fmt: skip

    def _targets_away(self, now: datetime) -> Iterator[tuple[str, str, str]]:
        """(key, title, text) of a reminder for each target away longer than its
        ``expect_every``."""
        for t in self.targets_cfg:
            state = self.targets[t.name]
            if t.expect_every is None or state.available:
                continue
            seen = self.catalog.last_seen(t.name)
            since = (
                datetime.fromisoformat(seen.replace("Z", "+00:00"))
                if seen
                else datetime.fromtimestamp(state.since, UTC)
            )
            away = (now - since).total_seconds()
            if away > t.expect_every:
                kind = {"external": "external drive", "nas": "NAS"}.get(str(t.media), "target")
                yield (f"away:{t.name}", f"photod: {kind} '{t.name}' missing",
                       f"the {kind} '{t.name}' has not been connected for {_span(away)}; "
                       f"{state.reason}")  # fmt: skip


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} seconds"
