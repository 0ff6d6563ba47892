"""The steps every copy of an asset to a target shares, in one place: the store of a
new file (``replicate.Replicator.store_new``) and the catch-up (``catchup.CatchUp``)
both go through a ``Copier``.

- a claim on each (asset, target) pair, so that no two jobs copy the same one at once;
- the temporaries noted before any byte is written, so that a crash can clean them:
  their record (``temporaries.Temporaries``, ``Copier.temps``) kept in step by each
  step here;
- one read that hashes a stream and feeds every writer (``pump``), and with a new
  file's SHA-256 the Content-MD5 its upload will carry, from the same read
  (``Md5s``): the upload's bytes are then proved by the server's check of that MD5
  and are not hashed again;
- publishing a copy once it is proved, never over another file, and recording it
  (``commit``); on a target shared with other computers, bytes another installation
  already stored there are proved and recorded instead (``ledgers.shared_copy``);
- a failure recorded with the time of the next try (``fail``), and the policy's
  verdict on an asset once its copies landed (``judge``).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterable
from typing import BinaryIO

from photod import failpoints, ledgers, policy
from photod.catalog import Catalog
from photod.errors import (
    BytesNotHashed,
    KeyExists,
    PhotodError,
    Stopping,
    TargetFull,
    TargetUnavailable,
)
from photod.fleet import Fleet, TargetState
from photod.hashing import hash_stream
from photod.logs import log
from photod.media import suffixed
from photod.models import Asset, ManifestEntry, PolicyRule, VerifyMethod
from photod.targets.base import CHUNK, Target, Writer, holds, unread
from photod.temporaries import Temporaries

VOUCHED_MAX = 50_000  # Content-MD5s kept for uploads still to come (~15 MB at most)


class Copier:
    def __init__(
        self,
        catalog: Catalog,
        fleet: Fleet,
        rule: PolicyRule,
        stop: threading.Event,
        retry_base: float,
        retry_max: float,
    ) -> None:
        """``rule``: what ``judge`` holds an asset's copies to; ``retry_base`` and
        ``retry_max``: the first and the longest wait before a failed copy is tried
        again (doubling in between)."""
        self.catalog = catalog
        self.fleet = fleet
        self.targets = fleet.targets
        self.rule = rule
        self.stop = stop
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._infos = {n: s.info for n, s in self.targets.items()}
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_lock = threading.Lock()
        self.temps = Temporaries(catalog, self.targets)  # (a crash's tidy finds them)
        self.md5s = Md5s(self.targets)  # (the Content-MD5s taken at ingest)
        fleet.writing = self.temps.writing  # (a target's tidy leaves copies in flight)

    # -- claims ----------------------------------------------------------------------

    def take(self, sha: str, names: list[str]) -> list[str]:
        """Mark (asset, target) pairs as being copied so no other job copies them too;
        returns the names this caller got.  Give them back with ``release``."""
        with self._inflight_lock:
            mine = [n for n in names if (sha, n) not in self._inflight]
            self._inflight.update((sha, n) for n in mine)
        return mine

    def release(self, sha: str, names: list[str]) -> None:
        with self._inflight_lock:
            self._inflight.difference_update((sha, n) for n in names)

    def unclaimed(self, assets: Iterable[Asset], name: str) -> list[Asset]:
        """The assets no job is copying to target ``name`` now."""
        with self._inflight_lock:
            return [a for a in assets if (a.sha256, name) not in self._inflight]

    # -- writing ---------------------------------------------------------------------

    def pump(
        self,
        stream: BinaryIO,
        writers: dict[str, Writer],
        dropped: dict[str, TargetUnavailable],
        need_hash: bool = True,
        md5: hashlib._Hash | None = None,
    ) -> str:
        """Read a stream once, feed every writer and return the stream's SHA-256.  A
        writer that hashes what it takes (an upload, to prove its commit) hashes for
        the stream as well: each byte is hashed once, not twice.  A writer that fails
        is moved to ``dropped`` while the others go on; when every writer hashing was
        cut off, the stream is hashed again from its start.  Without ``need_hash`` (a
        catch-up: the hash only proves a copy) reading stops, returning '', once no
        writer is left; '' too when the hash is needed and the stream cannot go back.
        ``md5``: hashed too, with the SHA-256 this returns, from the same chunks."""
        start = _position(stream)
        hashers = [n for n, w in writers.items() if w.sha256() is not None]
        h = None if hashers and md5 is None else hashlib.sha256()
        while chunk := stream.read(CHUNK):
            if self.stop.is_set():
                raise Stopping
            if h is not None:
                h.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            for name, writer in list(writers.items()):
                try:
                    writer.write(chunk)
                    self.temps.renote(name, writer)
                except TargetUnavailable as exc:
                    del writers[name]
                    self.temps.end(name, writer)
                    dropped[name] = exc
            if not writers and not need_hash:
                return ""
        if h is not None:
            return h.hexdigest()
        if survivor := next((n for n in hashers if n in writers), None):
            return writers[survivor].sha256() or ""
        if start is None:
            return ""
        stream.seek(start)
        return hash_stream(stream, lambda n: None, self.stop, cold=False)

    def fail(self, sha: str, name: str, exc: Exception) -> None:
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
        # A remote that went away: the fleet's growing pause (reset only when a copy
        # lands) decides when it is asked again, and the catch-up runs only while it
        # answers, so the copy is due the moment it is back, not a retry_interval later.
        # (A local target is checked again at the next probe: its copies keep their
        # own doubling wait, or a file it refuses would be tried every 5 s.)
        away = isinstance(exc, TargetUnavailable) and not isinstance(exc, TargetFull)
        base = 0.0 if away and state.queued else self.retry_base
        delay = self.catalog.replica_failed(sha, name, str(exc), base, self.retry_max)
        log.warning("replica_failed", asset=sha, target=name, error=str(exc), retry_in=round(delay))

    def commit(
        self,
        name: str,
        writer: Writer,
        key: str,
        sha: str,
        size: int,
        mtime_ns: int | None,
        started: float,
        captured_at: str = "",
        repair: str = "",
        next_source: bool = False,
        disproved: set[ledgers.Found] | None = None,
    ) -> bool:
        """Publish one verified copy, never over another file, and record it; True once
        recorded.  Another installation's copy of these bytes on the target is proved and
        recorded instead, nothing published (not those ``disproved``: read in this try).
        ``next_source``: the caller has other sources: bytes not those hashed (the server's
        MD5 check) raise, no failed copy; ``repair``: why it replaces a bad copy ('' none)."""
        state = self.targets[name]
        try:
            method: VerifyMethod | None = None
            owner = ""
            shared = None
            if state.records is not None and not repair:
                shared = ledgers.shared_copy(self.catalog, name, state.target, sha, disproved)
            temp: str | None = writer.temp_key or None  # its record goes with the copy's
            if shared is not None:
                self.temps.end(name, writer)
                temp = None  # (``end`` decided about its record)
                key, owner, method = shared[0], shared[1], VerifyMethod.EXISTING
            for candidate in (key, suffixed(key, sha)) if method is None else ():
                try:
                    method = writer.commit(candidate, sha, mtime_ns, captured_at)
                except KeyExists as exc:
                    # Something is already there: ours from a run the catalog forgot, or
                    # another installation's copy of the same bytes (adopt either), or a
                    # different file (ours goes beside it under a suffix).  A file of
                    # another size (or told by the writer: an encrypted object's own
                    # line) is another's, passed unread: one that can never be read
                    # (no permission, archived) held the photo back for ever.  One of
                    # its size that cannot be read is neither: this try fails, and is
                    # made again (``unread``).
                    if _another_file(state.target, candidate, exc, size):
                        continue
                    try:
                        ours = exc.same or holds(state.target, candidate, sha)
                    except Stopping:
                        raise
                    except (OSError, PhotodError) as exc:
                        raise unread(
                            state.target, candidate, "the file taking its name", exc
                        ) from exc
                    if not ours:
                        continue
                    self.temps.end(name, writer)
                    temp = None
                    method = VerifyMethod.EXISTING
                    owner = self.catalog.listed_by_other(name, candidate, sha) or ""
                key = candidate
                break
            if method is None:
                raise KeyExists(suffixed(key, sha))
            failpoints.hit("replica_published")
            if temp is not None:  # (a commit may have started the upload: encrypted)
                self.temps.renote(name, writer)
                temp = writer.temp_key or None
            self.catalog.add_replica(sha, name, key, size, method, temp=temp,
                                     owner=owner)  # fmt: skip
            failpoints.hit("replica_recorded")
        except (PhotodError, OSError) as exc:
            self.temps.end(name, writer)
            if next_source and isinstance(exc, BytesNotHashed):
                raise
            self.fail(sha, name, exc)
            return False
        self.listed(name, ManifestEntry(sha, key, size, captured_at, mtime_ns))
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
        return True

    def listed(self, name: str, entry: ManifestEntry) -> None:
        """Put a recorded copy in the target's list (buffered: written once enough wait).
        The copy stands whatever happens here: a list the target refuses stays buffered
        for a later flush (said a failed copy, a recorded one counted as none made)."""
        records = self.targets[name].records
        if records is not None and records.ledger.append([entry]):
            try:
                self.fleet.flush_target(name)
            except PhotodError as exc:  # the catalog failed: the next start lists them
                log.warning("list_flush_failed", target=name, error=str(exc))

    # -- the verdict -----------------------------------------------------------------

    def judge(self, sha: str) -> None:
        """Log whether the asset's copies meet the policy now."""
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


