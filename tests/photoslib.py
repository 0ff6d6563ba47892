"""Build a realistic copy of an iPhone's ``PhotoData/Photos.sqlite`` (with its ``-wal``
and ``-shm``) for tests and benchmarks.

The tables and columns are those the public parsers read per iOS release
(the shared reference ``photos-library.md``, §1 and §3): ``ZASSET`` or ``ZGENERICASSET``,
``ZADDITIONALASSETATTRIBUTES``, ``ZASSETDESCRIPTION``, ``ZKEYWORD`` and ``Z_1KEYWORDS``,
``ZPERSON`` and ``ZDETECTEDFACE``, ``ZGENERICALBUM`` with its root folder, folders,
albums, a shared album and an import session, the album join with its ``Z_FOK`` order,
``ZINTERNALRESOURCE``, and ``Z_PRIMARYKEY`` numbered consistently with the join names.
Decoys a careless reader would take are there too: the memories' and suggestions'
``Z_3…ASSETS`` joins, and a stale album-shaped ``Z_nASSETS`` that sorts (and was made)
before the real one and holds wrong memberships.  Entity numbers the reference does not
give (Person, DetectedFace, Memory…) are made up, but distinct and stable.

    build(media_root, "18", photos, albums, wal_only=2) -> Path of Photos.sqlite
    update(db, uuid, favorite=True, caption="...", add_to_album=("Trips", "Rome"))

``wal_only=N`` leaves the last N photos (and their album places) committed only in the
``-wal``, as a phone does between checkpoints; ``update`` writes the way the phone does,
into the ``-wal``, leaving the main file as it was.
"""

from __future__ import annotations

import plistlib
import random
import shutil
import sqlite3
import tempfile
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from photod.library import LibraryAsset

CORE_DATA_EPOCH = 978_307_200
NO_LOCATION = -180.0
ROOT, PROJECTS, FOLDER, ALBUM, SHARED, IMPORT = 3999, 3998, 4000, 2, 1505, 1506


@dataclass(frozen=True)
class Generation:
    """One iOS release's names.  ``ents`` are Z_PRIMARYKEY's entity numbers; the
    asset, album, keyword ones make the join names (reference §1)."""

    name: str
    asset_table: str  # ZASSET from iOS 14, ZGENERICASSET before
    ents: dict[str, int]
    face: tuple[str, str]  # ZDETECTEDFACE's asset and person columns
    edits: str  # ZHASADJUSTMENTS to iOS 17, ZADJUSTMENTSSTATE from 18
    model: int  # Z_METADATA's PLModelVersion (made up within osxphotos' ranges)

    @property
    def asset(self) -> int:
        """The entity the joins name the asset side after (GenericAsset before iOS 14)."""
        return self.ents["GenericAsset" if self.asset_table == "ZGENERICASSET" else "Asset"]

    @property
    def album_join(self) -> str:
        return f"Z_{self.ents['Album']}ASSETS"


def _generation(
    name: str, album: int, keyword: int, memory: int, face: int, **ents: int
) -> Generation:
    old = name == "13"
    numbers = {
        "AdditionalAssetAttributes": 1,
        "AlbumList": 2,
        "AssetDescription": 4 if old else 5,
        "DetectedFace": face,
        "GenericAlbum": album - 1,
        "Album": album,
        "CloudSharedAlbum": album + 1,
        "Folder": album + 2,
        "ImportSession": album + 3,
        "Keyword": keyword,
        "Memory": memory,
        **ents,
    }
    numbers.update({"GenericAsset": 34, "Asset": 35} if old else {"Asset": 3})
    return Generation(
        name=name,
        asset_table="ZGENERICASSET" if old else "ZASSET",
        ents=numbers,
        face=("ZASSETFORFACE", "ZPERSONFORFACE") if float(name) >= 17 else ("ZASSET", "ZPERSON"),
        edits="ZADJUSTMENTSSTATE" if float(name) >= 18 else "ZHASADJUSTMENTS",
        model=int(float(name) * 1000) + 120,
    )


GENERATIONS = {
    g.name: g
    for g in (  # album join, keyword join and memories' numbers from reference §1
        _generation("13", 26, 37, 40, 14, InternalResource=36, Person=47, Suggestion=55),
        _generation("15", 27, 38, 43, 16, InternalResource=36, Person=52, Suggestion=61),
        _generation("16", 28, 40, 44, 17, InternalResource=38, Person=55, Suggestion=64),
        _generation("17", 28, 40, 44, 17, InternalResource=38, Person=55, Suggestion=64),
        _generation("17.6", 29, 41, 45, 17, InternalResource=39, Person=57, Suggestion=65),
        _generation("18", 30, 47, 51, 18, InternalResource=44, Person=63, Suggestion=71),
        _generation("26", 33, 52, 56, 19, InternalResource=49, Person=68, Suggestion=76),
    )
}
SUPER = {"Album": "GenericAlbum", "CloudSharedAlbum": "GenericAlbum", "Folder": "GenericAlbum",
         "ImportSession": "GenericAlbum", "Asset": "GenericAsset"}  # fmt: skip


