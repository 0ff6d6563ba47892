"""Get the photos back: ``photod restore`` and the restore drills.

A restored file is written beside its final name, hashed on the way, fsynced, and only
then given its name, never over an existing file: a file already there with the same
bytes is skipped, one with different bytes is left alone and reported.  Each file
comes from the first target that gives the right bytes: local targets before remote
ones, so a restore costs no egress when a drive is at hand.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from photod.catalog import Catalog
from photod.errors import PhotodError, TargetUnavailable, UnsafeName
from photod.logs import log
from photod.media import check_key
from photod.models import Asset, Kind
from photod.probe import HEAD_BYTES, probe
from photod.replicate import TargetState
from photod.targets.base import CHUNK, Identity
from photod.verify import hash_stream, month


@dataclass
class RestoreReport:
    restored: int = 0
    skipped: int = 0  # already there with the same bytes
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def select(
    catalog: Catalog,
    since: date | None = None,
    until: date | None = None,
    match: str | None = None,
) -> Iterator[Asset]:
    """Assets whose capture date is within [since, until] and whose path in the
    library matches the glob."""
    for asset in catalog.assets():
        day = asset.captured_at[:10]
        if (since or until) and not day:
            continue  # capture time unknown (rebuilt from a store that keeps none)
        if since is not None and day < since.isoformat():
            continue
        if until is not None and day > until.isoformat():
            continue
        if match is not None and not (
            fnmatch.fnmatch(asset.relpath, match)
            or fnmatch.fnmatch(Path(asset.relpath).name, match)
        ):
            continue
        yield asset


def open_targets(
    catalog: Catalog, targets: dict[str, TargetState], only: str | None = None
) -> dict[str, TargetState]:
    """The targets that answer now (read-only: nothing is written to them), local
    ones first.  Raises PhotodError when ``only`` is unknown or unreachable."""
    if only is not None and only not in targets:
        raise PhotodError(f"no target named {only!r}; configured: {', '.join(targets)}")
    ready: dict[str, TargetState] = {}
    for name, state in sorted(targets.items(), key=lambda kv: kv[1].queued):
        if only is not None and name != only:
            continue
        record = catalog.target(name)
        known = Identity(record.target_id, record.root, record.mount_rel) if record else None
        try:
            state.target.check(known, prepare=False)
        except TargetUnavailable as exc:
            log.warning("target_unavailable", target=name, reason=exc.reason)
            if only is not None:
                raise PhotodError(f"target {name!r} is unavailable: {exc.reason}") from exc
            continue
        ready[name] = state
    return ready


class Restorer:
    def __init__(
        self, catalog: Catalog, targets: dict[str, TargetState], stop: threading.Event
    ) -> None:
        self.catalog = catalog
        self.targets = targets  # already checked, in the order to try them
        self.stop = stop
        self.on_bytes: Callable[[int], None] = lambda n: None

    def restore(self, assets: Iterable[Asset], dest: Path) -> RestoreReport:
        report = RestoreReport()
        dest.mkdir(parents=True, exist_ok=True)
        for asset in assets:
            if self.stop.is_set():
                break
            outcome = self.one(asset, dest)
            if outcome == "restored":
                report.restored += 1
                report.bytes += asset.size
            elif outcome == "skipped":
                report.skipped += 1
            else:
                report.failed.append((asset.relpath, outcome))
                log.warning("restore_failed", asset=asset.sha256, path=asset.relpath, error=outcome)
        return report

    def one(self, asset: Asset, dest: Path) -> str:
        """Restore one asset: 'restored', 'skipped', or why it failed."""
        try:
            final = dest / check_key(asset.relpath)  # never outside DEST
        except UnsafeName as exc:
            return str(exc)
        if final.exists():
            same = final.stat().st_size == asset.size and _sha_file(final) == asset.sha256
            if same:
                self.on_bytes(asset.size)
                return "skipped"
            return "a different file is already there; left untouched"
        held = {r.target: r.relpath for r in self.catalog.replicas(asset.sha256)}
        tried: list[str] = []
        for name, state in self.targets.items():
            if name not in held:
                continue
            why = self._copy(state, held[name], asset, final)
            if why == "":
                return "restored"
            tried.append(f"{name}: {why}")
        if not tried:
            return "no reachable target holds a verified copy"
        return "; ".join(tried)

    def _copy(self, state: TargetState, key: str, asset: Asset, final: Path) -> str:
        """Copy one replica to ``final``; '' on success, else why not."""
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".photod-restore-{secrets.token_hex(6)}.tmp")
        h = hashlib.sha256()
        try:
            with state.target.open(key) as src, open(temp, "xb") as out:
                while chunk := src.read(CHUNK):
                    if self.stop.is_set():
                        raise OSError("stopped")
                    h.update(chunk)
                    out.write(chunk)
                    self.on_bytes(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != asset.sha256:
                return f"bytes do not match (got {h.hexdigest()[:12]}); the next scrub repairs it"
            try:
                os.link(temp, final)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                return "a different file appeared there; left untouched"
            except OSError:  # no hard links (FAT, exFAT): check, then rename
                if final.exists():
                    return "a different file appeared there; left untouched"
                os.rename(temp, final)
            return ""
        except FileNotFoundError:
            return "missing on the target"
        except (OSError, TargetUnavailable) as exc:
            return str(exc)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def drill(
    catalog: Catalog,
    targets: dict[str, TargetState],
    sample: int,
    stop: threading.Event,
    scratch: Path | None = None,
) -> dict[str, bool]:
    """Restore a random sample from each target into a temporary folder, check every
    hash and that photos decode and videos' containers parse, then delete the sample.
    Logs ``drill_passed`` or ``drill_failed`` per target; returns {target: passed}."""
    results: dict[str, bool] = {}
    for name, state in targets.items():
        if stop.is_set():
            break
        started = time.monotonic()
        picked = catalog.sample(name, sample)
        if not picked:
            continue
        problems: list[str] = []
        with tempfile.TemporaryDirectory(prefix="photod-drill-", dir=scratch) as tmp:
            restorer = Restorer(catalog, {name: state}, stop)
            for asset, decoded in picked:
                outcome = restorer.one(asset, Path(tmp))
                if state.queued:  # a remote's drill downloads: it counts as egress
                    catalog.add_egress(name, month(), asset.size)
                if outcome != "restored":
                    problems.append(f"{asset.relpath}: {outcome}")
                    continue
                problem = _decode(Path(tmp) / asset.relpath, asset)
                if problem and decoded is not False:  # it decoded when it came in
                    problems.append(f"{asset.relpath}: {problem}")
            shutil.rmtree(tmp, ignore_errors=True)
        if stop.is_set():
            break  # cut short by a shutdown: neither passed nor failed
        passed = not problems
        detail = "; ".join(problems[:5])
        catalog.add_drill(name, passed, len(picked), detail)
        results[name] = passed
        event = log.info if passed else log.error
        event(
            "drill_passed" if passed else "drill_failed",
            target=name,
            files=len(picked),
            failed=len(problems),
            problems=problems[:20],
            duration=round(time.monotonic() - started, 3),
        )
    catalog.ran("drill", {"passed": results})
    return results


def _decode(path: Path, asset: Asset) -> str:
    """'' when a restored photo decodes (or a video's container parses)."""
    if asset.kind not in (Kind.PHOTO, Kind.VIDEO):
        return ""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    info = probe(str(path), path.name, head, path.stat().st_mtime, "full")
    if info is None:
        return "not recognised as a photo or video any more"
    return info.problem


def _sha_file(path: Path) -> str:
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f, lambda n: None, threading.Event())
