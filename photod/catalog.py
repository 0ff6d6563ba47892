"""The catalog: the single record of assets, replicas and what each source delivered.
SQLite in WAL mode; the only module that imports sqlite3.

One connection, serialised by a lock: every statement here is small, and one writer is
what SQLite wants anyway.  Readers in other processes (``photod status``) see committed
data at any time thanks to WAL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photod.errors import PhotodError
from photod.models import Asset, Kind, ManifestEntry, Probe, Replica, VerifyMethod

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
]


def _path(path: str) -> str | bytes:
    """Paths as SQLite stores them: TEXT when they are UTF-8, else the raw bytes as a
    BLOB (a name from a foreign filesystem must still be recorded exactly)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _unpath(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SourceFile:
    size: int
    mtime_ns: int
    asset: str


@dataclass(frozen=True, slots=True)
class DeviceFile:
    """A file on a phone, as its last listing showed it."""

    path: str  # AFC path, e.g. /DCIM/100APPLE/IMG_0001.HEIC
    size: int
    mtime_ns: int
    taken_at: str  # when the phone created it (ISO, local time)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    udid: str
    source: str
    name: str
    model: str
    ios: str
    state: str
    detail: str
    since: str
    last_seen: str = ""
    last_import: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetRecord:
    name: str
    target_id: str
    root: str
    mount_rel: str


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode never corrupts; a power cut can forget the last commits, and a
        # forgotten replica is found again on the target (same bytes) and adopted.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

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
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM assets WHERE relpath=?", (relpath,)).fetchone()
                is not None
            )

    def asset_at_source(self, source: str, path: str) -> Asset | None:
        with self._lock:
            row = self._db.execute(
                "SELECT a.* FROM source_files s JOIN assets a ON a.sha256=s.asset "
                "WHERE s.source=? AND s.path=?",
                (source, _path(path)),
            ).fetchone()
        return _asset(row) if row else None

    def add_asset(
        self, sha256: str, size: int, relpath: str, info: Probe, source: str, path: str
    ) -> bool:
        """Record a new asset; False when these bytes were already known."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO assets (sha256, size, kind, format, relpath, captured_at,"
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
            return cur.rowcount == 1

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
        (targets, number of assets, bytes).  Few groups, whatever the catalog's size."""
        with self._lock:
            rows = self._db.execute(
                "SELECT held, count(*), sum(size) FROM assets GROUP BY held"
            ).fetchall()
        return [
            (frozenset(r[0].split("\0")) if r[0] else frozenset(), int(r[1]), int(r[2]))
            for r in rows
        ]

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
    ) -> None:
        """Record a verified replica; ``temp`` (the copy's temporary, now gone) is
        forgotten in the same transaction."""
        with self._tx() as db:
            if temp is not None:
                db.execute("DELETE FROM temp_files WHERE target=? AND relpath=?", (target, temp))
            db.execute(
                "INSERT OR REPLACE INTO replicas (asset, target, state, relpath, size, verified_at,"
                " method) VALUES (?,?,'verified',?,?,?,?)",
                (sha256, target, relpath, size, now_iso(), str(method)),
            )
            db.execute(f"UPDATE assets SET held = {_HELD.format(asset='?')} WHERE sha256 = ?",
                       (sha256, sha256))  # fmt: skip

    def replica_failed(
        self, sha256: str, target: str, error: str, base: float, cap: float
    ) -> float:
        """Record a failed copy; returns the delay before the next try (doubling, capped)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT attempts, state FROM replicas WHERE asset=? AND target=?", (sha256, target)
            ).fetchone()
            if row and row["state"] == "verified":
                return 0.0
            attempts = (row["attempts"] if row else 0) + 1
            delay = min(cap, base * 2 ** (attempts - 1))
            db.execute(
                "INSERT OR REPLACE INTO replicas (asset, target, state, attempts, next_try, error)"
                " VALUES (?,?,'failed',?,?,?)",
                (sha256, target, attempts, time.time() + delay, error),
            )
            return float(delay)

    def pending(self, target: str, limit: int, now: float) -> list[Asset]:
        """Assets with no verified replica on ``target`` whose retry time has come."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM assets a LEFT JOIN replicas r ON r.asset=a.sha256 AND r.target=?"
                " WHERE r.asset IS NULL OR (r.state='failed' AND r.next_try<=?)"
                " ORDER BY a.added_at LIMIT ?",
                (target, now, limit),
            ).fetchall()
        return [_asset(r) for r in rows]

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
        """Every verified replica on a target, in path order, as its manifest has it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.asset, r.relpath, a.size, a.captured_at FROM replicas r"
                " JOIN assets a ON a.sha256=r.asset WHERE r.target=? AND"
                " r.state='verified' ORDER BY r.relpath",
                (target,),
            ).fetchall()
        for r in rows:
            yield ManifestEntry(r[0], r[1], r[2], r[3])

    def verified_count(self, target: str) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT count(*) FROM replicas WHERE target=? AND state='verified'", (target,)
                ).fetchone()[0]
            )

    # -- sources --------------------------------------------------------------------

    def source_files(self, source: str) -> dict[str, SourceFile]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, asset FROM source_files WHERE source=?", (source,)
            ).fetchall()
        return {_unpath(r[0]): SourceFile(r[1], r[2], r[3]) for r in rows}

    def source_file(self, source: str, path: str) -> SourceFile | None:
        with self._lock:
            r = self._db.execute(
                "SELECT size, mtime_ns, asset FROM source_files WHERE source=? AND path=?",
                (source, _path(path)),
            ).fetchone()
        return SourceFile(r[0], r[1], r[2]) if r else None

    def saw_source_file(
        self, source: str, path: str, size: int, mtime_ns: int, sha256: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO source_files VALUES (?,?,?,?,?,?)",
                (source, _path(path), size, mtime_ns, sha256, now_iso()),
            )

    def source_paths(self, sha256: str) -> list[tuple[str, str, int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, path, size, mtime_ns FROM source_files WHERE asset=?", (sha256,)
            ).fetchall()
        return [(r[0], _unpath(r[1]), r[2], r[3]) for r in rows]

    # -- targets --------------------------------------------------------------------

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

    def add_temps(self, temps: list[tuple[str, str]]) -> None:
        """Record (target, temp key) of copies being written, in one transaction."""
        if temps:
            with self._tx() as db:
                db.executemany("INSERT OR IGNORE INTO temp_files VALUES (?,?)", temps)

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

    def sync_device_files(self, udid: str, listing: list[DeviceFile]) -> list[DeviceFile]:
        """Record what is on the phone now; returns the files still to import (new,
        changed since they were imported, or not imported yet)."""
        todo: list[DeviceFile] = []
        with self._tx() as db:
            known = {
                r[0]: (r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT path, size, mtime_ns, asset FROM device_files WHERE udid=?", (udid,)
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
                changed.append((udid, f.path, f.size, f.mtime_ns, f.taken_at))
                todo.append(f)
            db.executemany("INSERT OR REPLACE INTO device_files (udid, path, size, mtime_ns,"
                           " taken_at) VALUES (?,?,?,?,?)", changed)  # fmt: skip
            gone = [(udid, p) for p in known if p not in here]
            db.executemany("DELETE FROM device_files WHERE udid=? AND path=?", gone)
        return todo

    def device_file_done(self, udid: str, path: str, asset: str | None, problem: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE device_files SET asset=?, problem=? WHERE udid=? AND path=?",
                (asset, problem, udid, path),
            )

    def device_files(self, udid: str) -> list[tuple[DeviceFile, str | None, str, str]]:
        """The phone's last listing: (file, asset or None, problem, targets holding a
        verified replica, NUL-separated)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.path, f.size, f.mtime_ns, f.taken_at, f.asset, f.problem,"
                " coalesce(a.held, '') FROM device_files f LEFT JOIN assets a"
                " ON a.sha256 = f.asset WHERE f.udid=? ORDER BY f.taken_at, f.path",
                (udid,),
            ).fetchall()
        return [(DeviceFile(r[0], r[1], r[2], r[3]), r[4], r[5], r[6]) for r in rows]


def _asset(row: sqlite3.Row) -> Asset:
    return Asset(row["sha256"], row["size"], Kind(row["kind"]), row["relpath"], row["captured_at"])
