"""Scrub and heal: prove, run after run, that every replica still holds its bytes.

One run, per target:
1. a cheap look at everything: one listing says which replicas are still there (and,
   on local disks, a stat says whether their size is right);
2. full re-reads of the replicas read longest ago, within the run's budget (and, for a
   remote, the month's egress budget), hashed and compared with the catalog;
3. healing: a corrupt replica is moved aside (``.photod/quarantine/``), no longer
   counts, and is copied again from a verified replica or an unchanged source; the copy
   is read back like any other before it counts.  With no good copy left anywhere, the
   asset is ``asset_lost``.

Watch-folder files are re-read too (``sourcescrub.py``): bytes that changed under an
unchanged size and mtime are ``source_corrupt`` (bit rot in the library), and never
replace good copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from photod import ledgers, policy
from photod.catalog import Catalog, CheckItem, month
from photod.catchup import lost_now, set_aside
from photod.config import FolderSource, ScheduleConfig
from photod.errors import LinkInTarget, PhotodError, Stopping, TargetUnavailable, Undecryptable
from photod.fleet import Fleet, TargetState
from photod.hashing import hash_stream as hash_stream  # restore.py imports it from here
from photod.logs import log
from photod.models import Asset, ManifestEntry
from photod.replicate import Replicator
from photod.sourcescrub import SourceScrub
from photod.targets.base import Identity
from photod.throttle import lower_priority

LOOKAHEAD = 64 * 1024 * 1024  # bytes of upcoming files being read while one is hashed


READ_DIFFERED = (
    "one read of this copy gave other bytes than the next: a disk, cable or network "
    "that damages what passes through it?"
)


@dataclass
class TargetScrub:
    """What one run did on one target."""

    listed: int = 0
    checked: int = 0
    bytes: int = 0
    corrupt: int = 0
    missing: int = 0
    repaired: int = 0  # of those this run found bad
    earlier: int = 0  # repaired now, found bad before this run (``_heal``)
    lost: int = 0
    skipped: str = ""  # why the target was not scrubbed ("" when it was)
    bad_keys: list[str] = field(default_factory=list)  # found corrupt or missing
    bad_assets: list[str] = field(default_factory=list)  # their assets' SHA-256
    replaced: list[str] = field(default_factory=list)  # another installation's file is there
    stale: list[tuple[str, str]] = field(default_factory=list)  # a clone's file is there


@dataclass
class ScrubReport:
    targets: dict[str, TargetScrub] = field(default_factory=dict)
    sources_checked: int = 0
    sources_corrupt: int = 0

    @property
    def problems(self) -> int:
        return sum(t.corrupt + t.missing for t in self.targets.values()) + self.sources_corrupt


class _Unreadable(Exception):
    """A replica whose bytes cannot be read back as stored, while its target answers:
    ``damaged`` when what was read is not what was stored (age's check failed), not
    when nothing could be read (a bad sector, an object the server keeps archived)."""

    def __init__(self, detail: str, damaged: bool) -> None:
        super().__init__(detail)
        self.damaged = damaged


class Scrubber:
    """Proves the replicas on every target (look, re-read, heal), and has the watch
    folders' own files re-read in the same run (``sourcescrub.SourceScrub``)."""

    def __init__(
        self,
        schedule: ScheduleConfig,
        folders: list[FolderSource],
        catalog: Catalog,
        replicator: Replicator,
        interval: float,
        stop: threading.Event,
    ) -> None:
        """``schedule``: the budgets, cycle and I/O priority of a scrub; ``folders``:
        the watch folders whose files are re-read too."""
        self.schedule = schedule
        self.catalog = catalog
        self.replicator = replicator
        self.targets: dict[str, TargetState] = replicator.targets
        self.interval = interval  # seconds between scheduled runs
        self.stop = stop
        self.sources = SourceScrub(schedule, folders, catalog, interval, stop)
        self.on_bytes: Callable[[int], None] = lambda n: None  # a progress bar
        self.on_plan: Callable[[int], None] = lambda n: None  # bytes the run will read

    # -- one run ---------------------------------------------------------------------

    def run(self, only: str | None = None, everything: bool = False) -> ScrubReport:
        """Scrub every target (or ``only`` one) and the watch folders; ``everything``
        re-reads every replica and source file, whatever the budgets say.  The work
        runs in a thread of its own at the configured I/O priority (a lowered priority
        cannot always be raised again, so it dies with the thread)."""
        out: list[ScrubReport] = []
        failure: list[BaseException] = []

        def work() -> None:
            lower_priority(self.schedule.io_priority)
            try:
                out.append(self._run(only, everything))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=work, name="scrub")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return out[0]

    def _run(self, only: str | None, everything: bool) -> ScrubReport:
        started = time.monotonic()
        report = ScrubReport()
        log.info("scrub_started", **({"target": only} if only else {}), everything=everything)
        plans: dict[str, list[CheckItem]] = {}
        for name, state in self.targets.items():
            if only is not None and name != only:
                continue
            scrub = report.targets[name] = TargetScrub()
            if not self.replicator.fleet.refresh(name):
                scrub.skipped = state.reason
                log.warning("scrub_skipped", target=name, reason=state.reason)
                continue
            try:
                self._look(name, state, scrub)
            except TargetUnavailable as exc:
                scrub.skipped = exc.reason
                log.warning("scrub_skipped", target=name, reason=exc.reason)
                continue
            plans[name] = self._plan(name, state, everything)
        self.on_plan(sum(i.size for items in plans.values() for i in items))
        for name, items in plans.items():
            self._read(name, self.targets[name], items, report.targets[name])
        if only is None:
            tally = self.sources.run(everything)
            report.sources_checked, report.sources_corrupt = tally.checked, tally.corrupt
        for name in plans:
            self._heal(name, report.targets[name])
            records = self.targets[name].records
            if records is not None and records.target.encrypted:  # (a plain list always opens)
                ledgers.mend(self.catalog, name, records, self.targets[name].lock)
        summary = {
            n: {k: v for k, v in vars(t).items() if v and not isinstance(v, list)}
            for n, t in report.targets.items()
        }
        if only is None:  # (one target's is not the scheduled scrub: status, catch-up)
            self.catalog.ran("scrub", {"targets": summary,
                                       "sources_corrupt": report.sources_corrupt})  # fmt: skip
        log.info(
            "scrub_finished",
            targets=summary,
            sources_checked=report.sources_checked,
            sources_corrupt=report.sources_corrupt,
            problems=report.problems,
            duration=round(time.monotonic() - started, 3),
        )
        return report

    # -- 1. the cheap look ---------------------------------------------------------------

    def _look(self, name: str, state: TargetState, scrub: TargetScrub) -> None:
        """One listing: every replica the catalog counts must be there, with its size
        (unless encrypted: the stored size is the ciphertext's)."""
        entries = list(self.catalog.verified_on(name))
        present = dict(state.target.listing())
        # A drive unplugged during the listing lists nothing: only believe a missing
        # replica once the target is proved to be still there, and the file to be gone.
        state.target.check(self._known(name), prepare=False)
        fine: list[str] = []
        for e in entries:
            if e.key not in present:
                if state.target.size(e.key) is None:
                    self._bad(name, state, e, "missing", "listing", scrub)
                    continue
            elif present[e.key] is not None and present[e.key] != e.size:
                self._bad(name, state, e, "corrupt", "size", scrub)
                continue
            fine.append(e.sha256)
        self.catalog.replicas_listed(name, fine)
        scrub.listed = len(fine)

    # -- 2. full re-reads ----------------------------------------------------------------

    def _plan(self, name: str, state: TargetState, everything: bool) -> list[CheckItem]:
        if ahead := self.catalog.checks_ahead(name):
            log.warning("scrub_checks_ahead", target=name, copies=ahead, detail="re-read at a "
                        "time later than the clock (set back since): read again first")  # fmt: skip
        _, total, _ = self.catalog.check_totals(name)
        budget: int | None = None
        cap: int | None = None  # a copy larger waits (the egress left: not passed for it)
        if everything:
            share = total
        else:
            share = policy.scrub_share(total, self.schedule.scrub_cycle, self.interval)
            budget = self.schedule.scrub_budget[0]
            egress = state.egress_budget
            if egress is not None:
                left = max(0, egress - self.catalog.egress_used(name, month()))
                budget = left if budget is None else min(budget, left)
                if left == 0:
                    log.info("scrub_egress_spent", target=name, budget=egress, month=month())
                    return []
                cap = left if left < egress else None  # (larger than all: a month unread)
        items = ((i, i.size) for i in self._by_age(name) if cap is None or i.size <= cap)
        return policy.scrub_pick(items, share, budget)

    def _by_age(self, name: str) -> Iterator[CheckItem]:
        after = ("", "")
        while page := self.catalog.replicas_by_age(name, after):
            yield from page
            after = (page[-1].checked_at, page[-1].asset)

    def _read(
        self, name: str, state: TargetState, items: list[CheckItem], scrub: TargetScrub
    ) -> None:
        limit = None if not items else self.schedule.scrub_budget[1]
        started = time.monotonic()
        method = "download" if state.queued else "readback"
        if state.target.encrypted:
            method += "+decrypt"
        ahead = 0  # items[:ahead] have been prefetched
        for i, item in enumerate(items):
            if self.stop.is_set():
                raise Stopping
            if i and limit is not None and time.monotonic() - started > limit:
                break  # the run's time is up (one file at least); the rest go first next time
            # Keep the disk busy: while this file is hashed, the next ones are being
            # read (a deeper queue than one file at a time, with no extra thread).
            ahead = max(ahead, i)
            while ahead < len(items) and (ahead - i < 2 or (
                ahead - i < 32 and sum(x.size for x in items[i:ahead]) < LOOKAHEAD
            )):  # fmt: skip
                state.target.prefetch(items[ahead].relpath)
                ahead += 1
            entry = ManifestEntry(item.asset, item.relpath, item.size)
            read = _Downloads(partial(self._hash, name, state, item.relpath))
            try:
                actual = _proved(name, item, read)
            except FileNotFoundError:
                self._bad(name, state, entry, "missing", method, scrub)
                continue
            except _Unreadable as exc:  # damaged, undecryptable, or shorter than stored
                self._bad(name, state, entry, "corrupt", method, scrub, actual=str(exc),
                          damaged=exc.damaged)  # fmt: skip
                continue
            except TargetUnavailable as exc:
                scrub.skipped = exc.reason
                _interrupted(name, exc, self.stop, self.replicator.fleet)  # (Stopping at a stop)
                return
            finally:  # every read of a remote copy counts against its egress budget
                if state.queued and read.count:
                    self.catalog.add_egress(name, month(), item.size * read.count)
            scrub.checked += 1
            scrub.bytes += item.size
            if actual == item.asset:
                self.catalog.replica_checked(item.asset, name, method)
                log.info("replica_checked", asset=item.asset, target=name, method=method)
                _mend_line(self.catalog, name, state, item)
            else:
                self._bad(name, state, entry, "corrupt", method, scrub, actual=actual)

    def _hash(self, name: str, state: TargetState, key: str, again: bool = False) -> str:
        """SHA-256 of a replica.  A read that fails is tried once more after the
        target proved it still answers; failing twice on a target that answers, the
        object itself is bad (``_Unreadable``).  TargetUnavailable: an outage.
        ``again``: the second read of a copy whose first read was wrong."""
        for attempt in (1, 2):
            try:
                with state.target.open(key) as f:
                    return hash_stream(f, self.on_bytes, self.stop, cold=again or attempt == 2)
            except (FileNotFoundError, Stopping, LinkInTarget):
                raise  # a link on the way to it: the target waits, the file is not bad
            except Undecryptable as exc:  # age's authentication failed: damaged bytes
                raise _Unreadable(exc.detail, damaged=True) from exc
            except (TargetUnavailable, OSError) as exc:
                _still_there(name, state, self._known(name), self.stop, exc)  # raises if gone
                if attempt == 2:
                    raise _Unreadable(f"unreadable: {exc}", damaged=False) from exc
        raise AssertionError("unreachable")

    def _known(self, name: str) -> Identity | None:
        record = self.catalog.target(name)
        return Identity(record.target_id, record.root, record.mount_rel) if record else None

    # -- 3. heal -----------------------------------------------------------------------

    def _bad(
        self,
        name: str,
        state: TargetState,
        entry: ManifestEntry,
        result: str,
        method: str,
        scrub: TargetScrub,
        actual: str = "",
        damaged: bool = True,
    ) -> None:
        """A replica that no longer holds its bytes stops counting at once; the corrupt
        object is moved aside, never read again as a source, never overwritten.  On a
        shared target, another installation's file is never moved aside: a copy this
        one relies on that went bad, or bytes another installation listed under the key
        (its file took the name), only stop counting here; the repair goes beside.
        Kept in place too: see ``set_aside``."""
        owner = self.catalog.replica_owner(entry.sha256, name)
        if result == "corrupt" and not owner:
            owner = _theirs(self.catalog, name, state, entry, actual, scrub)
            result = "missing" if owner else result  # ours is not there: theirs is
        kept = ""
        if result == "corrupt":
            if not owner:
                kept = set_aside(self.catalog, self.replicator.source_roots, state, name,
                                 entry.sha256, entry.key, damaged)  # fmt: skip
            scrub.corrupt += 1
        else:
            scrub.missing += 1
        scrub.bad_keys.append(entry.key)
        scrub.bad_assets.append(entry.sha256)
        left = self.catalog.replica_bad(entry.sha256, name, result, method)
        log.error(
            f"replica_{result}",
            asset=entry.sha256,
            target=name,
            path=entry.key,
            method=method,
            good_copies_left=left,
            **({"found": actual} if actual else {}),
            **({"kept": kept} if kept else {}),
        )

    def _heal(self, name: str, scrub: TargetScrub) -> None:
        """Repair what this run found bad, and what was found bad before and is not
        repaired yet (a copy found rotten as another's source, a repair cut short)."""
        if not scrub.corrupt and not scrub.missing and not self.catalog.to_repair(name):
            return
        state = self.targets[name]
        found = set(scrub.bad_assets)
        for asset in self.catalog.to_repair(name):
            if self.stop.is_set():
                raise Stopping
            if self.replicator.copy_asset(asset, name):
                scrub.repaired += asset.sha256 in found
                scrub.earlier += asset.sha256 not in found
                self.replicator.judge(asset.sha256)
            elif self._lost(asset):
                scrub.lost += 1
        if state.records is None:
            return
        try:  # (a drive unplugged now raises: its files are not provably gone)
            gone = _gone(state, scrub, {e.key for e in self.catalog.verified_on(name)})
        except TargetUnavailable as exc:
            log.warning("scrub_interrupted", target=name, reason=exc.reason)
            return
        stale = frozenset(scrub.stale)
        with state.lock:
            ledgers.flush(self.catalog, name, state.records)
            if gone or stale:
                ledgers.compact(self.catalog, name, state.records, gone, stale)

    def _lost(self, asset: Asset) -> bool:
        """No verified replica anywhere, and no source file with the right bytes."""
        return lost_now(self.catalog, self.replicator.source_roots, asset)