@dataclass
class Photo:
    """One asset as the phone would store it; mirrors ``LibraryAsset`` (whose
    ``expected()`` is what a reader must give back), plus a few ways of storing it."""

    filename: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()).upper())
    directory: str = "DCIM/100APPLE"
    original_name: str = ""
    video: bool = False
    favorite: bool = False
    hidden: bool = False
    trashed: bool = False
    title: str = ""
    caption: str = ""
    keywords: tuple[str, ...] = ()
    people: tuple[str, ...] = ()  # one named face each (a name twice: two faces of one person)
    captured: datetime | None = None  # aware
    latitude: float | None = None  # None: stored as the phone does, -180.0
    longitude: float | None = None
    live: bool = False
    burst: str = ""
    screenshot: bool = False
    screen_recording: bool = False  # a video too: say video=True
    edited: bool = False
    local: bool = True
    media_group: str = ""  # a Live Photo's (its movie's content identifier); made when live

    # how it is stored
    unnamed_faces: int = 0  # faces of people nobody named (and one face of nobody at all)
    subtype: int | None = None  # ZKINDSUBTYPE instead of the one the flags give
    playback: int | None = None  # ZPLAYBACKSTYLE instead of the one the flags give
    offset_stored: bool = True  # False: ZTIMEZONEOFFSET is NULL (the reader says UTC)

    def __post_init__(self) -> None:
        if self.live and not self.media_group:
            self.media_group = str(uuidlib.uuid4()).upper()

    def expected(self, albums: Iterable[tuple[str, ...]] = ()) -> LibraryAsset:
        """What a reader must give back for this photo in ``albums``."""
        captured = self.captured
        if captured is not None and not self.offset_stored:
            captured = captured.astimezone(UTC)
        located = self.latitude is not None and self.longitude is not None
        return LibraryAsset(
            uuid=self.uuid, directory=self.directory, filename=self.filename,
            original_name=self.original_name, video=self.video, favorite=self.favorite,
            hidden=self.hidden, trashed=self.trashed, title=self.title, caption=self.caption,
            keywords=tuple(sorted(set(self.keywords))), people=tuple(sorted(set(self.people))),
            albums=tuple(sorted(set(albums))), captured=captured,
            latitude=self.latitude if located else None,
            longitude=self.longitude if located else None, live=self.live, burst=self.burst,
            screenshot=self.screenshot, screen_recording=self.screen_recording,
            edited=self.edited, local=self.local, media_group=self.media_group,
        )  # fmt: skip


AlbumSpec = tuple[tuple[str, ...], list[str]]  # the album's path (folders, title) -> uuids in order


