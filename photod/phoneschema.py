"""Which tables and columns this iOS version's Photos.sqlite has: found by asking the
database itself (``Z_PRIMARYKEY``, ``pragma_table_info``), once per read, for
``phonelibrary``.  No photod module below: it knows only SQLite."""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass

FACE_COLUMNS = (("ZASSETFORFACE", "ZPERSONFORFACE"), ("ZASSET", "ZPERSON"))  # iOS 17+, before


class Unreadable(Exception):
    """The reason a library cannot be read (``phonelibrary`` makes it LibraryUnreadable)."""


@dataclass(frozen=True)
class Schema:
    """Where each fact is, as SQL over ``a`` (the asset table) and ``x`` (its
    additional attributes), found once per read."""

    asset_table: str
    columns: dict[str, frozenset[str]]  # table -> its columns, upper case
    album_join: tuple[str, str, str, str]  # table, album column, asset column, order column
    keyword_join: tuple[str, str, str] | None  # table, attributes column, keyword column
    faces: tuple[str, str] | None  # ZDETECTEDFACE's asset and person columns
    edits: str  # the column that says an asset was edited, or ""
    how: str  # how the album join was found, for the log

    def has(self, table: str, *names: str) -> bool:
        cols = self.columns.get(table)
        return cols is not None and all(n in cols for n in names)

    def describe(self) -> str:
        kw = self.keyword_join[0] if self.keyword_join else "none"
        faces = "ZDETECTEDFACE.{}/{}".format(*self.faces) if self.faces else "none"
        return (
            f"{self.asset_table}, albums {self.album_join[0]}{self.how}, keywords {kw}, "
            f"faces {faces}, edits {self.edits or 'none'}"
        )


def discover(conn: sqlite3.Connection) -> Schema:
    columns: dict[str, set[str]] = defaultdict(set)
    for table, column in conn.execute(
        "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
        "WHERE m.type = 'table' AND m.sql NOT LIKE 'CREATE VIRTUAL%'"  # a module we lack
    ):
        columns[str(table).upper()].add(str(column).upper())
    cols = {t: frozenset(c) for t, c in columns.items()}
    asset = next((t for t in ("ZASSET", "ZGENERICASSET") if t in cols), "")
    if not asset:
        raise Unreadable("no asset table (ZASSET or ZGENERICASSET)")
    missing = [c for c in ("Z_PK", "ZUUID", "ZDIRECTORY", "ZFILENAME") if c not in cols[asset]]
    if missing:
        raise Unreadable(f"the asset table {asset} has no {', '.join(missing)} column")
    if not {"Z_ENT", "Z_NAME"} <= cols.get("Z_PRIMARYKEY", frozenset()):
        raise Unreadable("no Z_PRIMARYKEY table with Z_ENT and Z_NAME (not a Core Data store)")
    if not {"Z_PK", "ZKIND", "ZTITLE", "ZUUID"} <= cols.get("ZGENERICALBUM", frozenset()):
        raise Unreadable("no album table ZGENERICALBUM with Z_PK, ZKIND, ZTITLE, ZUUID")
    ents: dict[str, int] = {}
    for ent, name in conn.execute("SELECT Z_ENT, Z_NAME FROM Z_PRIMARYKEY"):
        if isinstance(ent, int) and isinstance(name, str):
            ents.setdefault(name.upper(), ent)
    asset_ent = ents.get(asset[1:])  # ZASSET holds 'Asset', ZGENERICASSET 'GenericAsset'
    album_join, how = _album_join(cols, ents.get("ALBUM"), asset_ent)
    edits = next((c for c in ("ZADJUSTMENTSSTATE", "ZHASADJUSTMENTS") if c in cols[asset]), "")
    faces = next((fc for fc in FACE_COLUMNS if fc[0] in cols.get("ZDETECTEDFACE", ())), None)
    if faces and not (faces[1] in cols["ZDETECTEDFACE"] and "Z_PK" in cols.get("ZPERSON", ())):
        faces = None
    return Schema(
        asset_table=asset,
        columns=cols,
        album_join=album_join,
        keyword_join=_keyword_join(
            cols, ents.get("ADDITIONALASSETATTRIBUTES"), ents.get("KEYWORD")
        ),
        faces=faces,
        edits=edits,
        how=how,
    )


def _album_join(
    cols: dict[str, frozenset[str]], album: int | None, asset: int | None
) -> tuple[tuple[str, str, str, str], str]:
    """``Z_<Album>ASSETS(Z_<Album>ALBUMS, Z_<asset>ASSETS, Z_FOK_<asset>ASSETS)`` by the
    entity numbers; else the one table of exactly that shape.  Never the first table
    named like ``Z_%ASSETS``: memories and suggestions have such tables too."""
    if album is not None and asset is not None:
        table = f"Z_{album}ASSETS"
        wanted = (f"Z_{album}ALBUMS", f"Z_{asset}ASSETS", f"Z_FOK_{asset}ASSETS")
        if set(wanted) <= cols.get(table, frozenset()):
            return (table, *wanted), ""
    shaped = []
    for table, tcols in sorted(cols.items()):
        albums = [c for c in tcols if re.fullmatch(r"Z_\d+ALBUMS", c)]
        assets = [m[1] for c in tcols if (m := re.fullmatch(r"Z_(\d+)ASSETS", c))]
        if len(tcols) != 3 or len(albums) != 1 or len(assets) != 1:
            continue
        ent = assets[0]
        if f"Z_FOK_{ent}ASSETS" in tcols and asset in (None, int(ent)):
            shaped.append((table, albums[0], f"Z_{ent}ASSETS", f"Z_FOK_{ent}ASSETS"))
    if len(shaped) == 1:
        return shaped[0], " (found by its shape)"
    wanted_of = f"entity {album} (Album)" if album is not None else "Album (not in Z_PRIMARYKEY)"
    also = f"; {len(shaped)} tables have its shape: " if shaped else ""
    raise Unreadable(f"no album join table for {wanted_of}{also}{', '.join(s[0] for s in shaped)}")


def _keyword_join(
    cols: dict[str, frozenset[str]], attrs: int | None, keyword: int | None
) -> tuple[str, str, str] | None:
    """``Z_1KEYWORDS(Z_1ASSETATTRIBUTES, Z_<Keyword>KEYWORDS)``; else the one table of that
    shape; else None (the library has no keywords to read)."""
    if not ({"ZADDITIONALASSETATTRIBUTES", "ZKEYWORD"} <= cols.keys()):
        return None
    if not {"Z_PK", "ZTITLE"} <= cols["ZKEYWORD"]:
        return None
    if attrs is not None and keyword is not None:
        table = f"Z_{attrs}KEYWORDS"
        wanted = (f"Z_{attrs}ASSETATTRIBUTES", f"Z_{keyword}KEYWORDS")
        if set(wanted) <= cols.get(table, frozenset()):
            return (table, *wanted)
    shaped = []
    for table, tcols in sorted(cols.items()):
        left = [c for c in tcols if re.fullmatch(r"Z_\d+ASSETATTRIBUTES", c)]
        right = [c for c in tcols if re.fullmatch(r"Z_\d+KEYWORDS", c)]
        if len(tcols) == 2 and len(left) == 1 and len(right) == 1:
            shaped.append((table, left[0], right[0]))
    return shaped[0] if len(shaped) == 1 else None
