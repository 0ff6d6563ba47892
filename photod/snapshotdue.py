"""When the catalog's next snapshot is due (``Pipeline.snapshot_if_due``): once it
changed since the last (a note of when a target was last seen or a folder scanned is no
change: ``Catalog.changes``), or for a target the last one did not go to (a new one, one
back); at most every ``SNAPSHOT_EVERY`` seconds, and never more than a tenth of the
time.  A target the last one failed on is tried again within RETRY (its hourly "last
seen" did that before it stopped counting as a change), at once when it comes back.
What the last one covers is handed over a reload that changed nothing, and kept in the
catalog for the next start (``Catalog.cover``: the catalog's first change removes it),
each target's generation checked there before it is taken: the same catalog is not
written again as one more generation on every target (each restart wrote one, a full
upload of the catalog to an offsite target)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from photod import __version__, failpoints
from photod.catalog import Catalog
from photod.config import Config, without_secrets
from photod.errors import PhotodError
from photod.logs import log
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
    generations: tuple[tuple[str, int], ...] = ()  # (target, the generation it has)
    unsure: frozenset[str] = frozenset()  # kept from the last run, not checked there yet


def _inode(catalog: Catalog) -> int:
    try:
        return os.stat(catalog.path).st_ino
    except OSError:
        return -1


def _config(cfg: Config) -> str:
    """The config a snapshot's plan and kept config were written by (a config edited
    while stopped: those beside it are written again; photod's version too, though a
    checkout's stays 0.1.0 between upgrades), told without its secrets: those beside
    it have them marked (a password changed alone wrote the catalog again), and this
    is kept in the catalog, which the next snapshot copies to the targets."""
    told = without_secrets(cfg)
    return hashlib.sha256(f"{__version__}\n{told!r}".encode()).hexdigest()[:32]


def _kept(catalog: Catalog, cfg: Config) -> dict[str, int]:
    """The targets the last snapshot went to, with the generation each got, as the
    catalog kept it (``cover``) for this config: empty once the catalog changed."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, PhotodError):
        record = json.loads(catalog.covered() or "{}")
        if record.get("config") == _config(cfg):
            return {str(n): int(g) for n, g in record["targets"].items()}
    return {}


class Due:
    def __init__(
        self, catalog: Catalog, cfg: Config, handed: Snapshotted | None,
        newest: Callable[[str], int | None] = lambda name: None,
    ) -> None:  # fmt: skip
        """``handed``: the last snapshot before a reload (``handover``); else the one
        the catalog kept from the last run (``cover``).  ``newest``: the generation of
        the newest snapshot on a target (one kept from the last run is taken only for a
        target that has it still: not one deleted, or a drive put back older)."""
        self.catalog, self.cfg, self.newest = catalog, cfg, newest
        self.generations: dict[str, int] = {}  # target -> the generation it has
        self.unsure: set[str] = set()  # kept from the last run, not checked there yet
        self.at = (-1, 0.0)  # (catalog changes, monotonic time) of the last one
        self.to: frozenset[str] = frozenset()  # the targets it was written to
        self.took = 0.0  # seconds the last one took
        self.failed: dict[str, float] = {}  # target -> when the last one failed there
        self.kept: frozenset[str] = frozenset()  # those that have the catalog as it is
        self.failing: set[str] = set()  # those the one being written failed on
        if handed is not None and (handed.cfg, handed.catalog) == (cfg, _inode(catalog)):
            self.at, self.to = (catalog.changes(), 0.0), handed.targets  # (it stands)
            self.generations, self.unsure = dict(handed.generations), set(handed.unsure)
        elif kept := _kept(catalog, cfg):
            self.at, self.to = (catalog.changes(), 0.0), frozenset(kept)
            self.generations, self.unsure = kept, set(kept)

    def wanted(self, available: frozenset[str], now: float, ready: bool = True) -> frozenset[str]:
        """The targets of ``available`` a snapshot is wanted on now (none: not due):
        each once the catalog changed, else those the last did not go to; one it failed
        on is tried again RETRY later, or once it was away and is back.  ``ready``: one
        could be written now (not too soon, no photo coming in); only then is a target
        the last run's went to looked at (a listing), and none once the catalog changed
        since (a start with new photos: it was listed first, for nothing)."""
        self.failed = {n: t for n, t in self.failed.items() if n in available}
        self.failing = set()
        if self.catalog.changes() != self.at[0]:
            self.kept, self.unsure = frozenset(), set()  # (each written: none to look at)
            return available
        for name in self.unsure & available if ready else ():  # (once a start, each)
            if self._newest(name) != self.generations.get(name):
                self.to -= {name}
            self.unsure.discard(name)  # (checked: after, so a check that raised is not)
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

    def _newest(self, name: str) -> int | None:
        try:
            return self.newest(name)
        except Exception:  # (any: not known to have it, so written again)
            return None

    def keep(self, wrote: Iterable[str], generation: int) -> None:
        """After ``written``: generation ``generation`` went to ``wrote``; what the
        targets now have is kept in the catalog for the next start (``cover``)."""
        self.generations = {n: g for n, g in self.generations.items() if n in self.to}
        self.generations.update(dict.fromkeys(wrote, generation))
        covered = {n: g for n, g in self.generations.items() if n in self.to}
        failpoints.hit("snapshot_written")  # a kill here: one snapshot more at the next start
        if covered:
            record = {"config": _config(self.cfg), "targets": covered}
            try:
                self.catalog.cover(json.dumps(record, sort_keys=True))
            except (PhotodError, sqlite3.Error, OSError) as exc:  # (one snapshot more)
                log.warning("snapshot_cover_failed", error=str(exc),
                            action="the next start writes the snapshot again")  # fmt: skip

    def handover(self) -> Snapshotted | None:
        """What the last snapshot covers, for the pipeline after a reload (None once the
        catalog changed since)."""
        if self.catalog.changes() != self.at[0]:
            return None
        generations = tuple(sorted(self.generations.items()))
        return Snapshotted(self.cfg, self.to, _inode(self.catalog), generations,
                           frozenset(self.unsure))  # fmt: skip
