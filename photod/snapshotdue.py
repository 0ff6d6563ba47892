"""When the catalog's next snapshot is due (``Pipeline.snapshot_if_due``): once it
changed since the last (a note of when a target was last seen or a folder scanned is no
change: ``Catalog.changes``), or for a target the last one did not go to (a new one, one
back); at most every ``SNAPSHOT_EVERY`` seconds, and never more than a tenth of the
time.  A target the last one failed on is tried again within RETRY (its hourly "last
seen" did that before it stopped counting as a change), at once when it comes back.
What the last one covers is handed over a reload that changed nothing: the same
catalog is not written again as one more generation on every target."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from photod.catalog import Catalog
from photod.config import Config
from photod.snapshot import SNAPSHOT_EVERY

RETRY = 3600.0  # seconds before a snapshot that failed on a target is tried there again


@dataclass(frozen=True)
class Snapshotted:
    """What the last snapshot covers while the catalog has not changed since: the
    config it was written with (the plan and the config beside it), the targets it went
    to, the catalog file it was taken of (a rebuild puts another in place)."""

    cfg: Config
    targets: frozenset[str]
    catalog: int


def _inode(catalog: Catalog) -> int:
    try:
        return os.stat(catalog.path).st_ino
    except OSError:
        return -1


class Due:
    def __init__(self, catalog: Catalog, cfg: Config, handed: Snapshotted | None) -> None:
        """``handed``: the last snapshot before a reload (``handover``)."""
        self.catalog, self.cfg = catalog, cfg
        self.at = (-1, 0.0)  # (catalog changes, monotonic time) of the last one
        self.to: frozenset[str] = frozenset()  # the targets it was written to
        self.took = 0.0  # seconds the last one took
        self.failed: dict[str, float] = {}  # target -> when the last one failed there
        self.kept: frozenset[str] = frozenset()  # those that have the catalog as it is
        self.failing: set[str] = set()  # those the one being written failed on
        if handed is not None and (handed.cfg, handed.catalog) == (cfg, _inode(catalog)):
            self.at, self.to = (catalog.changes(), 0.0), handed.targets  # (it stands)

    def wanted(self, available: frozenset[str], now: float) -> frozenset[str]:
        """The targets of ``available`` a snapshot is wanted on now (none: not due):
        each once the catalog changed, else those the last did not go to; one it failed
        on is tried again RETRY later, or once it was away and is back."""
        self.failed = {n: t for n, t in self.failed.items() if n in available}
        self.failing = set()
        if self.catalog.changes() != self.at[0]:
            self.kept = frozenset()
            return available
        self.kept = self.to  # (those that have it still: the catalog as it was)
        return frozenset(
            n for n in available - self.to if now - self.failed.get(n, -math.inf) >= RETRY
        )

    def soon(self, now: float) -> bool:
        """Too soon after the last one for another."""
        return now - self.at[1] < max(SNAPSHOT_EVERY, 10 * self.took)

    def written(self, to: frozenset[str], at: float, now: float) -> None:
        """A snapshot begun at ``at`` went to ``to`` but those ``failing`` (its catalog
        on no target at all: every one failed); those the last went to, unless the
        catalog changed since (``wanted``), have it still."""
        failed = self.failing
        self.took, self.at = now - at, (self.catalog.changes(), at)
        self.to = (self.kept | to) - failed
        self.failed = {n: t for n, t in self.failed.items() if n not in to}  # (not tried)
        self.failed.update(dict.fromkeys(failed, now))

    def handover(self) -> Snapshotted | None:
        """What the last snapshot covers, for the pipeline after a reload (None once the
        catalog changed since)."""
        if self.catalog.changes() != self.at[0]:
            return None
        return Snapshotted(self.cfg, self.to, _inode(self.catalog))
