"""The reminders no single event triggers: a target away longer than its
``expect_every``, photos short of the policy for longer than ``[notify] grace``, and no
round finished for ``[notify] stale_after``; and the heartbeat at the end of a round.

A round is one reconcile scan that finished (``Pipeline.reconcile``: at start, then
every ``[daemon] rescan_interval``): photod looked at every watch folder and took what
was new.  It is healthy when nothing is wrong that a person must act on (``problems``),
nor was any step's failure logged since the last ping (``alerts.FAILURES``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from photod import policy
from photod.alerts import Message
from photod.catalog import Catalog
from photod.clock import SYSTEM, Clock
from photod.config import Config
from photod.errors import CatalogDamaged
from photod.fleet import TargetState
from photod.logs import log

if TYPE_CHECKING:
    from photod.notify import Notifier

POLICY_LOOK_MAX = 600.0  # seconds between looks for photos short of the policy, at most
AWAY_EVERY = 86400.0  # seconds between two reminders of one target away, at least


class Reminders:
    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        targets: dict[str, TargetState],
        notifier: Notifier,
        clock: Clock = SYSTEM,
        import_waits: Callable[[], float] = lambda: 0.0,
        failing_jobs: Callable[[], list[str]] = list,
    ) -> None:
        """``cfg``: the targets' ``expect_every``, the policy and ``[notify] grace``;
        ``import_waits``: how long the imports have not moved while files wait;
        ``failing_jobs``: a line for each scheduled job failing at each run."""
        self.targets_cfg = cfg.targets
        self.grace = cfg.notify.grace
        self.rule, self.infos = cfg.policy.rule(), cfg.target_infos()
        self.cycle = cfg.schedule.scrub_cycle  # a target away longer: its copies do not count
        self.catalog = catalog
        self.targets = targets
        self.notifier = notifier
        self.clock = clock
        self.import_waits = import_waits
        self.failing_jobs = failing_jobs
        self._policy_looked = -POLICY_LOOK_MAX  # when the catalog was last grouped
        self.stale_after = cfg.notify.stale_after
        # How long a photo added while this daemon runs has been short of the policy is
        # counted on the boot clock, not from its ``added_at``: by a clock years behind
        # (a dead clock battery) put right by NTP, photos added a minute before were
        # "short for more than a day" at once; by one ahead set back, never told for
        # as long.  (boot clock, the last asset's row) at each look for them:
        try:
            start_row: int | None = catalog.last_asset_row()  # older: by their ``added_at``
        except CatalogDamaged:  # (the start's check of the catalog rebuilds it and goes
            start_row = None  # on: the row is taken at the first look instead)
        self._start_row = start_row
        self._rows = [(clock.boottime(), start_row or 0)]
        # When the last round ended (the start until one does): on the monotonic clock,
        # which stands still while the computer sleeps.
        self._round_at = clock.monotonic()
        self._stalled = False  # `rounds_stopped` was said (and not yet `rounds_resumed`)
        self._lock = threading.Lock()

    def round_done(self) -> None:
        """A round ended: ``stale_after`` counts from now, and the heartbeat is pinged
        ("/fail" with the ``problems``, if any; at most once a minute)."""
        with self._lock:
            self._round_at = self.clock.monotonic()
            resumed, self._stalled = self._stalled, False
        if resumed:
            log.info("rounds_resumed")
        if self.notifier.heartbeat_due():  # else the catalog need not be looked at
            self.notifier.heartbeat(self.problems())

    def problems(self) -> list[str]:
        """What makes a round unhealthy: photos short of the policy for longer than
        ``grace``, a photo with no good copy left, a target away longer than its
        ``expect_every`` (the notifier adds the failures logged since the last ping)."""
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        found = [body for _, _, body in self._targets_away(now)]
        if short := self._short(now):
            found.append(f"{_photos(short)} short of the 3-2-1 policy for more than "
                         f"{_span(self.grace)}")  # fmt: skip
        if lost := self.catalog.lost_count():
            found.append(f"{_photos(lost)} with no good copy left")
        # A round ends once the scan has handed its files over: an import that hangs
        # would leave every round healthy while nothing new is backed up.
        if (waited := self.import_waits()) > self.grace:
            found.append(f"no import has moved for {_span(waited)} while files wait: an "
                         "import is stuck (`photod status`, `photod logs --failures`)")  # fmt: skip
        # A job failing at each run is said once (``job_failed``): the pings after it
        # would say all is well while it still fails.
        found.extend(self.failing_jobs())
        return found

    def remind(self) -> None:
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        # A drive in a drawer is said once a day (`every` still bounds it), not every
        # hour for ever: reminders that come too often get turned off.  Its next
        # absence, once it was back, is said at once.
        at = self.clock.monotonic()
        for t in self.targets_cfg:
            if self.targets[t.name].available:
                self.notifier.forget(f"away:{t.name}")
        for key, title, body in self._targets_away(now):
            told = self.notifier.told_at(key)
            if told is None or at - told >= AWAY_EVERY:
                self.notifier.send(Message(key, title, body))
        self._stale()
        # The policy look groups every asset: a grace of a day needs it every few
        # minutes, not every 15 s (at a million assets that would be an idle load).
        at = self.clock.monotonic()
        if at - self._policy_looked < min(max(self.grace / 4, 0.0), POLICY_LOOK_MAX):
            return
        self._policy_looked = at
        if short := self._short(now):
            self.notifier.send(Message(
                "policy",
                "photod: photos are not protected",
                f"{_photos(short)} short of the 3-2-1 policy for more than "
                f"{_span(self.grace)}; `photod status` says what is missing",
            ))  # fmt: skip

    def _stale(self) -> None:
        """Tell "photod: backups stopped" when no round ended for ``stale_after`` (0:
        never); again at most once per ``every`` while it lasts."""
        with self._lock:
            idle = self.clock.monotonic() - self._round_at
            if not self.stale_after or idle <= self.stale_after:
                return
            said, self._stalled = self._stalled, True
        if not said:
            log.warning("rounds_stopped", idle=round(idle), stale_after=self.stale_after)
        self.notifier.send(Message(
            "stale",
            "photod: backups stopped",
            f"no round of photod (a scan of the watch folders) finished for {_span(idle)}: "
            "`photod pause`, a scan that hangs or a step that fails each time; "
            "`photod status` and `photod logs --failures` say which",
            True,
        ))  # fmt: skip

    def _short(self, now: datetime) -> int:
        """Photos short of the policy for longer than ``grace``."""
        cutoff = (now - timedelta(seconds=self.grace)).isoformat(timespec="seconds")
        at, row = self.clock.boottime(), self.catalog.last_asset_row()
        with self._lock:
            if self._start_row is None:  # (the catalog could not be read at the start)
                self._start_row = row
                self._rows = [(self._rows[0][0], row)]
            start = self._start_row
            if row != self._rows[-1][1]:
                self._rows.append((at, row))
            passed = sum(1 for when, _ in self._rows if at - when >= self.grace)
            del self._rows[: max(passed - 1, 0)]  # (the newest one older than grace kept)
            seen = self._rows[0][1] if passed else 0
        counted = self.catalog.counting(self.infos, self.cycle)
        rows = self.catalog.holdings_before(cutoff.replace("+00:00", "Z"), start, seen)
        return sum(n for held, n in rows
                   if not policy.evaluate(self.rule, held, counted).compliant)  # fmt: skip

    def _targets_away(self, now: datetime) -> Iterator[tuple[str, str, str]]:
        """(key, title, text) of a reminder for each target away longer than its
        ``expect_every``."""
        for t in self.targets_cfg:
            state = self.targets[t.name]
            if t.expect_every is None or state.available:
                continue
            seen = self.catalog.last_seen(t.name)
            when = datetime.fromisoformat(seen.replace("Z", "+00:00")) if seen else None
            if when is not None and when <= now:
                away = (now - when).total_seconds()
            else:  # never seen, or seen "later" than now (by a clock that ran ahead, set
                # back since): away since it went (on the boot clock)
                away = self.clock.boottime() - state.since
            if away > t.expect_every:
                kind = {"external": "external drive", "nas": "NAS"}.get(str(t.media), "target")
                yield (f"away:{t.name}", f"photod: {kind} '{t.name}' missing",
                       f"the {kind} '{t.name}' has not been connected for {_span(away)}; "
                       f"{state.reason}")  # fmt: skip


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} second{'' if int(seconds) == 1 else 's'}"


def _photos(count: int) -> str:
    return f"{count} photo{'' if count == 1 else 's'}"
