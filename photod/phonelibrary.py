"""Read what the phone's Photos library knows, from a private copy of its database.

The iPhone keeps each photo's facts (favourite, hidden, albums and their folders,
caption, keywords, people, the time zone it was taken in, whether "Optimize iPhone
Storage" left the original in iCloud only) in ``PhotoData/Photos.sqlite``, a Core Data
store whose table and column names change with iOS (``Z_27ASSETS`` on iOS 15,
``Z_30ASSETS`` on 18, face columns renamed on 17...).  This module owns reading one
copy of it into ``library.PhoneLibrary``, and nothing else: no I/O but that file.

Why it is built this way:

- The names are discovered from the store itself (``Z_PRIMARYKEY`` gives the entity
  numbers, ``pragma_table_info`` confirms every table and column) instead of a table
  of iOS versions, so a release photod has never seen still reads.  A fact whose
  column or table is absent reads as absent (False, empty); only what photod cannot
  do without (the assets, the albums' join) is an error.
- The copy is opened read-only through a URI, never ``immutable=1``: the phone commits
  into ``Photos.sqlite-wal`` and those rows must be seen; a read-only connection
  neither checkpoints nor deletes the -wal.  (Besides the catalog, this is the one
  module that imports sqlite3: it reads a foreign file, never photod's own state.)
- A handful of set-based queries, never one per asset: a library of 20,000 photos
  reads in a fraction of a second.
- Every failure is ``LibraryUnreadable`` with one line a person understands; no
  sqlite3 exception leaves this module.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from photod.errors import LibraryUnreadable
from photod.library import Album, LibraryAsset, PhoneLibrary
from photod.phoneschema import Schema, discover
from photod.phoneschema import Unreadable as _Unreadable

CORE_DATA_EPOCH = 978_307_200  # 2001-01-01T00:00:00Z in Unix seconds
NO_LOCATION = -180.0  # what the phone stores for "no location"
USER_ALBUM, ROOT_FOLDER = 2, 3999  # ZGENERICALBUM.ZKIND
SQLITE_MAGIC = b"SQLite format 3\x00"
TEXT_MAX = 4096  # characters of a title, caption, name kept (captions are short)
# Characters of text over every photo's sidecar (200,000 with a 100-character caption:
# 20 Mi); more is a file that joins a few long texts to every row, to fill the memory.
LIBRARY_TEXT_MAX = 64 * 1024 * 1024
READ_MAX = 600.0  # seconds (20,000 photos: copied, read and recorded in 5 s here)


def read_library(db: Path, stop: threading.Event | None = None) -> PhoneLibrary:
    """Read the copy ``db`` of ``Photos.sqlite`` (its ``-wal`` and ``-shm`` beside it, if
    any).  Raises ``LibraryUnreadable`` and nothing else; leaves the files' bytes as
    they were (SQLite may rebuild the ``-shm``, which is only an index of the -wal).
    The file is the phone's, so untrusted: each text is cut at TEXT_MAX characters (one
    long caption shared by every photo cannot fill the memory), and the read ends after
    READ_MAX seconds of SQLite's work (joins made slow on purpose), or at ``stop``."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + READ_MAX
    try:
        _check_header(db)
        conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
        conn.set_progress_handler(lambda: stop.is_set() or time.monotonic() > deadline, 10_000)
        try:
            try:
                return _read(conn)
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                conn.text_factory = _decode  # slower, but one odd title must not lose the library
                return _read(conn)
        finally:
            conn.close()
    except _Unreadable as exc:
        raise LibraryUnreadable(db, str(exc)) from None
    except sqlite3.Error as exc:
        if time.monotonic() > deadline:
            raise LibraryUnreadable(db, f"reading it took over {READ_MAX:.0f} s: no phone's "
                                    "library is made like this one") from exc  # fmt: skip
        raise LibraryUnreadable(db, _sqlite_reason(db, exc)) from exc
    except (OSError, ValueError, TypeError, OverflowError) as exc:  # a value no Photos has
        raise LibraryUnreadable(db, f"unexpected content: {exc}") from exc