def album_uuid(path: tuple[str, ...]) -> str:
    """The ZUUID ``build`` gives the album (or folder) at ``path``."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "photoslib:" + "/".join(path))).upper()


def _tables(g: Generation) -> dict[str, list[str]]:
    """Every table's columns, in the order made; the first column list item may be a
    table constraint."""
    e, a = g.ents, g.asset
    core = ["Z_PK INTEGER PRIMARY KEY", "Z_ENT INTEGER", "Z_OPT INTEGER"]
    asset_cols = [*core,
        "ZUUID VARCHAR", "ZDIRECTORY VARCHAR", "ZFILENAME VARCHAR", "ZKIND INTEGER",
        "ZKINDSUBTYPE INTEGER", "ZPLAYBACKSTYLE INTEGER", "ZFAVORITE INTEGER", "ZHIDDEN INTEGER",
        "ZTRASHEDSTATE INTEGER", "ZTRASHEDDATE TIMESTAMP", "ZVISIBILITYSTATE INTEGER",
        "ZDATECREATED TIMESTAMP", "ZMODIFICATIONDATE TIMESTAMP", "ZLATITUDE FLOAT",
        "ZLONGITUDE FLOAT", "ZAVALANCHEUUID VARCHAR", "ZAVALANCHEPICKTYPE INTEGER",
        f"{g.edits} INTEGER", "ZADDITIONALATTRIBUTES INTEGER", "ZMASTER INTEGER",
        "ZCLOUDASSETGUID VARCHAR", "ZCLOUDLOCALSTATE INTEGER", "ZSAVEDASSETTYPE INTEGER",
        "ZWIDTH INTEGER", "ZHEIGHT INTEGER", "ZMEDIAGROUPUUID VARCHAR",
    ]  # fmt: skip
    if float(g.name) >= 18:
        asset_cols += ["ZISDETECTEDSCREENSHOT INTEGER", "ZAVALANCHEKIND INTEGER"]
    decoy = [("MEMORIESBEINGCURATEDASSETS", "CURATEDASSETS", e["Memory"]),
             ("MEMORIESBEINGCUSTOMUSERASSETS", "CUSTOMUSERASSETS", e["Memory"]),
             ("SUGGESTIONSBEINGKEYASSETS", "KEYASSETS", e["Suggestion"]),
             ("SUGGESTIONSBEINGREPRESENTATIVEASSETS", "REPRESENTATIVEASSETS", e["Suggestion"])]  # fmt: skip
    stale = e["Album"] - 2  # a join an older model left: album-shaped, sorts first, no order
    tables: dict[str, list[str]] = {
        "Z_PRIMARYKEY": ["Z_ENT INTEGER PRIMARY KEY", "Z_NAME VARCHAR", "Z_SUPER INTEGER", "Z_MAX INTEGER"],
        "Z_METADATA": ["Z_VERSION INTEGER PRIMARY KEY", "Z_UUID VARCHAR(255)", "Z_PLIST BLOB"],
        f"Z_{stale}ASSETS": [f"Z_{stale}ALBUMS INTEGER", f"Z_{a}ASSETS INTEGER"],
        **{f"Z_{a}{name}": [f"Z_{a}{mine} INTEGER", f"Z_{n}{name} INTEGER"] for name, mine, n in decoy},
        g.asset_table: asset_cols,
        "ZADDITIONALASSETATTRIBUTES": [*core,
            "ZASSET INTEGER", "ZORIGINALFILENAME VARCHAR", "ZTITLE VARCHAR",
            "ZASSETDESCRIPTION INTEGER", "ZTIMEZONEOFFSET INTEGER", "ZINFERREDTIMEZONEOFFSET INTEGER",
            "ZTIMEZONENAME VARCHAR", "ZEXIFTIMESTAMPSTRING VARCHAR",
            "ZACCESSIBILITYDESCRIPTION VARCHAR", "ZDATECREATEDSOURCE INTEGER",
            "ZREVERSELOCATIONDATA BLOB",
        ],
        "ZASSETDESCRIPTION": [*core, "ZASSETATTRIBUTES INTEGER", "ZLONGDESCRIPTION VARCHAR"],
        "ZKEYWORD": [*core, "ZTITLE VARCHAR", "ZSHORTCUT VARCHAR", "ZUUID VARCHAR"],
        "Z_1KEYWORDS": ["Z_1ASSETATTRIBUTES INTEGER", f"Z_{e['Keyword']}KEYWORDS INTEGER"],
        "ZPERSON": [*core, "ZPERSONUUID VARCHAR", "ZFULLNAME VARCHAR", "ZDISPLAYNAME VARCHAR",
                           "ZFACECOUNT INTEGER", "ZVERIFIEDTYPE INTEGER"],
        "ZDETECTEDFACE": [*core, f"{g.face[0]} INTEGER", f"{g.face[1]} INTEGER", "ZUUID VARCHAR",
                                 "ZHIDDEN INTEGER", "ZASSETVISIBLE INTEGER"],
        "ZALBUMLIST": [*core, "ZIDENTIFIER INTEGER", "ZUUID VARCHAR"],
        "ZGENERICALBUM": [*core,
            "ZKIND INTEGER", "ZPARENTFOLDER INTEGER", "Z_FOK_PARENTFOLDER INTEGER",
            "ZTITLE VARCHAR", "ZUUID VARCHAR", "ZTRASHEDSTATE INTEGER", "ZTRASHEDDATE TIMESTAMP",
            "ZCREATIONDATE TIMESTAMP", "ZCACHEDCOUNT INTEGER", "ZCUSTOMSORTKEY INTEGER",
            "ZCUSTOMSORTASCENDING INTEGER", "ZCLOUDLOCALSTATE INTEGER",
        ],
        f"Z_{e['GenericAlbum']}ALBUMLISTS": [
            f"Z_{e['GenericAlbum']}ALBUMS INTEGER", "Z_2ALBUMLISTS INTEGER",
            f"Z_FOK_{e['GenericAlbum']}ALBUMS INTEGER",
        ],
        g.album_join: [f"Z_{e['Album']}ALBUMS INTEGER", f"Z_{a}ASSETS INTEGER",
                       f"Z_FOK_{a}ASSETS INTEGER"],
        "ZINTERNALRESOURCE": [*core,
            "ZASSET INTEGER", "ZRESOURCETYPE INTEGER", "ZDATASTORESUBTYPE INTEGER",
            "ZLOCALAVAILABILITY INTEGER", "ZREMOTEAVAILABILITY INTEGER", "ZCLOUDLOCALSTATE INTEGER",
            "ZFINGERPRINT VARCHAR", "ZVERSION INTEGER", "ZRECIPEID INTEGER", "ZTRASHEDSTATE INTEGER",
        ],
        "ZMEMORY": [*core, "ZUUID VARCHAR", "ZTITLE VARCHAR"],
    }  # fmt: skip
    return tables


def _create(conn: sqlite3.Connection, tables: dict[str, list[str]], omit: frozenset[str]) -> None:
    for table, cols in tables.items():
        if table in omit:
            continue
        kept = [c for c in cols if f"{table}.{c.split()[0]}" not in omit]
        if not any("PRIMARY" in c for c in kept) and len(kept) >= 2:  # a join: its two keys
            kept.append(f"PRIMARY KEY ({kept[0].split()[0]}, {kept[1].split()[0]})")
        conn.execute(f"CREATE TABLE {table} ({', '.join(kept)})")


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert the columns the table has (a test may have left some out)."""
    have = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    if not have or not rows:
        return
    cols = [c for c in have if c in rows[0]]
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})",
        rows,
    )


