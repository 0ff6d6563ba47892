"""Catalog snapshots are generations: a new one never stands in for a newer, larger or
sound one, and a rebuild takes the newest good one.  Real catalogs, memory targets."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from photod import instance, snapshot
from photod.catalog import Catalog
from photod.errors import CatalogDamaged
from photod.fleet import TargetState
from photod.models import Kind, ManifestEntry, Media, Probe, TargetInfo, VerifyMethod
from photod.targets.memory import MemoryTarget
from photod.targets.records import Installation, Records, snapshots_in
from tests.conftest import damage_catalog

ME = Installation("ab" * 16, "laptop")
INFO = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)


def target(t: MemoryTarget | None = None) -> TargetState:
    t = t or MemoryTarget("nas")
    return TargetState(t, TargetInfo("nas", Media.NAS, False), records=Records(t, ME),
                       available=True)  # fmt: skip


def grow(catalog: Catalog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        sha = f"{i:064x}"
        catalog.add_asset(sha, 10, f"2024/{i}.jpg", INFO, "in", f"{i}.jpg")
        catalog.add_replica(sha, "nas", f"2024/{i}.jpg", 10, VerifyMethod.READBACK)


def write(catalog: Catalog, states: dict[str, TargetState], tmp: Path) -> list[str]:
    return snapshot.write_all(catalog, states, tmp, "plan", {"nas": "shared plan"})


def test_each_snapshot_is_a_generation_and_the_newest_five_stay(tmp_path: Path) -> None:
    """Every snapshot is one more generation with its photo count in its name; the
    newest five are kept; the state dir remembers the last one; the target's shared
    recovery document is written once."""
    catalog = Catalog(tmp_path / "catalog.sqlite")
    states = {"nas": target()}
    for i in range(7):
        grow(catalog, 1, start=i)
        assert ["nas"] == write(catalog, states, tmp_path)
    t = states["nas"].target
    snaps = snapshots_in(t, ME.folder)
    assert [(7, 7), (6, 6), (5, 5), (4, 4), (3, 3)] == [(s.generation, s.assets) for s in snaps]
    known = instance.load(tmp_path)
    assert known is not None and (7, 7, ME) == (known.generation, known.assets, known.installation)
    assert b"shared plan" == t.get_meta("RECOVERY.md")
    assert b"plan" == t.get_meta(f"{ME.folder}/RECOVERY.md")


def test_a_smaller_or_empty_catalog_writes_no_snapshot_over_a_larger_one(tmp_path: Path) -> None:
    """A catalog that knows fewer photos than the target's newest snapshot (something
    is wrong with it) writes none there (`snapshot_refused`); an empty one writes none
    anywhere."""
    states = {"nas": target()}
    full = Catalog(tmp_path / "full" / "catalog.sqlite")
    grow(full, 3)
    assert ["nas"] == write(full, states, tmp_path)
    empty = Catalog(tmp_path / "empty" / "catalog.sqlite")
    assert [] == write(empty, states, tmp_path)
    small = Catalog(tmp_path / "small" / "catalog.sqlite")
    grow(small, 1)
    assert [] == write(small, states, tmp_path)
    assert [3] == [s.assets for s in snapshots_in(states["nas"].target, ME.folder)]


def test_a_damaged_catalog_writes_no_snapshot(tmp_path: Path) -> None:
    """A catalog whose pages SQLite finds unsound never reaches a target."""
    db = tmp_path / "catalog.sqlite"
    catalog = Catalog(db)
    grow(catalog, 200)
    catalog.close()
    damage_catalog(db, "replicas")
    states = {"nas": target()}
    with pytest.raises(CatalogDamaged):
        write(Catalog(db), states, tmp_path)
    assert [] == snapshots_in(states["nas"].target, ME.folder)


@pytest.mark.parametrize("folder", ["Backups #2", "state?x=1", "photod%41"])
def test_a_state_dir_named_with_uri_characters_snapshots_and_reads_its_own_catalog(
    tmp_path: Path, folder: str
) -> None:
    """A state dir whose name holds '#', '?' or '%': its catalog's snapshot is proved
    sound and reaches the target (its check opened a cut path, made an empty database
    there and called the catalog damaged), the dashboard's read-only catalog is this
    one, and nothing is made outside the state dir."""
    state = tmp_path / folder
    state.mkdir()
    catalog = Catalog(state / "catalog.sqlite")
    grow(catalog, 3)
    states = {"nas": target()}
    write(catalog, states, state)
    assert 1 == len(snapshots_in(states["nas"].target, ME.folder))
    catalog.close()
    assert 3 == Catalog(state / "catalog.sqlite", readonly=True).counts()[0]
    assert [state] == list(tmp_path.iterdir())


def test_the_rebuild_takes_the_newest_good_generation(tmp_path: Path) -> None:
    """With the newest snapshot damaged on the target, the rebuild takes the one
    before, adds what the list names beyond it, and counts on from the newest
    generation there (so its own next snapshot supersedes the damaged one)."""
    state = target()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    grow(catalog, 2)
    write(catalog, {"nas": state}, tmp_path)
    grow(catalog, 2, start=2)
    write(catalog, {"nas": state}, tmp_path)
    t = state.target
    assert isinstance(t, MemoryTarget)
    for i in range(4):
        t.objects[f"2024/{i}.jpg"] = f"photo {i}".encode()  # (hashes need not match here)
    newest = snapshots_in(t, ME.folder)[0]
    t.meta[newest.name] = b"not a snapshot"
    out = tmp_path / "new" / "catalog.sqlite"
    out.parent.mkdir()
    result = snapshot.rebuild(out, "nas", state, ME)
    assert snapshots_in(t, ME.folder)[1].name == result.from_snapshot
    assert newest.generation == result.generation
    assert (4, 2) == (result.assets, result.adopted)  # 2 from the snapshot, 2 read back


@pytest.mark.parametrize("beside", [True, False], ids=["clones-photo-beside", "nowhere"])
def test_a_rebuild_takes_a_file_its_list_names_twice_as_the_photo_it_holds(
    tmp_path: Path, beside: bool
) -> None:
    """A clone of this computer, writing under its id, listed its own photo at a name
    this one's photo holds (its copy went beside): the rebuild took the list's last
    line for the name, found other bytes, and left this one's photo out, counted
    lost.  The file is taken as whichever line's photo it holds; the clone's photo,
    adopted beside, is not lost either; found nowhere, it is counted and named."""
    state = target()
    t = state.target
    assert isinstance(t, MemoryTarget) and state.records is not None
    ours, theirs = b"the laptop's photo", b"the desktop's photo"
    a, b = (hashlib.sha256(x).hexdigest() for x in (ours, theirs))
    t.objects["2024/IMG_1.JPG"] = ours
    if beside:
        t.objects["2024/IMG_1 (2).JPG"] = theirs
    ledger = state.records.ledger
    clones = [ManifestEntry(b, "2024/IMG_1 (2).JPG", len(theirs), "2024-01-01T00:00:00")]
    ledger.append(
        [
            ManifestEntry(a, "2024/IMG_1.JPG", len(ours), "2024-01-01T00:00:00"),
            *(clones if beside else []),
            ManifestEntry(b, "2024/IMG_1.JPG", len(theirs), "2024-01-01T00:00:00"),
        ]
    )
    ledger.flush()  # (one segment: its lines in this order; segments' order is random)
    out = tmp_path / "new" / "catalog.sqlite"
    out.parent.mkdir()
    result = snapshot.rebuild(out, "nas", state, ME)
    if beside:
        assert (2, 2, 0, []) == (result.assets, result.adopted, result.lost, result.skipped)
    else:  # (named, as `photod logs --failures` shows it: rebuild_skipped)
        said = [f"2024/IMG_1.JPG: its list names {b[:12]} too, found nowhere"]
        assert (1, 1, 1, said) == (result.assets, result.adopted, result.lost, result.skipped)
    snapshot.swap_in(out)
    catalog = Catalog(out)
    assert ["2024/IMG_1.JPG"] == [r.relpath for r in catalog.replicas(a)]
    assert (["2024/IMG_1 (2).JPG"] if beside else []) == [r.relpath for r in catalog.replicas(b)]
    catalog.close()


def test_a_photo_listed_twice_and_gone_is_one_photo_lost(tmp_path: Path) -> None:
    """A crash between a compaction's two steps leaves a list's lines twice: a photo so
    listed, gone from the target, is one photo the rebuild could not give back, not two."""
    state = target()
    assert state.records is not None
    line = ManifestEntry("ab" * 32, "2024/IMG_2.JPG", 10, "2024-01-01T00:00:00")
    for _ in range(2):
        state.records.ledger.append([line])
        state.records.ledger.flush()
    out = tmp_path / "new" / "catalog.sqlite"
    out.parent.mkdir()
    result = snapshot.rebuild(out, "nas", state, ME)
    assert (0, 1) == (result.assets, result.lost)


def test_the_config_kept_on_the_targets_holds_no_secret(tmp_path: Path) -> None:
    """The config every target keeps for a restore is the config itself, each secret
    (an inline rclone password or token, a webhook URL) replaced by a mark saying to
    put it back; the recovery plan defines the rclone remote the same way."""
    import tomllib

    from photod import config, recovery

    path = tmp_path / "photod.toml"
    path.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n'
        f'[[sources]]\nname = "inbox"\ntype = "folder"\npath = "{tmp_path}/in"\n'
        '[[targets]]\nname = "nas"\ntype = "rclone"\nremote = "nas:photos"\n'
        '[targets.rclone_config]\ntype = "sftp"\nhost = "nas.local"\nuser = "anna"\n'
        'pass = "obscured-s3cr3t"\n'
        '[notify]\nwebhook = "https://ntfy.sh/t0ken-in-url"\n'
        f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
    )  # fmt: skip
    path.chmod(0o600)
    cfg = config.load(path)
    kept = recovery.kept_config(cfg)
    assert "s3cr3t" not in kept and "t0ken" not in kept
    data = tomllib.loads(kept)
    assert recovery.SECRET == data["targets"][0]["rclone_config"]["pass"]
    assert recovery.SECRET == data["notify"]["webhook"]
    assert "nas.local" == data["targets"][0]["rclone_config"]["host"]
    original = tomllib.loads(path.read_text())
    original["targets"][0]["rclone_config"]["pass"] = recovery.SECRET
    original["notify"]["webhook"] = recovery.SECRET
    assert original == data  # everything else as it was
    plan = recovery.render(cfg, 0, 0, {}, "now")
    assert (
        "[nas]\ntype = sftp\nhost = nas.local\nuser = anna\npass = <secret: put it back here>"
        in plan
    )
    assert "s3cr3t" not in plan and "RCLONE_CONFIG" in plan


# The digest of the recovery documents below at each format (``records.PLAN_FORMAT``).
RECOVERY_DOCUMENTS = {
    2: "cb99997436c02a837365f6b83629351bb5ecea163be55ece21829ec400087d29",
    3: "96048cd9ec60b39423fbb2bd527e43fb676ad30bb4c741a1cd13dadfe54a5112",
    4: "b2209c237cc13539bb910117d54fbbe49bb9fe0dff686553220373bc36a29406",
    5: "54854858da811b647ab2d1634cc853435b8047bdc2778f91295368d67585d635",
    6: "24536abc6e2f1e8b76671697fb3d1deff1280631dd5da6208b60df532c3407ab",
    7: "ec53f376376abaf6e77cc88b09538e289c6bbc45e0ccd686d199e26f507032c7",
    8: "44bd7f8185fb994f4f84712dc1a734a986e61a405be542c4ab4ecd5a8b096683",
    9: "1c970f301a30146252cd522fc9dcf22f7803c840e08364d21b29e1b9fcdd91e8",
    10: "22244212598a087d3b1a7b030e14bf05a58deb11e5f5c3207afec02179605e72",
    11: "aeba328d03c647dbd9db7a1191689825fbf42ef37e92e8e4c8b5ee6f2f3dcae5",
    12: "54c4acdab32082076c29476585f8151d06db7d41ad5b8c04b9715bd808251b74",
    13: "3735033a293ae62581f10c81bd324def75d0f676ebde5a954a27bc2af524c942",
}


def test_the_targets_recovery_document_changes_only_with_a_new_format(tmp_path: Path) -> None:
    """The document at a target's top is written once and replaced only by one of a
    higher format: a change to its steps without a new format never reaches a target
    that has one.  A family computer with a photod of a lower format leaves a newer
    document as it is (no two computers write it in turn)."""
    import hashlib

    from photod import config, recovery
    from photod.targets.records import PLAN, PLAN_FORMAT, PLAN_MARK, plan_format

    path = tmp_path / "photod.toml"
    path.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n'
        f'[[sources]]\nname = "inbox"\ntype = "folder"\npath = "{tmp_path}/in"\n'
        '[[targets]]\nname = "nas"\ntype = "local"\npath = "/srv/nas"\n'
        '[[targets]]\nname = "vault"\ntype = "local"\npath = "/media/vault"\nencrypt = true\n'
        '[[targets]]\nname = "cloud"\ntype = "s3"\nbucket = "family-photos"\nprefix = "p/"\n'
        'endpoint = "https://s3.example"\ncredentials_file = "/etc/photod/s3"\nencrypt = true\n'
        'offsite = true\n'
        '[[targets]]\nname = "box"\ntype = "rclone"\nremote = "box:photos"\n'
        '[targets.rclone_config]\ntype = "sftp"\nhost = "nas.local"\npass = "x"\n'
        '[encryption]\nidentity = "/etc/photod/key.txt"\n'
        f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
    )  # fmt: skip
    path.chmod(0o600)
    docs = [recovery.shared_plan(t) for t in config.load(path).targets]
    digest = hashlib.sha256("\n".join(docs).encode()).hexdigest()
    assert RECOVERY_DOCUMENTS.get(PLAN_FORMAT) == digest, (
        f"the recovery document changed: raise records.PLAN_FORMAT, and add {digest} here"
    )
    assert all(plan_format(d.encode()) == PLAN_FORMAT for d in docs)
    # A photod of before the format mark (format 1) replaces a document that does not
    # name the installations' folders: every later one must, or the two computers
    # would write it in turn.
    assert all(".photod/installations/" in d for d in docs)
    t = MemoryTarget("nas")
    newer = PLAN_MARK.format(PLAN_FORMAT + 1).encode()
    for there, replaced in ((b"an older one's: .photod/installations/", True),
                            (b"before installations", True), (newer, False)):  # fmt: skip
        t.put_meta(PLAN, there)
        snapshot.put_shared_plan(t, docs[0].encode())
        assert (docs[0].encode() if replaced else there) == t.get_meta(PLAN)
    snapshot.put_shared_plan(t, b"")  # (nothing to write: nothing replaced)
    assert newer == t.get_meta(PLAN)


def test_a_target_a_snapshot_failed_on_gets_it_within_the_hour_though_nothing_changed(
    tmp_path: Path,
) -> None:
    """A snapshot that failed on a target (its folder unwritable a moment) is written
    there again within the hour, though no photo came since: the target's hourly "last
    seen" did that, and no longer counts as a change of the catalog; without it the
    target kept a catalog without the last photos until a new one came, for days.  The
    target that got it is not written the same catalog again."""
    import shutil

    from photod import config as configmod
    from photod.clock import ManualClock
    from photod.pipeline import Pipeline
    from tests.conftest import write_config

    for folder in ("inbox", "lib", "usb", "state"):
        (tmp_path / folder).mkdir()
    cfg = configmod.load(write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")},
         {"name": "usb", "type": "local", "path": str(tmp_path / "usb")}],
        policy={"copies": 1, "media": 1, "offsite": 0},
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n',
    ))  # fmt: skip
    catalog, clock = Catalog(cfg.state_dir / "catalog.sqlite"), ManualClock()
    pipeline = Pipeline(cfg, catalog, ME, clock=clock)
    try:
        assert pipeline.fleet.refresh("lib") and pipeline.fleet.refresh("usb")
        for i in (1, 2):
            sha = f"{i:064x}"
            catalog.add_asset(sha, 10, f"2024/{i}.jpg", INFO, "inbox", f"{i}.jpg")
            catalog.add_replica(sha, "lib", f"2024/{i}.jpg", 10, VerifyMethod.READBACK)
            if i == 1:
                pipeline.snapshot_if_due(force=True)
                held, other = pipeline.targets["lib"].target, pipeline.targets["usb"].target
                snaps = tmp_path / "lib" / ".photod" / ME.folder / "snapshots"
                assert snaps.is_dir(), list((tmp_path / "lib").rglob("*"))
        shutil.move(snaps, tmp_path / "aside")
        snaps.write_text("in the way")  # (as a folder unwritable a moment)
        clock.advance(60)
        pipeline.snapshot_if_due()
        snaps.unlink()
        shutil.move(tmp_path / "aside", snaps)
        assert [1] == [s.assets for s in snapshots_in(held, ME.folder)]
        assert [2, 1] == [s.assets for s in snapshots_in(other, ME.folder)]
        for _ in range(60):  # an hour, its minutes; the catalog as it was
            clock.advance(60)
            catalog.target_seen("lib")
            pipeline.snapshot_if_due()
        assert [2, 1] == [s.assets for s in snapshots_in(held, ME.folder)]
        assert [2, 1] == [s.assets for s in snapshots_in(other, ME.folder)]
    finally:
        pipeline.stop(snapshot=False)
        catalog.close()


def test_a_start_with_new_photos_lists_no_target_for_the_snapshot_it_writes_anyway(
    tmp_path: Path, s3_server: Any
) -> None:
    """A start takes what the last run's snapshot covered, and looks whether each target
    has that generation still (a listing of its snapshots) only once a snapshot could be
    written now: the first check, while the start's new photos are still coming in,
    asks the bucket nothing, and once they are in (the catalog changed) the snapshot
    goes there without that look.  The look came first: a listing of every such target at
    each start with new photos, for nothing.  A start with nothing new still looks,
    once, and writes no snapshot."""
    from photod import config as configmod
    from photod.clock import ManualClock
    from photod.pipeline import Pipeline
    from tests.conftest import write_config
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    for folder in ("inbox", "state"):
        (tmp_path / folder).mkdir()
    creds = s3_server.credentials(tmp_path / "creds")
    bucket = {**s3_server.target("offsite", creds, prefix=f"start-{tmp_path.name}"),
              "endpoint": proxy.endpoint}  # fmt: skip
    cfg = configmod.load(write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [bucket], policy={"copies": 1, "media": 1, "offsite": 0},
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n',
    ))  # fmt: skip

    def listed() -> int:  # listings of the bucket so far
        return sum(method == "GET" and "list-type=2" in q for method, _, q in seen)

    seen: list[tuple[str, str, str]] = []
    proxy.rule = lambda method, path, query: seen.append((method, path, query)) or "pass"
    catalog = Catalog(cfg.state_dir / "catalog.sqlite")
    try:
        for new in (1, 0, 1):  # the first run's photo; a start with none; one with one
            pipeline = Pipeline(cfg, catalog, ME, clock=ManualClock())
            try:
                assert pipeline.fleet.refresh("offsite")
                if catalog.generation == 0:  # (the first run: its snapshot)
                    grow(catalog, new)
                    pipeline.snapshot_if_due(force=True)
                    continue
                coming = tmp_path / "inbox" / "new.jpg"
                if new:  # (found by the start's scan, still settling)
                    pipeline.intake.on_event("inbox", coming, "created")
                seen.clear()
                pipeline.snapshot_if_due()  # (the targets' probe's, at the start)
                assert (0 if new else 1) == listed()
                if new:  # (in: recorded, out of the settler)
                    grow(catalog, new, start=catalog.generation + 9)
                    pipeline.intake.settler.due()
                    assert not catalog.covered()
                    pipeline.snapshot_if_due()
                    assert catalog.covered()  # (written, its own listings aside)
            finally:
                pipeline.stop(snapshot=False)
    finally:
        catalog.close()
        proxy.stop()


def test_two_rebuilds_in_one_second_keep_the_catalog_the_last_one_replaced(
    tmp_path: Path,
) -> None:
    """A rebuild keeps the catalog it replaces as `.bak`, named by the second it
    finished: a second rebuild within that second kept its old catalog under the
    first's name, beside the WAL the first's had (a catalog a power cut left has one),
    and what it kept read as the catalog before both: the one it replaced was lost.
    Named to the nanosecond, the one kept is the one the last rebuild replaced, and its
    name sorts after the earlier one's."""
    import os
    import shutil
    import sqlite3

    state = tmp_path / "state"
    state.mkdir()
    db, rebuilt = state / "catalog.sqlite", state / f"catalog.sqlite{snapshot.REBUILT}"

    def made(path: Path, n: int, cut: bool = False) -> None:
        """A catalog of ``n`` assets at ``path``; ``cut``: as a power cut leaves it."""
        work = tmp_path / f"work{n}"
        work.mkdir()
        catalog = Catalog(work / "catalog.sqlite")
        grow(catalog, n)
        for end in ("", "-wal") if cut else ():
            shutil.copy(f"{work}/catalog.sqlite{end}", f"{path}{end}")
        catalog.close()
        if not cut:
            shutil.copy(work / "catalog.sqlite", path)

    made(db, 1, cut=True)
    second = 1_800_000_000 * 10**9
    made(rebuilt, 2)
    os.utime(rebuilt, ns=(second + 10**8, second + 10**8))
    first = snapshot.swap_in(db)
    made(rebuilt, 3)
    os.utime(rebuilt, ns=(second + 6 * 10**8, second + 6 * 10**8))
    kept = snapshot.swap_in(db)
    assert first is not None and kept is not None
    left = sorted(p.name for p in state.glob("catalog.sqlite.*.bak*"))
    seen = sqlite3.connect(f"file:{kept}?mode=ro", uri=True)
    try:
        assert 2 == seen.execute("SELECT count(*) FROM assets").fetchone()[0]
    finally:
        seen.close()
    assert kept.name > first.name
    assert [kept.name] == left


