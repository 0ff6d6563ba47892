"""What a phone's Photos library knows of its photos, as plain frozen records.

``phonelibrary`` reads them from a copy of the phone's ``Photos.sqlite``; ``xmp`` writes
one asset's facts as the sidecar kept beside its original; the import and the targets'
library index carry them.  No I/O here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple


class Album(NamedTuple):
    """One album the person made (folders are not albums: they are its ``path``)."""

    uuid: str
    title: str
    path: tuple[str, ...]  # the folders' titles from the top, then the album's own title
    assets: tuple[str, ...]  # asset UUIDs in the album's own order
    trashed: bool = False

    @property
    def full_name(self) -> str:
        """``Trips/2024/Rome``: the folders and the album, as people write it."""
        return "/".join(self.path)


class LibraryAsset(NamedTuple):
    """One photo or video in the library, by the facts of its database row."""

    uuid: str
    directory: str  # where its original is, relative to the media root: "DCIM/100APPLE"
    filename: str  # "IMG_0001.HEIC"
    original_name: str = ""  # the name it was taken or imported with, when the database says
    video: bool = False
    favorite: bool = False
    hidden: bool = False
    trashed: bool = False  # in Recently Deleted: still on the phone, still backed up
    title: str = ""
    caption: str = ""
    keywords: tuple[str, ...] = ()
    people: tuple[str, ...] = ()  # named people only, sorted
    albums: tuple[tuple[str, ...], ...] = ()  # each album's path (folders, then title)
    captured: datetime | None = None  # aware: with the offset it was taken at
    latitude: float | None = None
    longitude: float | None = None
    live: bool = False  # a Live Photo: a still and its movie
    burst: str = ""  # the burst's id, for a burst frame
    screenshot: bool = False
    screen_recording: bool = False
    edited: bool = False
    local: bool = True  # False: "Optimize iPhone Storage" left the original in iCloud only
    # A Live Photo's media group: the UUID its still (Apple's maker note, tag 17) and its
    # movie (QuickTime's content identifier) both carry, whatever their names.
    media_group: str = ""

    @property
    def path(self) -> str:
        """The original's AFC path: ``/DCIM/100APPLE/IMG_0001.HEIC``."""
        return f"/{self.directory.strip('/')}/{self.filename}"


class PhoneLibrary(NamedTuple):
    """Everything read from one copy of the database."""

    assets: tuple[LibraryAsset, ...]
    albums: tuple[Album, ...]
    schema: str  # what was found, for the log: "ZASSET, albums Z_30ASSETS, keywords Z_47KEYWORDS"


def facts_json(asset: LibraryAsset) -> str:
    """One asset's facts as the catalog and the targets' library index keep them."""
    data = {f: getattr(asset, f) for f in LibraryAsset._fields}
    data["captured"] = asset.captured.isoformat() if asset.captured else None
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def asset_from_json(text: str) -> LibraryAsset:
    """The facts back; a fact this photod does not know (a newer one wrote it) is left
    out.  Raises ValueError, KeyError or TypeError on what is not facts at all."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise TypeError(f"facts are a JSON object, not {type(raw).__name__}")
    data = {k: v for k, v in raw.items() if k in LibraryAsset._fields}
    data["keywords"] = tuple(data["keywords"])
    data["people"] = tuple(data["people"])
    data["albums"] = tuple(tuple(a) for a in data["albums"])
    data["captured"] = datetime.fromisoformat(data["captured"]) if data["captured"] else None
    return LibraryAsset(**data)


def printable(text: str) -> str:
    """A name from a phone, safe to print on a terminal (and in a status line, a
    notification): control characters shown as ?, and direction overrides, which can
    disguise a name, too."""
    return "".join("?" if ord(c) < 32 or 127 <= ord(c) < 160 or 0x202A <= ord(c) <= 0x202E
                   or 0x2066 <= ord(c) <= 0x2069 else c for c in text)  # fmt: skip