def _check_header(db: Path) -> None:
    try:
        with db.open("rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        raise _Unreadable("no such file") from None
    except IsADirectoryError:
        raise _Unreadable("a folder, not a database file") from None
    except OSError as exc:
        raise _Unreadable(f"cannot open it: {exc.strerror or exc}") from None
    if not head:
        raise _Unreadable("empty file (0 bytes), not a Photos database")
    if not (head.startswith(SQLITE_MAGIC) or SQLITE_MAGIC.startswith(head)):
        raise _Unreadable("not a SQLite database (another kind of file, or encrypted)")
    if len(head) < 100:
        raise _Unreadable(f"truncated: {len(head)} bytes, shorter than a SQLite header")


def _sqlite_reason(db: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text:
        return "not a SQLite database (another kind of file, or encrypted)"
    if "malformed" in text:
        return f"damaged or truncated{_truncation(db)} (SQLite: {text})"
    return f"SQLite: {text}"


def _truncation(db: Path) -> str:
    """When SQLite found damage: is the main file shorter than its header says?"""
    try:
        head = db.read_bytes()[:100]
        size = db.stat().st_size
    except OSError:
        return ""
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96]  # the header's page count is only kept when these match
    if valid and size < pages * page:
        return f": {size} bytes of the {pages * page} its header says"
    return ""


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class _Texts:
    """The texts read, each kept once however many rows share it (one long caption
    joined to every row of a hostile file), and counted as the sidecars would carry
    them, once per photo: past LIBRARY_TEXT_MAX the read stops, before it is built."""

    def __init__(self) -> None:
        self.kept: dict[str, str] = {}
        self.left = LIBRARY_TEXT_MAX

    def keep(self, value: str) -> str:
        value = value[:TEXT_MAX]
        return self.kept.setdefault(value, value)

    def spend(self, *texts: str) -> None:
        self.left -= sum(map(len, texts))
        if self.left < 0:
            raise _Unreadable(f"its photos' texts add up to more than {LIBRARY_TEXT_MAX:,} "
                              "characters: no phone's library is made like this one")  # fmt: skip


def _read(conn: sqlite3.Connection) -> PhoneLibrary:
    schema = discover(conn)
    texts = _Texts()
    keywords = _keywords(conn, schema, texts)
    people = _people(conn, schema, texts)
    offline = _offline(conn, schema)
    rows, seen = {}, set()
    for r in conn.execute(_asset_query(schema)):
        # A row without an identity is nothing photod can name; a second row of one
        # UUID (Core Data enforces no uniqueness: a damaged or half-merged library) is
        # passed by, the first kept, so the rest of the library is kept all the same.
        uuid = r[1][:TEXT_MAX]
        if uuid and uuid not in seen:
            seen.add(uuid)
            r = tuple(texts.keep(v) if isinstance(v, str) else v for v in r)
            # (original name, title, caption; keywords and people, once per photo)
            texts.spend(r[4], r[9], r[10], *keywords.get(r[-1], ()), *people.get(r[0], ()))
            rows[r[0]] = r
    albums, member_of = _albums(conn, schema, {pk: row[1] for pk, row in rows.items()})
    assets = []
    for pk, row in rows.items():
        paths = tuple(sorted(set(member_of.get(pk, ()))))
        texts.spend(*(part for path in paths for part in path))
        assets.append(_asset(row, keywords.get(row[-1], ()), people.get(pk, ()), paths,
                             pk not in offline))  # fmt: skip
    return PhoneLibrary(assets=tuple(assets), albums=albums, schema=schema.describe())


def _asset_query(s: Schema) -> str:
    a, x = s.asset_table, "ZADDITIONALASSETATTRIBUTES"

    def col(name: str, table: str = a, alias: str = "a") -> str:
        return f"{alias}.{name}" if s.has(table, name) else "NULL"

    def any_of(*conds: tuple[str, str]) -> str:
        parts = [f"{col(c)} = {v}" for c, v in conds if s.has(a, c)]
        return "(" + " OR ".join(parts) + ")" if parts else "0"

    joins = ""
    if s.has(a, "ZADDITIONALATTRIBUTES") and s.has(x, "Z_PK"):
        joins = f" LEFT JOIN {x} AS x ON x.Z_PK = a.ZADDITIONALATTRIBUTES"
    elif s.has(x, "ZASSET"):
        joins = f" LEFT JOIN {x} AS x ON x.ZASSET = a.Z_PK"
    has_x = bool(joins)

    def xcol(name: str) -> str:
        return col(name, x, "x") if has_x else "NULL"

    caption = "NULL"
    if has_x and s.has(x, "ZASSETDESCRIPTION") and s.has("ZASSETDESCRIPTION", "Z_PK"):
        joins += " LEFT JOIN ZASSETDESCRIPTION AS d ON d.Z_PK = x.ZASSETDESCRIPTION"
        caption = col("ZLONGDESCRIPTION", "ZASSETDESCRIPTION", "d")
    edited = "0"
    if s.edits == "ZADJUSTMENTSSTATE":
        edited = "(a.ZADJUSTMENTSSTATE > 0)"  # 2 edited in Photos, 3 a camera lens adjustment
    elif s.edits:
        edited = f"(a.{s.edits} = 1)"

    def text(expr: str) -> str:  # text made in SQLite, not once per value in Python
        return f"COALESCE({_cut(f'CAST({expr} AS TEXT)')}, '')"

    fields = [
        "a.Z_PK", text("a.ZUUID"), text("a.ZDIRECTORY"), text("a.ZFILENAME"),
        text(xcol("ZORIGINALFILENAME")), any_of(("ZKIND", "1")), any_of(("ZFAVORITE", "1")),
        any_of(("ZHIDDEN", "1")), any_of(("ZTRASHEDSTATE", "1")), text(xcol("ZTITLE")),
        text(caption), col("ZDATECREATED"), xcol("ZTIMEZONEOFFSET"), col("ZLATITUDE"),
        col("ZLONGITUDE"), any_of(("ZKINDSUBTYPE", "2"), ("ZPLAYBACKSTYLE", "3")),
        text(col("ZAVALANCHEUUID")), any_of(("ZKINDSUBTYPE", "10"), ("ZISDETECTEDSCREENSHOT", "1")),
        any_of(("ZKINDSUBTYPE", "103")), edited, text(col("ZMEDIAGROUPUUID")), xcol("Z_PK"),
    ]  # fmt: skip
    return f"SELECT {', '.join(fields)} FROM {a} AS a{joins} ORDER BY a.Z_PK"


def _asset(
    row: tuple[Any, ...],
    keywords: tuple[str, ...],
    people: tuple[str, ...],
    albums: tuple[tuple[str, ...], ...],
    local: bool,
) -> LibraryAsset:
    (_, uuid, directory, filename, original, video, favorite, hidden, trashed, title,
     caption, created, offset, lat, lon, live, burst, shot, recording, edited, group,
     _) = row  # fmt: skip
    where = (lat, lon) if isinstance(lat, int | float) and isinstance(lon, int | float) else None
    if where and NO_LOCATION in where:
        where = None  # the phone's "no location" (both are -180.0 then)
    return LibraryAsset(
        uuid=uuid,
        directory=directory,
        filename=filename,
        original_name=original,
        video=bool(video),
        favorite=bool(favorite),
        hidden=bool(hidden),
        trashed=bool(trashed),
        title=title,
        caption=caption,
        keywords=keywords,
        people=people,
        albums=albums,
        captured=_captured(created, offset),
        latitude=float(where[0]) if where else None,
        longitude=float(where[1]) if where else None,
        live=bool(live),
        burst=burst,
        screenshot=bool(shot),
        screen_recording=bool(recording),
        edited=bool(edited),
        local=local,
        media_group=group.upper() if live else "",
    )


def _cut(column: str) -> str:
    """A text column read at most TEXT_MAX characters long, whole to there (NULL stays
    NULL): cut as bytes, enough for TEXT_MAX characters of 4 bytes, and to TEXT_MAX
    characters as it is kept.  Never by SQLite's substr() on text, which ends a text at
    its first NUL: a caption with one lost all that followed it."""
    return f"CAST(substr(CAST({column} AS BLOB), 1, {TEXT_MAX * 4}) AS TEXT)"


def _text(value: object) -> str:
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return text[:TEXT_MAX]


def _captured(created: object, offset: object) -> datetime | None:
    """``ZDATECREATED`` is the instant; ``ZTIMEZONEOFFSET`` (seconds east of UTC) the
    clock it was taken by.  UTC when the offset is absent or impossible."""
    if not isinstance(created, int | float):
        return None
    zone = _zone(int(offset)) if isinstance(offset, int | float) and abs(offset) < 86_400 else UTC
    try:
        return datetime.fromtimestamp(created + CORE_DATA_EPOCH, zone)
    except (OverflowError, OSError, ValueError):
        return None  # a date no calendar holds is no date


@functools.cache
def _zone(seconds: int) -> timezone:
    return timezone(timedelta(seconds=seconds))


def _keywords(conn: sqlite3.Connection, s: Schema, texts: _Texts) -> dict[object, tuple[str, ...]]:
    """Keyword titles by additional-attributes row (keywords hang off that, not the asset)."""
    if s.keyword_join is None:
        return {}
    table, attrs, keyword = s.keyword_join
    found: dict[object, set[str]] = defaultdict(set)
    for owner, title in conn.execute(
        f"SELECT j.{attrs}, {_cut('k.ZTITLE')} FROM {table} AS j "
        f"JOIN ZKEYWORD AS k ON k.Z_PK = j.{keyword}"
    ):
        if title:
            found[owner].add(texts.keep(_text(title)))
    return {owner: tuple(sorted(titles)) for owner, titles in found.items()}


def _people(conn: sqlite3.Connection, s: Schema, texts: _Texts) -> dict[object, tuple[str, ...]]:
    """Named people by asset: the full name, else the display name; unnamed faces are
    nobody (the phone has not been told who they are)."""
    if s.faces is None:
        return {}
    asset, person = s.faces
    names = [
        _cut(f"p.{c}") if s.has("ZPERSON", c) else "NULL" for c in ("ZFULLNAME", "ZDISPLAYNAME")
    ]
    found: dict[object, set[str]] = defaultdict(set)
    for pk, full, display in conn.execute(
        f"SELECT f.{asset}, {', '.join(names)} FROM ZDETECTEDFACE AS f "
        f"JOIN ZPERSON AS p ON p.Z_PK = f.{person}"
    ):
        name = _text(full).strip() or _text(display).strip()
        if name:
            found[pk].add(texts.keep(name))
    return {pk: tuple(sorted(n)) for pk, n in found.items()}


def _offline(conn: sqlite3.Connection, s: Schema) -> set[object]:
    """Assets whose original (resource data store subtype 1) is not on the phone."""
    if not s.has("ZINTERNALRESOURCE", "ZASSET", "ZDATASTORESUBTYPE", "ZLOCALAVAILABILITY"):
        return set()
    return {
        pk
        for (pk,) in conn.execute(
            "SELECT DISTINCT ZASSET FROM ZINTERNALRESOURCE "
            "WHERE ZDATASTORESUBTYPE = 1 AND ZLOCALAVAILABILITY <> 1"
        )
    }


def _albums(
    conn: sqlite3.Connection, s: Schema, uuids: dict[object, str]
) -> tuple[tuple[Album, ...], dict[object, list[tuple[str, ...]]]]:
    """The person's albums (ZKIND 2), each with its folders' path and its assets in the
    album's order; and, by asset, the paths of the albums (not in the trash) it is in."""
    parent = "ZPARENTFOLDER" if s.has("ZGENERICALBUM", "ZPARENTFOLDER") else "NULL"
    trash = "ZTRASHEDSTATE = 1" if s.has("ZGENERICALBUM", "ZTRASHEDSTATE") else "0"
    nodes: dict[object, tuple[object, str, object, bool]] = {}
    mine: list[tuple[object, str]] = []  # the person's albums: primary key, UUID
    for pk, kind, title, up, trashed, uuid in conn.execute(
        f"SELECT Z_PK, ZKIND, {_cut('ZTITLE')}, {parent}, {trash}, {_cut('ZUUID')} "
        "FROM ZGENERICALBUM ORDER BY Z_PK"
    ):
        nodes[pk] = (kind, _text(title), up, bool(trashed))
        if kind == USER_ALBUM:
            mine.append((pk, _text(uuid)))
    # An album without a UUID, or with another's, is still an album the person made:
    # it gets one of its own (its row's number), so no album hides another.
    count = Counter(uuid for _, uuid in mine)
    mine = [(pk, uuid if uuid and count[uuid] == 1 else f"{uuid}#{pk}") for pk, uuid in mine]
    table, album_col, asset_col, order_col = s.album_join
    members: dict[object, list[object]] = defaultdict(list)
    for album, asset in conn.execute(
        f"SELECT {album_col}, {asset_col} FROM {table} WHERE {album_col} IN "
        f"(SELECT Z_PK FROM ZGENERICALBUM WHERE ZKIND = {USER_ALBUM}) "
        f"ORDER BY {album_col}, {order_col}, {asset_col}"
    ):
        if asset in uuids:
            members[album].append(asset)
    albums: list[Album] = []
    member_of: dict[object, list[tuple[str, ...]]] = defaultdict(list)
    for pk, uuid in mine:
        path, trashed = _path(nodes, pk)
        inside = members.get(pk, [])
        albums.append(Album(uuid, path[-1], path, tuple(uuids[a] for a in inside), trashed))
        for asset in () if trashed else inside:
            member_of[asset].append(path)
    albums.sort(key=lambda al: (al.path, al.uuid))
    return tuple(albums), member_of


def _path(
    nodes: dict[object, tuple[object, str, object, bool]], pk: object
) -> tuple[tuple[str, ...], bool]:
    """The folders' titles from the top down to the album's own, up to (not including)
    the root folder; trashed when the album or a folder holding it is."""
    titles: list[str] = []
    trashed, seen = False, set()
    while pk in nodes and pk not in seen and nodes[pk][0] != ROOT_FOLDER:
        seen.add(pk)
        _, title, up, gone = nodes[pk]
        titles.append(title)
        trashed = trashed or gone
        pk = up
    return tuple(reversed(titles)), trashed