def test_what_a_snapshot_covers_is_kept_only_until_the_catalog_changes(tmp_path: Path) -> None:
    """The record of what the last snapshot covers (what a start takes to write none)
    stays through notes (a target's "last seen", a folder's scan), and goes with the
    first change, made by another process too (a `catalog` command, the daemon before
    a crash); a change between a snapshot's copy and its record keeps none."""
    path = tmp_path / "catalog.sqlite"
    catalog, states = Catalog(path), {"nas": target()}
    try:
        grow(catalog, 1)
        write(catalog, states, tmp_path)
        assert catalog.cover("first") and "first" == catalog.covered()
        catalog.target_seen("nas")
        catalog.set_meta("scanned:in", "5", note=True)
        assert "first" == catalog.covered()
        other = Catalog(path)
        grow(other, 1, start=1)
        other.close()
        assert catalog.covered() is None
        write(catalog, states, tmp_path)
        grow(catalog, 1, start=2)  # (after the copy: not in the snapshot)
        assert not catalog.cover("second") and catalog.covered() is None
        write(catalog, states, tmp_path)
        other = Catalog(path)
        grow(other, 1, start=3)
        other.close()
        assert not catalog.cover("third") and catalog.covered() is None
    finally:
        catalog.close()
    reopened = Catalog(path)
    try:
        write(reopened, states, tmp_path)
        assert reopened.cover("fourth")
    finally:
        reopened.close()
    reader = Catalog(path, readonly=True)  # (the next start's)
    try:
        assert "fourth" == reader.covered()
    finally:
        reader.close()


