"""The catalog and the targets' lists in step (ledgers.py), and the list format
(records.py): real catalogs, memory targets."""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
from datetime import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from photod import ledgers, snapshot
from photod.catalog import Catalog
from photod.errors import PhotodError, TargetUnavailable
from photod.fleet import TargetState
from photod.models import Kind, ManifestEntry, Media, Probe, TargetInfo
from photod.targets.agekeygen import keygen
from photod.targets.crypt import CryptTarget
from photod.targets.cryptkeys import Keys
from photod.targets.memory import MemoryTarget
from photod.targets.records import (
    Installation,
    Records,
    Seen,
    index_line,
    parse_index,
    parse_plain,
    pick,
    plain_lines,
    snapshots_in,
)

ME = Installation("ab" * 16, "laptop")
INFO = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)


def listed_target(n: int) -> tuple[MemoryTarget, Records, list[ManifestEntry]]:
    """A target holding n photos that this installation's list names."""
    t = MemoryTarget("nas")
    records = Records(t, ME)
    entries = []
    for i in range(n):
        data = f"photo {i}".encode()
        key = f"2024/IMG_{i}.JPG"
        t.objects[key] = data
        entries.append(ManifestEntry(hashlib.sha256(data).hexdigest(), key, len(data)))
    records.ledger.append(entries)
    records.ledger.flush()
    return t, records, entries


