"""The catalog: the single record of assets, replicas and what each source delivered.
SQLite in WAL mode; the only module that imports sqlite3.

One connection, serialised by a lock: every statement here is small, and one writer is
what SQLite wants anyway.  Readers in other processes (``photod status``) see committed
data at any time thanks to WAL.

The catalog is a cache of what the targets hold (``targets/records.py``).  SQLite's own
failures are mapped here, once: a damaged file is ``CatalogDamaged`` (the daemon stops
acting on it and rebuilds it from the targets), a full disk ``StateDirFull`` (a retry
once there is room).

It is better whole, long as it is: the schema, its migrations and every query that
reads it sit side by side, so a change to a table is made and checked in one file, and
no other module ever writes SQL.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from photod import policy
from photod.errors import CatalogDamaged, CatalogUnwritable, PhotodError, StateDirFull
from photod.media import suffixed
from photod.models import Asset, Kind, ManifestEntry, Probe, Replica, TargetInfo, VerifyMethod
from photod.paths import CATALOG_NAME as CATALOG_NAME  # (found here by its users)
from photod.paths import user_name

IGNORED = "not backed up"  # device_files.problem of a file that is not media
# device_files.problem of a file whose staged copy went before any target took one (a
# power cut, say): it is read from the phone again at the next plug-in.
READ_AGAIN = "to be read again: its staged copy was lost before any target took one"
STAMP = "%Y-%m-%dT%H:%M:%SZ"  # every record's time, in UTC to the second
# Room the catalog needs in the state dir to take new files (its WAL grows with each
# batch): below this, new files wait, status says so and doctor fails.
STATE_MIN_FREE = 8 * 1024**2
COVERED = "snapshot_covers"  # meta: what the last snapshot covers (``Catalog.cover``)
WAL_KEPT = 8 * 1024**2  # bytes of the catalog's journal kept once it is folded back

# The targets with a verified replica of an asset, sorted, NUL-separated ('' for none).
_HELD = (
    "coalesce((SELECT group_concat(target, char(0)) FROM (SELECT target FROM replicas"
    " WHERE asset = {asset} AND state = 'verified' ORDER BY target)), '')"
)

# Each entry moves the schema one version up.  Never edit a released entry: add one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE assets (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        relpath TEXT NOT NULL UNIQUE,
        captured_at TEXT NOT NULL,
        capture_source TEXT NOT NULL,
        decodable INTEGER,
        problem TEXT NOT NULL DEFAULT '',
        first_source TEXT NOT NULL,
        first_path TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE INDEX assets_size ON assets(size);
    -- state: 'verified' counts toward the policy; 'failed' is work waiting for a retry.
    CREATE TABLE replicas (
        asset TEXT NOT NULL REFERENCES assets(sha256),
        target TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('verified', 'failed')),
        relpath TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL DEFAULT 0,
        verified_at TEXT,
        method TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (asset, target)
    ) WITHOUT ROWID;
    CREATE INDEX replicas_target ON replicas(target, state);
    CREATE TABLE source_files (
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        asset TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY (source, path)
    ) WITHOUT ROWID;
    CREATE INDEX source_files_asset ON source_files(asset);
    CREATE TABLE targets (
        name TEXT PRIMARY KEY,
        target_id TEXT NOT NULL,
        root TEXT NOT NULL,
        mount_rel TEXT NOT NULL DEFAULT '',
        last_seen TEXT
    );
    -- Temporary files a copy is writing; removed on start after a crash.
    CREATE TABLE temp_files (
        target TEXT NOT NULL,
        relpath TEXT NOT NULL,
        PRIMARY KEY (target, relpath)
    );
    """,
    # v2: each asset carries the set of targets holding a verified replica of it, kept in
    # the same transaction as every replica change, so that `photod status` groups a
    # million assets through one index instead of one subquery per asset.
    f"""
    ALTER TABLE assets ADD COLUMN held TEXT NOT NULL DEFAULT '';
    UPDATE assets SET held = {_HELD.format(asset="assets.sha256")};
    CREATE INDEX assets_held ON assets(held, size);
    CREATE INDEX assets_undecodable ON assets(decodable) WHERE decodable = 0;
    """,
    # v3: phones.  ``devices`` keeps each phone's last known state for `photod status`;
    # ``device_files`` is the phone's last listing: what is on it, and which asset each
    # file became (NULL: not imported yet; ``problem`` says why).
    """
    CREATE TABLE devices (
        udid TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        ios TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        since TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        last_import TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE device_files (
        udid TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        taken_at TEXT NOT NULL,
        asset TEXT,
        problem TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (udid, path)
    ) WITHOUT ROWID;
    """,
    # v4: proof over time.  Each replica records its last full re-read (``checked_at``,
    # how, with what result) apart from the last cheap look (``listed_at``: present and
    # the right size); the write's own read-back is the first check.  ``lost_at`` marks
    # an asset with no good copy left anywhere.  Source files get their own re-reads.
    # ``egress`` counts the bytes a scrub downloaded from each remote per month, and
    # ``runs`` when each scheduled job last finished (a missed scrub runs at start).
    """
    ALTER TABLE replicas ADD COLUMN checked_at TEXT;
    ALTER TABLE replicas ADD COLUMN check_method TEXT;
    ALTER TABLE replicas ADD COLUMN check_result TEXT NOT NULL DEFAULT '';
    ALTER TABLE replicas ADD COLUMN listed_at TEXT;
    UPDATE replicas SET checked_at = verified_at, check_method = method, check_result = 'ok'
        WHERE state = 'verified';
    CREATE INDEX replicas_checked ON replicas(target, state, checked_at);
    ALTER TABLE assets ADD COLUMN lost_at TEXT;
    ALTER TABLE source_files ADD COLUMN checked_at TEXT;
    ALTER TABLE source_files ADD COLUMN corrupt INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE egress (
        target TEXT NOT NULL,
        month TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (target, month)
    );
    CREATE TABLE drills (
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        passed INTEGER NOT NULL,
        files INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX drills_target ON drills(target, at);
    CREATE TABLE runs (
        job TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # v5: `photod status` asks for lost assets and rotten sources every time: partial
    # indexes answer from the few rows that have them, not from a scan of a million.
    """
    CREATE INDEX assets_lost ON assets(lost_at) WHERE lost_at IS NOT NULL;
    CREATE INDEX source_files_corrupt ON source_files(corrupt) WHERE corrupt = 1;
    """,
    # v6: the catalog as a cache of the targets.  ``meta`` holds the installation's id
    # and the snapshot generation; ``ledger_segments`` the segments of this
    # installation's own list on each target that the catalog has seen (a segment it
    # does not know means the catalog forgot something); ``shared_segments`` and
    # ``shared_entries`` what other installations list on a shared target, so that the
    # same bytes are stored there once.  ``replicas.owner`` is '' for a copy this
    # installation wrote, else the installation whose copy it relies on (never moved
    # aside or repaired in place by this one).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE ledger_segments (
        target TEXT NOT NULL,
        segment TEXT NOT NULL,
        entries INTEGER NOT NULL,
        PRIMARY KEY (target, segment)
    ) WITHOUT ROWID;
    CREATE TABLE shared_segments (
        target TEXT NOT NULL,
        segment TEXT NOT NULL,
        installation TEXT NOT NULL,
        PRIMARY KEY (target, segment)
    ) WITHOUT ROWID;
    CREATE TABLE shared_entries (
        target TEXT NOT NULL,
        asset TEXT NOT NULL,
        relpath TEXT NOT NULL,
        installation TEXT NOT NULL,
        segment TEXT NOT NULL
    );
    CREATE INDEX shared_entries_asset ON shared_entries(target, asset);
    CREATE INDEX shared_entries_segment ON shared_entries(target, segment);
    ALTER TABLE replicas ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    # v7: the phones' libraries (``library.py``).  ``libraries``: each phone's last read
    # library (the digest of its database copy: an equal one is not read again);
    # ``library_assets``: each asset's facts (JSON) and the digest of its sidecar;
    # ``library_files``: which asset each file on the phone belongs to (``asset``: its
    # SHA-256 once known, kept through a catalog rebuild); ``library_albums``; and
    # ``sidecars``: which sidecar each target holds beside an original.
    """
    CREATE TABLE libraries (
        udid TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        schema TEXT NOT NULL,
        read_at TEXT NOT NULL,
        in_icloud INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE library_assets (
        udid TEXT NOT NULL,
        uuid TEXT NOT NULL,
        path TEXT NOT NULL,
        local INTEGER NOT NULL,
        facts TEXT NOT NULL,
        sidecar TEXT NOT NULL,
        PRIMARY KEY (udid, uuid)
    ) WITHOUT ROWID;
    CREATE TABLE library_files (
        udid TEXT NOT NULL,
        path TEXT NOT NULL,
        uuid TEXT NOT NULL,
        asset TEXT,
        PRIMARY KEY (udid, path)
    ) WITHOUT ROWID;
    CREATE INDEX library_files_uuid ON library_files(udid, uuid);
    CREATE INDEX library_files_asset ON library_files(asset) WHERE asset IS NOT NULL;
    CREATE INDEX device_files_asset ON device_files(asset) WHERE asset IS NOT NULL;
    CREATE TABLE library_albums (
        udid TEXT NOT NULL,
        uuid TEXT NOT NULL,
        path TEXT NOT NULL,
        trashed INTEGER NOT NULL,
        assets TEXT NOT NULL,
        PRIMARY KEY (udid, uuid)
    ) WITHOUT ROWID;
    CREATE TABLE sidecars (
        asset TEXT NOT NULL,
        target TEXT NOT NULL,
        relpath TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (asset, target)
    ) WITHOUT ROWID;
    """,
    # v8: a Live Photo movie's content identifier, read from the movie at its import:
    # the media group its still has in the phone's library, which ties the two whatever
    # their names.  By the movie's SHA-256: its bytes say it, whichever phone had it.
    """
    CREATE TABLE media_groups (
        asset TEXT PRIMARY KEY,
        media_group TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # v9: the assets and bytes of each set of holding targets, kept by triggers in the
    # transaction that changes an asset, so that `photod status` reads a few rows, not
    # an index of every asset (a tenth of its time at 100,000 assets, most at a million).
    # Assets are never deleted and their size never changes; INSERT OR IGNORE fires no
    # trigger for a row it ignores.  (An INSERT OR REPLACE into assets would delete a row
    # without firing holdings_removed, recursive triggers being off: never write one.)
    """
    CREATE TABLE holdings (
        held TEXT PRIMARY KEY,
        assets INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO holdings SELECT held, count(*), sum(size) FROM assets GROUP BY held;
    CREATE TRIGGER holdings_added AFTER INSERT ON assets BEGIN
        INSERT INTO holdings VALUES (new.held, 1, new.size) ON CONFLICT (held)
            DO UPDATE SET assets = assets + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER holdings_moved AFTER UPDATE OF held, size ON assets
        WHEN old.held IS NOT new.held OR old.size IS NOT new.size BEGIN
        UPDATE holdings SET assets = assets - 1, bytes = bytes - old.size
            WHERE held = old.held;
        DELETE FROM holdings WHERE held = old.held AND assets = 0;
        INSERT INTO holdings VALUES (new.held, 1, new.size) ON CONFLICT (held)
            DO UPDATE SET assets = assets + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER holdings_removed AFTER DELETE ON assets BEGIN
        UPDATE holdings SET assets = assets - 1, bytes = bytes - old.size
            WHERE held = old.held;
        DELETE FROM holdings WHERE held = old.held AND assets = 0;
    END;
    """,
    # v10: when each phone's library last changed by the phone's own clock (its
    # database's newest file time, as the phone's file service gives it), which orders
    # two reads of one phone whatever the clocks of the computers that read it.
    """
    ALTER TABLE libraries ADD COLUMN changed_at TEXT NOT NULL DEFAULT '';
    """,
]


def _path(path: str) -> str | bytes:
    """Paths as SQLite stores them: TEXT when they are UTF-8, else the raw bytes as a
    BLOB (a name from a foreign filesystem must still be recorded exactly)."""
    return path if _utf8(path) else os.fsencode(path)


def _unpath(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


_INT64 = 2**63


def _ns(value: int) -> int | bytes:
    """A file time in nanoseconds as SQLite stores it: an INTEGER when it fits in 64
    bits, else its digits as a BLOB (ext4 keeps times up to 2446, past 2**63 ns; a TEXT
    would be turned into an inexact REAL by the column's affinity)."""
    return value if -_INT64 <= value < _INT64 else str(value).encode()


def _under(path: str, tops: set[str]) -> bool:
    """``path`` is one of ``tops`` or in one of them (phone paths)."""
    while path and path != "/":
        if path in tops:
            return True
        path = path.rpartition("/")[0]
    return False


def _unns(value: int | bytes) -> int:
    return value if isinstance(value, int) else int(value)


# A folder's rows read in order a page at a time, on from a path (>=, or > the last
# read: the first key), below the folder's end (none: the last folder of BLOBs).
_PAGE = 512
_RANGE = {
    (cont, open_end): "SELECT path, size, mtime_ns FROM source_files WHERE source=? AND path"
    + (" > ?" if cont else " >= ?")
    + ("" if open_end else " AND path < ?")
    + " ORDER BY path LIMIT ?"
    for cont in (False, True)
    for open_end in (False, True)
}


def _folder_ranges(folder: str, paths: list[str]) -> list[tuple[Any, Any]]:
    """Where the catalog's rows of a folder's files are, in its index's order (every
    TEXT before every BLOB; each in byte order): ``folder`` + name sorts from
    ``folder`` up to ``folder`` with its last "/" made a "0" (the character after it),
    among TEXT paths when they are UTF-8, among BLOB ones when not (``_path``).  The
    range of BLOBs only when one of ``paths`` is not UTF-8: it is looked for in the
    joined names (most are ASCII: no look at all)."""
    out: list[tuple[Any, Any]] = []
    joined = folder + "".join(paths)
    if joined.isascii():
        return [(folder, folder[:-1] + "0" if folder else b"")]
    try:
        folder.encode("utf-8")
        out.append((folder, folder[:-1] + "0" if folder else b""))
        joined.encode("utf-8")
        return out
    except UnicodeEncodeError:
        raw = os.fsencode(folder)
        out.append((raw, raw[:-1] + b"0" if raw else None))
        return out


def _all_ranges(folder: str) -> list[tuple[Any, Any]]:
    """Both of a folder's ranges (``_folder_ranges``): its TEXT rows' (unless its own
    name is not UTF-8) and its BLOB rows'."""
    out: list[tuple[Any, Any]] = []
    if _utf8(folder):
        out.append((folder, folder[:-1] + "0" if folder else b""))
    raw = os.fsencode(folder)
    out.append((raw, raw[:-1] + b"0" if raw else None))
    return out


# A folder's TEXT rows outside its sub-folders' ranges, counted: an index seek for each
# gap between them (json_each first: CROSS JOIN keeps SQLite to that order).
_BESIDE = (
    "SELECT count(*) FROM json_each(?2) g CROSS JOIN source_files s WHERE s.source=?1"
    " AND s.path>=json_extract(g.value, '$[0]')"
    " AND s.path<coalesce(json_extract(g.value, '$[1]'), x'')"
)


def _beside(db: sqlite3.Cursor, source: str, folder: str, dirs: list[str]) -> int:
    """How many rows of ``folder``'s range are none of its sub-folders ``dirs``' (of
    its own files, or of a sub-folder it no longer has), counted by SQLite: a seek in
    the index for each gap between their ranges, and the rows in them."""
    if not _utf8(folder):
        return 0  # (its rows are BLOBs)
    gaps: list[tuple[str, str | None]] = []
    lo = folder
    for start in sorted(f"{folder}{d}/" for d in dirs if d.isascii() or _utf8(d)):
        gaps.append((lo, start))
        lo = start[:-1] + "0"
    gaps.append((lo, folder[:-1] + "0" if folder else None))
    return int(db.execute(_BESIDE, (source, json.dumps(gaps))).fetchone()[0])


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _walk(db: sqlite3.Cursor, source: str, folder: str, subs: list[Any]) -> Iterator[str]:
    """Every row of ``folder``'s own files, a page at a time, past each sub-folder's
    (whose names go to ``subs``)."""
    for lo, hi in _all_ranges(folder):
        n, cont = len(lo), False
        slash, zero = ("/", "0") if isinstance(lo, str) else (b"/", b"0")
        while True:
            rows = db.execute(
                _RANGE[cont, hi is None],
                (source, lo, _PAGE) if hi is None else (source, lo, hi, _PAGE),
            ).fetchall()
            past = None
            for p, _, _ in rows:
                if (cut := p.find(slash, n)) >= 0:
                    subs.append(p[n:cut])
                    past = p[:cut] + zero
                    break
                yield p if isinstance(p, str) else _unpath(p)
                lo = p
            if past is not None:
                lo, cont = past, False
            elif len(rows) < _PAGE:
                break
            else:
                cont = True


class _Stats:
    """What ``Catalog.source_stats`` gives a scan (``sources.folder.Known``)."""

    def __init__(
        self,
        known: Callable[..., dict[str, tuple[int, int]]],
        gone: Callable[[str, list[str], int | None], Iterable[str]],
        forget: Callable[[list[str]], int],
    ) -> None:
        self.known, self.gone, self.forget = known, gone, forget

    def __call__(self, paths: list[str], folder: str | None = None) -> dict[str, tuple[int, int]]:
        return self.known(paths, folder)


# SQLite's result codes that mean the file itself is not a sound database.
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE",
            "SQLITE_CORRUPT_VTAB", "SQLITE_IOERR_SHORT_READ"}  # fmt: skip


# ... that mean photod may not write or open it (a mode, `chattr +i`, a read-only mount).
_UNWRITABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")


def _map(exc: sqlite3.Error, path: Path) -> PhotodError | None:
    """photod's error for one of SQLite's, or None when it is a plain bug."""
    code = getattr(exc, "sqlite_errorname", "")
    if code in _DAMAGED or "malformed" in str(exc) or "not a database" in str(exc):
        return CatalogDamaged(path, str(exc))
    if code.startswith(_UNWRITABLE):
        return unwritable(path, str(exc)) or CatalogUnwritable([str(path)], [str(path)], str(exc))
    if code.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in str(exc):
        return StateDirFull(path.parent, str(exc))
    return None


class _Cursor(sqlite3.Cursor):
    """Every call maps SQLite's errors to photod's (see ``_map``)."""

    def _guard(self, call: Callable[..., object], *args: object) -> object:
        try:
            return call(*args)
        except sqlite3.Error as exc:
            mapped = _map(exc, self.connection.path)  # type: ignore[attr-defined]
            if mapped is None:
                raise
            self.connection.noticed(mapped)  # type: ignore[attr-defined]
            raise mapped from exc

    def execute(self, sql: str, params: object = (), /) -> _Cursor:
        self._guard(super().execute, sql, params)
        return self

    def executemany(self, sql: str, params: object, /) -> _Cursor:
        self._guard(super().executemany, sql, params)
        return self

    def fetchone(self) -> Any:
        return self._guard(super().fetchone)

    def fetchall(self) -> list[Any]:
        return self._guard(super().fetchall)  # type: ignore[return-value]

    def __next__(self) -> Any:
        return self._guard(super().__next__)


class _Connection(sqlite3.Connection):
    path: Path
    problem: PhotodError | None = None  # the last damage or full disk SQLite reported

    def noticed(self, problem: PhotodError) -> None:
        self.problem = problem

    def cursor(self, factory: Any = _Cursor) -> _Cursor:  # type: ignore[override]
        return super().cursor(factory)  # type: ignore[no-any-return]

    def execute(self, sql: str, params: object = (), /) -> _Cursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, params: object, /) -> _Cursor:
        return self.cursor().executemany(sql, params)

    def executescript(self, script: str, /) -> _Cursor:
        cur = self.cursor()
        cur._guard(super().executescript, script)
        return cur