class _Rows:
    """Every row of one library, grouped by table, made from the photos and albums."""

    def __init__(self, g: Generation, display_only: frozenset[str]) -> None:
        self.g = g
        self.display_only = display_only
        self.keywords: dict[str, int] = {}
        self.people: dict[str, int] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def add(self, table: str, **row: Any) -> None:
        self.rows.setdefault(table, []).append(row)

    def person(self, name: str) -> int:
        if name not in self.people:
            pk = self.people[name] = len(self.people) + 1
            if not name:
                full, display = "", None  # a person the phone grouped, nobody named
            elif name in self.display_only:
                full, display = None, name
            else:
                full, display = name, name.split()[0]
            self.add("ZPERSON", Z_PK=pk, Z_ENT=self.g.ents["Person"], Z_OPT=1,
                     ZPERSONUUID=str(uuidlib.uuid4()).upper(), ZFULLNAME=full,
                     ZDISPLAYNAME=display, ZFACECOUNT=1, ZVERIFIEDTYPE=1 if name else 0)  # fmt: skip
        return self.people[name]

    def photo(self, p: Photo, pk: int, attrs: int) -> None:
        g = self.g
        if p.captured is None:
            created, offset = None, None
        else:
            created = p.captured.timestamp() - CORE_DATA_EPOCH
            delta = p.captured.utcoffset()
            offset = int(delta.total_seconds()) if delta is not None and p.offset_stored else None
        subtype = 10 if p.screenshot else 103 if p.screen_recording else 2 if p.live else 0
        playback = 3 if p.live else 4 if p.video else 1
        edit = (2 if p.edited else 0) if g.edits == "ZADJUSTMENTSSTATE" else int(p.edited)
        self.add(g.asset_table, Z_PK=pk, Z_ENT=g.ents["Asset"], Z_OPT=1, ZUUID=p.uuid,
                 ZDIRECTORY=p.directory, ZFILENAME=p.filename,
                 ZKIND=int(p.video),
                 ZKINDSUBTYPE=subtype if p.subtype is None else p.subtype,
                 ZPLAYBACKSTYLE=playback if p.playback is None else p.playback,
                 ZFAVORITE=int(p.favorite), ZHIDDEN=int(p.hidden), ZTRASHEDSTATE=int(p.trashed),
                 ZTRASHEDDATE=created if p.trashed else None,
                 ZVISIBILITYSTATE=0, ZDATECREATED=created, ZMODIFICATIONDATE=created,
                 ZLATITUDE=NO_LOCATION if p.latitude is None else p.latitude,
                 ZLONGITUDE=NO_LOCATION if p.longitude is None else p.longitude,
                 ZAVALANCHEUUID=p.burst or None, ZAVALANCHEPICKTYPE=4 if p.burst else 0,
                 ZAVALANCHEKIND=int(bool(p.burst)), ZISDETECTEDSCREENSHOT=int(p.screenshot),
                 ZADDITIONALATTRIBUTES=attrs, ZMASTER=None, ZCLOUDASSETGUID=None,
                 ZCLOUDLOCALSTATE=1, ZSAVEDASSETTYPE=3, ZWIDTH=4032, ZHEIGHT=3024,
                 ZMEDIAGROUPUUID=p.media_group or None,
                 **{g.edits: edit})  # fmt: skip
        description = None
        if p.caption:
            description = attrs  # one description per attributes row: the same number
            self.add("ZASSETDESCRIPTION", Z_PK=description, Z_ENT=g.ents["AssetDescription"],
                     Z_OPT=1, ZASSETATTRIBUTES=attrs, ZLONGDESCRIPTION=p.caption)  # fmt: skip
        self.add("ZADDITIONALASSETATTRIBUTES", Z_PK=attrs, Z_ENT=1, Z_OPT=1, ZASSET=pk,
                 ZORIGINALFILENAME=p.original_name or None, ZTITLE=p.title or None,
                 ZASSETDESCRIPTION=description, ZTIMEZONEOFFSET=offset,
                 ZINFERREDTIMEZONEOFFSET=offset, ZTIMEZONENAME=None,
                 ZEXIFTIMESTAMPSTRING=None, ZACCESSIBILITYDESCRIPTION=None,
                 ZDATECREATEDSOURCE=1, ZREVERSELOCATIONDATA=None)  # fmt: skip
        for word in dict.fromkeys(p.keywords):  # a keyword is on a photo once
            if word not in self.keywords:
                kw = self.keywords[word] = len(self.keywords) + 1
                self.add("ZKEYWORD", Z_PK=kw, Z_ENT=g.ents["Keyword"], Z_OPT=1, ZTITLE=word,
                         ZSHORTCUT=None, ZUUID=str(uuidlib.uuid4()).upper())  # fmt: skip
            self.add("Z_1KEYWORDS", Z_1ASSETATTRIBUTES=attrs,
                     **{f"Z_{g.ents['Keyword']}KEYWORDS": self.keywords[word]})  # fmt: skip
        faces: list[int | None] = [self.person(n) for n in p.people]
        faces += [self.person("")] * p.unnamed_faces
        faces += [None] if p.unnamed_faces else []  # a face not yet put to anyone
        for person in faces:
            self.add("ZDETECTEDFACE", Z_PK=len(self.rows.get("ZDETECTEDFACE", ())) + 1,
                     Z_ENT=g.ents["DetectedFace"], Z_OPT=1, ZUUID=str(uuidlib.uuid4()).upper(),
                     ZHIDDEN=0, ZASSETVISIBLE=1, **{g.face[0]: pk, g.face[1]: person})  # fmt: skip
        here = 1 if p.local else -1
        kind = int(p.video)
        resources = [(kind, 1, here), (0, 5, 1)]  # the original, a small thumbnail (always here)
        resources += [(3, 1, here)] if p.live else []  # the Live Photo's movie
        resources += [(0, 3, -1)] if p.local else []  # a large derivative not made: no matter
        for rtype, subtype_, available in resources:
            self.add("ZINTERNALRESOURCE", Z_PK=len(self.rows.get("ZINTERNALRESOURCE", ())) + 1,
                     Z_ENT=g.ents["InternalResource"], Z_OPT=1, ZASSET=pk, ZRESOURCETYPE=rtype,
                     ZDATASTORESUBTYPE=subtype_, ZLOCALAVAILABILITY=available,
                     ZREMOTEAVAILABILITY=1, ZCLOUDLOCALSTATE=3, ZFINGERPRINT=f"fp{pk}.{rtype}",
                     ZVERSION=0, ZRECIPEID=0, ZTRASHEDSTATE=0)  # fmt: skip