def test_a_target_a_reload_came_before_is_still_checked_when_it_comes(tmp_path: Path) -> None:
    """A start takes what the last run's snapshot covered, each target checked when it is
    first there; a reload before the drive came back (unplugged at the start) hands the
    check over, and the drive put back older (without that generation) gets the snapshot.
    The reload dropped it: the drive was taken as having it for the rest of the run.
    A check that raises leaves the target to be written, never taken as having it."""
    from photod import config as configmod
    from photod.snapshotdue import Due
    from tests.conftest import write_config

    cfg = configmod.load(write_config(
        tmp_path / "photod.toml", [],
        [{"name": "nas", "type": "local", "path": str(tmp_path / "nas")},
         {"name": "usb", "type": "local", "path": str(tmp_path / "usb")}],
        policy={"copies": 1, "media": 1, "offsite": 0},
    ))  # fmt: skip
    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    try:  # the last run: generation 1 on both
        grow(catalog, 1)
        due = Due(catalog, cfg, None)
        both = frozenset({"nas", "usb"})
        assert both == due.wanted(both, 0.0)
        write(catalog, {"nas": target()}, tmp_path)
        due.written(both, 0.0, 1.0)
        due.keep(both, catalog.generation)
        generation = catalog.generation
    finally:
        catalog.close()
    has = {"nas": generation, "usb": None}  # the drive put back is an older one
    catalog = Catalog(path)
    try:
        start = Due(catalog, cfg, None, newest=has.get)
        assert frozenset() == start.wanted(frozenset({"nas"}), 10.0)  # (the drive away)
        reloaded = Due(catalog, cfg, start.handover(), newest=has.get)
        assert frozenset({"usb"}) == reloaded.wanted(both, 20.0)

        def broken(name: str) -> int | None:
            raise RuntimeError("a backend's bug")

        start = Due(catalog, cfg, None, newest=broken)
        assert frozenset({"usb"}) == start.wanted(frozenset({"usb"}), 10.0)
        assert frozenset({"usb"}) == start.wanted(frozenset({"usb"}), 11.0)
    finally:
        catalog.close()