def read_only_uri(path: Path) -> str:
    """SQLite's URI that opens ``path`` read-only.  Encoded: in a bare ``file:`` URI a
    '#' or '?' in a folder's name ends the path (SQLite then opened, and made, another
    file, and the snapshot of a state dir "Backups #2" failed its check), and '%41'
    would be read as 'A'."""
    return f"{path.absolute().as_uri()}?mode=ro"


def now_iso() -> str:
    """Now, in UTC to the second, as every record says it: ``2026-12-04T05:30:00Z``."""
    return time.strftime(STAMP, time.gmtime())


def month(now: datetime | None = None) -> str:
    """The month egress is counted in (UTC): ``2026-12``."""
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def stamp_seconds(stamp: str) -> float:
    """A record's time (``now_iso``'s) as seconds since the epoch."""
    return float(calendar.timegm(time.strptime(stamp, STAMP)))


REPAIR = "repair: "  # the error of a replica that the catch-up copies again to heal it


class CheckItem(NamedTuple):
    """A verified replica as the scrub sees it."""

    asset: str
    relpath: str
    size: int
    checked_at: str


class SourceFile(NamedTuple):
    size: int
    mtime_ns: int
    asset: str
    read_at: str | None = None  # when photod last read it whole (``now_iso``)


class DeviceFile(NamedTuple):
    """A file on a phone, as its last listing showed it."""

    path: str  # AFC path, e.g. /DCIM/100APPLE/IMG_0001.HEIC
    size: int
    mtime_ns: int
    taken_at: str  # when the phone created it (ISO, local time)


class DeviceRecord(NamedTuple):
    udid: str
    source: str
    name: str
    model: str
    ios: str
    state: str
    detail: str
    since: str
    last_seen: str
    last_import: dict[str, Any]


class TargetRecord(NamedTuple):
    name: str
    target_id: str
    root: str
    mount_rel: str


def _held(text: str) -> frozenset[str]:
    """The ``held`` column (targets with a verified replica, NUL-separated) as a set."""
    return frozenset(text.split("\0")) if text else frozenset()