def build(
    media_root: Path,
    generation: str,
    photos: list[Photo],
    albums: Iterable[AlbumSpec] = (),
    *,
    wal_only: int = 0,
    trashed: Iterable[tuple[str, ...]] = (),
    display_only: Iterable[str] = (),
    omit: Iterable[str] = (),
) -> Path:
    """Write ``media_root/PhotoData/Photos.sqlite`` (+ ``-wal``, ``-shm``); returns its path.

    ``albums``: each album's path (folders, then its title) and its assets' UUIDs in the
    album's order.  ``trashed``: paths of albums or folders in the trash.
    ``display_only``: people stored with a display name and no full name.  ``omit``:
    tables (``"ZDETECTEDFACE"``), columns (``"ZASSET.ZAVALANCHEUUID"``) or entities
    (``"entity:Album"``) the library lacks.  ``wal_only``: the last N photos and their
    album places are committed only in the -wal."""
    g, omitted, gone = GENERATIONS[generation], frozenset(omit), set(trashed)
    rows = _Rows(g, frozenset(display_only))
    count = len(photos)
    for i, p in enumerate(photos):
        rows.photo(p, pk=i + 1, attrs=count - i)  # attributes numbered backwards: not the asset's
    pk_of = {p.uuid: i + 1 for i, p in enumerate(photos)}
    later = set(range(count - wal_only + 1, count + 1)) if wal_only else set()
    containers = _albums(rows, g, albums, gone, pk_of)
    out = media_root / "PhotoData"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "Photos.sqlite"
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the -wal keeps what it is given
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("BEGIN")
            _create(conn, _tables(g), omitted)
            _primary_keys(conn, g, omitted, len(photos), len(containers))
            first = {
                t: [r for r in rs if not _later(t, r, g, later, count)]
                for t, rs in rows.rows.items()
            }
            for table, table_rows in first.items():
                _insert(conn, table, table_rows)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file has it all so far
            if wal_only:
                conn.execute("BEGIN")
                for table, table_rows in rows.rows.items():
                    _insert(
                        conn, table, [r for r in table_rows if _later(table, r, g, later, count)]
                    )
                conn.execute("COMMIT")
            for suffix in ("", "-wal", "-shm"):  # copied while open: closing would checkpoint
                shutil.copyfile(f"{db}{suffix}", out / f"Photos.sqlite{suffix}")
        finally:
            conn.close()
    return out / "Photos.sqlite"