@pytest.mark.parametrize("secret", ["an rclone remote's password", "a webhook's token"])
def test_a_secret_changed_alone_writes_no_snapshot_at_the_next_start(
    tmp_path: Path, secret: str
) -> None:
    """What the last snapshot covers is kept in the catalog with the config it was
    written by, told without the secrets the config holds inline (an rclone remote's
    password, a webhook's token): what the targets keep beside a snapshot has them
    marked, so a secret changed alone (a password rotated) writes no new generation at
    the next start.  It wrote one (the whole catalog uploaded offsite again), and the
    record, copied into the snapshots written to a target that came later, held a hash
    of the secrets with the rest of the config, which that target keeps beside it."""
    from photod import config as configmod
    from photod.snapshotdue import Due
    from tests.conftest import write_config

    def cfg(word: str, offsite: int = 0) -> configmod.Config:
        remote = {"type": "webdav", "url": "https://dav.example.org", "user": "me"}
        if secret == "an rclone remote's password":
            remote["pass"] = word
        hook = f'\n[notify]\nwebhook = "https://hooks.example.org/{word}"\n'
        return configmod.load(write_config(
            tmp_path / "photod.toml", [],
            [{"name": "nas", "type": "local", "path": str(tmp_path / "nas")},
             {"name": "cloud", "type": "rclone", "remote": "dav:", "offsite": True,
              "rclone_config": remote}],
            policy={"copies": 1, "media": 1, "offsite": offsite},
            extra=hook if secret == "a webhook's token" else "",
        ))  # fmt: skip

    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    try:  # the last run: its snapshot on the NAS
        grow(catalog, 1)
        due = Due(catalog, cfg("hunter2"), None)
        assert {"nas"} == due.wanted(frozenset({"nas"}), 0.0)
        write(catalog, {"nas": target()}, tmp_path)
        due.written(frozenset({"nas"}), 0.0, 1.0)
        due.keep(["nas"], catalog.generation)
        has = {"nas": catalog.generation}
    finally:
        catalog.close()
    catalog = Catalog(path)
    try:  # the next start, the secret changed
        start = Due(catalog, cfg("correct-horse"), None, newest=has.get)
        assert frozenset() == start.wanted(frozenset({"nas"}), 10.0)
        edited = Due(catalog, cfg("correct-horse", offsite=1), None, newest=has.get)
        assert {"nas"} == edited.wanted(frozenset({"nas"}), 10.0)  # (an edit that shows)
    finally:
        catalog.close()
