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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from photod import failpoints, ledgers, policy
from photod.catalog import Catalog
from photod.errors import (
    ChecksumMismatch,
    KeyExists,
    PhotodError,
    SourceChanged,
    Stopping,
    TargetFull,
    TargetUnavailable,
)
from photod.fleet import Fleet
from photod.logs import log
from photod.media import suffixed
from photod.models import Asset, ManifestEntry, PolicyRule, Probe, VerifyMethod
from photod.safeopen import open_beneath, open_root
from photod.targets.base import CHUNK, Writer, hash_object


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
    """Writing: a new file to every available target at once (``store_new``), and the
    catch-up of what a target missed (``replicate_pending``).  Which targets may be
    written is the fleet's to say."""

    def __init__(
        self,
        catalog: Catalog,
        fleet: Fleet,
        rule: PolicyRule,
        stop: threading.Event,
        source_roots: dict[str, Path],
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        on_new: Callable[[], None] | None = None,
    ) -> None:
        """``on_new``: told when a new file waits for the remote targets (the pipeline
        wakes the uploads)."""
        self.catalog = catalog
        self.fleet = fleet
        self.targets = fleet.targets
        self.rule = rule
        self.stop = stop
        self.source_roots = source_roots
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.on_new = on_new or (lambda: None)
        self._infos = {n: s.info for n, s in self.targets.items()}
        self._new_lock = threading.Lock()  # one "is this asset new?" decision at a time
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, 2 * len(self.targets)), thread_name_prefix="commit"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)

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
            self.fleet.fail(name, exc)
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
        for name in self.fleet.available():
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