def _theirs(
    catalog: Catalog, name: str, state: TargetState, entry: ManifestEntry, actual: str,
    scrub: TargetScrub,
) -> str:  # fmt: skip
    """Who lists another photo at a copy's name ('' for none: see ``ledgers.whose_at``);
    our line is noted to go from our list, by its key when another installation's file
    took the name, alone when a clone of this computer lists its own there."""
    who = ledgers.whose_at(catalog, name, state.records, entry.key, entry.sha256, actual)
    if who == ledgers.A_CLONE:
        scrub.stale.append((entry.sha256, entry.key))
    elif who:
        scrub.replaced.append(entry.key)
    return who


def _still_there(
    name: str, state: TargetState, known: Identity | None, stop: threading.Event, exc: Exception
) -> None:
    """After a read that failed (``exc``), the target is asked whether it is still there
    (TargetUnavailable when it is not).  Not once photod stops: the stop cut the read,
    and asked over a link that may be dead, the question waits out its timeouts (a stop
    took minutes)."""
    if stop.is_set():
        why = exc.reason if isinstance(exc, TargetUnavailable) else str(exc)
        raise TargetUnavailable(name, f"{why} (photod was stopping)") from exc
    state.target.check(known, prepare=False)


def _interrupted(name: str, exc: TargetUnavailable, stop: threading.Event, fleet: Fleet) -> None:
    """A target's re-reads ended by an outage: said.  At a stop (the read cut, its link
    not answering) said as such (``stopping``: no alert), the target taken for away (the
    stop's last lists and snapshot do not wait on its link), and the run ends."""
    if not stop.is_set():
        log.warning("scrub_interrupted", target=name, reason=exc.reason)
        return
    log.warning("scrub_interrupted", target=name, reason=exc.reason, stopping=True)
    fleet.fail(name, exc)
    raise Stopping from exc


