"""What each page shows, read from the catalog, the status report and the event log the
CLI reads (nothing here is the dashboard's own truth), as plain dicts for the templates.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from photod import logs, phonestatus, policy, status
from photod.albums import album_assets, albums
from photod.catalog import IGNORED, Catalog
from photod.library import asset_from_json
from photod.models import Asset, PolicyRule, TargetInfo
from photod.statusconfig import StatusSettings
from photod.targetspec import LocalSpec

CHART_DAYS = 30
UNSAFE_SHOWN = 1000  # thumbnails one "not yet safe" group shows
MONTH_SHOWN = 2000  # thumbnails one month of the library shows
EVENTS_SHOWN = 500


def report(settings: StatusSettings, live: Mapping[str, Any] | None) -> dict[str, Any]:
    """`photod status --json`, with the running daemon's view of the targets."""
    known = None
    if live and live.get("ok") and "targets" in live:
        reasons = live.get("reasons") or {}
        known = {n: (bool(up), str(reasons.get(n, ""))) for n, up in live["targets"].items()}
    out = status.collect(settings, known)
    if live and live.get("ok"):
        status.merge_live(out, dict(live))
        out["daemon"]["live"] = dict(live)
    return out


def chart(catalog: Catalog, settings: StatusSettings, today: date) -> list[dict[str, Any]]:
    """Per day of the last 30: photos added that day, protected now and not yet."""
    first = today - timedelta(days=CHART_DAYS - 1)
    days = {(first + timedelta(days=i)).isoformat(): [0, 0] for i in range(CHART_DAYS)}
    infos = catalog.counting(settings.target_infos(), settings.scrub_cycle)
    midnight = datetime.combine(first, time()).astimezone(UTC)  # (this computer's)
    for day, held, n in catalog.added_by_day(midnight.strftime("%Y-%m-%dT%H:%M:%SZ")):
        if day in days:
            safe = policy.evaluate(settings.rule, held, infos).compliant
            days[day][0 if safe else 1] += n
    return [{"day": d, "protected": p, "pending": q} for d, (p, q) in days.items()]