def _later(table: str, row: dict[str, Any], g: Generation, later: set[int], count: int) -> bool:
    """Is this row part of the photos committed only in the -wal?  (``later`` holds
    asset primary keys.)"""
    if not later:
        return False
    owner = {
        g.asset_table: row.get("Z_PK"),
        "ZADDITIONALASSETATTRIBUTES": row.get("ZASSET"),
        "ZASSETDESCRIPTION": count + 1 - row.get("ZASSETATTRIBUTES", 0),
        "Z_1KEYWORDS": count + 1 - row.get("Z_1ASSETATTRIBUTES", 0),
        "ZDETECTEDFACE": row.get(g.face[0]),
        "ZINTERNALRESOURCE": row.get("ZASSET"),
        g.album_join: row.get(f"Z_{g.asset}ASSETS"),
    }.get(table)
    return owner in later


def _albums(
    rows: _Rows,
    g: Generation,
    albums: Iterable[AlbumSpec],
    gone: set[tuple[str, ...]],
    pk_of: dict[str, int],
) -> dict[tuple[str, ...], int]:
    """The root folder, the folders the paths need, the albums and their members (each
    album's rows made in reverse, so only the order column gives the order), a shared
    album and an import session (not the person's albums), the stale decoy join."""
    e, when = g.ents, 700_000_000.0
    made: dict[tuple[str, ...], int] = {}

    def container(
        path: tuple[str, ...] | None, kind: int, parent: int | None, title: str | None
    ) -> int:
        """A ZGENERICALBUM row; ``path`` None for the phone's own (root, shared...)."""
        pk = len(rows.rows.get("ZGENERICALBUM", ())) + 1
        ent = {ALBUM: "Album", SHARED: "CloudSharedAlbum", IMPORT: "ImportSession"}.get(
            kind, "Folder"
        )
        rows.add("ZGENERICALBUM", Z_PK=pk, Z_ENT=e[ent], Z_OPT=1, ZKIND=kind, ZPARENTFOLDER=parent,
                 Z_FOK_PARENTFOLDER=pk * 1024 if parent else None, ZTITLE=title,
                 ZUUID=album_uuid(path) if path else str(uuidlib.uuid4()).upper(),
                 ZTRASHEDSTATE=int(path in gone), ZTRASHEDDATE=when if path in gone else None,
                 ZCREATIONDATE=when, ZCACHEDCOUNT=0, ZCUSTOMSORTKEY=1, ZCUSTOMSORTASCENDING=1,
                 ZCLOUDLOCALSTATE=1)  # fmt: skip
        if path is not None:
            made[path] = pk
        return pk

    root = container(None, ROOT, None, None)
    container(None, PROJECTS, None, None)
    container(("Empty folder",), FOLDER, root, "Empty folder")
    join, album_col, asset_col = g.album_join, f"Z_{e['Album']}ALBUMS", f"Z_{g.asset}ASSETS"
    stale = f"Z_{e['Album'] - 2}ASSETS"
    every = list(pk_of.values())
    for path, members in albums:
        parent = root
        for depth in range(1, len(path)):
            folder = path[:depth]
            parent = made.get(folder) or container(folder, FOLDER, parent, folder[-1])
        album = container(path, ALBUM, parent, path[-1])
        rows.rows["ZGENERICALBUM"][-1]["ZCACHEDCOUNT"] = len(members)
        for place, uuid in reversed(list(enumerate(members))):
            rows.add(join, **{album_col: album, asset_col: pk_of[uuid],
                              f"Z_FOK_{g.asset}ASSETS": (place + 1) * 1024})  # fmt: skip
        for asset in every[:3]:  # wrong members: taking this join shows
            rows.add(stale, **{f"Z_{e['Album'] - 2}ALBUMS": album, asset_col: asset})
    shared = container(None, SHARED, None, "Family (shared)")
    container(None, IMPORT, None, None)
    if every:
        rows.add(join, **{album_col: shared, asset_col: every[0], f"Z_FOK_{g.asset}ASSETS": 1024})
        rows.add("ZMEMORY", Z_PK=1, Z_ENT=e["Memory"], Z_OPT=1, ZUUID="MEMORY", ZTITLE="Summer")
        rows.add(f"Z_{g.asset}MEMORIESBEINGCURATEDASSETS",
                 **{f"Z_{g.asset}CURATEDASSETS": every[-1], f"Z_{e['Memory']}MEMORIESBEINGCURATEDASSETS": 1})  # fmt: skip
    return made


