"""The catalog's schema and its bookkeeping."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from photod.catalog import MIGRATIONS, Catalog
from photod.errors import PhotodError
from photod.models import Kind, Probe, VerifyMethod

INFO = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)


def test_new_catalog_is_at_latest_version_in_wal(tmp_path: Path) -> None:
    """A new catalog is created at the newest schema version, in WAL mode."""
    c = Catalog(tmp_path / "c.sqlite")
    assert len(MIGRATIONS) == c.schema_version
    c.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert "wal" == db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()


def test_newer_catalog_is_refused(tmp_path: Path) -> None:
    """A catalog written by a newer photod is refused with a clear message."""
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(PhotodError, match="newer than this photod"):
        Catalog(tmp_path / "c.sqlite")


def test_asset_is_keyed_by_hash(tmp_path: Path) -> None:
    """The same hash is one asset, whatever source or path brings it."""
    c = Catalog(tmp_path / "c.sqlite")
    assert c.add_asset("a" * 64, 10, "k/1.jpg", INFO, "in", "1.jpg")
    assert not c.add_asset("a" * 64, 10, "k/2.jpg", INFO, "phone", "2.jpg")
    assert (1, 10) == c.counts()
    c.close()


def test_pending_and_backoff(tmp_path: Path) -> None:
    """An asset is pending on a target until verified there; a failure waits its backoff."""
    c = Catalog(tmp_path / "c.sqlite")
    c.add_asset("a" * 64, 10, "k/1.jpg", INFO, "in", "1.jpg")
    assert ["a" * 64] == [a.sha256 for a in c.pending("t", 10, now=0)]
    delay = c.replica_failed("a" * 64, "t", "offline", base=30, cap=3600)
    assert 30 == delay
    assert 60 == c.replica_failed("a" * 64, "t", "offline", base=30, cap=3600)
    assert [] == c.pending("t", 10, now=0)
    c.add_replica("a" * 64, "t", "k/1.jpg", 10, VerifyMethod.READBACK)
    assert (0, [frozenset({"t"})]) == (c.pending_count("t"), [h[0] for h in c.holdings()])
    c.close()


def test_v1_catalog_migrates_and_keeps_its_holdings(tmp_path: Path) -> None:
    """A catalog written by the first schema is upgraded in place: nothing is lost, and
    status still sees which targets hold each asset."""
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
    for i, held in enumerate([("lib", "t7"), ("lib",), ()]):
        db.execute(
            "INSERT INTO assets VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"{i}" * 64,
                10,
                "photo",
                "jpeg",
                f"k/{i}.jpg",
                "2024-01-01",
                "exif",
                1,
                "",
                "in",
                f"{i}.jpg",
                "x",
            ),
        )
        for t in held:
            db.execute(
                "INSERT INTO replicas (asset, target, state, relpath, size, verified_at, method)"
                " VALUES (?,?,'verified',?,10,'x','readback')",
                (f"{i}" * 64, t, f"k/{i}.jpg"),
            )
    db.commit()
    db.close()
    c = Catalog(path)
    assert len(MIGRATIONS) == c.schema_version
    assert (3, 30) == c.counts()
    expected = {frozenset({"lib", "t7"}): 1, frozenset({"lib"}): 1, frozenset(): 1}
    assert expected == {held: n for held, n, _ in c.holdings()}
    c.add_replica("2" * 64, "t7", "k/2.jpg", 10, VerifyMethod.READBACK)
    assert {frozenset({"lib", "t7"}): 1, frozenset({"lib"}): 1, frozenset({"t7"}): 1} == {
        held: n for held, n, _ in c.holdings()
    }
    c.close()
