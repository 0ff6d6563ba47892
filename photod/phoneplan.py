"""What to import from a phone, and in which order: pure rules over the phone's listing.

A phone shows its library as ``/DCIM/100APPLE/IMG_0001.HEIC`` and its edits as
``/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.heic``.  A movie
or sidecar belongs with its still by ``media.lead_of`` (the rule a watch folder follows),
an edit with the original it renders; stills are imported first, so that what belongs
with one finds it already there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from photod.catalog import DeviceFile
from photod.library import LibraryAsset
from photod.media import is_still, lead_of, stem_of, still_index

MUTATIONS = "/PhotoData/Mutations"
# Where a phone with iCloud Photos keeps the downloaded originals of photos taken on the
# person's other devices (the library names them; they are not under DCIM).
CPL_ASSETS = "/PhotoData/CPLAssets"


def is_render(path: str) -> bool:
    """/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.heic"""
    parts = path.split("/")
    return (
        len(parts) == 8
        and parts[4].upper().endswith(("APPLE", "IMPRT", "CLOUD"))
        and parts[6] == "Adjustments"
        and parts[7].startswith("FullSizeRender.")
    )


def stills(paths: Iterable[str]) -> dict[str, dict[str, str]]:
    """Each folder's ``still_index`` (edits are never stills)."""
    names: dict[str, list[str]] = {}
    for path in paths:
        if not path.startswith(MUTATIONS):
            folder, _, name = path.rpartition("/")
            names.setdefault(folder, []).append(name)
    return {folder: still_index(ns) for folder, ns in names.items()}


def lead(path: str, index: dict[str, dict[str, str]]) -> str | None:
    """The still a file belongs with: a Live Photo movie or an .AAE beside it (same
    folder, same stem), or the original of a rendered edit."""
    if path.startswith(MUTATIONS):
        parts = path.split("/")  # '', PhotoData, Mutations, DCIM, 100APPLE, IMG_0001, ...
        folder = "/DCIM/" + parts[4]
        name = index.get(folder, {}).get(parts[5].lower())
        return f"{folder}/{name}" if name else None
    folder, _, name = path.rpartition("/")
    found = lead_of(name, index.get(folder, {}))
    return f"{folder}/{found}" if found else None


# device_files.problem of a Live Photo's movie (an .AAE, an edit) left unread once
# because its still failed in that import: read with the still at the next plug-in, or,
# should the still fail again, without it (a movie is never held twice).
WAITS = "waits for its still"


def hold(
    files: list[DeviceFile],
    index: dict[str, dict[str, str]],
    failed: set[str],
    waited: set[str],
) -> tuple[list[DeviceFile], list[DeviceFile]]:
    """The files to read now, and those to leave for the next plug-in: beside a still
    that ``failed`` in this import (imported alone, a movie would be filed under its
    own date, away from its still for good), unless they ``waited`` once already."""
    now: list[DeviceFile] = []
    later: list[DeviceFile] = []
    for f in files:
        still = lead(f.path, index)
        (later if still in failed and f.path not in waited else now).append(f)
    return now, later


def order(path: str) -> tuple[int, str]:
    """Stills first, so a movie, sidecar or edit finds its still already imported."""
    if path.startswith(MUTATIONS):
        return 2, path
    return (0 if is_still(path.rpartition("/")[2]) else 1), path


_NUMBERED = re.compile(r"([a-z]+_)(\d+)")


def by_identity(
    assets: Iterable[LibraryAsset], paths: Iterable[str], groups: Mapping[str, str]
) -> dict[str, str]:
    """Which library asset (UUID) each file on the phone belongs to: its original, as
    the database names it; a Live Photo's movie by the content identifier it carries
    (``groups``: path -> the media group the movie names), whatever its name; and what
    the phone keeps with an original by its own naming: the movie and ``.AAE`` of the
    same stem, the ``IMG_E0001`` edit and ``IMG_O0001`` adjustments of the same number,
    the renders under ``Mutations/…/IMG_0001/``.  Files of no asset are left out (the
    name rules of ``lead`` still pair them)."""
    assets = list(assets)
    grouped = {a.media_group: a.uuid for a in assets if a.media_group}
    owner: dict[tuple[str, str], str] = {}  # (folder, stem), lower case -> UUID
    for a in assets:
        folder = "/" + a.directory.strip("/").lower()
        stem = stem_of(a.filename)
        owner.setdefault((folder, stem), a.uuid)
        numbered = _NUMBERED.fullmatch(stem)
        if numbered:
            for tag in ("e", "o"):
                owner.setdefault((folder, f"{numbered[1]}{tag}{numbered[2]}"), a.uuid)
    found: dict[str, str] = {}
    for path in paths:
        group = grouped.get(groups.get(path, ""))
        if group is not None:  # identity first: a name can mislead
            found[path] = group
            continue
        if path.startswith(MUTATIONS + "/"):
            parts = path.split("/")  # '', PhotoData, Mutations, DCIM, 100APPLE, IMG_0001, ...
            if len(parts) < 7:
                continue
            key = ("/" + "/".join(parts[3:5])).lower(), parts[5].lower()
        else:
            folder, _, name = path.rpartition("/")
            key = folder.lower(), stem_of(name)
        uuid = owner.get(key)
        if uuid is not None:
            found[path] = uuid
    return found