def _primary_keys(
    conn: sqlite3.Connection, g: Generation, omit: frozenset[str], assets: int, albums: int
) -> None:
    rows = []
    for name, ent in sorted(g.ents.items(), key=lambda kv: kv[1]):
        if f"entity:{name}" in omit:
            continue
        parent = SUPER.get(name)
        sup = g.ents.get(parent or "", 0)
        most = assets if name in ("Asset", "GenericAsset", "AdditionalAssetAttributes") else 0
        rows.append({"Z_ENT": ent, "Z_NAME": name, "Z_SUPER": sup,
                     "Z_MAX": albums if name == "GenericAlbum" else most})  # fmt: skip
    _insert(conn, "Z_PRIMARYKEY", rows)
    plist = plistlib.dumps({"PLModelVersion": g.model}, fmt=plistlib.FMT_BINARY)
    _insert(
        conn,
        "Z_METADATA",
        [{"Z_VERSION": 1, "Z_UUID": str(uuidlib.uuid4()).upper(), "Z_PLIST": plist}],
    )


def update(
    db: Path,
    uuid: str,
    *,
    favorite: bool | None = None,
    hidden: bool | None = None,
    trashed: bool | None = None,
    title: str | None = None,
    caption: str | None = None,
    add_to_album: tuple[str, ...] | None = None,
) -> None:
    """Change one photo as the phone would: one transaction into ``db``'s -wal (the main
    file is left as it was, as between the phone's checkpoints)."""
    with _phone(db) as conn:
        one = conn.execute
        table = "ZASSET" if _has(conn, "ZASSET") else "ZGENERICASSET"
        pk, attrs = one(
            f"SELECT Z_PK, ZADDITIONALATTRIBUTES FROM {table} WHERE ZUUID = ?", (uuid,)
        ).fetchone()
        flags = {"ZFAVORITE": favorite, "ZHIDDEN": hidden, "ZTRASHEDSTATE": trashed}
        for column, value in flags.items():
            if value is not None:
                one(f"UPDATE {table} SET {column} = ?, Z_OPT = Z_OPT + 1 WHERE Z_PK = ?",
                    (int(value), pk))  # fmt: skip
        if title is not None:
            one("UPDATE ZADDITIONALASSETATTRIBUTES SET ZTITLE = ? WHERE Z_PK = ?", (title, attrs))
        if caption is not None:
            (desc,) = one("SELECT ZASSETDESCRIPTION FROM ZADDITIONALASSETATTRIBUTES "
                          "WHERE Z_PK = ?", (attrs,)).fetchone()  # fmt: skip
            if desc is None:  # the phone makes the description row on the first caption
                (desc,) = one("SELECT COALESCE(MAX(Z_PK), 0) + 1 FROM ZASSETDESCRIPTION").fetchone()
                one("INSERT INTO ZASSETDESCRIPTION (Z_PK, Z_ENT, Z_OPT, ZASSETATTRIBUTES) "
                    "SELECT ?, Z_ENT, 1, ? FROM Z_PRIMARYKEY WHERE Z_NAME = 'AssetDescription'",
                    (desc, attrs))  # fmt: skip
                one("UPDATE ZADDITIONALASSETATTRIBUTES SET ZASSETDESCRIPTION = ? WHERE Z_PK = ?",
                    (desc, attrs))  # fmt: skip
            one("UPDATE ZASSETDESCRIPTION SET ZLONGDESCRIPTION = ? WHERE Z_PK = ?", (caption, desc))
        if add_to_album is not None:  # at the album's end
            (album,) = one("SELECT Z_PK FROM ZGENERICALBUM WHERE ZUUID = ?",
                           (album_uuid(add_to_album),)).fetchone()  # fmt: skip
            (ent,) = one("SELECT Z_ENT FROM Z_PRIMARYKEY WHERE Z_NAME = 'Album'").fetchone()
            join = f"Z_{ent}ASSETS"
            album_col, asset_col, fok = (r[1] for r in one(f"PRAGMA table_info({join})"))
            one(f"INSERT INTO {join} ({album_col}, {asset_col}, {fok}) SELECT ?, ?, "
                f"COALESCE(MAX({fok}), 0) + 1024 FROM {join} WHERE {album_col} = ?",
                (album, pk, album))  # fmt: skip


def sql(db: Path, *statements: str) -> None:
    """Any change, in one transaction committed into the -wal as ``update`` does (for
    what it cannot say)."""
    with _phone(db) as conn:
        for statement in statements:
            conn.execute(statement)


