"""What the running daemon says about itself: the one line `systemctl status photod`
shows, and its answers over the control socket (`photod status`, `backup`, `verify`,
`drill`, `pause`, `resume`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from photod import catalog_guard, failpoints, jobs, logs, policy
from photod.clock import SYSTEM
from photod.errors import PhotodError
from photod.logs import log
from photod.pause import Pause
from photod.pipeline import Pipeline


def iso(t: float) -> str | None:
    """ISO UTC; None for "forever" (a pause with no end)."""
    if t == float("inf"):
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


LONGEST_PAUSE = 100 * 365 * 86400  # seconds: every end a date can say, as status shows it
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
    now = SYSTEM.boottime()  # (``since``'s clock)
    for name, state in pipeline.targets.items():
        if not state.available:
            kind = _KIND.get(str(state.info.media), "target")
            parts.append(f"{kind} '{name}' missing for {_ago(now - state.since)} ({state.reason})")
    return ", ".join(parts[:4]) + "".join(f"; {p}" for p in parts[4:])


def status_reply(pipeline: Pipeline, scheduler: Any) -> dict[str, Any]:
    """The daemon's answer to `photod status`: what runs, what waits, and why."""
    return {
        "ok": True,
        "pid": os.getpid(),
        "paused": pipeline.paused(),
        "paused_until": iso(pipeline.pause.until()) if pipeline.paused() else None,
        "busy": pipeline.busy(),
        "running": pipeline.activity.now(),
        "failing": pipeline.failing.lines(),  # the scheduled jobs failing at each run
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


def answer(
    request: dict[str, Any],
    pipeline: Pipeline | None,
    scheduler: Any,
    held: catalog_guard.Verdict | None,
    pause: Pause,
) -> dict[str, Any]:
    """The running daemon's answer to one request from the command line (see
    control.py): ``held`` while its catalog is not acted on; no ``pipeline`` while it
    starts or reloads; ``pause``: the daemon's, which outlives a reload."""
    cmd = request["cmd"]
    if held is not None and cmd == "status":
        return held_reply(held)
    if held is not None:
        return {"ok": False, "message": f"not acting: {held.found}; {held.fix}"}
    if pipeline is None or scheduler is None:
        return {"ok": False, "message": "the daemon is starting or reloading; try again"}
    if cmd == "status":
        return status_reply(pipeline, scheduler)
    if cmd == "backup":
        for job in ("reconcile", "retry", "upload"):
            pipeline.wake(job)
        note = " (paused: it starts when you `photod resume`)" if pipeline.paused() else ""
        return {"ok": True, "message": "backing up now: scanning the watch folders and "
                f"copying what is pending{note}; `photod status` shows progress"}  # fmt: skip
    if cmd == "verify":
        return jobs.verify_now(pipeline, scheduler, request.get("target"), bool(request.get("all")))  # fmt: skip
    if cmd == "drill":
        return jobs.drill_now(pipeline, scheduler, request.get("target"))
    if cmd == "pause":
        seconds = request.get("seconds")
        if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
            return {"ok": False, "message": "seconds must be a positive number"}
        if seconds is not None and seconds > LONGEST_PAUSE:  # (its end: past year 9999)
            return {"ok": False, "message": "a pause --for longer than 100 years cannot "
                    "end on a date: leave --for out to pause until `photod resume`"}  # fmt: skip
        pause.start(float(seconds) if seconds else None)
        until = iso(pause.until())
        log.info("daemon_paused", **({"until": until} if until else {}))
        when = f"until {logs.local_time(until)}" if until else "until `photod resume`"
        return {"ok": True, "message": f"paused {when}: no import, copy, scan or scrub "
                "starts; work in flight finishes"}  # fmt: skip
    if cmd == "resume":
        if not pipeline.paused():
            return {"ok": True, "message": "not paused: nothing to resume"}
        pause.end()
        log.info("daemon_resumed")
        for job in ("reconcile", "retry", "upload"):
            pipeline.wake(job)
        return {"ok": True, "message": "resumed"}
    return {"ok": False, "message": f"unknown command {cmd!r}"}
