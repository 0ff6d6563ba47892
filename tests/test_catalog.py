"""The catalog's schema and its bookkeeping."""

from __future__ import annotations

import hashlib
import sqlite3
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest

from bench.scale import fill_catalog
from photod.catalog import MIGRATIONS, Catalog
from photod.errors import CatalogDamaged, PhotodError
from photod.models import Kind, ManifestEntry, Probe, VerifyMethod
from tests.conftest import damage_catalog

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
    expected = {frozenset({"lib", "t7"}): 1, frozenset({"lib"}): 1, frozenset(): 1}
    c = Catalog(path)
    assert len(MIGRATIONS) == c.schema_version
    assert (3, 30) == c.counts()
    assert expected == {held: n for held, n, _ in c.holdings()}
    c.add_replica("2" * 64, "t7", "k/2.jpg", 10, VerifyMethod.READBACK)
    assert {frozenset({"lib", "t7"}): 1, frozenset({"lib"}): 1, frozenset({"t7"}): 1} == {
        held: n for held, n, _ in c.holdings()
    }
    c.close()


def test_a_reader_of_a_catalog_from_before_kept_holdings_counts_them(tmp_path: Path) -> None:
    """A command that only reads does not bring the catalog up to date (the daemon
    does, at its start): on a catalog from before the holdings were kept (v8), it
    counts them."""
    path = tmp_path / "c.sqlite"
    c = Catalog(path)
    c.add_asset("a" * 64, 10, "k/1.jpg", INFO, "in", "1.jpg")
    c.add_asset("b" * 64, 20, "k/2.jpg", INFO, "in", "2.jpg")
    c.add_replica("a" * 64, "lib", "k/1.jpg", 10, VerifyMethod.READBACK)
    c.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE holdings; PRAGMA user_version=8;")
    db.close()
    reader = Catalog(path, readonly=True)
    assert 8 == reader.schema_version
    assert {(frozenset({"lib"}), 1, 10), (frozenset(), 1, 20)} == set(reader.holdings())
    reader.close()


def test_file_times_past_64_bit_nanoseconds_are_kept_exactly(tmp_path: Path) -> None:
    """A file time ext4 can hold (2446: 1.5e19 ns) or tmpfs (the year 10000) does not fit
    SQLite's 64-bit INTEGER: it is kept exactly all the same, and compares equal."""
    c = Catalog(tmp_path / "c.sqlite")
    for i, ns in enumerate((15_032_385_535_000_000_000, 253_402_300_800 * 10**9, -(2**64))):
        c.saw_source_file("in", f"{i}.jpg", 5, ns, "a" * 64)
        with c.source_stats("in") as known:
            assert ns == known([f"{i}.jpg"])[f"{i}.jpg"][1]
        assert ns == c.source_file("in", f"{i}.jpg").mtime_ns  # type: ignore[union-attr]
    c.close()


