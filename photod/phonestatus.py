"""What `photod status --device NAME` says of one phone: what on it is protected (safe
to delete from it), what is not and why, and the library's photos that photod does not
have because their originals are only in iCloud."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from photod import phoneplan, policy, usb
from photod.catalog import IGNORED, Catalog, DeviceRecord
from photod.errors import FileUnreadable
from photod.library import asset_from_json, printable
from photod.logs import local_time
from photod.models import PolicyRule, TargetInfo

NOTHING_SAFE = "0001-01-01T00:00:00"  # safe_before when nothing on the phone is
NOT_SEEN = "not seen"  # a phone a rebuilt catalog knows from the targets' library index only
NOT_SEEN_DETAIL = (
    "known from the targets' library index since the catalog was rebuilt; plug it in to "
    "see what on it is protected"
)


def known_phones(catalog: Catalog) -> list[DeviceRecord]:
    """Every phone photod knows: those this catalog has seen, then those a rebuilt
    catalog knows only from the library index on the targets (never listed since:
    nothing on them is called safe to delete until they are plugged in)."""
    seen = catalog.devices()
    # By the UDID as photod compares them: one computer's usbmuxd may drop the dash that
    # another's index of the same phone has (listed twice, `status --device` answered
    # for neither: two phones of one name).
    have = {usb.normal(d.udid) for d in seen}
    names = catalog.phone_names()
    rebuilt = []
    for udid in catalog.libraries():
        if usb.normal(udid) not in have:
            have.add(usb.normal(udid))
            name = names.get(udid, "")
            rebuilt.append(
                DeviceRecord(udid, "", name, "", "", NOT_SEEN, NOT_SEEN_DETAIL, "", "", {})
            )
    return seen + sorted(rebuilt, key=lambda d: (d.name, d.udid))


def device_report(
    catalog: Catalog, d: DeviceRecord, rule: PolicyRule, infos: dict[str, TargetInfo]
) -> dict[str, Any]:
    """One phone: its state, and what on it is protected (safe to delete from it)."""
    verdicts: dict[str, tuple[bool, str]] = {}  # held -> (protected, why not)
    # The files are counted as they are read, only those not protected kept: every
    # file's row was held, and the library's every photo with its facts (100,000
    # files: 41 MB, 147 MB with the library) as soon as one file was not protected.
    count = unreadable = rows = 0
    short: list[tuple[str, str, str, bool]] = []  # (path, taken, why not, read)
    for f, asset, problem, held in catalog.device_files(d.udid):  # oldest first
        rows += 1
        if problem.startswith(IGNORED):
            continue  # not a photo or video: nothing to protect
        count += 1
        if asset is None:
            unreadable += problem == "unreadable"
            why = (
                "unreadable: " + FileUnreadable.action
                if problem == "unreadable"
                else (problem or "not imported yet")
            )
            short.append((f.path, f.taken_at, why, False))
        elif not (verdict := _verdict(held, rule, infos, verdicts))[0]:
            short.append((f.path, f.taken_at, verdict[1], True))
    undated = False  # a file never read, its capture time unknown
    if short:
        # When it was taken as Photos shows it: for a file never read, or read without
        # a date of the phone's clock (a screenshot, a video's, in UTC), its library's.
        dated = _library_dates(catalog, d.udid, [path for path, *_ in short])
        never = catalog.library_digest(d.udid) is None  # the phone's library never read
        short = [(p, min(w, dated.get(p, w)), why, r) for p, w, why, r in short]
        unread = [path for path, _, _, read in short if not read]
        undated = never and any(path not in dated for path in unread)
    not_protected, safe_before = _by_item(catalog, d.udid, short)
    protected = count - len(not_protected)
    # What the last import could not see (folders the phone would not list, its library
    # unreadable): nothing on the phone is called safe, since what it hides may not be
    # backed up (a photo only in iCloud is deleted there too when deleted on the phone).
    # (a catalog of the version before kept them with the last import's counts)
    unlisted = catalog.unlisted(d.udid) or list(d.last_import.get("unlisted_paths") or [])
    # Never listed (locked or untrusted since it was plugged in, or known from a rebuild's
    # library index only): what it holds is not known, so none of it is safe to delete.
    never = not rows and not d.last_import
    unseen = bool(never or unlisted or d.last_import.get("library_unread") or undated)
    if unseen:
        safe_before = NOTHING_SAFE
    in_icloud = _listed(catalog.in_icloud_only(d.udid))
    # Photos the library places where no listing showed them (a shared album's, say).
    elsewhere = [] if never else _listed(catalog.library_unlisted(d.udid))
    if in_icloud or elsewhere:
        # The phone is never called safe while its library holds photos photod does not
        # have (with iCloud Photos, deleting on the phone deletes in iCloud too): each
        # keeps everything taken after it from being safe, and one with no date keeps
        # anything from being called safe.
        dates = [p["taken_at"] for p in in_icloud + elsewhere]
        first = min(dates) if all(dates) else NOTHING_SAFE
        safe_before = first if safe_before is None else min(safe_before, first)
    return {
        "name": d.name or d.udid,
        "udid": d.udid,
        "source": d.source,
        "model": d.model,
        "ios": d.ios,
        "state": d.state,
        "detail": d.detail,
        "since": d.since,
        "last_seen": d.last_seen,
        "last_import": d.last_import,
        "on_phone": protected + len(not_protected),
        "protected": protected,
        "not_protected": not_protected,
        "unreadable": unreadable,
        # Everything the phone holds from before this moment is protected; None when
        # everything on it is.
        "safe_before": safe_before,
        # The library's photos whose original only iCloud has: not backed up.
        "in_icloud": in_icloud,
        # ... and those the phone holds where its listing did not show them.
        "not_listed": elsewhere,
        # What the last import could not read: folders or files, the library (why).
        "unlisted": unlisted,
        "library_unread": d.last_import.get("library_unread") or "",
        "undated": undated,  # a file not read, whose capture time nothing here knows
        "never_listed": never,
    }


def _verdict(
    held: str, rule: PolicyRule, infos: dict[str, TargetInfo], verdicts: dict[str, tuple[bool, str]]
) -> tuple[bool, str]:
    """Whether a photo held by ``held`` (NUL-separated targets) meets the policy, and
    if not, what it needs; kept in ``verdicts``, one per set of targets."""
    if held not in verdicts:
        verdict = policy.evaluate(rule, held.split("\0") if held else [], infos)
        verdicts[held] = (verdict.compliant, "needs " + ", ".join(verdict.missing))
    return verdicts[held]


def _by_item(
    catalog: Catalog, udid: str, short: list[tuple[str, str, str, bool]]
) -> tuple[list[dict[str, str]], str | None]:
    """What is not protected (``short``, read already), and the moment before which
    everything is, by the item Photos deletes as one: a Live Photo's still, its movie,
    its .AAE and its edits (by the library's asset where it was read, else by the name
    rules of the import).  A still whose movie is short of the policy is not safe to
    delete: deleting it deletes the movie too, so the whole item sits on the movie's
    side of the line, at its earliest file's time (the movie ends after the shutter;
    dated a moment after the still, "everything taken before" took in the still).
    Oldest first.  Only the files that may share an item with one not protected are
    held (those with its asset, those of its folder): the phone's every file was."""
    if not short:
        return [], None  # (the library is read only when something is not protected)
    known = catalog.library_digest(udid) is not None
    asset = catalog.library_uuids(udid, [path for path, *_ in short]) if known else {}
    shared = set(catalog.library_paths(udid, set(asset.values())))
    folders = {_lead_folder(path) for path, *_ in short if path not in asset}
    said = {path: (when, why) for path, when, why, _ in short}
    rows: list[tuple[str, str, bool, str]] = []  # (path, taken, protected, why not)
    for f, _, problem, _ in catalog.device_files(udid):  # read again, oldest first
        if problem.startswith(IGNORED):
            continue
        if f.path in shared or _lead_folder(f.path) in folders:
            when, why = said.get(f.path, (f.taken_at, ""))
            rows.append((f.path, when, f.path not in said, why))
    uuids = catalog.library_uuids(udid, [path for path, *_ in rows]) if known else {}
    index = phoneplan.stills(path for path, _, _, _ in rows)

    def item(path: str) -> str:
        return uuids.get(path) or phoneplan.lead(path, index) or path

    first: dict[str, str] = {}  # item -> the earliest time of its files
    short_of: dict[str, str] = {}  # item -> the first of its files not protected
    for path, when, ok, _ in rows:
        key = item(path)
        first[key] = min(when, first.get(key, when))
        if not ok:
            short_of.setdefault(key, path)
    out = []
    for path, when, ok, why in rows:
        key = item(path)
        if key not in short_of:
            continue
        if ok:
            why = f"deleting it deletes {short_of[key].rpartition('/')[2]} with it, which is not protected"
        out.append({"path": path, "taken_at": min(when, first[key]), "why": why})
    out.sort(key=lambda p: (p["taken_at"], p["path"]))
    return out, (out[0]["taken_at"] if out else None)


