"""When the catalog's next snapshot is due (``Pipeline.snapshot_if_due``): once it
changed since the last (a note of when a target was last seen or a folder scanned is no
change: ``Catalog.changes``), or for a target the last one did not go to (a new one, one
back); at most every ``SNAPSHOT_EVERY`` seconds, and never more than a tenth of the
time.  What the last one covers is handed over a reload that changed nothing: the same
catalog is not written again as one more generation on every target."""

from __future__ import annotations

import os
from dataclasses import dataclass

from photod.catalog import Catalog
from photod.config import Config
from photod.snapshot import SNAPSHOT_EVERY


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
        if handed is not None and (handed.cfg, handed.catalog) == (cfg, _inode(catalog)):
            self.at, self.to = (catalog.changes(), 0.0), handed.targets  # (it stands)

    def needed(self, available: frozenset[str]) -> bool:
        """Whether a snapshot is wanted on the targets ``available`` now."""
        return bool(available) and (
            self.catalog.changes() != self.at[0] or not available <= self.to
        )

    def soon(self, now: float) -> bool:
        """Too soon after the last one for another."""
        return now - self.at[1] < max(SNAPSHOT_EVERY, 10 * self.took)

    def written(self, available: frozenset[str], at: float, now: float) -> None:
        """A snapshot begun at ``at`` went to ``available`` (or was tried)."""
        self.took, self.at, self.to = now - at, (self.catalog.changes(), at), available

    def handover(self) -> Snapshotted | None:
        """What the last snapshot covers, for the pipeline after a reload (None once the
        catalog changed since)."""
        if self.catalog.changes() != self.at[0]:
            return None
        return Snapshotted(self.cfg, self.to, _inode(self.catalog))