def _another_file(target: Target, key: str, taken: KeyExists, size: int) -> bool:
    """Whether the file that took ``key`` is told another's without reading it: by the
    writer (an encrypted object's own line), or by its size, not the photo's.  The size
    the writer's own look before it published found is the one gone by: asked again, it
    was one request more to the server for each name taken (a HEAD, or an encrypted
    object's line fetched again)."""
    if taken.other:
        return True
    there = taken.size if taken.size is not None else target.size(key)
    return there not in (None, size)


def _position(stream: BinaryIO) -> int | None:
    """Where a stream is, when it can go back there (a file); None for a download."""
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


class Md5s:
    """The Content-MD5s taken with new files' SHA-256, in the same read, for their
    uploads to come (in one PUT: S3, plain), by asset: the server's check of one
    proves that the bytes sent are the bytes hashed, and the upload hashes nothing."""

    def __init__(self, targets: dict[str, TargetState]) -> None:
        self.targets = targets
        # sha -> the MD5, then the targets still to take it, NUL-separated: one string an
        # asset (a tuple of them cost 5 MB more at VOUCHED_MAX)
        self._md5s: dict[str, str] = {}
        self._lock = threading.Lock()

    def wanted(self, size: int) -> frozenset[str]:
        """The queued targets a new file's MD5 is worth taking for: each uploads it in
        one PUT (a file smaller than its ``one_put_below``)."""
        return frozenset(
            name
            for name, state in self.targets.items()
            if state.queued and size < getattr(state.target, "one_put_below", 0)
        )

    def remember(self, sha: str, md5: hashlib._Hash, takers: frozenset[str]) -> None:
        """Keep the MD5 of the read that hashed ``sha`` for the uploads of ``takers``;
        the oldest go first past VOUCHED_MAX (those uploads hash what they send)."""
        with self._lock:
            while len(self._md5s) >= VOUCHED_MAX:
                del self._md5s[next(iter(self._md5s))]
            self._md5s[sha] = "\0".join([base64.b64encode(md5.digest()).decode(), *takers])

    def vouch(self, name: str, writer: Writer, sha: str, size: int) -> None:
        """Give an asset's upload to target ``name`` the MD5 taken with its SHA-256
        (``S3Writer.vouch``).  Taken once by each target that uses it: a try that fails
        leaves the next to hash what it sends.  Another target's writer (a NAS's, an
        encrypted one's) leaves it for the uploads to come, and so does each S3 target
        for the others (taken and dropped by the first, the second S3 target's upload
        hashed every byte again)."""
        vouch = getattr(writer, "vouch", None)  # (S3's writer alone)
        if vouch is None:
            return
        with self._lock:
            md5, *takers = self._md5s.get(sha, "").split("\0")
            if name not in takers:
                return
            takers.remove(name)
            if takers:
                self._md5s[sha] = "\0".join([md5, *takers])
            else:
                del self._md5s[sha]
        vouch(sha, size, md5)