def unsafe(catalog: Catalog, settings: StatusSettings, rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The photos short of the policy, grouped by the targets they are not on yet, each
    group saying what it needs and why those targets do not have it."""
    infos = catalog.counting(settings.target_infos(), settings.scrub_cycle)
    targets = {t["name"]: t for t in rep["targets"]}
    groups = []
    for held, count, size in catalog.holdings():
        verdict = policy.evaluate(settings.rule, held, infos)
        if verdict.compliant:
            continue
        lacking = [n for n in targets if n not in held]
        why = [_why_not(targets[n]) for n in lacking]
        groups.append({
            "needs": "needs " + ", ".join(verdict.missing),
            "lacking": lacking,
            "why": why,
            "count": count,
            "bytes": size,
            "assets": [_card(a) for a in catalog.held_by(held, UNSAFE_SHOWN)],
        })  # fmt: skip
    return sorted(groups, key=lambda g: -g["count"])


def _why_not(t: Mapping[str, Any]) -> str:
    if t["available"]:
        return f"{t['name']}: copying (available, {t['pending']} waiting)"
    seen = f", last seen {logs.local_time(t['last_seen'])}" if t.get("last_seen") else ""
    return f"{t['name']}: unavailable: {t['reason']}{seen}"


def _card(a: Asset) -> dict[str, Any]:
    return {
        "sha": a.sha256,
        "name": Path(a.relpath).name,
        "path": a.relpath,
        "taken": a.captured_at[:10],
        "kind": str(a.kind),
        "size": a.size,
    }


def phones(
    catalog: Catalog, rule: PolicyRule, infos: Mapping[str, TargetInfo]
) -> list[dict[str, Any]]:
    """Each phone: `status --device`'s answer, and its photos month by month."""
    out = []
    for d in phonestatus.known_phones(catalog):
        rep = phonestatus.device_report(catalog, d, rule, dict(infos))
        months: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        judged: dict[str, bool] = {}
        for f, asset, problem, held in catalog.device_files(d.udid):
            if problem.startswith(IGNORED):
                continue
            if asset is not None and held not in judged:
                judged[held] = policy.evaluate(
                    rule, held.split("\0") if held else [], infos
                ).compliant
            # "Safe to delete" as status says it: protected, and taken before the moment
            # up to which everything on the phone is (none while it could not all be seen).
            before = rep["safe_before"] is None or (f.taken_at or "") < rep["safe_before"]
            safe = asset is not None and judged[held] and before
            months[(f.taken_at or "")[:7] or "undated"][0 if safe else 1] += 1
        rep["text"] = phonestatus.render_device(rep)
        rep["months"] = [{"month": m, "safe": s, "not": n} for m, (s, n) in sorted(months.items())]
        out.append(rep)
    return out


def library(
    catalog: Catalog,
    rule: PolicyRule,
    infos: Mapping[str, TargetInfo],
    month: str,
    album: str,
    device: str = "",
) -> dict[str, Any]:
    """The months and albums to browse, and the photos of the one chosen: the album
    ``album`` of the phone ``device`` (its UDID: two phones' albums of one name are two
    albums; every phone's of that name without it)."""
    months = [{"month": m or "undated", "count": n} for m, n in catalog.months()]
    found = albums(catalog, rule, infos)
    if not month and not album and months:
        month = str(months[0]["month"])
    if album:
        among = album_assets(catalog, album, device or None) or frozenset()
        shown = [a for a in (catalog.asset(s) for s in sorted(among)) if a is not None]
        shown.sort(key=lambda a: (a.captured_at, a.relpath))
    else:
        shown = catalog.captured_in("" if month == "undated" else month, MONTH_SHOWN)
    return {
        "months": months,
        "month": month,
        "albums": [
            {"name": a.name, "device": a.device, "udid": a.udid, "photos": a.photos} for a in found
        ],
        "phones": len({a.udid for a in found}),
        "album": album,
        "device": device,
        "device_name": next((a.device for a in found if a.udid == device), device),
        "assets": [_card(a) for a in shown],
    }


def events(log_dir: Path, only: logs.Filter) -> dict[str, Any]:
    """The timeline, newest first, with its failures apart at the top: the newest
    lines of the log read, and only the events shown rendered (a log of 60 MB took
    seconds of the daemon's CPU a page)."""
    timeline: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    if not (log_dir / logs.LOG_NAME).exists():
        return {"failures": failures, "events": timeline}
    lines = logs.newest_lines(log_dir)
    for line in lines:  # the timeline: every event that matches, until it is full
        e = logs.event_of(line, only)
        if e is not None:
            timeline.append(shown := _event(e))
            if shown["failure"] and len(failures) < EVENTS_SHOWN:
                failures.append(shown)
            if len(timeline) == EVENTS_SHOWN:
                break
    for line in lines:  # then older failures only: the other lines are not even parsed
        if len(failures) == EVENTS_SHOWN:
            break
        e = logs.event_of(line, only) if logs.may_be_failure(line) else None
        if e is not None and e.get("level") in logs.FAILURE_LEVELS:
            failures.append(_event(e))
    return {"failures": failures, "events": timeline}


def _event(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "when": logs.local_time(str(e.get("ts", "")), seconds=True),
        "level": str(e.get("level", "")),
        "failure": e.get("level") in logs.FAILURE_LEVELS,
        "event": str(e.get("event", "")),
        "line": logs.render(e, tty=False),
        "asset": str(e.get("asset", ""))[:64],
    }


def thumbnail_sources(
    catalog: Catalog, settings: StatusSettings, roots: Mapping[str, Path], sha: str
) -> list[tuple[Path, str]]:
    """Where a photo's bytes are on this computer, as plain files: its verified copies
    on local targets that do not encrypt, then the watch folder's original; each as
    (root, path beneath it), opened through no link."""
    local = {t.name: t.path for t in settings.targets.targets if isinstance(t, LocalSpec)}
    plain = {t.name for t in settings.targets.targets if not t.encrypt}
    found = [
        (local[r.target], r.relpath)
        for r in catalog.replicas(sha)
        if r.target in local and r.target in plain
    ]
    found += [(roots[s], p) for s, p, _, _ in catalog.source_paths(sha) if s in roots]
    return found


def hidden(catalog: Catalog, sha: str) -> bool:
    """Whether the phone's library hides this photo (its thumbnail is not shown)."""
    found = catalog.sidecar_of(sha)
    if found is None:
        return False
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return asset_from_json(found[0]).hidden
    return False


def today() -> date:
    return datetime.now(UTC).astimezone().date()
