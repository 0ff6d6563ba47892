"""What ``photod status`` reports: computed from the catalog and a read-only look at
each target, so it works whether the daemon runs or not."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photod import colour, instance, paths, phonestatus, policy, schedules
from photod.catalog import CATALOG_NAME, STATE_MIN_FREE, Catalog
from photod.errors import CatalogDamaged, TargetUnavailable
from photod.fleet import build_targets, refuse_twin
from photod.library import printable
from photod.logs import local_time
from photod.statelock import running_pid
from photod.statusconfig import StatusSettings
from photod.targets.base import Identity
from photod.targetspec import RemoteSpec
from photod.usb import usbmuxd_installed, usbmuxd_socket

LOST_SHOWN = 50  # lost photos the report names, by path; the rest are counted


def collect(
    cfg: StatusSettings, known: Mapping[str, tuple[bool, str]] | None = None
) -> dict[str, Any]:
    """The report `photod status` prints.  ``known``: each target's availability as the
    running daemon sees it (the dashboard's, in the daemon): then no target is probed."""
    rule = cfg.rule
    infos = cfg.target_infos()
    now = datetime.now(UTC)
    db_path = cfg.state_dir / CATALOG_NAME
    if (barred := paths.barred(cfg.state_dir)) is not None:
        raise barred  # (another user's photod: not "nothing backed up", nor a traceback)
    problem = instance.check_catalog(cfg.state_dir)  # raises nothing: says what is wrong
    if problem is not None and problem.damaged:
        raise CatalogDamaged(db_path, problem.damaged)
    catalog = Catalog(db_path) if db_path.exists() and problem is None else None
    try:
        compliant = noncompliant = 0
        missing: Counter[str] = Counter()
        holdings = catalog.holdings() if catalog else []
        # The groups count every asset once: no second pass over the catalog for totals.
        assets, size = sum(g[1] for g in holdings), sum(g[2] for g in holdings)
        seen = _availability(cfg, catalog) if known is None else known
        if catalog:  # (a target away longer than the scrub cycle: its copies do not count)
            here = [name for name, (ok, _) in seen.items() if ok]
            infos = catalog.counting(infos, cfg.scrub_cycle, here)
        for held, count, _ in holdings:
            verdict = policy.evaluate(rule, held, infos)
            if verdict.compliant:
                compliant += count
            else:
                noncompliant += count
                for m in verdict.missing:
                    missing[m] += count
        targets = []
        drills = catalog.last_drills() if catalog else {}
        for t in cfg.targets.targets:
            name = t.name
            available, reason = seen.get(name, (False, "not checked yet"))
            remote = t if isinstance(t, RemoteSpec) else None
            queued, egress = remote is not None, remote.egress_budget if remote else None
            # Counted from the holdings already read: no query per target.
            held_here = sum(n for held, n, _ in holdings if name in held)
            # Bytes from the holdings too; the oldest check through its index: status
            # stays one pass over a few groups, whatever the catalog's size.
            held_bytes = sum(b for held, _, b in holdings if name in held)
            proof = (
                _proof(cfg, catalog, name, held_bytes, drills, queued, egress, now)
                if catalog
                else NO_PROOF  # (every key still there: the dashboard's card reads them)
            )
            targets.append(
                {
                    "name": name,
                    "type": t.type,
                    "path": t.where,
                    "media": str(t.media),
                    "offsite": t.offsite,
                    "available": available,
                    "reason": reason,
                    "replicas": held_here,
                    "bytes": held_bytes,
                    "pending": assets - held_here,
                    "last_seen": catalog.last_seen(name) if catalog else None,
                    "counted": name in infos,
                    **proof,
                }
            )
        undecodable = catalog.undecodable() if catalog else 0
        # The first LOST_SHOWN by path, and the count: every lost photo was listed, and
        # the dashboard asked for them at each refresh (200,000 lost: 200 MB).
        lost = (
            [{"asset": sha, "path": path} for sha, path in catalog.lost(LOST_SHOWN)]
            if catalog
            else []
        )
        lost_count = catalog.lost_count() if catalog else 0
        corrupt_sources = catalog.corrupt_sources() if catalog else 0
        last_scrub = catalog.last_run("scrub") if catalog else None
        devices = (
            [
                phonestatus.device_report(catalog, d, rule, infos)
                for d in phonestatus.known_phones(catalog)
            ]
            if catalog
            else []
        )
    finally:
        if catalog:
            catalog.close()
    pid = running_pid(cfg.state_dir)
    return {
        "protected": noncompliant == 0 and not lost_count and problem is None,
        "catalog_problem": {"found": problem.found, "fix": problem.fix} if problem else None,
        "twin": instance.twin(cfg.state_dir),  # another computer writing as this one
        "state_dir_free": _free(cfg.state_dir),
        "state_dir_full": _free(cfg.state_dir) < STATE_MIN_FREE,
        "lost": lost,  # the first LOST_SHOWN, by path
        "lost_count": lost_count,
        "corrupt_sources": corrupt_sources,
        "last_scrub": last_scrub[0] if last_scrub else None,
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
            if s.path is not None
            else {"name": s.name, "type": s.type, "udids": list(s.udids)}
            for s in cfg.sources
        ],
        "devices": devices,
        "usbmuxd": _usbmuxd() if cfg.phones else None,
        "undecodable": undecodable,
        "daemon": {"running": pid is not None, "pid": pid or None},
        "config": str(cfg.path),
        "catalog": str(db_path),
        "state_dir": str(cfg.state_dir),
    }


