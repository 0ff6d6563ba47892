"""Copy assets to targets and prove every copy.

Two ways in:
- ``store_new``: a file nobody has seen.  It is read once; each chunk is hashed and
  written to every available target at the same time, then every target makes its copy
  durable and reads it back in parallel.  That is this module's own job.
- ``replicate_pending``: catch-up for a target that missed assets (it was unplugged,
  full, read-only).  Bytes come from a verified replica on another target, or from the
  source file while it is unchanged, and are hashed again on the way (``catchup.py``).

Both go through the same steps of one copy (``copies.Copier``): a copy counts (a
``verified`` replica in the catalog, an entry in this installation's list on the
target) only after the target read it back and the SHA-256 matched.  On a target
shared with other computers, bytes another installation already stored there are
proved and recorded, not written again (``ledgers.shared_copy``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from photod.catalog import Catalog
from photod.catchup import CatchUp
from photod.copies import Copier
from photod.errors import SourceChanged, TargetFull, TargetUnavailable
from photod.fleet import Fleet
from photod.logs import log
from photod.models import Asset, PolicyRule, Probe
from photod.targets.base import Writer


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
    # Set for a phone's file only: the SHA-256 of photod's own copy in its private
    # staging, hashed as it was written there.  A local target on the same disk takes
    # that copy by a hard link (``Writer.adopt``) instead of its bytes written twice.
    staged_sha256: str | None = None


class Replicator:
    """Writing: a new file to every available target at once (``store_new``), and the
    catch-up of what a target missed (``replicate_pending``, by its ``CatchUp``).  Which
    targets may be written is the fleet's to say."""

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
        self.source_roots = source_roots
        self.on_new = on_new or (lambda: None)
        # One set of claims for both jobs: a new file and the catch-up never copy the
        # same asset to the same target at once.
        self.copier = Copier(catalog, fleet, rule, stop, retry_base, retry_max)
        self.catchup = CatchUp(self.copier, source_roots)
        self._new_lock = threading.Lock()  # one "is this asset new?" decision at a time
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, 2 * len(self.targets)), thread_name_prefix="commit"
        )

    # The waits before a failed copy is tried again belong to the copier (its ``fail``);
    # they stay readable and settable here, where they are given.
    @property
    def retry_base(self) -> float:
        return self.copier.retry_base

    @retry_base.setter
    def retry_base(self, seconds: float) -> None:
        self.copier.retry_base = seconds

    @property
    def retry_max(self) -> float:
        return self.copier.retry_max

    @retry_max.setter
    def retry_max(self, seconds: float) -> None:
        self.copier.retry_max = seconds

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def judge(self, sha: str) -> None:
        """Log whether the asset's copies meet the policy now."""
        self.copier.judge(sha)

    def copy_asset(self, asset: Asset, name: str) -> bool:
        """Copy one asset to one target from the best copy there is; True on success."""
        return self.catchup.copy_asset(asset, name)

    def replicate_pending(self, name: str, batch: int = 500) -> int:
        """Copy what a target is missing, oldest first, ``transfers`` at a time; returns
        how many were copied."""
        return self.catchup.replicate_pending(name, batch)

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
        self.copier.temps.register(writers)
        try:
            f = new.file
            before = os.fstat(f.fileno())
            if (before.st_size, before.st_mtime_ns) != (new.size, new.mtime_ns):
                raise SourceChanged(str(new.path))
            sha, adopted = self._fill(new, writers, dropped, before)
            after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (new.size, new.mtime_ns):
                raise SourceChanged(str(new.path))
        except BaseException:
            self.copier.temps.abort_all(writers)
            raise
        mine: list[str] = []
        recorded: set[str] = set()  # the targets whose copy is recorded now
        try:
            with self._new_lock:
                is_new = self.catalog.asset(sha) is None
                key = new.key
                # Claimed before the asset is recorded: from then on the catch-up sees it
                # pending, and must leave these copies to this store (else both copy it).
                mine = self.copier.take(sha, list(writers)) if is_new else []
                if is_new:  # (named as no other asset is, in the same transaction)
                    # With the file it came from, in one transaction: a catch-up that sees
                    # the asset (a queued target's, or after a crash) has it to copy from.
                    key = self.catalog.add_asset(sha, new.size, key, new.info, new.source,
                                                 new.relpath, new.mtime_ns) or key  # fmt: skip
        except BaseException:  # the catalog refused (a full disk): no temporary stays
            self.copier.release(sha, mine)
            self.copier.temps.abort_all(writers)
            raise
        try:
            self.copier.temps.abort_all({n: w for n, w in writers.items() if n not in mine})
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
                    self.copier.fail(sha, name, err)
                recorded = self._commit_all(
                    {n: writers[n] for n in mine},
                    key,
                    sha,
                    new.size,
                    new.mtime_ns,
                    started,
                    new.info.captured_at.isoformat(),
                )
        finally:
            self.copier.release(sha, mine)
        if not is_new:  # the same bytes came in another file at the same time
            self.catalog.saw_source_file(new.source, new.relpath, new.size, new.mtime_ns, sha)
            log.info("asset_seen_again", asset=sha, source=new.source, path=new.relpath)
        if is_new:
            self.copier.judge(sha)
            self.on_new()
        if adopted in mine and adopted not in recorded:
            # The linked file did not become a copy (its read-back failed: the staged
            # bytes may not be the phone's): the phone's file is read again.
            raise SourceChanged(f"{new.path}: its link into {adopted!r} was not proved")
        return sha, is_new

    def _fill(
        self,
        new: NewFile,
        writers: dict[str, Writer],
        dropped: dict[str, TargetUnavailable],
        st: os.stat_result,
    ) -> tuple[str, str]:
        """Give every writer the file's bytes, read once; its SHA-256.  One target may
        adopt a staged file (a link) and take none: two targets on one disk must
        still be two copies.  When no other target is written, nothing is read here,
        and the commit's read-back proves the copy against the hash the staging took.
        Returns the hash and the target that adopted the file ('' for none)."""
        adopted = ""
        if new.staged_sha256 is not None:
            adopted = next((n for n, w in writers.items() if w.adopt(new.path, st)), "")
        rest = {n: w for n, w in writers.items() if n != adopted}
        if not rest and new.staged_sha256 is not None:
            return new.staged_sha256, adopted
        new.file.seek(0)
        # The Content-MD5 of an upload to come, from this read (``copies.Md5s``)
        takers = self.copier.md5s.wanted(new.size)
        md5 = hashlib.md5() if takers else None
        sha = self.copier.pump(new.file, rest, dropped, md5=md5)
        if not sha:  # a file can always be read again; never record an asset without one
            raise SourceChanged(f"{new.path}: its SHA-256 could not be taken")
        if md5 is not None:
            self.copier.md5s.remember(sha, md5, takers)
        if new.staged_sha256 is not None and sha != new.staged_sha256:
            # The staged bytes are not what came from the phone: no copy of them counts.
            raise SourceChanged(f"{new.path}: read {sha}, expected {new.staged_sha256}")
        for name in set(writers) - {adopted} - set(rest):  # dropped by the pump
            del writers[name]
        return sha, adopted

    def _commit_all(
        self,
        writers: dict[str, Writer],
        key: str,
        sha: str,
        size: int,
        mtime_ns: int | None,
        started: float,
        captured_at: str,
    ) -> set[str]:
        """Commit each copy; the targets whose copy is recorded."""
        if len(writers) == 1:  # one target: no hand-over to another thread to wait for
            [(name, writer)] = writers.items()
            ok = self.copier.commit(name, writer, key, sha, size, mtime_ns, started, captured_at)
            return {name} if ok else set()
        # fsync and read-back wait on each device: do every target at once.
        futures = {
            n: self._pool.submit(
                self.copier.commit, n, w, key, sha, size, mtime_ns, started, captured_at
            )
            for n, w in writers.items()
        }
        return {n for n, f in futures.items() if f.result()}
