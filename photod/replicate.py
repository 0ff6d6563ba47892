"""Copy assets to targets and prove every copy.

Two ways in:
- ``store_new``: a file nobody has seen.  It is read once; each chunk is hashed and
  written to every available target at the same time, then every target makes its copy
  durable and reads it back in parallel.
- ``replicate_pending``: catch-up for a target that missed assets (it was unplugged,
  full, read-only).  Bytes come from a verified replica on another target, or from the
  source file while it is unchanged, and are hashed again on the way.

A copy counts (a ``verified`` replica in the catalog, an entry in this installation's
list on the target) only after the target read it back and the SHA-256 matched.  On a
target shared with other computers, bytes another installation already stored there are
proved and recorded, not written again (``ledgers.shared_copy``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from photod import failpoints, ledgers, policy
from photod.catalog import Catalog
from photod.errors import (
    ChecksumMismatch,
    KeyExists,
    LinkInTarget,
    PhotodError,
    SourceChanged,
    Stopping,
    TargetFull,
    TargetUnavailable,
    Undecryptable,
)
from photod.logs import log
from photod.media import suffixed
from photod.models import Asset, ManifestEntry, PolicyRule, Probe, TargetInfo, VerifyMethod
from photod.safeopen import open_beneath, open_root
from photod.targets.base import CHUNK, Identity, Target, Writer, hash_object
from photod.targets.records import Records
from photod.throttle import LimitedWriter, TokenBucket, on_battery_now, paused

REMOTE_PROBE = 60.0  # seconds between checks of a remote target that answers


@dataclass
class TargetState:
    """A configured target and what the daemon currently knows about it."""

    target: Target
    info: TargetInfo
    records: Records | None = None  # this installation's records on it (the daemon's)
    available: bool = False
    reason: str = "not checked yet"
    full: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # the list's compaction
    # Remote targets are "queued": a new file is not written to them while it is
    # ingested (a slow upload would hold up the local copies); the catch-up uploads it
    # from a verified local copy, ``transfers`` files at a time.
    queued: bool = False
    transfers: int = 1
    bucket: TokenBucket | None = None  # bandwidth_limit
    window: tuple[int, int] | None = None
    on_battery: bool = True
    # A remote that failed is asked again after a growing pause, not every probe.
    backoff: float = 0.0
    next_probe: float = 0.0
    since: float = field(default_factory=time.time)  # when ``available`` last changed
    seen_saved: float = 0.0  # monotonic time the catalog last heard it answer
    others_read: float = 0.0  # monotonic time the other installations' lists were read
    link: str = ""  # a folder inside the target found to be a link: it waits for a folder

    def paused(self) -> str:
        """Why writes wait now ("" when they may run).  The battery is read only for a
        target whose rule needs it: this runs at every probe."""
        battery = None if self.on_battery else on_battery_now()
        return paused(self.window, self.on_battery, datetime.now(), battery)

    def open_writer(self, key: str) -> Writer:
        writer = self.target.open_writer(key)
        return LimitedWriter(writer, self.bucket) if self.bucket is not None else writer


@dataclass(frozen=True)
class NewFile:
    source: str
    relpath: str  # path inside the source, as recorded in the catalog
    path: Path
    size: int
    mtime_ns: int
    info: Probe
    key: str  # wanted key on the targets (the layout)
    # The file, opened once beneath its source's root (the ingest probed and perhaps
    # hashed it already): this descriptor is what is copied, never the path again.
    file: BinaryIO


class Replicator:
    def __init__(
        self,
        catalog: Catalog,
        targets: dict[str, TargetState],
        rule: PolicyRule,
        stop: threading.Event,
        source_roots: dict[str, Path],
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        relist: bool = False,
    ) -> None:
        self.catalog = catalog
        # After an unclean stop the lists may lack copies the catalog has: compare them
        # in full when each target first comes (else only when their counts disagree).
        self.relist = relist
        self._relisted: set[str] = set()  # targets compared in full in this process
        self._learned: set[str] = set()  # encrypted targets told the catalog's keys
        self.targets = targets
        self.rule = rule
        self.stop = stop
        self.source_roots = source_roots
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._infos = {n: s.info for n, s in targets.items()}
        self._new_lock = threading.Lock()  # one "is this asset new?" decision at a time
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, 2 * len(targets)), thread_name_prefix="commit"
        )
        self.on_new: Callable[[], None] = lambda: None  # the pipeline wakes the uploads
        # Told when a target knows more than the catalog (a newer snapshot of this
        # installation): the daemon stops and settles the catalog again.
        self.distrust: Callable[[str], None] = lambda why: None
        # Set once the catalog is proved sound: until then no target is made available,
        # so nothing is written anywhere (a large catalog is checked in the background).
        self.trusted = threading.Event()
        self.trusted.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- target availability ----------------------------------------------------------

    def refresh(self, name: str) -> bool:
        """Check a target now; log when it comes or goes; tidy it when it comes back."""
        state = self.targets[name]
        why = state.paused()
        if why:
            if state.reason != why:
                log.info(
                    "target_paused",
                    target=name,
                    reason=why,
                    pending=self.catalog.pending_count(name),
                )
            self._set(state, False, why)
            return False
        if not self.trusted.is_set():
            self._set(state, False, "waiting for the check of the catalog to finish")
            return False
        if state.link:
            if os.path.islink(state.link):
                return False  # said once; the target waits until it is a folder again
            state.link = ""
        now = time.monotonic()
        if now < state.next_probe:
            return state.available  # a remote is not asked more often than it needs
        record = self.catalog.target(name)
        known = Identity(record.target_id, record.root, record.mount_rel) if record else None
        try:
            try:
                ident = state.target.check(known)
            except TargetUnavailable:
                raise
            except Exception as exc:  # a bug or an unmapped error: one event, never a crash
                log.exception("target_check_failed", target=name, error=str(exc))
                raise TargetUnavailable(name, f"unexpected error: {exc}") from exc
        except TargetUnavailable as exc:
            if state.available or state.reason != exc.reason:
                log.warning(
                    "target_unavailable",
                    target=name,
                    reason=exc.reason,
                    pending=self.catalog.pending_count(name),
                )
            self._set(state, False, exc.reason)
            self._back_off(state)
            return False
        if (
            state.queued and not state.backoff
        ):  # a reachable remote is asked again in a minute, not every probe
            state.next_probe = now + REMOTE_PROBE
        if record is None or (record.root, record.mount_rel) != (ident.root, ident.mount_rel):
            if record is not None:
                log.info("target_relocated", target=name, old=record.root, new=ident.root)
            self.catalog.save_target(name, ident.target_id, ident.root, ident.mount_rel)
        if not state.available:
            try:
                self._tidy(name, state)
            except TargetUnavailable as exc:
                self._set(state, False, exc.reason)
                return False
            log.info(
                "target_available",
                target=name,
                root=ident.root,
                pending=self.catalog.pending_count(name),
            )
        elif state.records is not None and now - state.others_read > REMOTE_PROBE:
            self._read_others(name, state)
        self._set(state, True, "")
        if now - state.seen_saved > 3600 or not state.seen_saved:
            self.catalog.target_seen(name)  # hourly: "not connected for N days" needs it
            state.seen_saved = now
        return True

    def _tidy(self, name: str, state: TargetState) -> None:
        """When a target comes: remove a crash's temporaries, and bring the catalog and
        the target's records in step, both ways (``ledgers.py``): nothing the target
        lists is forgotten, and nothing is ever taken off its list to agree with the
        catalog."""
        for temp in self.catalog.temps(name):
            state.target.delete_temp(temp)
            self.catalog.drop_temp(name, temp)
        records = state.records
        if records is None:
            return
        if not records.find_own_folder():
            records.register()
        newest = next(iter(records.snapshots()), None)
        if newest is not None and newest.generation > self.catalog.generation:
            why = (f"target {name!r} holds a newer snapshot of this installation's catalog "
                   f"(generation {newest.generation}, the catalog {self.catalog.generation})")  # fmt: skip
            self.distrust(why)
            raise TargetUnavailable(name, f"{why}; the catalog is checked before it is used")
        if state.target.encrypted and name not in self._learned:  # names back to keys
            state.target.learn(self.catalog.verified_on(name))
            self._learned.add(name)
        try:
            ledgers.catch_up(self.catalog, name, records, self.stop)
        except Undecryptable as exc:
            raise TargetUnavailable(
                name, f"this installation's index there cannot be opened: {exc}; was the "
                "target written with another identity?",
            ) from exc  # fmt: skip
        verified = self.catalog.verified_count(name)
        unlisted = self.catalog.meta(f"unlisted:{name}") is not None
        first = self.relist and name not in self._relisted
        if first or unlisted or verified > self.catalog.own_entries(name):
            with state.lock:
                ledgers.relist(self.catalog, name, records)
            self.catalog.delete_meta(f"unlisted:{name}")
            self._relisted.add(name)
        self._read_others(name, state)

    def _read_others(self, name: str, state: TargetState) -> None:
        """What the other installations sharing the target list (a minute old at most)."""
        assert state.records is not None
        state.others_read = time.monotonic()
        try:
            ledgers.read_others(self.catalog, name, state.records)
        except TargetUnavailable as exc:
            log.warning("records_unreadable", target=name, reason=exc.reason)

    def available(self) -> list[str]:
        return [n for n, s in self.targets.items() if s.available]

    def flush(self) -> None:
        """Write the buffered list entries of every available target."""
        for name, state in self.targets.items():
            if state.records is not None and state.records.ledger.pending():
                if not state.available:
                    self._unlisted(name)
                    continue
                try:
                    with state.lock:
                        ledgers.flush(self.catalog, name, state.records)
                except TargetUnavailable as exc:
                    self._unlisted(name)
                    self._fail_target(name, exc)

    def _unlisted(self, name: str) -> None:
        """Copies wait to be listed on a target that went: the catalog says so, so that
        they are listed the next time it comes, even after a restart."""
        if self.catalog.meta(f"unlisted:{name}") is None:
            self.catalog.set_meta(f"unlisted:{name}", "1")

    def unlisted(self) -> bool:
        """Whether some verified copy waits to be written to its target's list."""
        return any(
            s.records is not None and s.records.ledger.pending() for s in self.targets.values()
        )

    def _fail_target(self, name: str, exc: TargetUnavailable) -> None:
        state = self.targets[name]
        if isinstance(exc, LinkInTarget):
            state.link = str(exc.path)
        if state.available:
            log.warning("target_unavailable", target=name, reason=exc.reason,
                        pending=self.catalog.pending_count(name))  # fmt: skip
        self._set(state, False, exc.reason)
        self._back_off(state)

    @staticmethod
    def _set(state: TargetState, available: bool, reason: str) -> None:
        if state.available != available:
            state.since = time.time()
        state.available, state.reason = available, reason

    def _back_off(self, state: TargetState) -> None:
        """A remote that failed is asked again after 5 s, 10 s, 20 s ... up to
        retry_max; only a copy that lands resets the pause.  (A server that answers
        checks but sheds uploads, as when throttling, does not flap every probe.)"""
        if state.queued:
            state.backoff = min(max(5.0, state.backoff * 2), self.retry_max)
            state.next_probe = time.monotonic() + state.backoff

    # -- shared steps ----------------------------------------------------------------

    def _take(self, sha: str, names: list[str]) -> list[str]:
        """Mark (asset, target) pairs as being copied so no other job copies them too;
        returns the names this caller got.  Give them back with ``_release``."""
        with self._inflight_lock:
            mine = [n for n in names if (sha, n) not in self._inflight]
            self._inflight.update((sha, n) for n in mine)
        return mine

    def _release(self, sha: str, names: list[str]) -> None:
        with self._inflight_lock:
            self._inflight.difference_update((sha, n) for n in names)

    def _register(self, writers: dict[str, Writer]) -> None:
        """Note the temporaries before any byte is written, so a crash can clean them."""
        self.catalog.add_temps([(n, w.temp_key) for n, w in writers.items()])

    def _fail(self, sha: str, name: str, exc: Exception) -> None:
        state = self.targets[name]
        if isinstance(exc, TargetFull):
            asset = self.catalog.asset(sha)
            if asset is not None and exc.needed < asset.size:  # full mid-copy: one chunk
                exc = TargetFull(name, asset.size, exc.free)
            if not state.full:
                log.warning("target_full", target=name, needed=exc.needed, free=exc.free)
            state.full = True
        elif isinstance(exc, TargetUnavailable):
            self._fail_target(name, exc)
        delay = self.catalog.replica_failed(sha, name, str(exc), self.retry_base, self.retry_max)
        log.warning("replica_failed", asset=sha, target=name, error=str(exc), retry_in=round(delay))

    def _commit(
        self,
        name: str,
        writer: Writer,
        key: str,
        sha: str,
        size: int,
        mtime_ns: int | None,
        started: float,
        captured_at: str = "",
    ) -> None:
        """Publish one verified copy, never over another file, and record it.  When
        another installation sharing the target holds these bytes already, that copy is
        proved and recorded instead, and nothing is published."""
        state = self.targets[name]
        try:
            method: VerifyMethod | None = None
            owner = ""
            shared = None
            if state.records is not None and not self.catalog.repairs(sha, name):
                shared = ledgers.shared_copy(self.catalog, name, state.target, sha)
            if shared is not None:
                writer.abort()
                key, owner, method = shared[0], shared[1], VerifyMethod.EXISTING
            for candidate in (key, suffixed(key, sha)) if method is None else ():
                try:
                    method = writer.commit(candidate, sha, mtime_ns, captured_at)
                except KeyExists:
                    # Something is already there: ours from a run the catalog forgot, or
                    # another installation's copy of the same bytes (adopt either), or a
                    # different file (ours goes beside it under a suffix).
                    try:
                        ours = hash_object(state.target, candidate) == sha
                    except (OSError, PhotodError):  # unreadable: not ours to adopt
                        ours = False
                    if not ours:
                        continue
                    writer.abort()
                    method = VerifyMethod.EXISTING
                    owner = self.catalog.listed_by_other(name, candidate, sha) or ""
                key = candidate
                break
            if method is None:
                raise KeyExists(suffixed(key, sha))
            failpoints.hit("replica_published")
            repair = self.catalog.repairs(sha, name)
            self.catalog.add_replica(sha, name, key, size, method, temp=writer.temp_key,
                                     owner=owner)  # fmt: skip
            failpoints.hit("replica_recorded")
            if state.records is not None:
                entry = ManifestEntry(sha, key, size, captured_at, mtime_ns)
                if state.records.ledger.append([entry]):
                    with state.lock:
                        ledgers.flush(self.catalog, name, state.records)
        except (PhotodError, OSError) as exc:
            writer.abort()
            self.catalog.drop_temp(name, writer.temp_key)
            self._fail(sha, name, exc)
            return
        state.full = False
        state.backoff = 0.0  # a copy landed: the remote works again
        event = "replica_repaired" if repair else "replica_shared" if owner else "replica_written"
        log.info(
            event,
            asset=sha,
            target=name,
            path=key,
            bytes=size,
            method=str(method),
            duration=round(time.monotonic() - started, 3),
            **({"was": repair} if repair else {}),
            **({"installation": owner} if owner else {}),
        )

    def _commit_all(
        self,
        writers: dict[str, Writer],
        key: str,
        sha: str,
        size: int,
        mtime_ns: int | None,
        started: float,
        captured_at: str,
    ) -> None:
        # fsync and read-back wait on each device: do every target at once.
        futures = [
            self._pool.submit(self._commit, n, w, key, sha, size, mtime_ns, started, captured_at)
            for n, w in writers.items()
        ]
        for f in futures:
            f.result()

    def judge(self, sha: str) -> None:
        held = [r.target for r in self.catalog.replicas(sha)]
        verdict = policy.evaluate(self.rule, held, self._infos)
        if verdict.compliant:
            log.info(
                "asset_protected",
                asset=sha,
                copies=verdict.copies,
                media=verdict.media,
                offsite=verdict.offsite,
            )
        else:
            log.info(
                "policy_unmet", asset=sha, copies=verdict.copies, missing=list(verdict.missing)
            )

    def _pump(
        self, stream: BinaryIO, writers: dict[str, Writer], dropped: dict[str, TargetUnavailable]
    ) -> str:
        """Read a stream once: hash it and feed every writer.  A writer that fails is
        moved to ``dropped`` while the others go on."""
        h = hashlib.sha256()
        while chunk := stream.read(CHUNK):
            if self.stop.is_set():
                raise Stopping
            h.update(chunk)
            for name, writer in list(writers.items()):
                try:
                    writer.write(chunk)
                except TargetUnavailable as exc:
                    del writers[name]
                    self.catalog.drop_temp(name, writer.temp_key)
                    dropped[name] = exc
        return h.hexdigest()

    # -- a new file ------------------------------------------------------------------

    def store_new(self, new: NewFile) -> tuple[str, bool]:
        """Copy a file nobody has seen yet to every available target in one read.
        Returns (sha256, whether it was a new asset)."""
        started = time.monotonic()
        writers: dict[str, Writer] = {}
        dropped: dict[str, TargetUnavailable] = {}
        for name in self.available():
            if self.targets[name].queued:
                continue  # uploaded by the catch-up, from a verified local copy
            free = self.targets[name].target.free_bytes()
            if free is not None and free < new.size:
                dropped[name] = TargetFull(name, new.size, free)
                continue
            try:
                writers[name] = self.targets[name].open_writer(new.key)
            except TargetUnavailable as exc:
                dropped[name] = exc
        self._register(writers)
        try:
            f = new.file
            before = os.fstat(f.fileno())
            if (before.st_size, before.st_mtime_ns) != (new.size, new.mtime_ns):
                raise SourceChanged(str(new.path))
            f.seek(0)
            sha = self._pump(f, writers, dropped)
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (new.size, new.mtime_ns):
                raise SourceChanged(str(new.path))
        except BaseException:
            self._abort_all(writers)
            raise
        try:
            with self._new_lock:
                is_new = self.catalog.asset(sha) is None
                key = new.key
                if is_new:
                    if self.catalog.relpath_taken(key):
                        key = suffixed(key, sha)
                    self.catalog.add_asset(sha, new.size, key, new.info, new.source, new.relpath)
                    # Where the bytes are, at once: if photod dies before the copies land,
                    # the catch-up after the restart copies from this file.
                    self.catalog.saw_source_file(
                        new.source, new.relpath, new.size, new.mtime_ns, sha
                    )
                mine = self._take(sha, list(writers)) if is_new else []
        except BaseException:  # the catalog refused (a full disk): no temporary stays
            self._abort_all(writers)
            raise
        try:
            self._abort_all({n: w for n, w in writers.items() if n not in mine})
            if is_new:
                log.info(
                    "asset_ingested",
                    asset=sha,
                    source=new.source,
                    path=new.relpath,
                    bytes=new.size,
                    kind=str(new.info.kind),
                    format=new.info.format,
                    captured_at=new.info.captured_at.isoformat(),
                    captured_from=new.info.capture_source,
                    key=key,
                )
                if new.info.decodable is False:
                    log.warning(
                        "asset_undecodable",
                        asset=sha,
                        source=new.source,
                        path=new.relpath,
                        problem=new.info.problem,
                    )
                for name, err in dropped.items():
                    self._fail(sha, name, err)
                self._commit_all(
                    {n: writers[n] for n in mine},
                    key,
                    sha,
                    new.size,
                    new.mtime_ns,
                    started,
                    new.info.captured_at.isoformat(),
                )
        finally:
            self._release(sha, mine)
        if not is_new:
            self.catalog.saw_source_file(new.source, new.relpath, new.size, new.mtime_ns, sha)
        if is_new:
            self.judge(sha)
            self.on_new()
        return sha, is_new

    def _abort_all(self, writers: dict[str, Writer]) -> None:
        for name, w in writers.items():
            w.abort()
            self.catalog.drop_temp(name, w.temp_key)

    # -- catch-up --------------------------------------------------------------------

    def _sources_for(self, asset: Asset, exclude: str) -> Iterator[Callable[[], BinaryIO]]:
        """Openers for a copy of the asset's bytes: verified replicas on other available
        targets first, then source files that look unchanged since they were hashed."""
        # Local copies first: reading back from a remote costs time and egress.
        replicas = sorted(
            self.catalog.replicas(asset.sha256),
            key=lambda r: r.target in self.targets and self.targets[r.target].queued,
        )
        for r in replicas:
            state = self.targets.get(r.target)
            if r.target != exclude and state is not None and state.available:
                yield functools.partial(state.target.open, r.relpath)
        for source, rel, size, mtime_ns in self.catalog.source_paths(asset.sha256):
            root = self.source_roots.get(source)
            if root is None:
                continue
            try:
                st = os.lstat(root / rel)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                yield functools.partial(open_source, root, rel)  # hashed on the way

    def copy_asset(self, asset: Asset, name: str) -> bool:
        """Copy one asset to one target from the best copy there is; True on success."""
        started = time.monotonic()
        if not self._take(asset.sha256, [name]):
            return False
        try:
            if self._take_shared(asset, name, started):
                return True
            last: Exception | None = None
            for opener in self._sources_for(asset, name):
                try:
                    writer = self.targets[name].open_writer(asset.relpath)
                except TargetUnavailable as exc:
                    self._fail(asset.sha256, name, exc)
                    return False
                writers: dict[str, Writer] = {name: writer}
                self._register(writers)
                dropped: dict[str, TargetUnavailable] = {}
                try:
                    with opener() as stream:
                        try:
                            mtime_ns: int | None = os.fstat(stream.fileno()).st_mtime_ns
                        except (OSError, ValueError, AttributeError):
                            mtime_ns = None
                        sha = self._pump(stream, writers, dropped)
                    if sha != asset.sha256:
                        raise ChecksumMismatch("source copy", asset.sha256, sha)
                except (OSError, ChecksumMismatch) as exc:
                    self._abort_all(writers)
                    last = exc
                    continue
                except BaseException:
                    self._abort_all(writers)
                    raise
                if name in dropped:
                    self._fail(asset.sha256, name, dropped[name])
                    return False
                self._commit(
                    name,
                    writer,
                    asset.relpath,
                    asset.sha256,
                    asset.size,
                    mtime_ns,
                    started,
                    asset.captured_at,
                )
                return self.catalog.replica_exists(asset.sha256, name)
            self._fail(asset.sha256, name, last or PhotodError("no readable copy is reachable now"))
            return False
        finally:
            self._release(asset.sha256, [name])

    def _take_shared(self, asset: Asset, name: str, started: float) -> bool:
        """Record another installation's proved copy of the asset on the target instead
        of uploading it; True when there was one."""
        state = self.targets[name]
        if state.records is None or self.catalog.repairs(asset.sha256, name):
            return False
        found = ledgers.shared_copy(self.catalog, name, state.target, asset.sha256)
        if found is None:
            return False
        key, owner = found
        self.catalog.add_replica(asset.sha256, name, key, asset.size, VerifyMethod.EXISTING,
                                 owner=owner)  # fmt: skip
        if state.records.ledger.append([ManifestEntry(asset.sha256, key, asset.size,
                                                      asset.captured_at)]):  # fmt: skip
            with state.lock:
                ledgers.flush(self.catalog, name, state.records)
        log.info("replica_shared", asset=asset.sha256, target=name, path=key, bytes=asset.size,
                 installation=owner, duration=round(time.monotonic() - started, 3))  # fmt: skip
        return True

    def replicate_pending(self, name: str, batch: int = 500) -> int:
        """Copy what a target is missing, oldest first, ``transfers`` at a time; returns
        how many were copied."""
        state = self.targets[name]
        if not state.available or not self.catalog.anything_pending(name, time.time()):
            return 0

        def one(asset: Asset) -> bool:
            if self.stop.is_set() or not state.available:
                return False
            if not self.copy_asset(asset, name):
                return False
            self.judge(asset.sha256)
            return True

        done = 0
        with ThreadPoolExecutor(state.transfers, thread_name_prefix=f"upload-{name}") as pool:
            while not self.stop.is_set() and state.available:
                todo = self.catalog.pending(name, batch, time.time())
                with self._inflight_lock:
                    todo = [a for a in todo if (a.sha256, name) not in self._inflight]
                if not todo:
                    break
                copied = sum(pool.map(one, todo))
                done += copied
                if not copied:
                    break
        return done


def open_source(root: Path, rel: str) -> BinaryIO:
    """A source file opened beneath its folder's root, through no link (the caller
    closes it); LinkRefused, FileNotFoundError and other OSErrors as they come."""
    root_fd = open_root(root)
    try:
        return os.fdopen(open_beneath(root_fd, rel, os.O_RDONLY | os.O_NONBLOCK), "rb")
    finally:
        os.close(root_fd)