def test_a_damaged_catalog_is_one_clear_error(tmp_path: Path) -> None:
    """A catalog cut in half is CatalogDamaged (exit 65) naming the file and the fix,
    not SQLite's bare error; quick_check finds flipped bytes in a table's pages."""
    c = Catalog(tmp_path / "c.sqlite")
    for i in range(300):
        c.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", INFO, "in", f"{i}.jpg")
    c.close()
    data = (tmp_path / "c.sqlite").read_bytes()
    (tmp_path / "cut.sqlite").write_bytes(data[: len(data) // 2])
    with pytest.raises(CatalogDamaged) as err:
        cut = Catalog(tmp_path / "cut.sqlite")
        cut.counts()
    assert 65 == err.value.exit_code
    assert str(tmp_path / "cut.sqlite") in str(err.value) and "catalog rebuild" in str(err.value)

    (tmp_path / "flip.sqlite").write_bytes(data)
    damage_catalog(tmp_path / "flip.sqlite", "assets")
    c = Catalog(tmp_path / "flip.sqlite")
    assert "" != c.sound()
    c.close()
    assert "" == Catalog(tmp_path / "c.sqlite").sound()


def test_what_a_scan_compares_is_read_beside_the_lock_and_its_damage_is_the_catalogs(
    tmp_path: Path,
) -> None:
    """The folder's files as recorded, read on a connection of its own (a scan's read of
    a large library no longer holds every other call): the same answer, from a state
    dir whose path has characters a URI gives meaning to; damage met there is one clear
    error and the catalog's ``problem``, which the daemon acts on."""
    where = tmp_path / "state #1?x=%41"
    where.mkdir()
    c = Catalog(where / "c.sqlite")
    for i in range(300):
        c.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", INFO, "in", f"{i}.jpg")
        c.saw_source_file("in", f"ü/{i}.jpg", 10 + i, 1000 + i, f"{i:064x}")
    with c.source_stats("in") as known:
        asked = ["other.jpg"] + [f"ü/{i}.jpg" for i in range(300)]
        assert {f"ü/{i}.jpg": (10 + i, 1000 + i) for i in range(300)} == known(asked)
    assert c.problem is None
    c.close()
    damage_catalog(where / "c.sqlite", "source_files")
    c = Catalog(where / "c.sqlite")
    with pytest.raises(CatalogDamaged) as err, c.source_stats("in") as known:
        known(["ü/1.jpg"])
    assert 65 == err.value.exit_code and c.problem is not None
    c.close()


def test_generations_count_up_from_what_the_targets_hold(tmp_path: Path) -> None:
    """Each snapshot is one more generation, above any the targets already hold."""
    c = Catalog(tmp_path / "c.sqlite")
    assert (0, 1, 2, 8) == (c.generation, c.next_generation(), c.next_generation(),
                            c.next_generation(at_least=7))  # fmt: skip
    c.close()
    assert 8 == Catalog(tmp_path / "c.sqlite").generation


def test_the_kept_holdings_are_what_counting_every_asset_gives(tmp_path: Path) -> None:
    """`photod status` reads the assets and bytes each set of targets holds as the
    catalog keeps them (v9), not counted: after any sequence of new assets, copies
    made, adopted and found bad, they are what counting every asset gives."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    op = st.tuples(st.sampled_from(["add", "copy", "adopt", "bad"]), st.integers(0, 5),
                   st.sampled_from(["lib", "t7", "cloud"]))  # fmt: skip
    runs = iter(range(10**6))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(op, max_size=25))
    def check(ops: list[tuple[str, int, str]]) -> None:
        path = tmp_path / f"c{next(runs)}.sqlite"
        c = Catalog(path)
        for what, i, target in ops:
            sha, size = f"{i:x}" * 64, 10 + i
            if what == "add":
                c.add_asset(sha, size, f"k/{i}.jpg", INFO, "in", f"{i}.jpg")
            elif what == "adopt":
                c.adopt(
                    ManifestEntry(sha, f"k/{i}.jpg", size, ""), target, Kind.PHOTO, "jpeg", "in"
                )
            elif c.asset(sha) is not None and what == "copy":
                c.add_replica(sha, target, f"k/{i}.jpg", size, VerifyMethod.READBACK)
            elif c.asset(sha) is not None:
                c.replica_bad(sha, target, "corrupt", "sha256")
        kept = sorted((tuple(sorted(h)), n, b) for h, n, b in c.holdings())
        c.close()
        db = sqlite3.connect(path)
        rows = db.execute("SELECT held, count(*), sum(size) FROM assets GROUP BY held").fetchall()
        db.close()
        assert (
            sorted((tuple(sorted(filter(None, h.split("\0")))), n, b) for h, n, b in rows) == kept
        )

    check()


def test_a_photo_named_as_one_adopted_in_between_is_recorded_beside_it(tmp_path: Path) -> None:
    """An ingest looks for a free name, and another thread adopts a different photo of
    that name from a target's list before the ingest records its own: the ingest's
    photo is still recorded (the catalog names it in the transaction that records it),
    beside the other, and its source file with it."""
    c = Catalog(tmp_path / "c.sqlite")
    key = "2024/2024-01-01/IMG_0001.JPG"
    assert not c.relpath_taken(key)  # (what the ingest saw)
    c.adopt(ManifestEntry("b" * 64, key, 10, ""), "nas", Kind.PHOTO, "jpeg", "target:nas")
    named = c.add_asset("a" * 64, 10, key, INFO, "in", "IMG_0001.JPG", 1)
    assert named == "2024/2024-01-01/IMG_0001~aaaaaaaa.JPG"
    asset = c.asset("a" * 64)
    assert asset is not None and asset.relpath == named
    assert c.asset_at_source("in", "IMG_0001.JPG") == asset
    assert c.add_asset("a" * 64, 10, key, INFO, "in", "IMG_0001.JPG", 1) is None  # (known)
    c.close()


def test_a_name_only_case_tells_apart_is_taken(tmp_path: Path) -> None:
    """A library path that only case tells apart from an asset's is taken (ASCII or
    not, its folder's case too, where a disk blind to case merges the folders); a
    path in another folder or of another name is not."""
    c = Catalog(tmp_path / "c.sqlite")
    names = ["2024/2024-01-01/IMG_0001.JPG", "2024/2024-01-01/Été.jpg", "Inbox/a.jpg",
             "\U0010ffffA.jpg"]  # fmt: skip
    for i, name in enumerate(names):
        assert c.add_asset(f"{i:064x}", 10, name, INFO, "in", name)
    assert all(c.relpath_taken(name) for name in names)  # (the very path, too)
    assert c.relpath_taken("2024/2024-01-01/img_0001.jpg")
    assert c.relpath_taken("2024/2024-01-01/éTÉ.JPG")
    assert c.relpath_taken("inbox/A.JPG")
    assert c.relpath_taken("\U0010ffffa.jpg")  # (at the top, the last letter there is)
    assert not c.relpath_taken("\U0010ffffa.jpeg")
    assert not c.relpath_taken("2024/2024-01-02/img_0001.jpg")
    assert not c.relpath_taken("2024/2024-01-01/img_0002.jpg")
    c.close()


def test_every_copy_on_a_target_is_read_a_piece_at_a_time(tmp_path: Path) -> None:
    """A relist, the scrub, an encrypted target's first check and the rebuild go
    through every verified copy on a target: the catalog read them all at once (a
    million photos: 400 MB, on a small computer beside everything else).  Read a
    thousand at a time, what it holds stays the same however many there are, and each
    copy on that target is still given once."""
    n = 100_000
    rows = [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG", 1000 + i,
             10**18 + i) for i in range(n)]  # fmt: skip
    fill_catalog(tmp_path / "catalog.sqlite", rows, ["nas", "usb"])
    catalog = Catalog(tmp_path / "catalog.sqlite")
    tracemalloc.start()
    try:
        count = sum(1 for _ in catalog.verified_on("nas"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == count
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"
    given = [(e.sha256, e.key, e.size) for e in catalog.verified_on("nas")]
    assert sorted(given) == sorted((sha, f"lib/{rel}", size) for sha, rel, size, _ in rows)


def test_the_catalogs_journal_shrinks_again_after_a_large_import(tmp_path: Path) -> None:
    """While photos come in by the thousand and something reads the catalog all along
    (the dashboard, `photod status`, the scan), SQLite cannot fold its journal (the
    catalog.sqlite-wal file) back into the catalog, and it grows.  It never shrank
    again: the daemon's catalog kept a journal as large as it had ever been, for weeks,
    beside a catalog a fraction of its size.  Once the reads end, it is small again."""
    db = tmp_path / "catalog.sqlite"
    wal = tmp_path / "catalog.sqlite-wal"
    c = Catalog(db)
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM assets").fetchone()  # (its view is kept)
    for i in range(1000):
        c.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", INFO, "in", f"{i}.jpg", mtime_ns=i)
    grown = wal.stat().st_size
    reader.close()
    for i in range(1000, 1003):  # (the journal is folded back, then begun again)
        c.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", INFO, "in", f"{i}.jpg", mtime_ns=i)
    try:
        assert grown > 30 * 1024**2, grown  # (the test's premise)
        assert wal.stat().st_size <= 8 * 1024**2, f"{wal.stat().st_size / 1024**2:.0f} MB"
        assert 1003 == c.counts()[0]
    finally:
        c.close()


def test_a_reader_of_a_catalog_from_before_phone_clocks_lists_its_albums(tmp_path: Path) -> None:
    """A catalog held as it is (one photod may read but not write: the dashboard reads
    it, nothing brings it up to date) from before each library read kept the phone's
    clock (v9): its phones' albums are listed all the same, not "no such column"."""
    from photod.albums import albums
    from photod.catalog import LibraryRows
    from photod.models import PolicyRule

    path = tmp_path / "c.sqlite"
    c = Catalog(path)
    album = ("A1", '["Trips","Rome"]', False, '["U1"]')
    c.save_library("UDID1", LibraryRows("digest", "schema", [], [("p.jpg", "U1", None)], [album]))
    c.close()
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE libraries DROP COLUMN changed_at; PRAGMA user_version=9;")
    db.close()
    reader = Catalog(path, readonly=True)
    try:
        assert 9 == reader.schema_version
        assert ["Trips/Rome"] == [a.name for a in albums(reader, PolicyRule(0, 0, 0), {})]
    finally:
        reader.close()