def _lead_folder(path: str) -> str:
    """The folder whose stills a file may belong with (``phoneplan.lead``): its own, or
    for an edit (PhotoData/Mutations/DCIM/100APPLE/IMG_0001/...) its original's."""
    if path.startswith(phoneplan.MUTATIONS):
        parts = path.split("/")  # '', PhotoData, Mutations, DCIM, 100APPLE, IMG_0001, ...
        return "/DCIM/" + (parts[4] if len(parts) > 4 else "")
    return path.rpartition("/")[0]


def _library_dates(catalog: Catalog, udid: str, paths: list[str]) -> dict[str, str]:
    """These files' capture times as the phone's library has them (``_local``), by
    path; empty when its library was never read."""
    out = {}
    for path, facts in catalog.library_facts(udid, paths):
        a = asset_from_json(facts)
        if a.captured is not None:
            out[path] = _local(a.captured)
    return out


def _local(captured: datetime) -> str:
    """A library's capture time as the earlier of this computer's local time (as the
    listing's are) and the phone's own clock time when it was taken (as Photos shows
    it): a photo taken at 00:00 in UTC-10 is 00:00 the next day on a computer in
    UTC+14, and "everything taken before" that day took it in, unprotected.  Local
    time past the calendar's first or last day (year 1, 9999) is the phone's time."""
    own = captured.replace(tzinfo=None)
    try:
        when = min(own, captured.astimezone().replace(tzinfo=None))
    except (OverflowError, OSError, ValueError):
        when = own
    return when.isoformat(timespec="seconds")