@contextmanager
def _phone(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-write transaction that commits into the -wal and never checkpoints it:
    made on a copy of the three files, put back before the connection closes (closing
    the last connection would checkpoint and delete the -wal)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "Photos.sqlite"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
        conn = sqlite3.connect(copy, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
            for suffix in ("", "-wal", "-shm"):
                shutil.copyfile(f"{copy}{suffix}", f"{db}{suffix}")
        finally:
            conn.close()


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None
    )


# -- files that are not a library ---------------------------------------------------------


def garbage(path: Path, size: int = 64 * 1024, seed: int = 1) -> Path:
    """Random bytes, as an encrypted or foreign file looks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def truncate(db: Path, keep: float = 0.5) -> Path:
    """Cut the main file short, as an interrupted copy leaves it (a page boundary kept,
    so only SQLite's own count of pages tells)."""
    data = db.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    db.write_bytes(data[: max(page, int(len(data) * keep) // page * page)])
    return db


def unknown_schema(path: Path) -> Path:
    """A sound SQLite file of another app (a Core Data store of notes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE Z_PRIMARYKEY (Z_ENT INTEGER PRIMARY KEY, Z_NAME VARCHAR, "
                     "Z_SUPER INTEGER, Z_MAX INTEGER)")  # fmt: skip
        conn.execute("INSERT INTO Z_PRIMARYKEY VALUES (1, 'Note', 0, 1)")
        conn.execute("CREATE TABLE ZNOTE (Z_PK INTEGER PRIMARY KEY, ZTITLE VARCHAR, ZBODY BLOB)")
        conn.execute("INSERT INTO ZNOTE VALUES (1, 'shopping', x'00')")
    conn.close()
    return path


# -- a library of any size ----------------------------------------------------------------


def sample(count: int, albums: int, seed: int = 7) -> tuple[list[Photo], list[AlbumSpec]]:
    """``count`` photos of every kind and ``albums`` albums (some in folders) of 20 to
    80 photos each, reproducible from ``seed``: for tests of size and the benchmark."""
    rnd = random.Random(seed)
    zones = [timezone(timedelta(hours=h)) for h in (-7, 0, 1, 2, 5.5, 9)]
    words, names = ["beach", "family", "snow", "food", "cat", "work"], ["Ann Lee", "Bo Chen", "Cy"]
    photos = []
    for i in range(count):
        roll = rnd.random()
        taken = datetime(2015, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(300_000_000))
        photos.append(Photo(
            filename=f"IMG_{i:05d}.{'MOV' if roll < 0.1 else 'HEIC'}",
            uuid=str(uuidlib.UUID(int=rnd.getrandbits(128))).upper(),
            directory=f"DCIM/{100 + i // 1000}APPLE", original_name=f"IMG_{i:05d}.HEIC",
            video=roll < 0.1, live=0.1 <= roll < 0.5, screenshot=0.5 <= roll < 0.55,
            favorite=rnd.random() < 0.1, hidden=rnd.random() < 0.01, trashed=rnd.random() < 0.01,
            caption="a caption" if rnd.random() < 0.05 else "",
            keywords=tuple(rnd.sample(words, rnd.randrange(3))),
            people=tuple(rnd.sample(names, rnd.randrange(3))),
            captured=taken.astimezone(rnd.choice(zones)),
            latitude=rnd.uniform(-60, 60) if rnd.random() < 0.7 else None,
            longitude=rnd.uniform(-170, 170) if rnd.random() < 0.7 else None,
            burst=f"BURST-{i // 5}" if 0.55 <= roll < 0.6 else "", edited=rnd.random() < 0.1,
            local=rnd.random() < 0.7,
        ))  # fmt: skip
    for p in photos:
        if (p.latitude is None) != (p.longitude is None):
            p.latitude = p.longitude = None
    specs: list[AlbumSpec] = []
    for n in range(albums):
        folder = ("Trips", str(2015 + n % 10)) if n % 3 == 0 else ()
        members = rnd.sample(photos, rnd.randrange(20, 81))
        specs.append(((*folder, f"Album {n:03d}"), [p.uuid for p in members]))
    return photos, specs


def members(
    albums: Iterable[AlbumSpec], gone: Iterable[tuple[str, ...]] = ()
) -> dict[str, list[tuple[str, ...]]]:
    """Each photo's album paths, leaving out albums in the trash (or in a trashed folder)."""
    out: dict[str, list[tuple[str, ...]]] = {}
    trashed = set(gone)
    for path, uuids in albums:
        if any(path[:i] in trashed for i in range(1, len(path) + 1)):
            continue
        for uuid in uuids:
            out.setdefault(uuid, []).append(path)
    return out