def _availability(cfg: StatusSettings, catalog: Catalog | None) -> dict[str, tuple[bool, str]]:
    """Each target probed now, as this command finds it (read-only: nothing is made)."""
    out = {}
    states = build_targets(cfg.targets)
    for name, state in states.items():
        record = catalog.target(name) if catalog else None
        known = Identity(record.target_id, record.root, record.mount_rel) if record else None
        why = state.paused()
        try:
            if why:
                raise TargetUnavailable(name, why)
            refuse_twin(name, state.target.check(known, prepare=False), known, catalog, states)
            out[name] = (True, "")
        except TargetUnavailable as exc:
            out[name] = (False, exc.reason)
        finally:
            state.target.close()
    return out


def _free(folder: Path) -> int:
    """Free bytes where ``folder`` is, or will be: a state dir not made yet (a new
    computer, before its first run) is asked of the folder it will be made in, not
    said full."""
    try:  # (statvfs: shutil.disk_usage, without loading shutil's archivers)
        st = os.statvfs(paths.nearest_existing(folder))
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


MONTH = 30 * 86400.0
# A target's proof while the catalog is not read (untrusted): nothing known yet.
NO_PROOF: dict[str, Any] = {"oldest_check_days": None, "full_pass_days": None, "behind": False,
                            "egress_used": None, "last_drill": None}  # fmt: skip