def _listed(rows: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    """Library photos photod does not have, oldest first: file name, capture time (this
    computer's local time, as the phone's files are listed) and UUID."""
    out = []
    for uuid, path, facts in rows:
        a = asset_from_json(facts)
        out.append({
            "name": a.original_name or a.filename,
            "path": path,
            "taken_at": _local(a.captured) if a.captured else "",
            "uuid": uuid,
        })  # fmt: skip
    return sorted(out, key=lambda p: (p["taken_at"], p["path"]))


def find_device(report: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, str]:
    """The phone asked for, by its UDID or its name; else (None, why not).  Two phones
    of one name (iOS calls every one "iPhone") are never taken for each other: what is
    safe to delete from one says nothing of the other."""
    devices = report["devices"]
    found = [d for d in devices if usb.normal(d["udid"]) == usb.normal(name)]
    found = found or [d for d in devices if d["name"] == name]
    if len(found) == 1:
        return dict(found[0]), ""
    if found:
        udids = ", ".join(d["udid"] for d in found)
        return None, f"{len(found)} phones are named {name!r}: ask for one by its UDID ({udids})"
    known = ", ".join(repr(d["name"]) for d in devices) or "none yet"
    return None, f"no phone named {name!r}; known phones: {known}"


def render_device(d: dict[str, Any], limit: int = 20) -> str:
    name = printable(d["name"])  # (what the phone says goes through ``printable``)
    lines = [
        f"{name} ({d['model'] or 'iPhone'}, iOS {d['ios'] or '?'}, UDID {d['udid']})",
        f"  State      {d['state']}" + (f": {d['detail']}" if d["detail"] else ""),
        f"  On phone   {d['on_phone']} files at the last listing",
        f"  Protected  {d['protected']} (policy met with verified copies)",
    ]
    icloud = d.get("in_icloud") or []
    if icloud:
        lines.append(
            f"  {len(icloud)} photos in this phone's library are not backed up: their originals "
            "are only in iCloud. On the phone: Settings > Photos > Download and Keep "
            "Originals, then plug it in again."
        )
        for item in icloud[:limit]:
            when = local_time(item["taken_at"], seconds=True)
            lines.append(f"    {when}  {printable(item['name'])}: only in iCloud")
        if len(icloud) > limit:
            lines.append(f"    ... and {len(icloud) - limit} more (--json lists all)")
    elsewhere = d.get("not_listed") or []
    if elsewhere:
        lines.append(
            f"  {len(elsewhere)} photos in this phone's library are not backed up: their "
            "originals are not where photod reads the phone (DCIM, PhotoData/CPLAssets); "
            "`--json` lists them under not_listed"
        )
    if d.get("never_listed"):
        lines.append(
            "  Nothing listed yet: plug the phone in and let the import finish (until then "
            "nothing on it is called safe to delete)."
        )
    elif d["safe_before"] is None:
        lines.append(
            f"  Everything on '{name}' is protected: all {d['on_phone']} files are safe "
            "to delete from the phone."
        )
    else:
        lines.append(f"  Not yet    {len(d['not_protected'])}")
        if d["safe_before"] == NOTHING_SAFE:
            why = "a photo photod does not have has no date"
            if d.get("unlisted"):
                shown = ", ".join(printable(p) for p in d["unlisted"][:3])
                why = f"the phone would not list all of itself ({shown}); plug it in again"
            elif d.get("library_unread"):
                why = (f"its Photos library could not be read ({printable(d['library_unread'])}),"
                       " so photos only in iCloud are not known; plug it in again")  # fmt: skip
            elif d.get("undated"):
                why = ("a file photod could not read yet has no known capture date (its "
                       "library, with `library = true`, would say it)")  # fmt: skip
            lines.append(f"  Nothing on '{name}' can be called safe to delete yet: {why}.")
        else:
            lines.append(
                f"  Everything taken before {local_time(d['safe_before'], seconds=True)} is "
                f"safe to delete from '{name}'; newer files are not all protected yet."
            )
        for item in d["not_protected"][:limit]:
            when = local_time(item["taken_at"], seconds=True)
            lines.append(f"    {when}  {printable(item['path'])}: {printable(item['why'])}")
        if len(d["not_protected"]) > limit:
            lines.append(f"    ... and {len(d['not_protected']) - limit} more (--json lists all)")
    lines.append("  photod never deletes anything from a phone.")
    return "\n".join(lines)
