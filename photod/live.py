"""What the running daemon says about itself: the one line `systemctl status photod`
shows, and its answer to `photod status` over the control socket."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from photod import catalog_guard, failpoints, jobs, policy
from photod.errors import PhotodError
from photod.pipeline import Pipeline


def iso(t: float) -> str | None:
    """ISO UTC; None for "forever" (a pause with no end)."""
    if t == float("inf"):
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_KIND = {"internal": "folder", "external": "external drive", "nas": "NAS", "cloud": "offsite"}


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "a moment"


def status_line(pipeline: Pipeline) -> str:
    """The one line `systemctl status photod` shows: "3 folders, 1 phone, 12,301
    photos, all protected", then any target that is missing and since when.  A catalog
    that cannot be read says so here; the daemon settles it again (catalog.problem)."""
    failpoints.hit("status_line")  # a fault in the daemon's own loop, for its test
    try:
        return _status_line(pipeline)
    except PhotodError as exc:
        return f"cannot read the catalog: {exc}"


def _status_line(pipeline: Pipeline) -> str:
    catalog, cfg = pipeline.catalog, pipeline.cfg
    assets, _ = catalog.counts()
    infos = catalog.counting(cfg.target_infos(), cfg.schedule.scrub_cycle)
    short = sum(
        n
        for held, n, _ in catalog.holdings()
        if not policy.evaluate(cfg.policy.rule(), held, infos).compliant
    )
    folders, phones = len(cfg.folders), len(catalog.devices())
    parts = [
        f"{folders} folder{'s' if folders != 1 else ''}",
        f"{phones} phone{'s' if phones != 1 else ''}",
        f"{assets:,} photos",
        "nothing to protect yet" if not assets else
        "all protected" if not short else f"{short:,} not protected yet",
    ]  # fmt: skip
    now = time.time()
    for name, state in pipeline.targets.items():
        if not state.available:
            kind = _KIND.get(str(state.info.media), "target")
            parts.append(f"{kind} '{name}' missing for {_ago(now - state.since)} ({state.reason})")
    return ", ".join(parts[:4]) + "".join(f"; {p}" for p in parts[4:])


def status_reply(pipeline: Pipeline, scheduler: Any, paused_until: float) -> dict[str, Any]:
    """The daemon's answer to `photod status`: what runs, what waits, and why."""
    return {
        "ok": True,
        "pid": os.getpid(),
        "paused": pipeline.paused(),
        "paused_until": iso(paused_until) if pipeline.paused() else None,
        "busy": pipeline.busy(),
        "running": pipeline.activity.now(),
        "waiting_for_mains": sorted(pipeline.deferred),
        "imports": pipeline.devices.live() if pipeline.devices is not None else [],
        "next_runs": jobs.schedule(scheduler),
        "targets": {n: s.available for n, s in pipeline.targets.items()},
        "reasons": {n: s.reason for n, s in pipeline.targets.items() if not s.available},
    }


def held_reply(held: catalog_guard.Verdict) -> dict[str, Any]:
    """The answer while the catalog is not acted on: why, and what fixes it."""
    return {"ok": True, "pid": os.getpid(), "paused": False, "busy": False, "running": [],
            "waiting_for_mains": [], "imports": [], "next_runs": {}, "targets": {},
            "held": {"found": held.found, "keeps": held.keeps, "fix": held.fix}}  # fmt: skip