def _gone(state: TargetState, scrub: TargetScrub, held: set[str]) -> frozenset[str]:
    """The keys the list drops: only bad copies' whose file is provably gone (not
    repaired in place); everything on the target stays listed."""
    return frozenset(
        k
        for k in scrub.bad_keys
        if k not in held and (k in scrub.replaced or state.target.size(k) is None)
    )


class _Downloads:
    """A copy's reads, counted: each one that read its bytes (hashed them, or found them
    damaged) costs a remote target its size in egress."""

    def __init__(self, read: Callable[..., str]) -> None:
        self.read, self.count = read, 0

    def __call__(self, again: bool = False) -> str:
        try:
            got = self.read(again=again)
        except _Unreadable:
            self.count += 1
            raise
        self.count += 1  # (an outage or a missing copy brought no bytes: not counted)
        return got


def _proved(name: str, item: CheckItem, read: Callable[..., str]) -> str:
    """SHA-256 of a replica (``read(again=...)``), read twice before it is said wrong: a
    read damaged on its way (a bit flipped on the network or by a failing cable, an
    encrypted copy's authentication failing for it) must not condemn a good copy,
    which the repair then moves aside.  Two reads that disagree prove nothing of the
    copy's bytes (``_Unreadable``, not damaged)."""
    try:
        first = read()
    except _Unreadable as exc:
        if not exc.damaged:
            raise
        first = str(exc)  # (age's authentication failed: never a photo's hash)
    if first == item.asset:
        return first
    again = read(again=True)
    if again == item.asset:
        log.warning("replica_read_differed", target=name, asset=item.asset,
                    path=item.relpath, detail=READ_DIFFERED)  # fmt: skip
    elif again != first:
        raise _Unreadable("two reads gave different bytes: " + READ_DIFFERED, damaged=False)
    return again


def _mend_line(catalog: Catalog, name: str, state: TargetState, item: CheckItem) -> None:
    """On an encrypted target, the copy's own sealed index line, checked with it:
    without it the recovery without photod does not find the photo."""
    mend = getattr(state.target, "mend_line", None)  # (crypt.CryptTarget's)
    asset = catalog.asset(item.asset)
    if mend is None or asset is None:
        return
    entry = ManifestEntry(item.asset, item.relpath, item.size, asset.captured_at,
                          catalog.file_time(item.asset))  # fmt: skip
    try:
        if mend(item.relpath, entry):
            log.warning("index_line_repaired", asset=item.asset, target=name,
                        path=item.relpath)  # fmt: skip
    except (OSError, PhotodError) as exc:  # the next scrub tries again
        log.warning("index_line_unrepaired", asset=item.asset, target=name, error=str(exc))
