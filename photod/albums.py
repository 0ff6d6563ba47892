"""The phones' albums, as the catalog knows them from their libraries: `photod albums`
lists them (with how many of their photos are protected), and `photod restore --album`
takes the photos of one.

An album's name is its folders' titles and its own joined by "/", each title's own "/"
written "\\/" (and "\\" "\\\\"): the album titled "Trips/2024" is ``Trips\\/2024``, the
album "2024" in the folder "Trips" ``Trips/2024``, two names for two albums.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from photod import policy
from photod.catalog import Catalog
from photod.errors import PhotodError
from photod.library import printable
from photod.models import PolicyRule, TargetInfo


@dataclass(frozen=True)
class AlbumInfo:
    name: str  # folders and title: "Trips/2024/Rome" (``album_name``)
    device: str  # the phone's name (its UDID when it has none)
    udid: str
    photos: int  # the album's photos (library assets)
    backed_up: int  # of which photod holds every file
    protected: int  # of which every file meets the policy
    trashed: bool  # the album itself is in Recently Deleted
    assets: frozenset[str]  # the SHA-256 of every file photod holds of it
    title: str = ""  # its own title ("AC/DC" in "Concerts/AC/DC": a "/" may be in one)


def album_name(levels: Sequence[str]) -> str:
    """The folders' titles and the album's, joined by "/"; a "/" or "\\" of a title
    written "\\/" or "\\\\", so that no two albums share a name."""
    return "/".join(t.replace("\\", "\\\\").replace("/", "\\/") for t in levels)


def _plain(name: str) -> str:
    """A name as it was written before titles were escaped ("Concerts/AC/DC")."""
    return re.sub(r"\\(.)", r"\1", name)


def albums(
    catalog: Catalog,
    rule: PolicyRule,
    infos: Mapping[str, TargetInfo],
    device: str | None = None,
) -> list[AlbumInfo]:
    """Every album of every phone (or of the phone named ``device``: its name or
    UDID), by phone then name."""
    names = catalog.phone_names()
    out: list[AlbumInfo] = []
    for udid in catalog.libraries():
        shown = names.get(udid, udid)
        if device is not None and device not in (shown, udid):
            continue
        rows = catalog.library(udid)
        if rows is None:
            continue
        files: dict[str, list[str | None]] = {}
        for _, uuid, sha in rows.files:
            files.setdefault(uuid, []).append(sha)
        every = {s for shas in files.values() for s in shas if s}
        ok = _judge(catalog.held_by_asset(every), rule, infos)
        for _, path, trashed, members in rows.albums:
            uuids = json.loads(members)
            backed = protected = 0
            shas: set[str] = set()
            for u in uuids:
                mine = files.get(u, [])
                if mine and all(mine):
                    backed += 1
                    protected += all(ok(s) for s in mine if s)
                shas.update(s for s in mine if s)
            levels = json.loads(path)
            out.append(
                AlbumInfo(
                    album_name(levels),
                    shown,
                    udid,
                    len(uuids),
                    backed,
                    protected,
                    trashed,
                    frozenset(shas),
                    levels[-1] if levels else "",
                )
            )
    return sorted(out, key=lambda a: (a.device, a.name.casefold()))


def _judge(
    held: dict[str, str], rule: PolicyRule, infos: Mapping[str, TargetInfo]
) -> Callable[[str], bool]:
    """Whether an asset meets the policy (one verdict per set of targets holding it)."""
    verdicts: dict[str, bool] = {}

    def ok(sha: str) -> bool:
        h = held.get(sha, "")
        if h not in verdicts:
            verdicts[h] = policy.evaluate(rule, h.split("\0") if h else [], infos).compliant
        return verdicts[h]

    return ok


def album_assets(catalog: Catalog, album: str, device: str | None = None) -> frozenset[str] | None:
    """The files photod holds of the album named ``album`` (its full name with folders,
    or its title alone when only one album has it, or its name with a title's "/"
    unescaped when only one has that); None when no album has that name."""
    chosen = _chosen(catalog, album, device)
    return None if chosen is None else frozenset().union(*(a.assets for a in chosen))


def album_absent(catalog: Catalog, album: str, device: str | None = None) -> int:
    """How many photos of the album named ``album`` photod does not hold (their
    originals only in iCloud, or not imported): a restore of it leaves them out."""
    return sum(a.photos - a.backed_up for a in _chosen(catalog, album, device) or [])


def _chosen(catalog: Catalog, album: str, device: str | None) -> list[AlbumInfo] | None:
    found = albums(catalog, PolicyRule(0, 0, 0), {}, device)
    exact = [a for a in found if a.name == album]
    by_title = [a for a in found if a.title == album]
    unescaped = [a for a in found if _plain(a.name) == album]  # (as an earlier photod listed it)
    chosen = exact or by_title or unescaped
    if not chosen:
        return None
    if not exact and len({a.name for a in chosen}) > 1:
        # (as `photod albums` lists them, to be typed back: repr doubled each "\\")
        names = ", ".join(sorted({f"'{printable(a.name)}'" for a in chosen}))
        what = "titled" if by_title else "named"
        raise PhotodError(
            f"several albums are {what} '{printable(album)}': {names}; give the full name"
        )
    return chosen


def render(found: list[AlbumInfo], device: str | None, as_json: bool) -> tuple[str, int]:
    """What `photod albums` prints, and its exit code (1: no album on that phone)."""
    if as_json:
        rows = [
            {"album": a.name, "device": a.device, "udid": a.udid, "photos": a.photos,
             "backed_up": a.backed_up, "protected": a.protected, "trashed": a.trashed}
            for a in found
        ]  # fmt: skip
        return json.dumps(rows, indent=2), 0
    if not found:
        where = f" on {device!r}" if device else ""
        return f"no albums{where} yet: they are read from a phone's library at its import", (
            1 if device else 0
        )
    lines: list[str] = []
    for a in found:
        if f"{printable(a.device)}:" not in lines:
            lines.append(f"{printable(a.device)}:")
        missing = a.photos - a.backed_up
        lines.append(
            f"  {printable(a.name)}  {a.photos} photos, {a.protected} protected"
            + (f", {missing} not backed up" if missing else "")
            + ("  (in Recently Deleted)" if a.trashed else "")
        )
    return "\n".join(lines), 0
