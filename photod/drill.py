"""The restore drills: a random sample of each target restored into a temporary
folder through the same code as ``photod restore``, every hash checked, every photo
decoded, then deleted; the result kept in the catalog and logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from photod.catalog import Catalog, month
from photod.fleet import TargetState
from photod.logs import log
from photod.models import Asset, Kind
from photod.policy import plural
from photod.probe import probe_file
from photod.restore import Restorer
from photod.safeopen import open_root
from photod.statelock import DRILL_SCRATCH


class DrillResult(NamedTuple):
    """One target's drill: how many files it restored and checked, how many failed;
    or why it could not be drilled (``away``: not reachable)."""

    files: int
    failed: int
    away: str = ""

    @property
    def passed(self) -> bool:
        return not self.failed and not self.away

    def line(self, name: str) -> str:
        """'lib: drill passed: 20 photos restored and checked, 0 failed'."""
        if self.away:
            return f"{name}: not drilled: {self.away}"
        return (f"{name}: drill {'passed' if self.passed else 'FAILED'}: {self.counts}"
                + ("" if self.passed else " (photod logs --failures)"))  # fmt: skip

    @property
    def counts(self) -> str:
        """'20 photos restored and checked, 0 failed'."""
        return f"{plural(self.files - self.failed, 'photo')} restored and checked, {self.failed} failed"


def drill(
    catalog: Catalog,
    targets: dict[str, TargetState],
    sample: int,
    stop: threading.Event,
    scratch: Path | None = None,
    whole: bool = True,
) -> dict[str, DrillResult]:
    """Restore a random sample from each target into a temporary folder, check every
    hash and that photos decode and videos' containers parse, then delete the sample.
    Logs ``drill_passed`` or ``drill_failed`` per target; returns each target's counts.
    ``whole``: every available target was asked for (not `photod drill --target`): only
    such a run is the scheduled drill's, in status and for its catch-up."""
    results: dict[str, DrillResult] = {}
    before = catalog.last_drills()
    for name, state in targets.items():
        if stop.is_set():
            break
        started = time.monotonic()
        picked = catalog.sample(name, sample)
        if not picked:
            if name in before:  # it had good copies once: a pass must not stand for it
                why = "no good copy left to restore (each found bad or missing since)"
                catalog.add_drill(name, False, 0, why)
                results[name] = DrillResult(0, 0, why)
                log.error("drill_failed", target=name, files=0, failed=0, problems=[why])
            continue
        problems: list[str] = []
        with tempfile.TemporaryDirectory(prefix=DRILL_SCRATCH, dir=scratch) as tmp:
            restorer = Restorer(catalog, {name: state}, stop)
            tmp_fd = open_root(tmp)
            try:
                for asset, decoded in picked:
                    outcome = restorer.one(asset, tmp_fd)
                    if state.queued:  # a remote's drill downloads: it counts as egress
                        catalog.add_egress(name, month(), asset.size)
                    if outcome != "restored":
                        problems.append(f"{asset.relpath}: {outcome}")
                        continue
                    # (where it was put: a name Windows refuses comes back changed)
                    problem = _decode(Path(tmp) / restorer.placed, asset)
                    if problem and decoded is not False:  # it decoded when it came in
                        problems.append(f"{asset.relpath}: {problem}")
                    # Each file goes once checked: a sample of phone videos would fill the
                    # state dir (the catalog's disk) if kept to the end.
                    _empty(tmp)
            finally:
                os.close(tmp_fd)
            shutil.rmtree(tmp, ignore_errors=True)
        if stop.is_set():
            break  # cut short by a shutdown: neither passed nor failed
        passed = not problems
        detail = "; ".join(problems[:5])
        catalog.add_drill(name, passed, len(picked), detail)
        results[name] = DrillResult(len(picked), len(problems))
        event = log.info if passed else log.error
        event(
            "drill_passed" if passed else "drill_failed",
            target=name,
            files=len(picked),
            failed=len(problems),
            problems=problems[:20],
            duration=round(time.monotonic() - started, 3),
        )
    if whole and not stop.is_set():  # (one cut short is not the run its schedule wanted)
        catalog.ran("drill", {"passed": {n: r.passed for n, r in results.items()}})
    return results


def _empty(folder: str) -> None:
    """Everything in ``folder`` removed (it stays)."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _decode(path: Path, asset: Asset) -> str:
    """'' when a restored photo decodes (or a video's container parses)."""
    if asset.kind not in (Kind.PHOTO, Kind.VIDEO):
        return ""
    info = probe_file(str(path), path.name, path.stat().st_mtime, "full")
    if info is None:
        return "not recognised as a photo or video any more"
    return info.problem
