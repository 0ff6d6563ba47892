"""What ``photod status`` reports: computed from the catalog and a read-only look at
each target, so it works whether the daemon runs or not."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from photod import policy
from photod.catalog import Catalog
from photod.config import Config
from photod.daemon import CATALOG_NAME, running_pid
from photod.errors import TargetUnavailable
from photod.pipeline import build_targets
from photod.targets.base import Identity


def collect(cfg: Config) -> dict[str, Any]:
    rule = cfg.policy.rule()
    infos = cfg.target_infos()
    db_path = cfg.state_dir / CATALOG_NAME
    catalog = Catalog(db_path) if db_path.exists() else None
    try:
        assets, size = catalog.counts() if catalog else (0, 0)
        compliant = noncompliant = 0
        missing: Counter[str] = Counter()
        holdings = catalog.holdings() if catalog else []
        for held, count, _ in holdings:
            verdict = policy.evaluate(rule, held, infos)
            if verdict.compliant:
                compliant += count
            else:
                noncompliant += count
                for m in verdict.missing:
                    missing[m] += count
        targets = []
        for name, state in build_targets(cfg).items():
            record = catalog.target(name) if catalog else None
            known = Identity(record.target_id, record.root, record.mount_rel) if record else None
            try:
                state.target.check(known, prepare=False)
                available, reason = True, ""
            except TargetUnavailable as exc:
                available, reason = False, exc.reason
            t = next(t for t in cfg.targets if t.name == name)
            # Counted from the holdings already read: no query per target.
            held_here = sum(n for held, n, _ in holdings if name in held)
            targets.append(
                {
                    "name": name,
                    "type": t.type,
                    "path": str(t.path),
                    "media": str(t.media),
                    "offsite": t.offsite,
                    "available": available,
                    "reason": reason,
                    "replicas": held_here,
                    "pending": assets - held_here,
                }
            )
        undecodable = catalog.undecodable() if catalog else 0
    finally:
        if catalog:
            catalog.close()
    pid = running_pid(cfg.state_dir)
    return {
        "protected": noncompliant == 0,
        "assets": assets,
        "bytes": size,
        "policy": {
            "copies": rule.copies,
            "media": rule.media,
            "offsite": rule.offsite,
            "compliant": compliant,
            "noncompliant": noncompliant,
            "missing": dict(missing),
        },
        "targets": targets,
        "sources": [
            {
                "name": s.name,
                "type": s.type,
                "path": str(s.path),
                "available": Path(s.path).is_dir(),
            }
            for s in cfg.sources
        ],
        "undecodable": undecodable,
        "daemon": {"running": pid is not None, "pid": pid or None},
        "config": str(cfg.path),
        "catalog": str(db_path),
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def render(s: dict[str, Any]) -> str:
    p = s["policy"]
    rule = f"{p['copies']} copies, {p['media']} kinds of media, {p['offsite']} offsite"
    lines = []
    if s["assets"] == 0:
        lines.append("Nothing backed up yet: drop photos into a watch folder.")
    elif s["protected"]:
        lines.append(
            f"All {s['assets']} photos and videos ({_size(s['bytes'])}) are protected: {rule}."
        )
    else:
        why = "; ".join(f"{n} need {m}" for m, n in p["missing"].items())
        down = [
            f"target '{t['name']}' is unavailable ({t['reason']})"
            for t in s["targets"]
            if not t["available"]
        ]
        lines.append(
            f"NOT PROTECTED: {p['noncompliant']} of {s['assets']} assets fall short of "
            f"the policy ({rule}): {why}."
        )
        lines.extend(f"  because {d}" for d in down)
    if p["copies"] < 3 or p["media"] < 2 or p["offsite"] < 1:
        lines.append(
            f"Note: the policy ({rule}) is below the 3-2-1 rule; add an external drive "
            "and an offsite target, then raise [policy]."
        )
    lines.append("")
    lines.append(f"Policy   {rule}: {p['compliant']} compliant, {p['noncompliant']} not")
    lines.append("Targets")
    for t in s["targets"]:
        state = "available" if t["available"] else "UNAVAILABLE"
        lines.append(
            f"  {t['name']:<14} {t['media']:<9} {'offsite' if t['offsite'] else 'onsite':<8}"
            f" {state:<12} {t['replicas']:>7} copies {t['pending']:>6} pending  {t['path']}"
        )
        if not t["available"]:
            lines.append(f"  {'':<14} {t['reason']}")
    lines.append("Sources")
    for src in s["sources"]:
        lines.append(
            f"  {src['name']:<14} {src['type']:<9} {src['path']}"
            + ("" if src["available"] else "  (folder missing)")
        )
    if s["undecodable"]:
        lines.append(
            f"Warning  {s['undecodable']} file(s) do not decode as images; they are backed "
            "up byte for byte all the same (see `photod logs --failures`)"
        )
    d = s["daemon"]
    lines.append(
        f"Daemon   {'running, pid ' + str(d['pid']) if d['running'] else 'not running (start it with `photod run`)'}"
    )
    return "\n".join(lines)
