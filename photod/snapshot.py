"""The catalog outlives the computer: snapshots on every target, and a rebuild.

After each batch of work the daemon writes a consistent copy of the catalog (SQLite's
online backup, gzipped) to every target as ``.photod/catalog.sqlite.gz``, sealed with
age on an encrypted target, and the recovery plan beside it as ``.photod/RECOVERY.md``.

``photod catalog rebuild --from TARGET`` starts from that snapshot and adds what the
target's manifest lists beyond it (photos that arrived after the last snapshot).  A
target without a snapshot is re-scanned in full: every object read, hashed and
probed.  Either way, anything adopted from the target was read and hashed first.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from photod.catalog import Catalog
from photod.errors import PhotodError, TargetUnavailable
from photod.logs import log
from photod.models import Kind, ManifestEntry
from photod.probe import HEAD_BYTES, probe
from photod.replicate import TargetState
from photod.targets.base import CHUNK

SNAPSHOT = "catalog.sqlite.gz"
PLAN = "RECOVERY.md"
SNAPSHOT_EVERY = 30.0  # seconds: at most this often while work keeps coming


def snapshot_bytes(catalog: Catalog, scratch: Path) -> bytes:
    """The whole catalog, consistent, gzipped."""
    with tempfile.TemporaryDirectory(prefix="photod-snapshot-", dir=scratch) as tmp:
        path = Path(tmp) / "catalog.sqlite"
        catalog.snapshot(path)
        return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


def write_all(
    catalog: Catalog, targets: dict[str, TargetState], scratch: Path, plan: str
) -> list[str]:
    """Put the snapshot and the recovery plan on every available target; returns the
    targets written."""
    started = time.monotonic()
    data = snapshot_bytes(catalog, scratch)
    written = []
    for name, state in targets.items():
        if not state.available:
            continue
        try:
            state.target.put_private(SNAPSHOT, data)
            state.target.put_meta(PLAN, plan.encode())
        except TargetUnavailable as exc:
            log.warning("snapshot_failed", target=name, reason=exc.reason)
            continue
        written.append(name)
    log.info(
        "catalog_snapshot_written",
        targets=written,
        bytes=len(data),
        duration=round(time.monotonic() - started, 3),
    )
    return written


@dataclass
class Rebuilt:
    from_snapshot: bool
    assets: int
    adopted: int  # read from the target beyond the snapshot (or all, without one)
    skipped: list[str]  # keys that could not be adopted, with why


def rebuild(
    db_path: Path, name: str, state: TargetState, stop: threading.Event | None = None
) -> Rebuilt:
    """Write a new catalog at ``db_path`` from one target (checked by the caller)."""
    stop = stop or threading.Event()
    tmp = db_path.with_name(db_path.name + ".rebuilding")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    data = state.target.get_private(SNAPSHOT)
    if data is not None:
        try:
            tmp.write_bytes(gzip.decompress(data))
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise PhotodError(f"the catalog snapshot on {name!r} is damaged: {exc}") from exc
    catalog = Catalog(tmp)  # brings an older snapshot's schema up to date
    skipped: list[str] = []
    adopted = 0
    try:
        known = {e.key for e in catalog.verified_on(name)}
        by_key = {e.key: e for e in state.target.manifest_entries()}
        todo = list(state.target.keys()) if data is None else sorted(set(by_key) - known)
        for key in todo:
            if stop.is_set():
                raise PhotodError("stopped before the rebuild finished; run it again")
            why = _adopt(catalog, name, state, key, by_key.get(key))
            if why:
                skipped.append(f"{key}: {why}")
                log.warning("rebuild_skipped", target=name, path=key, reason=why)
            else:
                adopted += 1
        assets, _ = catalog.counts()
    finally:
        catalog.close()
    os.replace(tmp, db_path)
    return Rebuilt(data is not None, assets, adopted, skipped)


def _adopt(
    catalog: Catalog, name: str, state: TargetState, key: str, listed: ManifestEntry | None
) -> str:
    """Read one object, hash and probe it, and record it; '' on success, else why not."""
    with tempfile.NamedTemporaryFile(prefix="photod-rebuild-", suffix=Path(key).suffix) as out:
        h = hashlib.sha256()
        mtime: float | None = None
        try:
            with state.target.open(key) as src:
                # A local copy keeps its source's mtime: the capture time of a photo
                # without EXIF, as at ingest.  Object stores keep none.
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    mtime = os.fstat(src.fileno()).st_mtime
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            return "listed in the manifest but not on the target"
        except (OSError, TargetUnavailable) as exc:
            return str(exc)
        out.flush()
        sha, size = h.hexdigest(), out.tell()
        if listed is not None and listed.sha256 != sha:
            return f"its bytes do not match the manifest (expected {listed.sha256[:12]})"
        with open(out.name, "rb") as f:
            head = f.read(HEAD_BYTES)
        info = probe(out.name, Path(key).name, head, mtime or 0.0, "off")
    kind, fmt, captured = Kind.SIDECAR, "unknown", ""
    if info is not None:
        kind, fmt = info.kind, info.format
        if info.capture_source != "mtime" or mtime is not None:
            captured = info.captured_at.isoformat()
    if listed is not None and listed.captured_at:
        captured = listed.captured_at
    catalog.adopt(ManifestEntry(sha, key, size, captured), name, kind, fmt, f"rebuild:{name}")
    return ""


def rebuild_catalog(
    catalog_path: Path, name: str, targets: dict[str, TargetState], force: bool
) -> tuple[Rebuilt, Path | None]:
    """``photod catalog rebuild --from NAME``: check the target (nothing is written to
    it), keep any existing catalog aside, and rebuild.  Returns what was rebuilt and
    where the old catalog went."""
    if name not in targets:
        raise PhotodError(f"no target named {name!r}; configured: {', '.join(targets)}")
    if catalog_path.exists() and not force:
        raise PhotodError(
            f"a catalog exists at {catalog_path}; add --force to rebuild anyway (the old "
            "one is kept beside it as .bak)"
        )
    state = targets[name]
    try:
        ident = state.target.check(None, prepare=False)  # reads the marker, writes nothing
        if not ident.target_id:
            raise PhotodError(f"{name!r} has no .photod/target.json: photod never wrote there")
        state.target.check(ident, prepare=True)  # an encrypted target reads its index
    except TargetUnavailable as exc:
        raise PhotodError(f"target {name!r} is unavailable: {exc.reason}") from exc
    aside = move_aside(catalog_path)
    result = rebuild(catalog_path, name, state)
    catalog = Catalog(catalog_path)
    try:
        catalog.save_target(name, ident.target_id, ident.root, ident.mount_rel)
    finally:
        catalog.close()
    log.info(
        "catalog_rebuilt",
        target=name,
        from_snapshot=result.from_snapshot,
        assets=result.assets,
        adopted=result.adopted,
        skipped=len(result.skipped),
        old_catalog=str(aside) if aside else None,
    )
    return result, aside


def move_aside(db_path: Path) -> Path | None:
    """Keep an existing catalog (and its WAL) under a dated name before a rebuild."""
    if not db_path.exists():
        return None
    aside = db_path.with_name(f"{db_path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.move(db_path, aside)
    for ext in ("-wal", "-shm"):
        extra = Path(f"{db_path}{ext}")
        if extra.exists():
            shutil.move(extra, Path(f"{aside}{ext}"))
    return aside