def test_catch_up_takes_back_what_the_list_holds_and_the_catalog_forgot(tmp_path: Path) -> None:
    """Copies the catalog forgot (lost commits) are read back, hashed and recorded from
    the target's list; a target that fails half way leaves the segment to be read again,
    so no copy is forgotten for good."""
    t, records, entries = listed_target(5)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    reads = 0
    real_open = t.open

    def flaky(key: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        if reads == 3:
            t.available = False  # the drive goes on the third read
        return real_open(key)

    t.open = flaky  # type: ignore[method-assign]
    with pytest.raises(TargetUnavailable):
        ledgers.catch_up(catalog, "nas", records, threading.Event())
    assert set() == catalog.own_segments("nas")
    t.available = True
    assert 3 == ledgers.catch_up(catalog, "nas", records, threading.Event())
    assert {e.sha256 for e in entries} == {a.sha256 for a in catalog.assets()}
    assert 0 == ledgers.catch_up(catalog, "nas", records, threading.Event())


def test_catch_up_takes_off_only_a_line_whose_name_holds_a_photo_its_list_names_there(
    tmp_path: Path,
) -> None:
    """A clone's photo took the name of one of this computer's copies, and the one list
    both write names each there; a catalog that knows neither (rebuilt from the clone's
    snapshot) reads them back: this computer's line goes, the clone's stays.  A line
    whose file holds bytes no line names (rot) stays: `sha256sum -c` is to show it."""

    def line(data: bytes, key: str) -> ManifestEntry:
        return ManifestEntry(hashlib.sha256(data).hexdigest(), key, len(data))

    t = MemoryTarget("nas")
    records = Records(t, ME)
    t.objects["2024/IMG_1.JPG"] = b"the clone's photo"
    t.objects["2024/IMG_2.JPG"] = b"rotten"
    ours = line(b"our photo", "2024/IMG_1.JPG")
    kept = [line(b"the clone's photo", "2024/IMG_1.JPG"), line(b"a photo", "2024/IMG_2.JPG")]
    for e in (ours, *kept):  # (one segment each, as each computer wrote its own)
        records.ledger.append([e])
        records.ledger.flush()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert 1 == ledgers.catch_up(catalog, "nas", records, threading.Event())
    lines = {(e.sha256, e.key) for e in kept}
    assert lines == {(e.sha256, e.key) for e in records.ledger.entries()}
    assert 0 == ledgers.catch_up(catalog, "nas", records, threading.Event())
    assert lines == {(e.sha256, e.key) for e in records.ledger.entries()}


def test_names_with_unicode_line_separators_survive_the_list() -> None:
    """A key holding U+2028, U+2029 or U+0085 (a legal file name) reads back whole from
    both list formats: lines split on newlines only."""
    key = "2024/a\u2028b\u2029c\u0085d.jpg"
    e = ManifestEntry("a" * 64, key, 5, "2024-01-01T00:00:00", 1_700_000_000_000_000_001)
    assert [("a" * 64, key)] == [(x.sha256, x.key) for x in parse_plain(plain_lines([e]))]
    assert [e] == parse_index(index_line("data/ab/cd", e).encode())


def test_a_rebuild_never_takes_another_computer_of_the_same_name() -> None:
    """Two computers both called "raspberrypi": a known installation takes only its own
    records (by id); a new one takes them by name; several of one name need --instance."""
    mine, theirs = (
        Seen("installations/pi.abababababab", "pi", "abababababab"),
        Seen("installations/pi.cdcdcdcdcdcd", "pi", "cdcdcdcdcdcd"),
    )
    me = Installation("ab" * 16, "pi")
    assert mine == pick([theirs, mine], me, None)
    with pytest.raises(PhotodError, match="keeps no records here"):
        pick([theirs], me, None)
    assert theirs == pick([theirs], None, "pi")
    with pytest.raises(PhotodError, match="several installations"):
        pick([theirs, mine], None, "pi")
    assert theirs == pick([theirs, mine], None, "pi.cdcdcdcdcdcd")


def test_a_snapshot_with_a_damaged_body_is_skipped_for_the_one_before(tmp_path: Path) -> None:
    """A snapshot whose gzip body is damaged (zlib's error, not a bad CRC) is skipped
    with an event, and the rebuild takes the generation before."""
    t = MemoryTarget("nas")
    state = TargetState(t, TargetInfo("nas", Media.NAS, False), records=Records(t, ME),
                        available=True)  # fmt: skip
    catalog = Catalog(tmp_path / "catalog.sqlite")
    for i in range(2):
        sha = f"{i:064x}"
        catalog.add_asset(sha, 10, f"2024/{i}.jpg", INFO, "in", f"{i}.jpg")
        snapshot.write_all(catalog, {"nas": state}, tmp_path, "plan", {})
    newest, older = snapshots_in(t, ME.folder)[:2]
    body = bytearray(gzip.compress(b"SQLite format 3\0" + b"x" * 5000))
    body[20:40] = b"\xff" * 20  # a bad deflate stream under a good gzip header
    t.meta[newest.name] = bytes(body)
    out = tmp_path / "new" / "catalog.sqlite"
    out.parent.mkdir()
    assert older.name == snapshot.rebuild(out, "nas", state, ME).from_snapshot


def test_a_stray_wal_of_a_finished_rebuild_is_never_replayed(tmp_path: Path) -> None:
    """A WAL left beside a finished rebuild (a kill at the wrong moment) is removed
    before that rebuild is put in place, never replayed into it."""
    db = tmp_path / "catalog.sqlite"
    Catalog(tmp_path / "catalog.sqlite.rebuilt").close()
    (tmp_path / "catalog.sqlite.rebuilt-wal").write_bytes(b"stray")
    assert "put in place" in snapshot.finish_interrupted(db)
    assert not (tmp_path / "catalog.sqlite.rebuilt-wal").exists() and db.exists()


def test_a_clones_file_that_does_not_decrypt_when_read_again_keeps_the_line_and_the_target(
    tmp_path: Path,
) -> None:
    """On an encrypted target (real age), a file at one of this computer's names holds
    other bytes; read again, to see whether a clone's list names them, its bytes do not
    decrypt (damaged on the way).  That is no clone's photo and no fault of the link:
    the line stays, one clear event says why, and the catch-up goes on (the target was
    called unavailable, for "cannot decrypt", and the catch-up tried again and again)."""
    keygen(tmp_path / "identity.txt")
    inner = MemoryTarget("nas")
    t = CryptTarget(inner, Keys(tmp_path / "identity.txt"))
    key, theirs = "2024/IMG_1.JPG", b"the clone's photo"
    w = t.open_writer(key)
    w.write(theirs)
    w.commit(key, hashlib.sha256(theirs).hexdigest())
    records = Records(t, ME)
    ours = ManifestEntry(hashlib.sha256(b"our photo").hexdigest(), key, 9)
    clones = ManifestEntry(hashlib.sha256(theirs).hexdigest(), key, len(theirs))
    for e in (ours, clones):  # (one segment each, as each computer wrote its own)
        records.ledger.append([e])
        records.ledger.flush()
    stored, reads = t.keys_.object_name(key), 0
    [first] = records.ledger.read(min(records.ledger.segments()))  # (the segments' order)
    damaged = 2 if first == ours else 3  # our line's second read
    real_open = inner.open

    def damaging(name: str):  # type: ignore[no-untyped-def]
        """Our line's second read of the file comes back with one byte changed."""
        nonlocal reads
        if name != stored:
            return real_open(name)
        reads += 1
        data = bytearray(inner.objects[name])
        if reads == damaged:
            data[-20] ^= 0xFF
        return io.BytesIO(bytes(data))

    inner.open = damaging  # type: ignore[method-assign]
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with capture_logs() as logs:
        assert 1 == ledgers.catch_up(catalog, "nas", records, threading.Event())
    [told] = [e for e in logs if e["event"] == "replica_not_recovered"]
    assert (ours.sha256, key) == (told["asset"], told["path"])
    assert told["reason"].startswith(ledgers.OTHER_BYTES) and "cannot decrypt" in told["reason"]
    assert {(ours.sha256, key), (clones.sha256, key)} == {
        (e.sha256, e.key) for e in records.ledger.entries()
    }


def test_a_scrub_mends_a_segment_whose_header_is_damaged_and_keeps_those_another_key_sealed(
    tmp_path: Path,
) -> None:
    """On an encrypted target (real age), this computer's two index segments: with the
    key they were written with, one whose header's stanza has a byte flipped (age says
    "no matching keys", as for another key's) is damaged, since the other opens: it is
    deleted (`list_mended`).  With another key in its place (the identity file replaced),
    none opens: every segment is kept (`list_unmended`), none written again with the
    wrong key (review58b: the scrub deleted them)."""
    keygen(tmp_path / "identity.txt")
    keygen(tmp_path / "other.txt")
    inner = MemoryTarget("nas")
    t = CryptTarget(inner, Keys(tmp_path / "identity.txt"))
    records = Records(t, ME)
    for n in range(2):
        records.ledger.append([ManifestEntry(hashlib.sha256(b"%d" % n).hexdigest(), f"{n}.jpg", 1)])
        records.ledger.flush()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    lock = threading.Lock()
    before = dict(inner.meta)
    wrong = Records(CryptTarget(inner, Keys(tmp_path / "other.txt")), ME)
    with capture_logs() as logs:
        assert 0 == ledgers.mend(catalog, "nas", wrong, lock)
    assert before == inner.meta
    assert ["list_unmended"] == [e["event"] for e in logs if e["event"].startswith("list_")]

    first = min(records.ledger.segments())
    lines = inner.meta[first].split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"-> X25519")) + 1
    lines[at] = lines[at][:10] + (b"B" if lines[at][10:11] == b"A" else b"A") + lines[at][11:]
    inner.meta[first] = b"\n".join(lines)
    with capture_logs() as logs:
        assert 1 == ledgers.mend(catalog, "nas", records, lock)
    assert first not in records.ledger.segments() and 1 == len(records.ledger.segments())
    assert ["list_mended"] == [e["event"] for e in logs if e["event"].startswith("list_")]