def _age_days(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round((now - then).total_seconds() / 86400, 1)


def _proof(
    cfg: StatusSettings,
    catalog: Catalog,
    name: str,
    total: int,
    drills: dict[str, tuple[str, bool, int, str]],
    remote: bool,
    egress: int | None,
    now: datetime,
) -> dict[str, Any]:
    """How recently a target's copies were proved, the last drill, and whether the
    budgets let the scrub re-read all of it within its cycle."""
    oldest = catalog.oldest_check(name)
    every = schedules.interval(cfg.scrub)
    cycle = cfg.scrub_cycle
    per_run = cfg.scrub_budget
    if egress is not None:
        monthly = int(egress * min(1.0, every / MONTH))  # a month's budget spread over its runs
        per_run = monthly if per_run is None else min(per_run, monthly)
    share = policy.scrub_share(total, cycle, every)
    full_pass = None
    if per_run is not None and per_run < share:
        full_pass = policy.full_pass_seconds(total, per_run, every)
    drill = drills.get(name)
    return {
        "oldest_check_days": _age_days(oldest, now),
        "full_pass_days": round(full_pass / 86400, 1) if full_pass else round(cycle / 86400, 1),
        "behind": bool(full_pass and full_pass > cycle),
        "egress_used": catalog.egress_used(name, now.strftime("%Y-%m")) if remote else None,
        "last_drill": (
            {"at": drill[0], "passed": drill[1], "files": drill[2], "detail": drill[3]}
            if drill
            else None
        ),
    }


def _usbmuxd() -> dict[str, Any]:
    sock = usbmuxd_socket()
    return {
        "socket": sock,
        "installed": usbmuxd_installed(),
        "running": ":" in sock or Path(sock).exists(),
    }


def merge_live(report: dict[str, Any], live: dict[str, Any]) -> None:
    """What only the running daemon knows: a target it does not write to now (while
    the catalog is being checked, say) is unavailable, with the daemon's reason; a
    catalog it does not act on is the report's problem."""
    if live.get("held"):
        report["catalog_problem"] = {k: live["held"][k] for k in ("found", "fix")}
        report["protected"] = False
    for t in report["targets"]:
        why = (live.get("reasons") or {}).get(t["name"])
        if t["available"] and why:
            t["available"], t["reason"] = False, why


# What `photod status` calls the jobs that are running now.
JOB_NAMES = {
    "reconcile": "scanning the watch folders",
    "retry_local": "copying to local targets",
    "upload_pending": "uploading to offsite targets",
    "scrub": "scrubbing (re-reading copies)",
    "scrub_owed": "scrubbing a target that was away at the last scrub",
    "verify-now": "verifying (photod verify)",
    "drill": "running a restore drill",
    "drill-now": "running a restore drill (photod drill)",
}


def _eta(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{max(1, round(seconds / 60))} min"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _paused(live: dict[str, Any] | None) -> str | None:
    """Until when the running daemon is paused ("`photod resume`" for no end); None
    when it is not."""
    if not (live and live.get("ok") and live.get("paused")):
        return None
    until = live.get("paused_until")
    return local_time(until) if until else "`photod resume`"


def render(s: dict[str, Any], tty: bool | None = None) -> str:
    """The text of `photod status`: the headline first (what is wrong, or that all is
    protected), then each part.  ``tty``: whether it goes to a terminal (None: whether
    standard output is one), where the words that matter are in colour unless
    NO_COLOR is set."""
    on = colour.enabled(tty)

    def red(word: str) -> str:
        return colour.paint(word, colour.RED, on)

    p = s["policy"]
    rule = policy.describe(p["copies"], p["media"], p["offsite"])
    lines = []
    problem = s.get("catalog_problem")
    paused = _paused(s["daemon"].get("live"))
    if paused:
        # First: whatever the counts below say, files that came since are not seen yet.
        lines.append(
            f"{colour.paint('PAUSED', colour.YELLOW, on)} until {paused}: new files wait "
            "(nothing is scanned, imported, copied or scrubbed meanwhile); "
            "`photod resume` ends the pause now."
        )
    if problem:
        lines.append(f"{red('NOT ACTING')}: {problem['found']}.")
        lines.append(f"  Nothing is written to any target meanwhile. To fix it: {problem['fix']}.")
    if twin := s.get("twin"):
        lines.append(f"{red('TWO COMPUTERS AS ONE')}: {twin['found']}.")
        lines.append(f"  Both go on backing up meanwhile. To end it: {twin['fix']}.")
    if s.get("state_dir_full"):
        lines.append(
            f"{red('NOT TAKING NEW FILES')}: the state dir {s['state_dir']} is full "
            f"({_size(s['state_dir_free'])} free); new files wait and are taken as soon as "
            "there is room: free some space on that disk, or move [daemon] state_dir."
        )
    if lost := s["lost_count"]:
        lines.append(
            f"{red('LOST')}: {_files(lost)} {_verb(lost, 'has', 'have')} "
            "no good copy left anywhere "
            "(`photod logs --failures` says what happened):"
        )
        lines.extend(f"  {item['path']}" for item in s["lost"][:20])
    if problem:
        pass
    elif s["assets"] == 0:
        lines.append("Nothing backed up yet: drop photos into a watch folder.")
    elif s["protected"]:
        seen = " photod has seen" if paused else ""
        every = (
            "The one photo or video" if s["assets"] == 1 else f"All {s['assets']} photos and videos"
        )
        lines.append(
            f"{every}{seen} ({_size(s['bytes'])}) {_verb(s['assets'], 'is', 'are')} "
            f"{colour.paint('protected', colour.GREEN, on)}: {rule}."
        )
    else:
        why = "; ".join(f"{n} {_verb(n, 'needs', 'need')} {m}" for m, n in p["missing"].items())
        down = [
            f"target '{t['name']}' is unavailable ({t['reason']})"
            for t in s["targets"]
            if not t["available"]
        ]
        lines.append(
            f"{red('NOT PROTECTED')}: {p['noncompliant']} of {s['assets']} "
            f"{'photo or video' if s['assets'] == 1 else 'photos and videos'} "
            f"{_verb(p['noncompliant'], 'falls', 'fall')} short of the policy ({rule}): {why}."
        )
        lines.extend(f"  because {d}" for d in down)
    if p["copies"] < 3 or p["media"] < 2 or p["offsite"] < 1:
        lines.append(
            f"Note: the policy ({rule}) is below the 3-2-1 rule; add an external drive "
            "and an offsite target, then raise [policy]."
        )
    lines.append("")
    lines.append(f"Policy   {rule}: {p['compliant']} compliant, {p['noncompliant']} not")
    scrubbed = s.get("last_scrub")
    lines.append(
        f"Scrub    last run {local_time(scrubbed)}"
        if scrubbed
        else "Scrub    not run yet (it runs on its schedule; `photod verify` runs one now)"
    )
    lines.append("Targets")
    for t in s["targets"]:
        state = (
            colour.padded("available", 12, colour.GREEN, on)
            if t["available"]
            else colour.padded("UNAVAILABLE", 12, colour.RED, on)
        )
        lines.append(
            f"  {t['name']:<14} {t['media']:<9} {'offsite' if t['offsite'] else 'onsite':<8}"
            f" {state} {t['replicas']:>7} copies {t['pending']:>6} pending  {t['path']}"
        )
        if not t["available"]:
            lines.append(f"  {'':<14} {t['reason']}")
        if not t.get("counted", True):
            ahead = t["last_seen"] > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            why = ("a time ahead of this computer's clock, set back since" if ahead
                   else "longer than the scrub cycle")  # fmt: skip
            lines.append(f"  {'':<14} its copies do not count: not seen since "
                         f"{local_time(t['last_seen'])}, {why}")  # fmt: skip
        drill, oldest = t["last_drill"], t.get("oldest_check_days")
        if oldest is not None or drill is not None:  # (a drill with no good copy left too)
            said = (
                "no drill yet"
                if drill is None
                else f"last drill {local_time(drill['at'])} "
                + ("passed" if drill["passed"] else red("FAILED"))
            )
            read = "" if oldest is None else f"oldest full re-read {oldest:g} days ago; "
            lines.append(f"  {'':<14} {read}{said}")
            if t["behind"]:
                lines.append(
                    f"  {'':<14} {colour.paint('BEHIND', colour.YELLOW, on)}: at its scrub "
                    "budget a full re-read takes "
                    f"{t['full_pass_days']:g} days, longer than scrub_cycle; raise the budget"
                )
    lines.append("Sources")
    for src in s["sources"]:
        if src["type"] == "iphone":
            which = ", ".join(src["udids"]) or "any paired iPhone"
            lines.append(f"  {src['name']:<14} {src['type']:<9} {which}")
            continue
        lines.append(
            f"  {src['name']:<14} {src['type']:<9} {src['path']}"
            + ("" if src["available"] else "  (folder missing)")
        )
    mux = s["usbmuxd"]
    if mux is not None and not mux["installed"]:
        lines.append(
            "Phones   usbmuxd is not installed, so photod cannot see iPhones: "
            "sudo apt install usbmuxd (Debian/Ubuntu), then plug the phone in"
        )
    elif mux is not None and not mux["running"]:
        lines.append(
            f"Phones   usbmuxd is not running ({mux['socket']} is missing); on Linux it "
            "starts by itself when an iPhone is plugged in"
        )
    if s["devices"]:
        lines.append("Phones")
    for d in s["devices"]:
        lines.append(
            f"  {printable(d['name']):<14} {d['state']:<14} {d['protected']}/{d['on_phone']} protected"
            + (f"  {d['detail']}" if d["detail"] else "")
        )
        if d["unreadable"]:
            lines.append(
                f"  {'':<14} {_files(d['unreadable'])} on the phone but not imported: turn on "
                "Settings > Photos > 'Download and Keep Originals', then plug in again"
            )
    if s["corrupt_sources"]:
        lines.append(
            f"Warning  {_files(s['corrupt_sources'])} in watch folders changed on disk without "
            "being edited (bit rot?); the backups keep the good bytes: restore them from there"
        )
    if s["undecodable"]:
        lines.append(
            f"Warning  {_files(s['undecodable'])} {_verb(s['undecodable'], 'does', 'do')} not "
            "decode as images; each is backed "
            "up byte for byte all the same (see `photod logs --failures`)"
        )
    d = s["daemon"]
    lines.append(
        f"Daemon   {'running, pid ' + str(d['pid']) if d['running'] else 'not running (start it with `photod run`)'}"
    )
    live = d.get("live")
    if live and live.get("ok"):
        if paused:
            lines.append(f"         {colour.paint('PAUSED', colour.YELLOW, on)} until {paused}")
        doing = [JOB_NAMES.get(j, j) for j in live.get("running", [])]
        doing += ["importing new files"] if live["busy"] else []
        lines.append(f"         {', '.join(doing) if doing else 'idle'}")
        for imp in live.get("imports", []):
            if "of_files" in imp:
                eta = f", about {_eta(imp['eta'])} left" if imp.get("eta") else ""
                lines.append(
                    f"         importing from {printable(imp['device'])}: {imp['files']}/{imp['of_files']} "
                    f"files, {_size(imp['bytes'])} of {_size(imp['of_bytes'])}{eta}"
                )
            else:
                lines.append(f"         phone {printable(imp['device'])}: {imp['state']}")
        for line in live.get("failing", []):
            lines.append(f"         {colour.paint('FAILING', colour.RED, on)}: {line}")
        for job in live.get("waiting_for_mains", []):
            lines.append(f"         {job} waits for mains power ([schedule] on_battery = false)")
        nxt = live.get("next_runs", {})
        for job in ("scrub", "drill"):
            if nxt.get(job):
                lines.append(f"         next {job} {local_time(nxt[job])}")
    elif live:
        lines.append(f"         {live.get('message', '')}")
    return "\n".join(lines)


def _files(count: int) -> str:
    return policy.plural(count, "file")


def _verb(count: int, one: str, many: str) -> str:
    """The verb that agrees with a count: '1 file has', '2 files have'."""
    return one if count == 1 else many