class Catalog:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        """Open (or create) the catalog.  Raises CatalogDamaged when the file is not a
        sound SQLite database.  ``readonly``: for commands that only read (a missing
        file is not created, the schema is not migrated)."""
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        uri = read_only_uri(path) if readonly else str(path)
        try:
            db = sqlite3.connect(uri, uri=readonly, check_same_thread=False,
                                 isolation_level=None, timeout=30, factory=_Connection)  # fmt: skip
        except sqlite3.Error as exc:
            raise _map(exc, path) or CatalogDamaged(path, str(exc)) from exc
        assert isinstance(db, _Connection)
        db.path = path
        self._db: _Connection = db
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._noted = 0  # rows changed by notes (``changes``)
        self._copied: tuple[int, int] | None = None  # (changes, data_version) at ``snapshot``
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                # The journal grows while readers keep it from being folded back (a large
                # import with the dashboard open); once it is, it is cut to this again
                # (by default it kept its largest size for as long as the daemon ran).
                self._db.execute(f"PRAGMA journal_size_limit={WAL_KEPT}")
            # NORMAL in WAL mode never corrupts; a power cut can forget the last commits:
            # the start-up check finds them again in the targets' records.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA cell_size_check=ON")  # a damaged page fails early
            if not readonly:
                self._migrate()
                # An index, not a schema change (an older photod keeps it up to date and
                # still opens the catalog): a new photo's name is asked of it
                # (``relpath_taken``), one look-up whatever the folder's size.
                self._db.execute("CREATE INDEX IF NOT EXISTS assets_relpath_nocase"
                                 " ON assets(relpath COLLATE NOCASE)")  # fmt: skip
        except BaseException:
            self._db.close()
            raise

    def noticed(self, problem: PhotodError) -> None:
        """Note damage found by a check outside SQLite's own calls (the daemon acts)."""
        self._db.noticed(problem)

    @property
    def problem(self) -> PhotodError | None:
        """Damage or a full disk that SQLite reported on some call (the daemon watches
        this: a job may have caught the error and gone on)."""
        return self._db.problem

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def interrupt(self) -> None:
        """Stop the statement running now (from another thread)."""
        self._db.interrupt()

    @contextmanager
    def _reader(self) -> Iterator[_Connection]:
        """A read-only connection for one long read; damage it meets is the catalog's
        (``problem``), as on the shared connection."""
        try:
            db = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=30,
                                 isolation_level=None, factory=_Connection)  # fmt: skip
        except sqlite3.Error as exc:
            raise _map(exc, self.path) or CatalogDamaged(self.path, str(exc)) from exc
        assert isinstance(db, _Connection)
        db.path = self.path
        try:
            db.execute("PRAGMA cell_size_check=ON")
            yield db
        finally:
            db.close()
            if db.problem is not None:
                self._db.noticed(db.problem)

    @contextmanager
    def _tx(self) -> Iterator[_Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            before, noted = self._db.total_changes, self._noted
            try:
                yield self._db
                if self._db.total_changes - before > self._noted - noted:
                    # A change but a note, by any process: the last snapshot no longer
                    # covers the catalog (a record a crash could part from the change
                    # would leave it unsnapshotted for good: ``cover``).
                    self._db.execute("DELETE FROM meta WHERE key=?", (COVERED,))
            except BaseException:
                with contextlib.suppress(sqlite3.Error, PhotodError):
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error, PhotodError):
                    self._db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise PhotodError(
                    f"catalog {self.path} has schema version {version}, newer than this photod "
                    f"knows ({len(MIGRATIONS)}); upgrade photod"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.executescript(
                    f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;"
                )
            if version < len(MIGRATIONS):  # (a snapshot of the catalog as it is now is due)
                self._db.execute("DELETE FROM meta WHERE key=?", (COVERED,))

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def sound(self, thorough: bool = False, budget: float | None = None) -> str | None:
        """'' when SQLite finds the file sound, else what it found.  ``quick_check``
        proves every page's structure; ``thorough`` (integrity_check) also that every
        index agrees with its table (a few times slower).  ``budget``: give up after so
        many seconds and return None (a large catalog is then checked in the
        background: `quick_check` reads every page, 3 s warm and 27 s cold for a
        million assets on a small machine)."""
        check = "integrity_check" if thorough else "quick_check"
        # The check runs inside one step of SQLite's engine, which no progress handler
        # sees: a timer interrupts it (sqlite3_interrupt) when the budget is spent.
        timer = threading.Timer(budget, self._db.interrupt) if budget is not None else None
        try:
            with self._lock:
                if timer is not None:
                    timer.start()
                rows = self._db.execute(f"PRAGMA {check}(5)").fetchall()
        except CatalogDamaged as exc:
            return exc.detail
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                return None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        found = "; ".join(str(r[0]) for r in rows)
        return "" if found == "ok" else found

    # -- meta: who this catalog belongs to, and how new it is ---------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            r = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(r[0]) if r else None

    def set_meta(self, key: str, value: str, note: bool = False) -> None:
        """Set a value (the same value again changes nothing); ``note``: one a snapshot
        is not written for alone (``changes``)."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET "
                       "value=excluded.value WHERE value IS NOT excluded.value", (key, value))  # fmt: skip
            if note:
                self._noted += db.total_changes - before

    def delete_meta(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM meta WHERE key=?", (key,))

    @property
    def generation(self) -> int:
        """How many snapshots this catalog has had written: a target that holds a newer
        generation of this installation's snapshot knows more than the catalog."""
        return int(self.meta("generation") or 0)

    def next_generation(self, at_least: int = 0) -> int:
        """Count one more snapshot (above ``at_least``, what the targets hold)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            gen = max(int(row[0]) if row else 0, at_least) + 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(gen),))
        return gen

    # -- the targets' records, as far as the catalog has seen them ------------------------

    def own_segments(self, target: str) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment FROM ledger_segments WHERE target=?", (target,)
            ).fetchall()
        return {r[0] for r in rows}

    def own_segment_sizes(self, target: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, entries FROM ledger_segments WHERE target=?", (target,)
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def own_entries(self, target: str) -> int:
        with self._lock:
            r = self._db.execute(
                "SELECT coalesce(sum(entries), 0) FROM ledger_segments WHERE target=?", (target,)
            ).fetchone()
        return int(r[0])

    def segment_written(
        self, target: str, segment: str, entries: int, replaces: tuple[str, ...] = ()
    ) -> None:
        """A segment of this installation's list is on the target (after a compaction, in
        place of ``replaces``)."""
        with self._tx() as db:
            db.executemany("DELETE FROM ledger_segments WHERE target=? AND segment=?",
                           [(target, r) for r in replaces])  # fmt: skip
            if segment:
                db.execute("INSERT OR REPLACE INTO ledger_segments VALUES (?,?,?)",
                           (target, segment, entries))  # fmt: skip

    def segments_gone(self, target: str, segments: list[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM ledger_segments WHERE target=? AND segment=?",
                           [(target, r) for r in segments])  # fmt: skip

    def shared_segments(self, target: str) -> dict[str, str]:
        """segment -> installation folder, of other installations' lists read so far."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment, installation FROM shared_segments WHERE target=?", (target,)
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def shared_read(
        self, target: str, installation: str, segment: str, entries: list[ManifestEntry]
    ) -> None:
        """Another installation's segment, read: its entries in transactions of 10,000
        (no other use of the catalog waits long), then the segment as read."""
        rows = [(target, e.sha256, e.key, installation, segment) for e in entries]
        for i in range(0, len(rows), 10_000):
            with self._tx() as db:
                db.executemany("INSERT INTO shared_entries VALUES (?,?,?,?,?)",
                               rows[i : i + 10_000])  # fmt: skip
        with self._tx() as db:  # a crash before this line: read again, after a clean-out
            db.execute("INSERT OR REPLACE INTO shared_segments VALUES (?,?,?)",
                       (target, segment, installation))  # fmt: skip

    def shared_gone(self, target: str, segments: list[str]) -> None:
        with self._tx() as db:
            for segment in segments:
                db.execute("DELETE FROM shared_entries WHERE target=? AND segment=?",
                           (target, segment))  # fmt: skip
                db.execute("DELETE FROM shared_segments WHERE target=? AND segment=?",
                           (target, segment))  # fmt: skip

    def shared_copies(self, target: str, sha256: str) -> list[tuple[str, str]]:
        """(key, installation) of every other installation's copy of these bytes the
        target's lists name, by installation then key (each is an upload that need not
        happen, once one proves: ``ledgers.shared_copy``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT relpath, installation FROM shared_entries"
                " WHERE target=? AND asset=? ORDER BY installation, relpath",
                (target, sha256),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def shared_keys(self, target: str) -> dict[str, tuple[str, str]]:
        """key -> (SHA-256, installation) of every other installation's entry on a target."""
        with self._lock:
            rows = self._db.execute(
                "SELECT relpath, asset, installation FROM shared_entries WHERE target=?",
                (target,),
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def listed_by_other(self, target: str, key: str, sha256: str, but: bool = False) -> str | None:
        """The installation that lists ``sha256`` at ``key`` on a target, if another
        does; with ``but``, one that lists another asset there."""
        with self._lock:
            r = self._db.execute(
                "SELECT installation FROM shared_entries WHERE target=? AND relpath=?"
                f" AND asset{'<>' if but else '='}? LIMIT 1",
                (target, key, sha256),
            ).fetchone()
        return str(r[0]) if r else None

    def copy_of_another_at(self, target: str, key: str, sha256: str, actual: str = "") -> bool:
        """Whether another asset than ``sha256`` (``actual``, when known) has a verified
        copy at ``key`` on the target: the file there is that photo's."""
        with self._lock:
            if actual:
                r = self._db.execute(
                    "SELECT 1 FROM replicas WHERE asset=? AND target=? AND relpath=?"
                    " AND state='verified'", (actual, target, key),
                ).fetchone()  # fmt: skip
            else:
                r = self._db.execute(
                    "SELECT 1 FROM replicas WHERE target=? AND relpath=? AND asset<>?"
                    " AND state='verified' LIMIT 1", (target, key, sha256),
                ).fetchone()  # fmt: skip
        return r is not None

    def replica_owner(self, sha256: str, target: str) -> str:
        """'' when this installation wrote the copy, else the installation it relies on."""
        with self._lock:
            r = self._db.execute(
                "SELECT owner FROM replicas WHERE asset=? AND target=?", (sha256, target)
            ).fetchone()
        return str(r[0]) if r else ""

    # -- assets ---------------------------------------------------------------------

    def has_size(self, size: int) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM assets WHERE size=? LIMIT 1", (size,)).fetchone()
                is not None
            )

    def asset(self, sha256: str) -> Asset | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM assets WHERE sha256=?", (sha256,)).fetchone()
        return _asset(row) if row else None

    def relpath_taken(self, relpath: str) -> bool:
        """Whether an asset has this library path, or one that only case tells apart from
        it (``IMG_0001.JPG`` for ``img_0001.jpg``): a disk blind to case (exFAT, a Mac's,
        Windows') holds one file for both, and a restore or a copy onto it would keep one
        photo of the two.  An ASCII path (a camera's) is one look-up in SQLite's NOCASE
        index, folders too; any other is compared with the paths of its own folder."""
        with self._lock:
            return _taken(self._db, relpath)

    def asset_at_source(self, source: str, path: str) -> Asset | None:
        with self._lock:
            row = self._db.execute(
                "SELECT a.* FROM source_files s JOIN assets a ON a.sha256=s.asset "
                "WHERE s.source=? AND s.path=?",
                (source, _path(path)),
            ).fetchone()
        return _asset(row) if row else None

    def add_asset(
        self,
        sha256: str,
        size: int,
        relpath: str,
        info: Probe,
        source: str,
        path: str,
        mtime_ns: int | None = None,
    ) -> str | None:
        """Record a new asset; its library path, ``relpath`` or, where another asset
        has that (``relpath_taken``), ``relpath`` suffixed with the start of its hash
        (``IMG_0001~1a2b3c4d.JPG``); None when these bytes were already known.  The
        name is chosen in the transaction that records it: an asset adopted from a
        target's list by another thread cannot take it in between (the second of
        the two would not be recorded).  With ``mtime_ns``, the source file it came
        from is recorded in the same transaction: a reader never sees the asset
        without the file to copy it from."""
        with self._tx() as db:
            if mtime_ns is not None:
                self._saw(db, source, path, size, mtime_ns, sha256)
            if db.execute("SELECT 1 FROM assets WHERE sha256=?", (sha256,)).fetchone():
                return None
            relpath = _free(db, relpath, sha256)
            db.execute(
                "INSERT INTO assets (sha256, size, kind, format, relpath, captured_at,"
                " capture_source, decodable, problem, first_source, first_path, added_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    sha256,
                    size,
                    str(info.kind),
                    info.format,
                    relpath,
                    info.captured_at.isoformat(),
                    info.capture_source,
                    None if info.decodable is None else int(info.decodable),
                    info.problem,
                    source,
                    _path(path),
                    now_iso(),
                ),
            )
            return relpath

    def empty(self) -> bool:
        """No asset at all (one row looked for, not a count of a million)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM assets LIMIT 1").fetchone() is None

    def counts(self) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM assets").fetchone()
        return int(row[0]), int(row[1])

    def undecodable(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT count(*) FROM assets WHERE decodable=0").fetchone()[0]
            )

    def holdings(self) -> list[tuple[frozenset[str], int, int]]:
        """Assets grouped by the set of targets holding a verified replica:
        (targets, number of assets, bytes).  Few groups, whatever the catalog's size,
        and read as they are kept (v9), not counted."""
        with self._lock:
            kept = self.schema_version >= 9  # (v9) a reader's catalog is not brought up to date
            rows = self._db.execute(
                "SELECT held, assets, bytes FROM holdings" if kept
                else "SELECT held, count(*), sum(size) FROM assets GROUP BY held"
            ).fetchall()  # fmt: skip
        return [(_held(r[0]), int(r[1]), int(r[2])) for r in rows]

    # -- replicas -------------------------------------------------------------------

    def replicas(self, sha256: str) -> list[Replica]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM replicas WHERE asset=? AND state='verified'", (sha256,)
            ).fetchall()
        return [
            Replica(
                r["asset"],
                r["target"],
                r["relpath"],
                r["size"],
                r["verified_at"],
                VerifyMethod(r["method"]),
            )
            for r in rows
        ]

    def replica_exists(self, sha256: str, target: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM replicas WHERE asset=? AND target=? AND state='verified'",
                    (sha256, target),
                ).fetchone()
                is not None
            )

    def add_replica(
        self,
        sha256: str,
        target: str,
        relpath: str,
        size: int,
        method: VerifyMethod,
        temp: str | None = None,
        owner: str = "",
    ) -> None:
        """Record a verified replica; ``temp`` (the copy's temporary, now gone) is
        forgotten in the same transaction; ``owner``: another installation whose copy
        this is."""
        with self._tx() as db:
            if temp is not None:
                db.execute("DELETE FROM temp_files WHERE target=? AND relpath=?", (target, temp))
            at = now_iso()
            # The write's own read-back (or the server's check) is the first proof.
            db.execute(
                "INSERT OR REPLACE INTO replicas (asset, target, state, relpath, size, verified_at,"
                " method, checked_at, check_method, check_result, listed_at, owner)"
                " VALUES (?,?,'verified',?,?,?,?,?,?,'ok',?,?)",
                (sha256, target, relpath, size, at, str(method), at, str(method), at, owner),
            )
            db.execute(f"UPDATE assets SET held = {_HELD.format(asset='?')}, lost_at = NULL"
                       " WHERE sha256 = ?", (sha256, sha256))  # fmt: skip

    def replica_failed(
        self, sha256: str, target: str, error: str, base: float, cap: float
    ) -> float:
        """Record a failed copy; returns the delay before the next try (doubling, capped)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT attempts, state, error, relpath FROM replicas WHERE asset=? AND target=?",
                (sha256, target),
            ).fetchone()
            if row and row["state"] == "verified":
                return 0.0
            relpath = ""
            if row and str(row["error"]).startswith(REPAIR):  # still a repair when it lands
                error = f"{row['error'].split(';')[0]}; {error}"
                relpath = row["relpath"]  # where the bad copy was (``bad_copy_key``)
            attempts = (row["attempts"] if row else 0) + 1
            delay = min(cap, base * 2 ** (attempts - 1))
            db.execute(
                "INSERT OR REPLACE INTO replicas (asset, target, state, attempts, next_try, error,"
                " relpath) VALUES (?,?,'failed',?,?,?,?)",
                (sha256, target, attempts, time.time() + delay, error, relpath),
            )
            return float(delay)

    def anything_pending(self, target: str, now: float, longest: float = math.inf) -> bool:
        """Whether ``pending`` would find anything, from two index counts and the failed
        replicas: the catch-up asks every `retry_interval`, and walking a million
        assets to find that a target lacks none of them would be most of an idle
        daemon's work."""
        with self._lock:
            row = self._db.execute(
                "SELECT EXISTS(SELECT 1 FROM replicas WHERE target=? AND state='failed'"
                " AND (next_try<=? OR next_try>?)) OR (SELECT count(*) FROM assets) >"
                " (SELECT count(*) FROM replicas WHERE target=?)",
                (target, now, now + longest, target),
            ).fetchone()
        return bool(row[0])

    def pending(
        self, target: str, limit: int, now: float, longest: float = math.inf
    ) -> list[Asset]:
        """Assets with no verified replica on ``target`` whose retry time has come.
        ``longest``: the longest wait a failed copy is given; a retry time further away
        was planned on a clock set back since (one a year ahead, put right by NTP),
        and is due now, not when the clock gets there again."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM assets a LEFT JOIN replicas r ON r.asset=a.sha256 AND r.target=?"
                " WHERE r.asset IS NULL OR (r.state='failed' AND (r.next_try<=? OR r.next_try>?))"
                " ORDER BY a.added_at LIMIT ?",
                (target, now, now + longest, limit),
            ).fetchall()
        return [_asset(r) for r in rows]

    def pending_bytes(self, target: str) -> int:
        """Bytes of the assets a target does not hold yet."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT coalesce(sum(a.size), 0) FROM assets a WHERE NOT EXISTS (SELECT 1"
                    " FROM replicas r WHERE r.asset=a.sha256 AND r.target=? AND"
                    " r.state='verified')",
                    (target,),
                ).fetchone()[0]
            )

    def pending_count(self, target: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT (SELECT count(*) FROM assets) - (SELECT count(*) FROM replicas"
                    " WHERE target=? AND state='verified')",
                    (target,),
                ).fetchone()[0]
            )

    def verified_on(self, target: str) -> Iterator[ManifestEntry]:
        """Every verified replica on a target, as its manifest has it, in asset order,
        read a thousand at a time: a large library's were read whole (a million
        photos: 400 MB) at every relist, scrub and rebuild.  (``+``: by the primary
        key's range, not the target's index and a sort of all of them per page.)"""
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT r.asset, r.relpath, a.size, a.captured_at FROM replicas r"
                    " JOIN assets a ON a.sha256=r.asset WHERE +r.target=? AND"
                    " +r.state='verified' AND r.asset > ? ORDER BY r.asset LIMIT 1000",
                    (target, after),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield ManifestEntry(r[0], r[1], r[2], r[3])
            after = rows[-1][0]

    def verified_count(self, target: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT count(*) FROM replicas WHERE target=? AND state='verified'", (target,)
                ).fetchone()[0]
            )

    # -- proof over time (scrub, heal, drills) -----------------------------------------

    def replicas_by_age(
        self, target: str, after: tuple[str, str] = ("", ""), limit: int = 1000
    ) -> list[CheckItem]:
        """Verified replicas on a target, the ones fully re-read longest ago first,
        a page at a time: pass the last item's (checked_at, asset) as ``after``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.asset, r.relpath, r.size, coalesce(r.checked_at, '') FROM replicas r"
                " WHERE r.target=? AND r.state='verified'"
                " AND (coalesce(r.checked_at, ''), r.asset) > (?, ?)"
                " ORDER BY coalesce(r.checked_at, ''), r.asset LIMIT ?",
                (target, after[0], after[1], limit),
            ).fetchall()
        return [CheckItem(r[0], r[1], r[2], r[3]) for r in rows]

    def checks_ahead(self, target: str) -> int:
        """Re-reads on a target dated later than now (by a clock that ran ahead, set back
        since): when they really were is not known, so their date is emptied and they
        come first in ``replicas_by_age`` (else last, unread until the clock caught up).
        Returns how many."""
        with self._tx() as db:
            return db.execute(
                "UPDATE replicas SET checked_at='' WHERE target=? AND state='verified'"
                " AND checked_at > ?",
                (target, now_iso()),
            ).rowcount

    def check_totals(self, target: str) -> tuple[int, int, str | None]:
        """(verified replicas, their bytes, the oldest full re-read) on a target."""
        with self._lock:
            r = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0), min(checked_at) FROM replicas"
                " WHERE target=? AND state='verified'",
                (target,),
            ).fetchone()
        return int(r[0]), int(r[1]), r[2]

    def oldest_check(self, target: str) -> str | None:
        """When the copy on a target read longest ago was last read in full (an index
        lookup, not a scan)."""
        with self._lock:
            r = self._db.execute(
                "SELECT min(checked_at) FROM replicas WHERE target=? AND state='verified'",
                (target,),
            ).fetchone()
        return r[0] if r else None

    def replica_checked(self, sha256: str, target: str, method: str) -> None:
        """A full re-read matched."""
        with self._tx() as db:
            at = now_iso()
            db.execute(
                "UPDATE replicas SET checked_at=?, check_method=?, check_result='ok', listed_at=?"
                " WHERE asset=? AND target=? AND state='verified'",
                (at, method, at, sha256, target),
            )

    def replicas_listed(self, target: str, assets: list[str]) -> None:
        """A cheap look found these replicas present with the right size."""
        at = now_iso()
        with self._tx() as db:
            db.executemany(
                "UPDATE replicas SET listed_at=? WHERE asset=? AND target=?",
                [(at, a, target) for a in assets],
            )

    def replica_bad(self, sha256: str, target: str, result: str, method: str) -> int:
        """A replica is corrupt or missing: it no longer counts, and the catch-up copies
        it again at once (``error`` says it is a repair).  Returns how many verified
        replicas of the asset are left."""
        with self._tx() as db:
            db.execute(
                "UPDATE replicas SET state='failed', attempts=0, next_try=0, error=?,"
                " checked_at=?, check_method=?, check_result=? WHERE asset=? AND target=?",
                (f"{REPAIR}{result}", now_iso(), method, result, sha256, target),
            )
            db.execute(f"UPDATE assets SET held = {_HELD.format(asset='?')} WHERE sha256 = ?",
                       (sha256, sha256))  # fmt: skip
            return int(db.execute("SELECT count(*) FROM replicas WHERE asset=? AND"
                                  " state='verified'", (sha256,)).fetchone()[0])  # fmt: skip

    def to_copy(self, sha256: str, target: str) -> str | None:
        """What a copy of the asset to the target would be, in one look: None when a
        verified replica is there already (nothing to copy), else why it is a repair
        ("corrupt", "missing"), or '' for a plain copy."""
        with self._lock:
            r = self._db.execute(
                "SELECT state, error FROM replicas WHERE asset=? AND target=?", (sha256, target)
            ).fetchone()
        if r is not None and r[0] == "verified":
            return None
        if r is None or r[0] != "failed" or not str(r[1]).startswith(REPAIR):
            return ""
        return str(r[1])[len(REPAIR) :].split(";")[0]

    def bad_copy_key(self, sha256: str, target: str) -> str:
        """Where the copy found bad on a target was ('' when none is on record)."""
        with self._lock:
            r = self._db.execute(
                "SELECT relpath FROM replicas WHERE asset=? AND target=? AND state='failed'"
                " AND substr(error, 1, ?) = ?", (sha256, target, len(REPAIR), REPAIR),
            ).fetchone()  # fmt: skip
        return str(r[0]) if r else ""

    def to_repair(self, target: str) -> list[Asset]:
        """Assets whose replica on a target was found bad and is not copied again yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM replicas r JOIN assets a ON a.sha256 = r.asset WHERE"
                " r.target=? AND r.state='failed' AND substr(r.error, 1, ?) = ?"
                " ORDER BY a.relpath",
                (target, len(REPAIR), REPAIR),
            ).fetchall()
        return [_asset(r) for r in rows]

    def ever_held(self, sha256: str) -> bool:
        """Whether a target holds or held a proved copy of the asset (one found bad
        since stays on record, as a copy to repair)."""
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM replicas WHERE asset=? AND (state='verified' OR"
                " substr(error, 1, ?) = ?) LIMIT 1", (sha256, len(REPAIR), REPAIR),
            ).fetchone() is not None  # fmt: skip

    def mark_lost(self, sha256: str) -> bool:
        """Record that no good copy of an asset is left; True the first time."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE assets SET lost_at=? WHERE sha256=? AND lost_at IS NULL",
                (now_iso(), sha256),
            )
            return cur.rowcount == 1

    def lost(self, limit: int = -1) -> Iterator[tuple[str, str]]:
        """(SHA-256, path in the library) of each photo with no good copy left, by
        path, read as they are taken on a connection of its own: all of them were read
        whole, as assets (200,000 lost: 200 MB, when a dead drive takes a library).
        ``limit``: only the first so many (-1: all)."""
        with self._reader() as db:
            cur = db.cursor()
            cur.row_factory = None  # plain tuples
            # INDEXED BY: without it the planner walks the relpath index of every
            # asset to save a sort of the few lost ones.
            yield from cur.execute(
                "SELECT sha256, relpath FROM assets INDEXED BY assets_lost"
                " WHERE lost_at IS NOT NULL ORDER BY relpath LIMIT ?",
                (limit,),
            )

    def lost_count(self) -> int:
        """How many photos have no good copy left, counted by SQLite."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT count(*) FROM assets INDEXED BY assets_lost WHERE lost_at IS NOT NULL"
                ).fetchone()[0]
            )

    def egress_used(self, target: str, month: str) -> int:
        with self._lock:
            r = self._db.execute(
                "SELECT bytes FROM egress WHERE target=? AND month=?", (target, month)
            ).fetchone()
        return int(r[0]) if r else 0

    def add_egress(self, target: str, month: str, size: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO egress VALUES (?,?,?) ON CONFLICT (target, month)"
                " DO UPDATE SET bytes = bytes + excluded.bytes",
                (target, month, size),
            )

    def sources_by_age(
        self, source: str, limit: int
    ) -> list[tuple[str, int, int, str, str | None]]:
        """Files of a watch folder re-read longest ago first: (path, size, mtime_ns,
        asset, when its bytes were last read and matched); known-corrupt ones are left
        out (they are reported already)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, asset, checked_at FROM source_files WHERE"
                " source=? AND corrupt=0 ORDER BY coalesce(checked_at, '') LIMIT ?",
                (source, limit),
            ).fetchall()
        return [(_unpath(r[0]), r[1], _unns(r[2]), r[3], r[4]) for r in rows]

    def source_edited(self, source: str, path: str) -> None:
        """A watch-folder file changed with its size and mtime kept: its recorded time is
        forgotten, so that the next scan takes it again as a new version."""
        with self._tx() as db:
            db.execute(
                "UPDATE source_files SET mtime_ns=-1 WHERE source=? AND path=?",
                (source, _path(path)),
            )

    def source_bytes(self, source: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT coalesce(sum(size), 0) FROM source_files WHERE source=?", (source,)
                ).fetchone()[0]
            )

    def source_checked(self, source: str, path: str, corrupt: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE source_files SET checked_at=?, corrupt=? WHERE source=? AND path=?",
                (now_iso(), int(corrupt), source, _path(path)),
            )

    def corrupt_sources(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT count(*) FROM source_files WHERE corrupt=1").fetchone()[0]
            )

    def sample(self, target: str, n: int) -> list[tuple[Asset, bool | None]]:
        """A random sample of the assets a target holds, with whether each decoded at
        ingest (None: not checked)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM replicas r JOIN assets a ON a.sha256=r.asset WHERE"
                " r.target=? AND r.state='verified' ORDER BY random() LIMIT ?",
                (target, n),
            ).fetchall()
        return [(_asset(r), None if r["decodable"] is None else bool(r["decodable"])) for r in rows]

    def add_drill(self, target: str, passed: bool, files: int, detail: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO drills VALUES (?,?,?,?,?)",
                (target, now_iso(), int(passed), files, detail),
            )

    def last_drills(self) -> dict[str, tuple[str, bool, int, str]]:
        """Per target, the last drill: (when, passed, files, detail).  The last one run,
        not the latest by its time: one dated by a clock that ran ahead, set back since,
        would hide every drill after it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT target, at, passed, files, detail, max(rowid) FROM drills GROUP BY target"
            ).fetchall()
        return {r[0]: (r[1], bool(r[2]), r[3], r[4]) for r in rows}

    def ran(self, job: str, detail: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?)", (job, now_iso(), json.dumps(detail))
            )

    def last_run(self, job: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            r = self._db.execute("SELECT at, detail FROM runs WHERE job=?", (job,)).fetchone()
        return (r[0], json.loads(r[1])) if r else None

    def assets(self) -> Iterator[Asset]:
        """Every asset, in key order (restore)."""
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT * FROM assets WHERE relpath > ? ORDER BY relpath LIMIT 1000", (after,)
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield _asset(r)
            after = rows[-1]["relpath"]

    def folder_days(self, folder: str) -> list[tuple[str, str]]:
        """(relpath, capture time) of the assets right in a folder of the library (not
        in its subfolders), in key order: what a restore by date asks of a movie's or
        an edit's folder, for the still beside it."""
        prefix = f"{folder}/" if folder else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT relpath, captured_at FROM assets WHERE relpath >= ? AND relpath < ?"
                " AND instr(substr(relpath, ?), '/') = 0 ORDER BY relpath",
                (prefix, f"{folder}0" if folder else "\U0010ffff", len(prefix) + 1),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- what the dashboard shows ---------------------------------------------------------

    def held_by(self, held: frozenset[str], limit: int) -> list[Asset]:
        """Assets whose verified replicas are on exactly these targets, newest first."""
        key = "\0".join(sorted(held))
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM assets WHERE held = ? ORDER BY captured_at DESC, relpath LIMIT ?",
                (key, limit),
            ).fetchall()
        return [_asset(r) for r in rows]

    def added_by_day(self, since: str) -> list[tuple[str, frozenset[str], int]]:
        """(day added, targets holding it, assets) for the assets added since a moment
        (a record's UTC time); the day is this computer's (the UTC one put a photo
        added at 21:00 in New York on tomorrow)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT date(added_at, 'localtime'), held, count(*) FROM assets"
                " WHERE added_at >= ? GROUP BY 1, 2",
                (since,),
            ).fetchall()
        return [(r[0], _held(r[1]), r[2]) for r in rows]

    def months(self) -> list[tuple[str, int]]:
        """('YYYY-MM' of capture, assets), newest first; '' for an unknown capture time."""
        with self._lock:
            rows = self._db.execute(
                "SELECT substr(captured_at, 1, 7), count(*) FROM assets GROUP BY 1 ORDER BY 1 DESC"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def captured_in(self, month: str, limit: int) -> list[Asset]:
        """The assets captured in a month ('YYYY-MM'; '' for those with no capture time),
        in time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM assets WHERE substr(captured_at, 1, 7) = ?"
                " ORDER BY captured_at, relpath LIMIT ?",
                (month, limit),
            ).fetchall()
        return [_asset(r) for r in rows]

    def held_of(self, sha256: str) -> frozenset[str]:
        with self._lock:
            r = self._db.execute("SELECT held FROM assets WHERE sha256 = ?", (sha256,)).fetchone()
        return _held(r[0]) if r else frozenset()

    # -- snapshots -----------------------------------------------------------------------

    def changes(self) -> int:
        """Rows changed through this connection so far, but its notes of when a target
        was last seen and a folder last scanned (a snapshot of those alone would be a
        generation more on every target after each reload, each hour, each scan):
        tells whether a snapshot is due."""
        with self._lock:
            return self._db.total_changes - self._noted

    def snapshot(self, dest: Path) -> None:
        """A consistent copy of the whole catalog at ``dest`` (SQLite's online backup:
        writers wait a moment; readers are not disturbed)."""
        out = sqlite3.connect(dest)
        try:
            with self._lock:
                # (before the copy: another connection's commit during it is then taken
                # for a change after it, never the other way round)
                copied = (self.changes(), self._data_version())
                try:
                    self._db.backup(out)
                    self._copied = copied
                except sqlite3.Error as exc:
                    mapped = _map(exc, self.path)
                    if mapped is None:
                        raise
                    self._db.noticed(mapped)
                    raise mapped from exc
            out.execute("PRAGMA journal_mode=DELETE")
        finally:
            out.close()

    def _data_version(self) -> int:
        """Moves when another connection commits (SQLite's, of this connection)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def cover(self, record: str) -> bool:
        """Keep ``record``, what the snapshot last copied (``snapshot``) covers, in the
        catalog, for the next start to find: only while nothing but notes changed since
        that copy, through any connection.  The first change after, in the same
        transaction as itself, removes it (``_tx``): a catalog changed is never taken
        for one a snapshot covers, even after a crash or by another process (a rebuild,
        a restore); a kill before it is kept costs one snapshot more, never one less."""
        with self._tx() as db:
            if self._copied is None or self._copied != (self.changes(), self._data_version()):
                return False
            before = db.total_changes
            db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (COVERED, record))
            self._noted += db.total_changes - before
        return True

    def covered(self) -> str | None:
        """The record ``cover`` kept, while the catalog is as that snapshot has it."""
        return self.meta(COVERED)

    def adopt(
        self,
        entry: ManifestEntry,
        target: str,
        kind: Kind,
        fmt: str,
        source: str,
        owner: str = "",
    ) -> bool:
        """Record an asset and its replica found on a target (while rebuilding the
        catalog, or catching up with the target's list); False when the asset was known
        (its replica is recorded all the same).  A new asset's library path is the
        replica's key, or where another asset has that, the key suffixed as
        ``add_asset`` does (its copy's name on the target is kept)."""
        with self._tx() as db:
            new = (
                db.execute("SELECT 1 FROM assets WHERE sha256=?", (entry.sha256,)).fetchone()
                is None
            )
            if new:
                db.execute(
                    "INSERT INTO assets (sha256, size, kind, format, relpath, captured_at,"
                    " capture_source, decodable, problem, first_source, first_path, added_at)"
                    " VALUES (?,?,?,?,?,?,'target',NULL,'',?,?,?)",
                    (entry.sha256, entry.size, str(kind), fmt, _free(db, entry.key, entry.sha256),
                     entry.captured_at or "", source, entry.key, now_iso()),
                )  # fmt: skip
        if not self.replica_exists(entry.sha256, target):
            self.add_replica(
                entry.sha256, target, entry.key, entry.size, VerifyMethod.EXISTING, owner=owner
            )
        return new

    # -- sources --------------------------------------------------------------------

    @contextmanager
    def source_stats(self, source: str) -> Iterator[_Stats]:
        """What a scan compares: ``known(paths)``, path -> (size, mtime_ns) of those of
        ``paths`` the catalog knows, asked 500 at a time; ``known(paths, folder)``, when
        ``paths`` are every file of ``folder`` (``""``, or a path ending in "/"), the
        same, read as a range of the index: the rows of the folder's own files in
        order, a page at a time, past each sub-folder's (a third faster than by name;
        by name again when the range holds many more than ``paths``, files long gone).
        Asked a folder's files at a time, on a connection of its own beside the shared
        one (WAL lets a reader be, and no other call waits behind the lock): every
        file of a folder was read at once (a million: 300 MB, on a small computer).
        ``gone(folder, dirs, found)`` and ``forget(paths)``: the rows a complete
        listing of the folder lacks, and their end (files deleted from a watch folder
        were kept for ever: an emptied export folder grew the catalog at each import,
        and its range was read past them, then by name)."""
        with self._reader() as db:
            cur = db.cursor()
            cur.row_factory = None  # plain tuples
            plain = sqlite3.Cursor(db)
            plain.row_factory = None

            def some(paths: list[str]) -> dict[str, tuple[int, int]]:
                out = {}
                for i in range(0, len(paths), 500):
                    some = [_path(p) for p in paths[i : i + 500]]
                    for p, size, mtime in cur.execute(
                        "SELECT path, size, mtime_ns FROM source_files WHERE source=? AND path"
                        f" IN ({','.join('?' * len(some))})",
                        (source, *some),
                    ):
                        out[p if isinstance(p, str) else _unpath(p)] = (
                            size,
                            mtime if type(mtime) is int else _unns(mtime),
                        )
                return out

            def known(paths: list[str], folder: str | None = None) -> dict[str, tuple[int, int]]:
                if folder is None:
                    return some(paths)
                try:  # (rows read by SQLite's own cursor: no Python call for each)
                    return in_range(paths, folder)
                except sqlite3.Error as exc:
                    raise said(exc) from exc

            def said(exc: sqlite3.Error) -> Exception:
                mapped = _map(exc, db.path)
                if mapped is None:
                    return exc
                db.noticed(mapped)
                return mapped

            # folder -> (rows of its own files its listing lacks, its sub-folders with
            # rows, whether every row of it is to be looked at: read by name instead)
            pending: dict[str, tuple[list[str], list[Any], bool]] = {}

            read: list[str | None] = [None]  # the folder read last (none of folders only)

            def in_range(paths: list[str], folder: str) -> dict[str, tuple[int, int]]:
                read[0] = folder
                pending.clear()  # (the folder before's: looked at, or not to be)
                out: dict[str, tuple[int, int]] = {}
                subs: list[Any] = []
                budget = 2 * len(paths) + 64  # rows read past it: by name instead
                for lo, hi in _folder_ranges(folder, paths):
                    n, cont = len(lo), False  # cont: on from the last row read (>)
                    slash, zero = ("/", "0") if isinstance(lo, str) else (b"/", b"0")
                    while True:
                        got, last, past = 0, lo, None
                        for p, size, mtime in plain.execute(
                            _RANGE[cont, hi is None],
                            (source, lo, _PAGE) if hi is None else (source, lo, hi, _PAGE),
                        ):
                            got += 1
                            if (cut := p.find(slash, n)) >= 0:  # a sub-folder's file
                                past = p[:cut] + zero  # (its files sort before that)
                                subs.append(p[n:cut])
                                if not paths:  # (a folder of folders: not read past)
                                    got -= 1
                                break
                            out[p if isinstance(p, str) else _unpath(p)] = (
                                size,
                                mtime if type(mtime) is int else _unns(mtime),
                            )
                            last = p
                        budget -= got
                        if budget < 0:
                            pending[folder] = ([], [], True)
                            return some(paths)
                        if past is not None:
                            lo, cont = past, False
                        elif got < _PAGE:
                            break
                        else:
                            lo, cont = last, True
                if len(out) > len(paths) or subs:  # (files gone, or sub-folders to look at)
                    listed = set(paths)
                    pending[folder] = ([p for p in out if p not in listed], subs, False)
                return out

            def gone(folder: str, dirs: list[str], found: int | None) -> Iterable[str]:
                """What a complete listing of ``folder`` lacks: rows of its own files
                (maybe: a listing may lack a file it could not look at) and its
                sub-folders with rows (``folder + name + "/"``).  ``found``: how many of
                the folder's files have rows, when it was asked by name (a large one:
                the rows beside its sub-folders' are counted, and read only when there
                are more).  A folder of folders only (or of none) is read only when
                its range has a row beside its sub-folders'."""
                if found is None and read[0] == folder and folder not in pending:
                    return ()  # (read whole, with nothing more than its listing)
                return lacked(folder, dirs, found)

            def lacked(folder: str, dirs: list[str], found: int | None) -> Iterator[str]:
                own, subs, every = pending.pop(folder, ([], [], False))
                try:
                    if found is None and read[0] != folder and _beside(plain, source, folder, dirs):
                        in_range([], folder)
                        own, subs, every = pending.pop(folder, ([], [], False))
                    if found is not None:
                        every = _beside(plain, source, folder, dirs) > found
                    if every:
                        subs = []
                        yield from _walk(plain, source, folder, subs)
                    else:
                        yield from own
                except sqlite3.Error as exc:
                    raise said(exc) from exc
                listed = set(dirs)
                for sub in {s if isinstance(s, str) else _unpath(s) for s in subs}:
                    if sub not in listed:
                        yield f"{folder}{sub}/"

            def forget(paths: list[str]) -> int:
                return self.forget_source_files(source, paths)

            yield _Stats(known, gone, forget)

    def forget_source_files(self, source: str, paths: list[str]) -> int:
        """Drop the rows of watch-folder files gone from it (a path ending in "/": of
        every file under that folder); how many.  Only its bookkeeping: the photos stay."""
        n = 0
        with self._tx() as db:
            for p in paths:
                if not p.endswith("/"):
                    n += db.execute(
                        "DELETE FROM source_files WHERE source=? AND path=?", (source, _path(p))
                    ).rowcount
                    continue
                for lo, hi in _all_ranges(p):
                    where = "path>=?" + ("" if hi is None else " AND path<?")
                    n += db.execute(
                        f"DELETE FROM source_files WHERE source=? AND {where}",
                        (source, lo) if hi is None else (source, lo, hi),
                    ).rowcount
        return n

    def source_count(self, source: str) -> int:
        """How many files of a folder the catalog knows (`run --once` says it), counted
        by SQLite, not read one by one."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT count(*) FROM source_files WHERE source=?", (source,)
                ).fetchone()[0]
            )

    def source_file(self, source: str, path: str) -> SourceFile | None:
        with self._lock:
            r = self._db.execute(
                "SELECT size, mtime_ns, asset, checked_at FROM source_files"
                " WHERE source=? AND path=?",
                (source, _path(path)),
            ).fetchone()
        return SourceFile(r[0], _unns(r[1]), r[2], r[3]) if r else None

    def saw_source_file(
        self, source: str, path: str, size: int, mtime_ns: int, sha256: str
    ) -> None:
        with self._tx() as db:
            self._saw(db, source, path, size, mtime_ns, sha256)

    @staticmethod
    def _saw(db: _Connection, source: str, path: str, size: int, mtime_ns: int, sha: str) -> None:
        db.execute(
            "INSERT OR REPLACE INTO source_files (source, path, size, mtime_ns, asset,"
            " seen_at, checked_at) VALUES (?,?,?,?,?,?,?)",
            (source, _path(path), size, _ns(mtime_ns), sha, now_iso(), now_iso()),
        )

    def source_paths(self, sha256: str) -> list[tuple[str, str, int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, path, size, mtime_ns FROM source_files WHERE asset=? AND corrupt=0",
                (sha256,),
            ).fetchall()
        return [(r[0], _unpath(r[1]), r[2], _unns(r[3])) for r in rows]

    def file_time(self, sha256: str) -> int | None:
        """The photo's file time as its source files keep it (the earliest; -1, a file
        edited in place whose time is forgotten until the next scan, is none)."""
        times = [t for _, _, _, t in self.source_paths(sha256) if t is not None and t != -1]
        return min(times) if times else None

    # -- targets --------------------------------------------------------------------

    def target_names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM targets ORDER BY name")]

    def target(self, name: str) -> TargetRecord | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM targets WHERE name=?", (name,)).fetchone()
        return TargetRecord(r["name"], r["target_id"], r["root"], r["mount_rel"]) if r else None

    def save_target(self, name: str, target_id: str, root: str, mount_rel: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO targets VALUES (?,?,?,?,?)",
                (name, target_id, root, mount_rel, now_iso()),
            )

    def target_seen(self, name: str) -> None:
        """The target answered now (kept for "not connected for 14 days"): a note that
        no snapshot is written for alone (``changes``)."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("UPDATE targets SET last_seen=? WHERE name=?", (now_iso(), name))
            self._noted += db.total_changes - before

    def counting(
        self, infos: Mapping[str, TargetInfo], cycle: float, here: Iterable[str] = ()
    ) -> dict[str, TargetInfo]:
        """``infos`` but the targets whose copies do not count now (``policy.counted``:
        not seen for longer than ``cycle``, and not in ``here``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, last_seen FROM targets WHERE last_seen IS NOT NULL"
            ).fetchall()
        seen = {r[0]: stamp_seconds(r[1]) for r in rows}
        return policy.counted(infos, seen, cycle, here)

    def last_seen(self, name: str) -> str | None:
        with self._lock:
            r = self._db.execute("SELECT last_seen FROM targets WHERE name=?", (name,)).fetchone()
        return r[0] if r else None

    def holdings_before(
        self, added_before: str, old_row: int, seen_row: int
    ) -> list[tuple[frozenset[str], int]]:
        """Like ``holdings``, for the assets up to row ``seen_row``, and those up to
        ``old_row`` added before a time (``last_asset_row``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT held, count(*) FROM assets WHERE rowid <= ?"
                " OR (rowid <= ? AND added_at < ?) GROUP BY held",
                (seen_row, old_row, added_before),
            ).fetchall()
        return [(_held(r[0]), int(r[1])) for r in rows]

    def last_asset_row(self) -> int:
        """The row of the asset added last (0: none): an asset added later has a
        higher one."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM assets").fetchone()[0])

    def add_temps(self, temps: list[tuple[str, str]]) -> None:
        """Record (target, temp key) of copies being written, in one transaction."""
        if temps:
            with self._tx() as db:
                db.executemany("INSERT OR IGNORE INTO temp_files VALUES (?,?)", temps)

    def move_temp(self, target: str, old: str, new: str) -> None:
        """A temporary's record says more (an S3 upload's id, once it started)."""
        with self._tx() as db:
            db.execute("DELETE FROM temp_files WHERE target=? AND relpath=?", (target, old))
            db.execute("INSERT OR IGNORE INTO temp_files VALUES (?,?)", (target, new))

    def drop_temp(self, target: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM temp_files WHERE target=? AND relpath=?", (target, relpath))

    def temps(self, target: str) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT relpath FROM temp_files WHERE target=?", (target,)
                ).fetchall()
            ]

    # -- phones ---------------------------------------------------------------------

    def save_device(self, device: DeviceRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    device.udid,
                    device.source,
                    device.name,
                    device.model,
                    device.ios,
                    device.state,
                    device.detail,
                    device.since,
                    now_iso(),
                    json.dumps(device.last_import),
                ),
            )

    def devices(self) -> list[DeviceRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM devices ORDER BY name, udid").fetchall()
        return [
            DeviceRecord(
                r["udid"],
                r["source"],
                r["name"],
                r["model"],
                r["ios"],
                r["state"],
                r["detail"],
                r["since"],
                r["last_seen"],
                json.loads(r["last_import"]),
            )
            for r in rows
        ]

    def sync_device_files(
        self, udid: str, listing: list[DeviceFile], skipped: Iterable[str] = ()
    ) -> list[DeviceFile]:
        """Record what is on the phone now; returns the files still to import (new,
        changed since they were imported, or not imported yet).  What is in or under
        ``skipped`` (the phone would not list it) stays as it was, and ``skipped`` is
        kept (``unlisted``) until a listing has none: an import cut short after the
        listing must not leave the phone looking whole."""
        kept = {p.rstrip("/") or "/" for p in skipped}  # ("/DCIM/x/" is "/DCIM/x")
        todo: list[DeviceFile] = []
        with self._tx() as db:
            known = {
                r[0]: (r[1], _unns(r[2]), None if r[4] == READ_AGAIN else r[3])
                for r in db.execute(
                    "SELECT path, size, mtime_ns, asset, problem FROM device_files WHERE udid=?",
                    (udid,),
                )
            }
            here = set()
            changed = []
            for f in listing:
                here.add(f.path)
                seen = known.get(f.path)
                if seen is not None and (seen[0], seen[1]) == (f.size, f.mtime_ns):
                    if seen[2] is None:
                        todo.append(f)
                    continue
                changed.append((udid, f.path, f.size, _ns(f.mtime_ns), f.taken_at))
                todo.append(f)
            db.executemany("INSERT OR REPLACE INTO device_files (udid, path, size, mtime_ns,"
                           " taken_at) VALUES (?,?,?,?,?)", changed)  # fmt: skip
            gone = [(udid, p) for p in known if p not in here and not _under(p, kept)]
            db.executemany("DELETE FROM device_files WHERE udid=? AND path=?", gone)
            if kept:
                said = json.dumps({"count": len(kept), "paths": sorted(kept)[:20]})
                db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (f"unlisted:{udid}", said))
            else:
                db.execute("DELETE FROM meta WHERE key=?", (f"unlisted:{udid}",))
        return todo

    def device_paths_with(self, udid: str, problem: str) -> set[str]:
        """The phone's files whose last import left them with ``problem``."""
        with self._lock:
            rows = self._db.execute("SELECT path FROM device_files WHERE udid=? AND problem=?",
                                    (udid, problem)).fetchall()  # fmt: skip
        return {r[0] for r in rows}

    def unlisted(self, udid: str) -> list[str]:
        """What the phone's last listing could not read (up to 20 paths), if anything."""
        said = self.meta(f"unlisted:{udid}")
        return list(json.loads(said)["paths"]) if said else []

    def device_file_done(self, udid: str, path: str, asset: str | None, problem: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE device_files SET asset=?, problem=? WHERE udid=? AND path=?",
                (asset, problem, udid, path),
            )

    def read_again_from_phones(self, asset: str) -> tuple[list[tuple[str, str]], bool]:
        """The phone files (udid, path) of an asset, as their phones last listed them,
        marked to be read again at the next plug-in; and whether any was marked now
        (not already)."""
        with self._tx() as db:
            rows = db.execute("SELECT udid, path, problem FROM device_files WHERE asset=?",
                              (asset,)).fetchall()  # fmt: skip
            now = any(r[2] != READ_AGAIN for r in rows)
            if now:  # (asked at every retry of the copy: written once)
                db.execute("UPDATE device_files SET problem=? WHERE asset=?", (READ_AGAIN, asset))
        return [(r[0], r[1]) for r in rows], now

    def set_media_group(self, asset: str, group: str) -> None:
        """A movie's content identifier (see migration v8)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO media_groups VALUES (?, ?)", (asset, group))

    def media_groups(self, udid: str) -> dict[str, str]:
        """The phone's files whose content names a media group: path -> group."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.path, g.media_group FROM device_files f"
                " JOIN media_groups g ON g.asset = f.asset WHERE f.udid=?",
                (udid,),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def device_files(self, udid: str) -> Iterator[tuple[DeviceFile, str | None, str, str]]:
        """The phone's last listing: (file, asset or None, problem, targets holding a
        verified replica, NUL-separated).  A file's ``taken_at`` is the earlier of the
        phone's time for it and the photo's own capture time: a photo taken years ago
        and saved to the phone yesterday sorts (in Photos, too) by when it was taken.
        Read a thousand at a time, on a connection of its own (a phone's every file was
        held at once, twice over for the dashboard's page of phones)."""
        with self._reader() as db:
            cur = db.execute(
                "SELECT f.path, f.size, f.mtime_ns, CASE WHEN a.captured_at > ''"
                " AND substr(a.captured_at, 1, 19) < f.taken_at THEN"
                " substr(a.captured_at, 1, 19) ELSE f.taken_at END AS taken, f.asset,"
                " f.problem, coalesce(a.held, '') FROM device_files f LEFT JOIN assets a"
                " ON a.sha256 = f.asset WHERE f.udid=? ORDER BY taken, f.path",
                (udid,),
            )
            while rows := cur.fetchmany(1000):
                for r in rows:
                    yield DeviceFile(r[0], r[1], _unns(r[2]), r[3]), r[4], r[5], r[6]

    # -- the phones' libraries ----------------------------------------------------------

    def library_digest(self, udid: str) -> str | None:
        """The digest of the library last read from this phone (None: never read)."""
        with self._lock:
            row = self._db.execute("SELECT digest FROM libraries WHERE udid=?", (udid,)).fetchone()
        return None if row is None else str(row[0])

    def library_read(self, udid: str) -> tuple[str, str] | None:
        """When the library held was read from this phone: (when it last changed, by
        the phone's clock ('' when unknown), when it was read, by this computer's);
        None: never read."""
        with self._lock:
            row = self._db.execute(
                "SELECT changed_at, read_at FROM libraries WHERE udid=?", (udid,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def save_library(self, udid: str, rows: LibraryRows) -> None:
        """Replace what is known of one phone's library, in one transaction."""
        in_icloud = sum(1 for a in rows.assets if not a[2])
        with self._tx() as db:
            for table in ("library_assets", "library_files", "library_albums"):
                db.execute(f"DELETE FROM {table} WHERE udid=?", (udid,))
            db.execute(
                "INSERT OR REPLACE INTO libraries VALUES (?,?,?,?,?,?)",
                (
                    udid,
                    rows.digest,
                    rows.schema,
                    rows.read_at or now_iso(),
                    in_icloud,
                    rows.changed_at,
                ),
            )
            db.executemany(
                "INSERT INTO library_assets VALUES (?,?,?,?,?,?)",
                ((udid, u, p, int(loc), f, s) for u, p, loc, f, s in rows.assets),
            )
            db.executemany(
                "INSERT OR IGNORE INTO library_files VALUES (?,?,?,?)",
                ((udid, p, u, a) for p, u, a in rows.files),
            )
            db.executemany(
                "INSERT INTO library_albums VALUES (?,?,?,?,?)",
                ((udid, u, p, int(t), a) for u, p, t, a in rows.albums),
            )

    def library(self, udid: str) -> LibraryRows | None:
        """One phone's library as saved, each file's asset filled in from the phone's
        listing where the import has done it since."""
        with self._lock:
            clock = self.schema_version >= 10  # (v10) a reader's catalog is not brought up to date
            head = self._db.execute(
                "SELECT digest, schema, read_at, "
                + ("changed_at" if clock else "''")
                + " FROM libraries WHERE udid=?",
                (udid,),
            ).fetchone()
            if head is None:
                return None
            assets = self._db.execute(
                "SELECT uuid, path, local, facts, sidecar FROM library_assets WHERE udid=?"
                " ORDER BY uuid",
                (udid,),
            ).fetchall()
            files = self._db.execute(
                "SELECT l.path, l.uuid, coalesce(l.asset, d.asset) FROM library_files l"
                " LEFT JOIN device_files d ON d.udid = l.udid AND d.path = l.path"
                " WHERE l.udid=? ORDER BY l.path",
                (udid,),
            ).fetchall()
            albums = self._db.execute(
                "SELECT uuid, path, trashed, assets FROM library_albums WHERE udid=? ORDER BY path",
                (udid,),
            ).fetchall()
        return LibraryRows(
            head[0],
            head[1],
            [(r[0], r[1], bool(r[2]), r[3], r[4]) for r in assets],
            [(r[0], r[1], r[2]) for r in files],
            [(r[0], r[1], bool(r[2]), r[3]) for r in albums],
            head[2],
            head[3],
        )

    def library_version(self, udid: str) -> str | None:
        """What a target's index of this library must say to be current: the library's
        digest and how many of its files photod holds (None: no library)."""
        with self._lock:
            row = self._db.execute(
                "SELECT digest, (SELECT count(*) FROM library_files l LEFT JOIN device_files d"
                " ON d.udid = l.udid AND d.path = l.path"
                " WHERE l.udid = ?1 AND coalesce(l.asset, d.asset) IS NOT NULL)"
                " FROM libraries WHERE udid = ?1",
                (udid,),
            ).fetchone()
        return None if row is None else f"{row[0]}:{row[1]}"

    def phone_names(self) -> dict[str, str]:
        """Each phone's name, UDID -> name: as the phone last told it, else as the
        library index a rebuild took its library from gave it (``PHONE_NAME``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT substr(key, ?), value FROM meta WHERE substr(key, 1, ?) = ?",
                (len(PHONE_NAME) + 1, len(PHONE_NAME), PHONE_NAME),
            ).fetchall()
        names = {str(r[0]): str(r[1]) for r in rows if r[1]}
        names.update((d.udid, d.name) for d in self.devices() if d.name)
        return names

    def libraries(self) -> list[str]:
        """The phones whose library photod has read."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT udid FROM libraries ORDER BY udid")]

    def library_facts(self, udid: str, paths: Iterable[str]) -> list[tuple[str, str]]:
        """(path on the phone, facts JSON) of each of these files that the phone's
        library names (every file's were read to date a few)."""
        sql = ("SELECT l.path, a.facts FROM library_files l JOIN library_assets a"
               " ON a.udid = l.udid AND a.uuid = l.uuid WHERE l.udid=? AND l.path IN ({})")  # fmt: skip
        return [(r[0], r[1]) for r in self._among(sql, udid, paths)]

    def library_uuids(self, udid: str, paths: Iterable[str]) -> dict[str, str]:
        """The library's asset (UUID) of each of these files that it names."""
        sql = "SELECT path, uuid FROM library_files WHERE udid=? AND path IN ({})"
        return {r[0]: r[1] for r in self._among(sql, udid, paths)}

    def library_paths(self, udid: str, uuids: Iterable[str]) -> list[str]:
        """The files the phone's library names for these of its assets (UUIDs)."""
        sql = "SELECT path FROM library_files WHERE udid=? AND uuid IN ({})"
        return [r[0] for r in self._among(sql, udid, uuids)]

    def _among(self, sql: str, udid: str, keys: Iterable[str]) -> list[Any]:
        """The rows of ``sql`` (``{}``: the list of ``keys`` it asks for), asked a few
        hundred keys at a time (SQLite's bound on the values of one statement)."""
        keys, rows = list(keys), []
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                marks = ",".join("?" * len(part))
                rows += self._db.execute(sql.format(marks), (udid, *part)).fetchall()
        return rows

    def in_icloud_only(self, udid: str) -> list[tuple[str, str, str]]:
        """The library's photos whose original photod does not have because the phone
        holds it in iCloud only: (uuid, original path, facts JSON).  One the import got
        after all (downloaded since) is not among them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.uuid, a.path, a.facts FROM library_assets a"
                " LEFT JOIN library_files l ON l.udid = a.udid AND l.path = a.path"
                " LEFT JOIN device_files d ON d.udid = a.udid AND d.path = a.path"
                " WHERE a.udid=? AND a.local = 0"
                " AND coalesce(l.asset, d.asset) IS NULL ORDER BY a.path",
                (udid,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def library_unlisted(self, udid: str) -> list[tuple[str, str, str]]:
        """The library's photos the phone says it holds, at a path its last listing did
        not show (somewhere photod does not read): (uuid, original path, facts JSON)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.uuid, a.path, a.facts FROM library_assets a"
                " LEFT JOIN library_files l ON l.udid = a.udid AND l.path = a.path"
                " LEFT JOIN device_files d ON d.udid = a.udid AND d.path = a.path"
                " WHERE a.udid=? AND a.local = 1 AND d.path IS NULL AND l.asset IS NULL"
                " ORDER BY a.path",
                (udid,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # Each original's library facts: one row per asset, the first phone's by UDID when
    # the same bytes are in two libraries (an iPhone's photo in the iPad's CPLAssets),
    # so a sidecar does not flip between them at every catch-up.
    _FACTS = (
        "SELECT asset, udid, facts, sidecar FROM ("
        " SELECT f.asset, a.udid, a.facts, a.sidecar, row_number() OVER"
        "  (PARTITION BY f.asset ORDER BY a.udid, a.uuid) AS n"
        " FROM library_assets a"
        " JOIN (SELECT l.udid, l.path, coalesce(l.asset, d.asset) AS asset"
        "       FROM library_files l LEFT JOIN device_files d"
        "       ON d.udid = l.udid AND d.path = l.path) f"
        "   ON f.udid = a.udid AND f.path = a.path AND f.asset IS NOT NULL"
        ") WHERE n = 1"
    )

    def sidecars_due(self, target: str) -> list[tuple[str, str, str, str, str, bool]]:
        """The sidecars ``target`` lacks or holds out of date, beside the originals it
        holds verified: (asset, relpath, facts JSON, sidecar digest, phone's name,
        whether photod wrote one there before: not when the name was found taken by a
        file photod did not write).  Never one whose name ``KEY.xmp`` is an original's
        on that target."""
        with self._lock:
            rows = self._db.execute(
                "SELECT x.asset, r.relpath, x.facts, x.sidecar, coalesce(v.name, ''),"
                f" s.digest IS NOT NULL AND s.digest != '{SIDECAR_TAKEN}'"
                f" FROM ({self._FACTS}) x"
                " JOIN replicas r ON r.asset = x.asset AND r.target = ?1 AND r.state = 'verified'"
                " LEFT JOIN sidecars s ON s.asset = x.asset AND s.target = r.target"
                " LEFT JOIN devices v ON v.udid = x.udid"
                " WHERE (s.digest IS NULL OR s.digest != x.sidecar OR s.relpath != r.relpath)"
                # (the target's names gathered once: a lookup per photo scanned them all,
                # minutes per catch-up for a library of 20,000)
                " AND r.relpath || '.xmp' NOT IN (SELECT o.relpath FROM replicas o"
                "                                 WHERE o.target = ?1)",
                (target,),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def held_by_asset(self, assets: Iterable[str]) -> dict[str, str]:
        """The targets holding each asset verified (NUL-separated), for these assets."""
        wanted = set(assets)
        with self._lock:
            rows = self._db.execute("SELECT sha256, held FROM assets").fetchall()
        return {r[0]: r[1] for r in rows if r[0] in wanted}

    def sidecar_written(self, asset: str, target: str, relpath: str, digest: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO sidecars VALUES (?,?,?,?)", (asset, target, relpath, digest)
            )

    def sidecar_of(self, asset: str) -> tuple[str, str] | None:
        """(facts JSON, phone's name) of the library asset whose original is ``asset``
        (the same one ``sidecars_due`` takes: the first by UDID)."""
        with self._lock:
            row = self._db.execute(
                "SELECT a.facts, coalesce(v.name, '') FROM library_assets a"
                " JOIN (SELECT udid, path FROM library_files WHERE asset = ?1"
                "       UNION SELECT d.udid, d.path FROM device_files d JOIN library_files l"
                "       ON l.udid = d.udid AND l.path = d.path"
                "       WHERE d.asset = ?1 AND l.asset IS NULL) f"
                "   ON a.udid = f.udid AND a.path = f.path"
                " LEFT JOIN devices v ON v.udid = a.udid ORDER BY a.udid, a.uuid LIMIT 1",
                (asset,),
            ).fetchone()
        return None if row is None else (row[0], row[1])


# The digest kept for a sidecar whose name a file photod did not write holds (left as it is).
SIDECAR_TAKEN = "taken"


# The meta key of a phone's name as a library index gave it (a rebuilt catalog knows
# the phone from its index alone until it is plugged in again).
PHONE_NAME = "phone_name:"


class LibraryRows(NamedTuple):
    """One phone's library as the catalog keeps it (see migration v7)."""

    digest: str
    schema: str
    assets: list[tuple[str, str, bool, str, str]]  # uuid, path, local, facts JSON, sidecar digest
    files: list[tuple[str, str, str | None]]  # path, uuid, asset SHA-256 (None: not yet known)
    albums: list[tuple[str, str, bool, str]]  # uuid, path JSON, trashed, asset uuids JSON
    read_at: str = ""  # when it was read from the phone ('' when saved: now)
    changed_at: str = ""  # when it last changed, by the phone's clock ('' unknown)


def no_catalog(path: Path) -> bool:
    """No catalog at ``path``: no file, or one of 0 bytes with nothing in its journal (a
    disk's repair, fsck, leaves a file it could not save so).  Never opened to find out:
    SQLite would write a new, empty catalog into it, which then hid the lost one."""
    try:
        if path.stat().st_size:
            return False
        wal = path.with_name(path.name + "-wal")
        return not wal.exists() or wal.stat().st_size == 0
    except (FileNotFoundError, NotADirectoryError):
        return True


def unwritable(db: Path, detail: str = "", asker: bool = True) -> CatalogUnwritable | None:
    """None when photod may write the catalog ``db``; else which of its files it may
    not, each with its mode: the database, and its -wal and -shm, which SQLite makes
    with the database's mode (a catalog once made 0400 leaves them 0400 when the
    database is given its mode back), or the folder where one must be made.  Asked
    without opening anything (closing a descriptor of the catalog would drop this
    process's SQLite locks on it).  ``asker``: not the daemon (``keeper``, below)."""
    files: list[str] = []
    paths: list[str] = []

    def cannot(path: Path, name: str = "") -> None:
        try:
            st = path.stat()
            how = f"mode {stat.S_IMODE(st.st_mode):04o}"
            if st.st_uid != os.geteuid():  # (a chmod by photod's user cannot help then)
                how += f", owner uid {st.st_uid}, not photod's {os.geteuid()}"
        except OSError as exc:
            how = exc.strerror or str(exc)
        files.append(f"{name}{path} ({how})")
        paths.append(str(path))

    missing = False
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if not os.path.lexists(path):
            missing = True  # made when needed: the folder must take it
        elif not os.access(path, os.W_OK):
            cannot(path)
    if missing and not os.access(db.parent, os.W_OK | os.X_OK):
        cannot(db.parent, "its folder ")
    if not files:
        return None
    # Another user's catalog in its state dir in another user's folder (a system-wide
    # config's photod, its state dir shared with a group), asked by a command: never to
    # be given to this user.  Not one in this user's own folder (root made it: `sudo
    # photod` with this user's HOME), nor the daemon's own, nor one in a folder root
    # made for this user's photod (/var/lib/photod): a chown mends those.
    with contextlib.suppress(OSError):
        me, uid = os.geteuid(), db.stat().st_uid
        theirs = uid != me and db.parent.stat().st_uid == uid
        if asker and theirs and db.parent.parent.stat().st_uid != me:
            return CatalogUnwritable(files, paths, detail, keeper=user_name(uid))
    return CatalogUnwritable(files, paths, detail)


def check_file(path: Path) -> tuple[str, int]:
    """('' or what is wrong, assets) of a catalog file (a snapshot), opened read-only
    and proved by SQLite's quick_check."""
    try:
        db = sqlite3.connect(read_only_uri(path), uri=True)
    except sqlite3.Error as exc:
        return str(exc), 0
    try:
        found = "; ".join(str(r[0]) for r in db.execute("PRAGMA quick_check(5)").fetchall())
        if found != "ok":
            return found, 0
        return "", int(db.execute("SELECT count(*) FROM assets").fetchone()[0])
    except sqlite3.Error as exc:
        return str(exc), 0
    finally:
        db.close()


def _asset(row: sqlite3.Row) -> Asset:
    return Asset(row["sha256"], row["size"], Kind(row["kind"]), row["relpath"], row["captured_at"])


def _taken(db: sqlite3.Connection, relpath: str) -> bool:
    """``Catalog.relpath_taken`` on this connection: an ASCII path (a camera's) is one
    look-up in SQLite's NOCASE index, folders too (the exact path among them); any
    other is compared with the paths of its own folder."""
    if relpath.isascii():  # (NOCASE folds ASCII only)
        query = "SELECT 1 FROM assets WHERE relpath = ? COLLATE NOCASE LIMIT 1"
        return db.execute(query, (relpath,)).fetchone() is not None
    folder = relpath.rpartition("/")[0]
    if folder:  # (its folder's paths are one range of the index: '0' is '/'+1)
        rows = db.execute(
            "SELECT relpath FROM assets WHERE relpath >= ? AND relpath < ?",
            (f"{folder}/", f"{folder}0"),
        )
    else:  # (no text bounds every name at the top: U+10FFFF is a name's first letter too)
        rows = db.execute("SELECT relpath FROM assets WHERE instr(relpath, '/') = 0")
    wanted = relpath.casefold()
    return any(isinstance(r[0], str) and r[0].casefold() == wanted for r in rows)


def _free(db: sqlite3.Connection, relpath: str, sha256: str) -> str:
    """``relpath``, or suffixed with the start of the hash until no asset has it (a
    suffixed name may be another file's own: ``IMG~1a2b3c4d.JPG``)."""
    while _taken(db, relpath):
        relpath = suffixed(relpath, sha256)
    return relpath
