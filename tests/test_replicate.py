"""The ingest and replication pipeline in-process, on a real catalog, with memory and
local targets: what lands where, what is pending, what is never written twice."""

from __future__ import annotations

import io
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from structlog.testing import capture_logs

from photod import config
from photod import ingest as ingest_module
from photod.catalog import Catalog, month
from photod.clock import ManualClock
from photod.errors import TargetUnavailable
from photod.fleet import REMOTE_PROBE, Fleet, TargetState
from photod.ingest import REFUSED_KEPT, Ingestor
from photod.models import Media, PolicyRule, Replica, TargetInfo
from photod.replicate import Replicator
from photod.targets.memory import MemoryTarget
from photod.targets.records import Installation, Records
from tests.conftest import make_mov, sha256


class Rig:
    def __init__(
        self,
        tmp: Path,
        *names: str,
        capacity: int | None = None,
        shared: dict[str, MemoryTarget] | None = None,
        me: str = "rig",
    ) -> None:
        """``shared``: targets another rig (another computer) uses too."""
        self.inbox = tmp / "in"
        self.inbox.mkdir(parents=True)
        text = f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\ntype = "folder"\npath = "{self.inbox}"\n'
        text += f'[[targets]]\nname = "unused"\ntype = "local"\npath = "{tmp / "unused"}"\n'
        self.cfg = config.parse(text, tmp / "c.toml")
        self.catalog = Catalog(tmp / "state" / "catalog.sqlite")
        self.mem = {n: (shared or {}).get(n) or MemoryTarget(n, capacity) for n in names}
        self.me = Installation(me.ljust(32, "0").encode().hex()[:32], me)
        self.states = {
            n: TargetState(t, TargetInfo(n, Media.INTERNAL, False), records=Records(t, self.me))
            for n, t in self.mem.items()
        }
        stop = threading.Event()
        self.clock = ManualClock()
        self.fleet = Fleet(self.catalog, self.states, stop, retry_max=0, clock=self.clock)
        self.rep = Replicator(
            self.catalog,
            self.fleet,
            PolicyRule(len(names), 1, 0),
            stop,
            {"in": self.inbox},
            retry_base=0,
            retry_max=0,
        )
        for n in names:
            self.fleet.refresh(n)
        self.ingestor = Ingestor(self.cfg.ingest, {"in": self.inbox}, self.catalog, self.rep)

    def add(self, src: Path, name: str | None = None) -> Path:
        dest = self.inbox / (name or src.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def ingest(self, path: Path) -> str:
        return self.ingestor.ingest("in", path)

    def close(self) -> None:
        self.rep.close()
        self.catalog.close()


@pytest.fixture
def rig2(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = Rig(tmp_path, "a", "b")
    yield r
    r.close()


def test_new_file_lands_on_every_target_verified(rig2: Rig, samples: Path) -> None:
    """One ingest writes the photo to both targets at its layout key, records two
    verified replicas, and (once flushed) an entry in this installation's list on each
    target."""
    path = rig2.add(samples / "jpg_Canon_40D.jpg")
    assert "stored" == rig2.ingest(path)
    sha = sha256(path)
    key = "2008/2008-05-30/jpg_Canon_40D.jpg"
    rig2.fleet.flush()
    for name, t in rig2.mem.items():
        assert {key: path.read_bytes()} == t.objects
        ledger = rig2.states[name].records.ledger  # type: ignore[union-attr]
        assert [(sha, key)] == [(e.sha256, e.key) for e in ledger.entries()]
        assert 1 == rig2.catalog.own_entries(name)
    assert {"a", "b"} == {r.target for r in rig2.catalog.replicas(sha)}


def test_bytes_another_computer_stored_are_not_stored_again(tmp_path: Path, samples: Path) -> None:
    """Two computers share a target: the second one's photo, already on the target
    from the first (under another name), is proved and recorded as the first one's
    copy, and not written again; its own list names it."""
    first = Rig(tmp_path / "one", "nas", me="laptop")
    first.ingest(first.add(samples / "jpg_Canon_40D.jpg"))
    first.fleet.flush()
    second = Rig(tmp_path / "two", "nas", shared=first.mem, me="desktop")
    try:
        assert "stored" == second.ingest(second.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg"))
        sha = sha256(second.inbox / "renamed.jpg")
        assert ["2008/2008-05-30/jpg_Canon_40D.jpg"] == list(first.mem["nas"].objects)
        replica = second.catalog.replicas(sha)[0]
        assert ("nas", "2008/2008-05-30/jpg_Canon_40D.jpg") == (replica.target, replica.relpath)
        assert first.me.folder == second.catalog.replica_owner(sha, "nas")
        second.fleet.flush()
        ledger = second.states["nas"].records.ledger  # type: ignore[union-attr]
        assert [sha] == [e.sha256 for e in ledger.entries()]
    finally:
        first.close()
        second.close()


def test_unchanged_file_is_not_read_again(rig2: Rig, samples: Path) -> None:
    """A path whose size and mtime are recorded is skipped without reading it."""
    path = rig2.add(samples / "jpg_Canon_40D.jpg")
    rig2.ingest(path)
    assert "unchanged" == rig2.ingest(path)


def test_same_bytes_under_two_names_are_one_asset(rig2: Rig, samples: Path) -> None:
    """The same photo exported twice is one asset, written once per target."""
    rig2.ingest(rig2.add(samples / "jpg_Canon_40D.jpg"))
    assert "known" == rig2.ingest(rig2.add(samples / "jpg_Canon_40D.jpg", "copy/again.jpg"))
    assert (1, 1) == (rig2.catalog.counts()[0], len(rig2.mem["a"].objects))


def test_the_same_bytes_in_two_files_taken_at_once_are_one_asset_and_both_told(
    rig2: Rig, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files with the same bytes, taken by two ingest workers at the same moment
    (both past the "is this known?" check before either is recorded): one asset, one
    copy per target, and the log says which file was stored and which was seen again."""
    from structlog.testing import capture_logs

    from photod import failpoints

    # Both workers wait here, after their checks and before the store: the race made sure.
    monkeypatch.setattr(failpoints, "_armed", failpoints._parse("ingest_storing=sleep:0.5"))
    twins = [rig2.add(samples / "jpg_Canon_40D.jpg", name) for name in ("a.jpg", "b/c.jpg")]
    with capture_logs() as events:
        workers = [threading.Thread(target=rig2.ingest, args=(p,)) for p in twins]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    said = [(e["event"], e["path"]) for e in events if e["event"] in ("asset_ingested",
                                                                      "asset_seen_again")]  # fmt: skip
    told = dict(said)
    assert 2 == len(said) and {"asset_ingested", "asset_seen_again"} == set(told)
    assert {"a.jpg", "b/c.jpg"} == set(told.values())
    assert (1, 1, 1) == (rig2.catalog.counts()[0], len(rig2.mem["a"].objects),
                         len(rig2.mem["b"].objects))  # fmt: skip
    sha = sha256(twins[0])
    assert [sha, sha] == [rig2.catalog.source_file("in", p).asset for p in ("a.jpg", "b/c.jpg")]


def test_same_name_same_day_different_bytes_get_a_suffix(rig2: Rig, samples: Path) -> None:
    """Two different files that want the same key: the second gets a deterministic suffix."""
    first = rig2.add(samples / "jpg_hdr_iphone_hdr_NO.jpg", "x/IMG_0001.JPG")
    second = rig2.add(samples / "jpg_hdr_iphone_hdr_YES.jpg", "y/IMG_0001.JPG")
    rig2.ingest(first)
    rig2.ingest(second)
    day = "2015/2015-04-10"
    expected = {f"{day}/IMG_0001.JPG", f"{day}/IMG_0001~{sha256(second)[:8]}.JPG"}
    assert expected == set(rig2.mem["a"].objects)


def test_offline_target_catches_up_from_another_replica(rig2: Rig, samples: Path) -> None:
    """A target that was offline gets its copy later, from a verified replica, even
    after the source file is gone."""
    rig2.mem["b"].available = False
    rig2.fleet.refresh("b")
    path = rig2.add(samples / "jpg_gps_DSCN0010.jpg")
    rig2.ingest(path)
    sha = sha256(path)
    assert ({}, 1) == (rig2.mem["b"].objects, rig2.catalog.pending_count("b"))
    path.unlink()
    rig2.mem["b"].available = True
    assert rig2.fleet.refresh("b")
    assert 1 == rig2.rep.replicate_pending("b")
    assert rig2.mem["a"].objects == rig2.mem["b"].objects
    assert 0 == rig2.catalog.pending_count("b")
    assert {"a", "b"} == {r.target for r in rig2.catalog.replicas(sha)}


def test_full_target_waits_and_others_complete(tmp_path: Path, samples: Path) -> None:
    """A full target gets nothing partial and a pending entry; the other target gets the
    copy; once space is freed the pending copy completes."""
    rig = Rig(tmp_path, "a", "small")
    rig.mem["small"].capacity = 1000
    try:
        rig.ingest(rig.add(samples / "jpg_gps_DSCN0010.jpg"))
        assert (1, 0, 1) == (
            len(rig.mem["a"].objects),
            len(rig.mem["small"].objects),
            rig.catalog.pending_count("small"),
        )
        rig.mem["small"].capacity = None
        assert 1 == rig.rep.replicate_pending("small")
        assert rig.mem["a"].objects == rig.mem["small"].objects
    finally:
        rig.close()


def test_identical_file_already_on_target_is_adopted(rig2: Rig, samples: Path) -> None:
    """A file with the same bytes already at the key (a run the catalog forgot) is
    adopted as the replica, not copied beside itself."""
    src = samples / "jpg_Canon_40D.jpg"
    rig2.mem["a"].objects["2008/2008-05-30/jpg_Canon_40D.jpg"] = src.read_bytes()
    rig2.ingest(rig2.add(src))
    assert ["2008/2008-05-30/jpg_Canon_40D.jpg"] == list(rig2.mem["a"].objects)
    methods = {r.target: r.method for r in rig2.catalog.replicas(sha256(src))}
    assert {"a": "existing", "b": "readback"} == methods


def test_live_photo_movie_and_sidecar_follow_the_still(rig2: Rig, samples: Path) -> None:
    """A Live Photo's movie (dated another day in its own header) and the edit's AAE
    land in the still's folder under the still's stem."""
    still = rig2.add(samples / "heic_IMG_5195.HEIC", "IMG_5195.HEIC")
    movie = make_mov(rig2.inbox / "IMG_5195.MOV", datetime(2021, 4, 12, 3, 0, tzinfo=UTC))
    aae = rig2.inbox / "IMG_5195.AAE"
    aae.write_text("<?xml version='1.0'?><plist></plist>")
    for p in (movie, aae, still):  # the movie may arrive first
        assert "stored" == rig2.ingest(p)
    assert {
        "2021/2021-04-11/IMG_5195.HEIC",
        "2021/2021-04-11/IMG_5195.MOV",
        "2021/2021-04-11/IMG_5195.AAE",
    } == set(rig2.mem["a"].objects)


def test_non_media_and_empty_files_are_left_alone(rig2: Rig, tmp_path: Path) -> None:
    """Text files are ignored; an empty file is skipped; neither reaches a target."""
    (rig2.inbox / "notes.txt").write_text("hi")
    (rig2.inbox / "empty.jpg").write_bytes(b"")
    assert "ignored" == rig2.ingest(rig2.inbox / "notes.txt")
    assert "skipped" == rig2.ingest(rig2.inbox / "empty.jpg")
    assert {} == rig2.mem["a"].objects


def test_symlink_is_not_followed(rig2: Rig, samples: Path) -> None:
    """A symbolic link in a watch folder is not followed: nothing from outside is taken."""
    (rig2.inbox / "link.jpg").symlink_to(samples / "jpg_Canon_40D.jpg")
    assert "skipped" == rig2.ingest(rig2.inbox / "link.jpg")
    assert {} == rig2.mem["a"].objects


def test_remote_is_asked_again_with_backoff_and_filled_from_a_local_copy(
    tmp_path: Path, samples: Path
) -> None:
    """A queued (remote) target gets nothing while a file is ingested; the catch-up
    fills it from the local copy.  When it stops answering it is asked again after
    5 s, then 10 s, 20 s..., not at every probe, until an upload lands again."""
    rig = Rig(tmp_path, "local", "remote")
    remote = rig.states["remote"]
    remote.queued = True
    rig.fleet.retry_max = rig.rep.retry_max = 3600
    photo = rig.add(next(samples.iterdir()))
    sha = sha256(photo)
    rig.ingest(photo)
    assert (["local"], []) == (
        [r.target for r in rig.catalog.replicas(sha)],
        list(rig.mem["remote"].objects),
    )
    photo.unlink()  # the catch-up must read the local replica, not the source
    assert 1 == rig.rep.replicate_pending("remote")
    assert {"local", "remote"} == {r.target for r in rig.catalog.replicas(sha)}

    rig.mem["remote"].available = False
    rig.clock.advance(REMOTE_PROBE)  # the next regular probe
    delays = []
    for _ in range(3):
        assert not rig.fleet.refresh("remote")
        delays.append(remote.backoff)
        rig.mem["remote"].available = True  # it answers again, but
        rig.clock.advance(remote.backoff - 0.1)
        assert not rig.fleet.refresh("remote")  # asked too soon: not checked again
        rig.mem["remote"].available = False
        rig.clock.advance(0.1)  # the pause has passed
    assert [5.0, 10.0, 20.0] == delays
    assert not rig.fleet.refresh("remote")
    assert 40.0 == remote.backoff
    rig.mem["remote"].available = True
    rig.clock.advance(remote.backoff)
    assert rig.fleet.refresh("remote")
    assert 40.0 == remote.backoff  # answering is not enough: an upload must land
    second = rig.add(sorted(samples.iterdir())[1])
    rig.ingest(second)
    assert 1 == rig.rep.replicate_pending("remote")
    assert 0.0 == remote.backoff
    rig.close()


def _rotten_local_copy(rig: Rig, samples: Path) -> tuple[str, Replica, bytes]:
    """A photo ingested to the rig's "local" target, whose copy there then rots (its
    first byte flipped, its size kept): the photo's SHA-256, that copy, its good bytes."""
    photo = rig.add(sorted(samples.glob("*.jpg"))[0])
    sha = sha256(photo)
    rig.ingest(photo)
    [replica] = rig.catalog.replicas(sha)
    good = rig.mem["local"].objects[replica.relpath]
    rig.mem["local"].objects[replica.relpath] = bytes([good[0] ^ 1]) + good[1:]
    return sha, replica, good


def test_a_rotten_copy_is_never_uploaded_when_the_upload_alone_hashes(
    tmp_path: Path, samples: Path
) -> None:
    """The catch-up reads a copy once, and an upload's own hash of what it sent is the
    only one taken: a local copy that rotted is still refused before anything is
    published, and the source file, unchanged, is uploaded instead.  The rotten copy,
    proved so, stops counting at once (not at its own re-read, up to a cycle later):
    it is set aside and repaired in turn."""
    rig = Rig(tmp_path, "local", "remote")
    rig.states["remote"].queued = True
    sha, replica, good = _rotten_local_copy(rig, samples)
    assert 1 == rig.rep.replicate_pending("remote")
    assert good == rig.mem["remote"].objects[replica.relpath]
    assert {"remote"} == {r.target for r in rig.catalog.replicas(sha)}
    assert replica.relpath not in rig.mem["local"].objects  # set aside
    assert [bytes([good[0] ^ 1]) + good[1:]] == list(rig.mem["local"].meta.values())[-1:]
    assert 1 == rig.rep.replicate_pending("local")  # and repaired
    assert good == rig.mem["local"].objects[replica.relpath]
    rig.close()


@pytest.mark.parametrize("cut", [0, 1024 * 1024], ids=["at-once", "half-way"])
@pytest.mark.parametrize("names", [("remote",), ("remote", "local"), ("local", "remote")])
def test_an_upload_cut_off_mid_file_still_leaves_the_files_true_hash(
    tmp_path: Path, samples: Path, names: tuple[str, ...], cut: int
) -> None:
    """A target that hashes what it takes (an upload) hashes for the file: no second
    pass.  When it is cut off at the file's first byte or half way through, the file
    is still recorded under its true SHA-256 (what sha256sum prints), the other target
    (hashing too) gets a proved copy, and the cut-off one gets the whole file once it
    is back."""
    rig = Rig(tmp_path, *names)
    remote = rig.mem["remote"]
    remote.cut_after = cut  # then the cable is pulled
    photo = rig.add(samples / "heic_mobile_iphone_13_pro_max.HEIC")
    sha = sha256(photo)
    assert photo.stat().st_size > 2 * 1024 * 1024
    assert "stored" == rig.ingest(photo)
    asset = rig.catalog.asset(sha)
    assert asset is not None and asset.size == photo.stat().st_size
    assert {} == remote.objects
    assert set(names) - {"remote"} == {r.target for r in rig.catalog.replicas(sha)}
    if "local" in names:
        assert [photo.read_bytes()] == list(rig.mem["local"].objects.values())
    remote.cut_after, remote.available = None, True
    rig.fleet.refresh("remote")
    assert 1 == rig.rep.replicate_pending("remote")
    assert [photo.read_bytes()] == list(remote.objects.values())
    assert set(names) == {r.target for r in rig.catalog.replicas(sha)}
    rig.close()


def test_a_catch_up_upload_cut_off_mid_file_publishes_nothing_and_comes_back_whole(
    tmp_path: Path, samples: Path
) -> None:
    """The catch-up's upload of a verified local copy is cut off half way: nothing is
    published, the copy stays pending, and once the target is back the whole file goes
    up and is recorded."""
    rig = Rig(tmp_path, "local", "remote")
    rig.states["remote"].queued = True
    remote = rig.mem["remote"]
    photo = rig.add(samples / "heic_mobile_iphone_13_pro_max.HEIC")
    sha = sha256(photo)
    rig.ingest(photo)
    remote.cut_after = 1024 * 1024
    assert 0 == rig.rep.replicate_pending("remote")
    assert ({}, 1) == (remote.objects, rig.catalog.pending_count("remote"))
    remote.cut_after, remote.available = None, True
    rig.fleet.refresh("remote")
    assert 1 == rig.rep.replicate_pending("remote")
    assert [photo.read_bytes()] == list(remote.objects.values())
    assert {"local", "remote"} == {r.target for r in rig.catalog.replicas(sha)}
    rig.close()


def test_a_copy_made_after_the_pending_list_was_read_is_not_made_twice(
    rig2: Rig, samples: Path
) -> None:
    """The catch-up reads what a target is missing, then claims each asset: a copy the
    store of the new file made in between (it held the claim) is not made again: one
    write and one `replica_written` per copy (the arrival storm found the second)."""
    from structlog.testing import capture_logs

    rig2.mem["b"].available = False
    rig2.fleet.refresh("b")
    rig2.ingest(rig2.add(samples / "jpg_gps_DSCN0010.jpg"))
    [stale] = rig2.catalog.pending("b", 10, now=1e12)  # read, then the copy lands
    rig2.mem["b"].available = True
    assert rig2.fleet.refresh("b")
    assert 1 == rig2.rep.replicate_pending("b")
    with capture_logs() as events:
        assert not rig2.rep.copy_asset(stale, "b")
    assert [] == [e for e in events if e["event"].startswith("replica_")]
    assert 1 == len(rig2.catalog.replicas(stale.sha256)) - 1


def test_the_catch_up_running_beside_new_files_copies_none_of_them(
    rig2: Rig, tmp_path: Path
) -> None:
    """New files stored while the catch-up runs again and again (an arrival storm):
    each lands once per target, written by its store; the catch-up, which sees each
    new asset pending from the moment it is recorded, copies none and fails none."""
    from structlog.testing import capture_logs

    from tests.fakephone import jpeg

    files = [jpeg(tmp_path / "made" / f"IMG_{i:04d}.JPG", i) for i in range(150)]
    done = threading.Event()

    def catch_up() -> None:
        while not done.is_set():
            for name in ("a", "b"):
                rig2.rep.replicate_pending(name)

    with capture_logs() as events:
        runner = threading.Thread(target=catch_up)
        runner.start()
        try:
            for f in files:
                rig2.ingest(rig2.add(f))
        finally:
            done.set()
            runner.join()
    written = [(e["target"], e["asset"]) for e in events if e["event"] == "replica_written"]
    assert 2 * len(files) == len(written) == len(set(written))
    assert [] == [e for e in events if e["event"] == "replica_failed"]
    assert all(e.get("method") != "existing" for e in events if e["event"] == "replica_written")


class _ListRefused(MemoryTarget):
    """A target that takes photos but, once ``refuse`` is set, not its list of them."""

    refuse = False

    def put_meta(self, name: str, data: bytes) -> None:
        if self.refuse:
            raise TargetUnavailable(self.name, "the list was refused")
        super().put_meta(name, data)

    put_private = put_meta


def test_a_copy_recorded_is_counted_even_when_the_targets_list_of_it_fails(
    tmp_path: Path, samples: Path
) -> None:
    """The copy is proved and recorded, then the target refuses the segment of its list
    that names it: the copy counts as made and is said written, never failed; the list
    waits, noted in the catalog, and is written at a later flush."""
    rig = Rig(tmp_path, "a", "b", shared={"b": _ListRefused("b")})
    try:
        rig.mem["b"].available = False
        rig.fleet.refresh("b")
        rig.ingest(rig.add(samples / "jpg_gps_DSCN0010.jpg"))
        [asset] = rig.catalog.pending("b", 10, now=1e12)
        rig.mem["b"].available = True
        assert rig.fleet.refresh("b")
        records = _copied_with_its_list_refused(rig, rig.mem["b"], asset, "replica_written")
        rig.mem["b"].refuse = False  # type: ignore[attr-defined]
        rig.mem["b"].available = True
        assert rig.fleet.refresh("b")
        rig.fleet.flush()
        assert 0 == records.ledger.pending()
        assert asset.sha256 in {e.sha256 for e in records.ledger.entries()}
    finally:
        rig.close()


def _copied_with_its_list_refused(rig: Rig, target: Any, asset: Any, said: str) -> Records:
    """``asset`` copied to target "b" whose list is one entry short of its flush and
    refuses it meanwhile: the copy counts, said ``said``, noted unlisted, every entry
    kept for the next flush; the list's records."""
    from structlog.testing import capture_logs

    from photod.models import ManifestEntry
    from photod.targets.records import FLUSH_EVERY

    records = rig.states["b"].records
    assert records is not None
    records.ledger.append([ManifestEntry(f"{i:064x}", f"k/{i}", 1, "")
                           for i in range(FLUSH_EVERY - 1)])  # fmt: skip
    target.refuse = True
    with capture_logs() as events:
        assert rig.rep.copy_asset(asset, "b")
    assert rig.catalog.replica_exists(asset.sha256, "b")
    assert [said] == [e["event"] for e in events if e["event"].startswith("replica_")]
    assert "1" == rig.catalog.meta("unlisted:b")
    assert FLUSH_EVERY == records.ledger.pending()  # kept for the next flush
    return records


def test_a_copys_source_gone_mid_repair_gives_way_to_the_next_source(
    tmp_path: Path, samples: Path
) -> None:
    """The catch-up reads a copy from another target first; a target that went away
    since the fleet last looked (a drive pulled, a remote down) is the next source's
    turn (another target's copy, the watch-folder file), not the end of the copy (and
    of a scrub's whole heal)."""
    rig = Rig(tmp_path, "a", "b", "c")
    rig.states["c"].queued = True
    photo = rig.add(next(samples.iterdir()))
    sha = sha256(photo)
    rig.ingest(photo)
    rig.mem["a"].available = rig.mem["b"].available = False  # gone, the fleet not told
    assert 1 == rig.rep.replicate_pending("c")
    [replica] = [r for r in rig.catalog.replicas(sha) if r.target == "c"]
    assert photo.read_bytes() == rig.mem["c"].objects[replica.relpath]
    rig.close()


@pytest.mark.parametrize("in_the_watch_folder", [False, True])
def test_a_drive_back_after_its_photos_went_offsite_is_filled_without_needless_egress(
    tmp_path: Path, samples: Path, in_the_watch_folder: bool
) -> None:
    """A drive back after its photos went offsite.  Out of the watch folder, it gets
    them from the remote: a download, counted in the remote's monthly egress as a
    scrub's or a restore's is (it was not: a budget of 1 MB let gigabytes out).  Still
    in the watch folder, it gets them from there, nothing downloaded (it read them back
    from the remote first: time, and egress paid for bytes lying on the disk)."""
    rig = Rig(tmp_path, "remote", "local")
    rig.states["remote"].queued = True
    rig.mem["local"].available = False
    rig.fleet.refresh("local")
    photo = rig.add(next(samples.iterdir()))
    original = photo.read_bytes()
    rig.ingest(photo)
    assert 1 == rig.rep.replicate_pending("remote")  # from the watch folder
    assert 0 == rig.catalog.egress_used("remote", month())
    if not in_the_watch_folder:
        photo.unlink()
    rig.mem["local"].available = True
    rig.fleet.refresh("local")
    assert 1 == rig.rep.replicate_pending("local")
    assert [original] == list(rig.mem["local"].objects.values())
    downloaded = 0 if in_the_watch_folder else len(original)
    assert downloaded == rig.catalog.egress_used("remote", month())
    rig.close()


class CutOnce(MemoryTarget):
    """A remote whose next ``cut`` downloads end half way without an error, as
    http.client gives what came when a connection drops mid-body."""

    cut = 0

    def open(self, key: str) -> BinaryIO:
        f = super().open(key)
        if self.cut:
            self.cut -= 1
            data = f.read()
            return io.BytesIO(data[: len(data) // 2])
        return f


def test_a_download_cut_short_is_not_a_rotten_copy(tmp_path: Path, samples: Path) -> None:
    """The catch-up's source read ends early (a dropped connection): its hash is wrong,
    but the copy on the remote is whole.  Read again before it is condemned, it is
    not: it still counts, nothing is set aside, and the next try copies it."""
    remote = CutOnce("remote")
    rig = Rig(tmp_path, "remote", "local", shared={"remote": remote})
    rig.states["remote"].queued = True
    rig.mem["local"].available = False
    rig.fleet.refresh("local")
    photo = rig.add(next(samples.iterdir()))
    sha = sha256(photo)
    rig.ingest(photo)
    assert 1 == rig.rep.replicate_pending("remote")
    photo.unlink()
    rig.mem["local"].available = True
    rig.fleet.refresh("local")
    remote.cut = 1
    with capture_logs() as events:
        assert 0 == rig.rep.replicate_pending("local")
    assert [] == [e for e in events if e["event"] == "replica_corrupt"]
    assert {"remote"} == {r.target for r in rig.catalog.replicas(sha)}
    assert 1 == rig.rep.replicate_pending("local")
    rig.close()


def test_files_refused_and_since_gone_are_not_remembered_for_ever(tmp_path: Path) -> None:
    """What is no photo (an export's .json, a sync client's leftovers) comes and goes in
    a watch folder, each name once: each is said once, and a year of them is not kept
    in memory.  One still there is remembered: found again unchanged, it is not said
    again; changed, it is."""
    rig = Rig(tmp_path, "a")
    try:
        kept = rig.inbox / "notes.txt"
        kept.write_text("not a photo")
        with capture_logs() as said:
            assert "ignored" == rig.ingest(kept)
            for i in range(3 * REFUSED_KEPT):
                junk = rig.inbox / f"export-{i:05d}.json"
                junk.write_text(f'{{"n": {i}}}')
                assert "ignored" == rig.ingest(junk)
                junk.unlink()
            assert "ignored" == rig.ingest(kept)
        skipped = [e["path"] for e in said if e["event"] == "file_skipped"]
        assert len(skipped) == 1 + 3 * REFUSED_KEPT
        assert skipped.count("notes.txt") == 1
        assert len(rig.ingestor._refused) <= REFUSED_KEPT + 1  # (3,073 before)
        kept.write_text("not a photo, longer")
        with capture_logs() as said:
            assert "ignored" == rig.ingest(kept)
        assert ["notes.txt"] == [e["path"] for e in said if e["event"] == "file_skipped"]
    finally:
        rig.close()


def test_forgetting_refused_files_on_a_mount_that_hangs_holds_up_no_other_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is remembered of refused files is checked (each file asked again) as it
    doubles: under the lock every refusal takes, so one file on a network mount that
    no longer answers (a hard NFS mount: its stat hangs) held up every refusal of every
    source, the ingest threads the phones share among them.  It is asked outside it."""
    rig = Rig(tmp_path, "a")
    rig.ingestor._refused_cap = 2
    asked, hang = threading.Event(), threading.Event()
    real = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).endswith("on-nas.txt") and not hang.is_set():
            asked.set()
            hang.wait(10)  # (the mount does not answer)
        return real(path, *args, **kwargs)

    try:
        files = [rig.inbox / f"{n}.txt" for n in ("on-nas", "b", "c", "d")]
        for f in files:
            f.write_text("not a photo")
        for f in files[:2]:
            assert "ignored" == rig.ingest(f)
        monkeypatch.setattr(ingest_module.os, "lstat", lstat)
        sweeping = threading.Thread(target=rig.ingest, args=(files[2],))
        sweeping.start()
        assert asked.wait(5)
        other = threading.Thread(target=rig.ingest, args=(files[3],))
        other.start()
        other.join(3)
        held = other.is_alive()
        hang.set()
        sweeping.join(10)
        other.join(10)
        assert not held
    finally:
        hang.set()
        rig.close()


def _bucket(tmp_path: Path, s3_server: Any, name: str, endpoint: str = "") -> Any:
    """An S3 target ``name`` on the test's server (reached through ``endpoint``, a
    FaultProxy, if given), its own prefix, marked as photod's."""
    from photod.targets.s3 import S3Target
    from tests.servers import BUCKET

    creds = s3_server.credentials(tmp_path / "creds")
    s3 = S3Target(name, BUCKET, f"{tmp_path.name}-{name}", endpoint or s3_server.endpoint,
                  credentials_file=creds, part_size=5 * 1024**2, timeout=5)  # fmt: skip
    s3.put_meta("target.json", f'{{"id": "t-{tmp_path.name}-{name}"}}'.encode())
    return s3


def s3_rig(tmp_path: Path, s3_server: Any) -> tuple[Rig, Any]:
    """A rig whose one target is a real S3 server's folder, queued (a remote's
    uploads come from the catch-up)."""
    s3 = _bucket(tmp_path, s3_server, "s3")
    rig = Rig(tmp_path, "s3", shared={"s3": s3})
    rig.states["s3"].queued = True
    return rig, s3


def test_a_photo_uploaded_after_its_ingest_is_proved_by_the_md5_of_that_read(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A new photo's upload in one PUT carries the Content-MD5 taken in the same read
    as its SHA-256 at ingest, and the upload hashes nothing again: the server's check
    proves the stored bytes.  A photo rewritten in place with other bytes of the same
    size and time between its ingest and its upload is refused by that check (nothing
    stored, the target not called unavailable), and its next try, hashed again, finds
    the file changed: no copy of other bytes ever counts as the photo's."""
    rig, s3 = s3_rig(tmp_path, s3_server)
    good, bad = (rig.add(p) for p in sorted(samples.glob("*.jpg"))[:2])
    shas = {p: sha256(p) for p in (good, bad)}
    for p in (good, bad):
        rig.ingest(p)
    _changed_in_place(bad)
    with capture_logs() as logs:
        assert 1 == rig.rep.replicate_pending("s3")
    [copy] = rig.catalog.replicas(shas[good])
    with s3.open(copy.relpath) as f:
        assert good.read_bytes() == f.read()
    assert [] == rig.catalog.replicas(shas[bad])
    assert bad.name not in " ".join(s3.keys())
    events = [(e["event"], e.get("error", "")) for e in logs]
    failed = [error for event, error in events if event == "replica_failed"]
    assert "not the bytes hashed" in failed[0]  # the server's MD5 check: nothing stored
    assert failed[1].startswith("source file:")  # hashed again: the file changed
    assert "asset_lost" in [event for event, _ in events]  # (as any file changed in place)
    assert not any(event == "target_unavailable" for event, _ in events)
    assert [] == rig.catalog.replicas(shas[bad])
    assert bad.name not in " ".join(s3.keys())
    rig.close()
    s3.close()


def _queued_rig(kind: str, tmp_path: Path, s3_server: Any, endpoint: str) -> tuple[Any, Rig]:
    """A rig whose one target, "s3", is ``_remote``'s, a photo's copies to it queued."""
    target = _remote(kind, tmp_path, s3_server, endpoint)
    rig = Rig(tmp_path, "s3", shared={"s3": target})
    rig.states["s3"].queued = True
    return target, rig


def _went_beside(rig: Rig, target: Any, path: Path, key: str, other: bytes) -> None:
    """The photo at ``path`` went beside the other photo's file at its name ``key``,
    under its suffixed name, and that file is as it was."""
    [copy] = rig.catalog.replicas(sha256(path))
    assert f"2008/2008-05-30/jpg_Canon_40D~{sha256(path)[:8]}.jpg" == copy.relpath
    with target.open(key) as f:
        assert other == f.read()


def _changed_in_place(path: Path) -> None:
    """Its last byte changed, its size and times kept: a scan sees no change."""
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _two_computers(
    tmp_path: Path, samples: Path, name: str, target: Any, queued: bool
) -> tuple[Rig, Rig]:
    """Two computers sharing ``target`` (named ``name``): the first has copied a photo
    to it and listed it; the second, which has read that list, is made (``queued``: its
    copies to the target wait for the catch-up)."""
    first = Rig(tmp_path / "one", name, shared={name: target}, me="laptop")
    first.ingest(first.add(samples / "jpg_Canon_40D.jpg"))
    first.fleet.flush()
    second = Rig(tmp_path / "two", name, shared={name: target}, me="desktop")
    second.states[name].queued = queued
    return first, second


def _remote(kind: str, tmp_path: Path, s3_server: Any, endpoint: str) -> Any:
    """A target named "s3" of ``kind`` on the test server, reached through ``endpoint``
    (a FaultProxy), with its id: S3, rclone (an S3 remote), or encrypted (over S3)."""
    from photod.targets.agekeygen import keygen
    from photod.targets.crypt import CryptTarget
    from photod.targets.cryptkeys import Keys
    from tests.targets.test_contract import rclone_s3_target, s3_target

    t: Any
    if kind == "rclone":
        t = rclone_s3_target(endpoint, tmp_path, "s3")
    else:
        t = s3_target(s3_server, tmp_path.name, s3_server.credentials(tmp_path / "creds"),
                      endpoint)  # fmt: skip
        if kind == "encrypted":
            keygen(tmp_path / "identity.txt")
            t = CryptTarget(t, Keys(tmp_path / "identity.txt"))
    t.put_meta("target.json", f'{{"id": "t-{tmp_path.name}"}}'.encode())
    return t


@pytest.mark.parametrize("kind", ["s3", "rclone", "encrypted"])
def test_a_name_taken_by_a_file_that_cannot_be_read_now_is_a_failed_try_not_a_second_copy(
    tmp_path: Path, samples: Path, s3_server: Any, kind: str
) -> None:
    """A photo whose name on a target is taken already (here by its own copy, which a
    catalog forgot) is read there to tell whether it is the photo.  When that read
    fails (the server answers 500), the copy fails, is said, and is tried again: it was
    taken for another photo's file, and the photo stored a second time beside it, under
    a suffixed name, on every such target.  Tried again with the server well, the file
    is the photo's, adopted: one object on the target."""
    from tests.servers import FaultProxy
    from tests.targets.test_contract import put

    if not s3_server.running():
        s3_server.start()
    broken = threading.Event()  # a download of a photo's object refused
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 500, "InternalError", "We encountered an internal error")
        if broken.is_set() and method == "GET" and (path.endswith(".jpg") or "/data/" in path)
        else "pass"))  # fmt: skip
    target, rig = _queued_rig(kind, tmp_path, s3_server, proxy.endpoint)
    try:
        path = rig.add(samples / "jpg_Canon_40D.jpg")
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        put(target, key, path.read_bytes())  # (a run the catalog forgot)
        rig.ingest(path)
        broken.set()
        with capture_logs() as logs:
            assert 0 == rig.rep.replicate_pending("s3")
        [failed] = [e["error"] for e in logs if e["event"] == "replica_failed"]
        assert f"the file taking its name at {key} could not be read to tell" in failed
        assert [key] == list(target.keys())
        assert [] == rig.catalog.replicas(sha256(path))
        broken.clear()
        rig.fleet.refresh("s3")
        assert 1 == rig.rep.replicate_pending("s3")
        assert [key] == list(target.keys())
        assert [("s3", key, "existing")] == [
            (r.target, r.relpath, r.method) for r in rig.catalog.replicas(sha256(path))
        ]
    finally:
        rig.close()
        target.close()
        proxy.stop()


@pytest.mark.parametrize("kind", ["local", "rclone"])
def test_a_folder_at_a_photos_name_is_a_name_taken_and_the_photo_goes_beside_it(
    tmp_path: Path, samples: Path, kind: str
) -> None:
    """A folder someone made with a photo's name on a drive or a NAS holds no copy of
    anything: that is an answer, not a read that failed, and the photo goes beside it
    under a suffixed name (it is not tried again for ever)."""
    from photod.targets.local import LocalTarget
    from tests.targets.test_contract import local_rclone

    root = tmp_path / "drive"
    key = "2008/2008-05-30/jpg_Canon_40D.jpg"
    (root / key).mkdir(parents=True)
    t: Any = (
        LocalTarget("d", root, creates_root=False)
        if kind == "local"
        else local_rclone(tmp_path, root)
    )
    t.put_meta("target.json", f'{{"id": "t-{kind}"}}'.encode())
    rig = Rig(tmp_path, "d", shared={"d": t})
    try:
        path = rig.add(samples / "jpg_Canon_40D.jpg")
        rig.ingest(path)
        suffixed = f"2008/2008-05-30/jpg_Canon_40D~{sha256(path)[:8]}.jpg"
        assert [suffixed] == [r.relpath for r in rig.catalog.replicas(sha256(path))]
        assert (root / key).is_dir()
        assert path.read_bytes() == (root / suffixed).read_bytes()
    finally:
        rig.close()
        t.close()


def test_another_photos_encrypted_object_at_the_name_is_downloaded_once(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """Another photo's encrypted object at this photo's name, left without its index
    line (photod killed between the two), is downloaded once to tell that it is not
    this photo: it was downloaded twice (by the encrypted upload, then by the copy's own
    check of the name).  The photo goes beside it, and that object is left as it was."""
    from photod.targets.crypt import sidecar
    from tests.servers import FaultProxy
    from tests.targets.test_contract import put

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    target, rig = _queued_rig("encrypted", tmp_path, s3_server, proxy.endpoint)
    try:
        path = rig.add(samples / "jpg_Canon_40D.jpg")
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        other = b"another photo of this name " * 1000
        put(target, key, other)
        obj = target.keys_.object_name(key)
        target.inner.delete_meta(sidecar(obj))  # (its line, which a kill kept from the server)
        rig.ingest(path)
        proxy.begun.clear()
        assert 1 == rig.rep.replicate_pending("s3")
        assert 1 == sum(method == "GET" and p.endswith(obj) for method, p in proxy.begun)
        _went_beside(rig, target, path, key, other)
    finally:
        rig.close()
        target.close()
        proxy.stop()


@pytest.mark.parametrize("held", ["another photo", "the photo"])
@pytest.mark.parametrize("kind", ["s3", "rclone", "encrypted"])
def test_a_name_taken_costs_one_look_at_what_holds_it(
    tmp_path: Path, samples: Path, s3_server: Any, kind: str, held: str
) -> None:
    """A photo's name on a target taken already, by another photo's file of another
    size (it goes beside it) or by the photo's own copy that the catalog forgot
    (adopted), is looked at once: the server's answer to the upload's look before it
    publishes (its size; an encrypted object's own index line) is the one the copy
    then goes by, and that file is read only when it may be the photo.  It was looked
    at a second time (a HEAD, and on an encrypted target the index line fetched
    again), for each photo whose name was taken."""
    from tests.servers import FaultProxy
    from tests.targets.test_contract import put

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    target, rig = _queued_rig(kind, tmp_path, s3_server, proxy.endpoint)
    try:
        path = rig.add(samples / "jpg_Canon_40D.jpg")
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        other = b"another photo of this name " * 1000
        put(target, key, other if held == "another photo" else path.read_bytes())
        rig.ingest(path)
        at = "/" + _blocked_at(kind, target, key).rpartition("/")[2]  # (and its line's)
        proxy.begun.clear()
        assert 1 == rig.rep.replicate_pending("s3")
        asked = sorted(m for m, p in proxy.begun if p.endswith(at))
        look = ["GET", "HEAD"] if kind == "encrypted" else ["HEAD"]  # (its object, its line)
        read = ["GET"] if held == "the photo" else []
        if read and kind == "rclone":
            read.append("HEAD")  # (rclone's own, before it reads)
        assert sorted(look + read) == asked
        if held == "another photo":
            _went_beside(rig, target, path, key, other)
        else:
            assert [key] == [r.relpath for r in rig.catalog.replicas(sha256(path))]
    finally:
        rig.close()
        target.close()
        proxy.stop()


@pytest.mark.parametrize("queued", [False, True], ids=["new-file", "catch-up"])
def test_another_computers_copy_that_cannot_be_read_now_is_a_failed_try_not_a_second_copy(
    tmp_path: Path, samples: Path, s3_server: Any, queued: bool
) -> None:
    """Two computers share a target.  The second one's photo, there already from the
    first under another name, is read back there to prove it; when that read fails (the
    server answers 500), the copy fails, is said, and is tried again: it was taken for
    no copy at all, and the photo stored a second time on the shared target.  Tried
    again with the server well, the first one's copy is proved and recorded."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    broken = threading.Event()  # a download of a photo refused
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 500, "InternalError", "We encountered an internal error")
        if broken.is_set() and method == "GET" and path.endswith(".jpg") else "pass"))  # fmt: skip
    target = _remote("s3", tmp_path, s3_server, proxy.endpoint)
    first, second = _two_computers(tmp_path, samples, "s3", target, queued)
    try:
        broken.set()
        path = second.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg")
        with capture_logs() as logs:
            second.ingest(path)
            assert 0 == second.rep.replicate_pending("s3")
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        assert failed and all(f"another computer's copy at {key} could not be read to tell" in f
                              for f in failed)  # fmt: skip
        assert [key] == list(target.keys())
        broken.clear()
        second.fleet.refresh("s3")
        with capture_logs() as logs:
            assert 1 == second.rep.replicate_pending("s3")
        assert ["replica_shared"] == [e["event"] for e in logs if e["event"].startswith("replica")]
        assert [key] == list(target.keys())
    finally:
        first.close()
        second.close()
        target.close()
        proxy.stop()


def test_another_computers_listed_copy_holding_other_bytes_is_downloaded_once_a_try(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """Two computers share a target, and the first one's list names a photo at a key
    that holds other bytes now.  The second one's upload of that photo downloads that
    object once to tell that it is not the photo, and stores the photo under its own
    name: it was downloaded twice a try (before the upload, and again at its commit),
    each try billed twice for the same answer."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    target = _remote("s3", tmp_path, s3_server, proxy.endpoint)
    first, second = _two_computers(tmp_path, samples, "s3", target, True)
    try:
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        target.put(key, b"another photo now at this name " * 1000)  # (not through photod)
        path = second.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg")
        second.ingest(path)
        proxy.begun.clear()
        assert 1 == second.rep.replicate_pending("s3")
        assert 1 == sum(method == "GET" and p.endswith(key) for method, p in proxy.begun)
        assert ["2008/2008-05-30/renamed.jpg"] == [
            r.relpath for r in second.catalog.replicas(sha256(path))
        ]
    finally:
        first.close()
        second.close()
        target.close()
        proxy.stop()


@pytest.mark.parametrize("queued", [False, True], ids=["new-file", "catch-up"])
def test_a_copy_two_computers_list_is_downloaded_once_to_tell_it_is_not_the_photo(
    tmp_path: Path, samples: Path, s3_server: Any, queued: bool
) -> None:
    """Two computers list the same object for a photo (the second adopted the first's
    copy), and it holds other bytes now.  A third computer's copy of that photo reads
    it once to tell, and stores the photo under its own name: it was downloaded once
    for each computer that listed it, at each try."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    target = _remote("s3", tmp_path, s3_server, proxy.endpoint)
    bob, carol = _two_computers(tmp_path, samples, "s3", target, False)
    alice = None
    try:
        carol.ingest(carol.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg"))  # (adopted)
        carol.fleet.flush()
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        assert [key] == list(target.keys())
        target.put(key, b"another photo now at this name " * 1000)  # (not through photod)
        alice = Rig(tmp_path / "three", "s3", shared={"s3": target}, me="alice")
        alice.states["s3"].queued = queued
        path = alice.add(samples / "jpg_Canon_40D.jpg", "alices.jpg")
        proxy.begun.clear()
        alice.ingest(path)
        assert int(queued) == alice.rep.replicate_pending("s3")
        assert 1 == sum(method == "GET" and p.endswith(key) for method, p in proxy.begun)
        assert ["2008/2008-05-30/alices.jpg"] == [
            r.relpath for r in alice.catalog.replicas(sha256(path))
        ]
    finally:
        for rig in (bob, carol, alice):
            if rig is not None:
                rig.close()
        target.close()
        proxy.stop()


def _three_computers(
    tmp_path: Path, samples: Path, name: str, target: Any, queued: bool
) -> tuple[Rig, Rig, Rig]:
    """Three computers sharing ``target`` (named ``name``): "bob" and "carol" have each
    copied the same photo to it under their own names (``BOBS``, ``CAROLS``: neither had
    read the other's list) and listed it; "alice", who has read both lists, is made
    (``queued``: its copies to the target wait for the catch-up)."""
    bob = Rig(tmp_path / "bob", name, shared={name: target}, me="bob")
    carol = Rig(tmp_path / "carol", name, shared={name: target}, me="carol")
    bob.ingest(bob.add(samples / "jpg_Canon_40D.jpg"))
    carol.ingest(carol.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg"))
    bob.fleet.flush()
    carol.fleet.flush()
    assert sorted([BOBS, CAROLS]) == sorted(target.keys())
    alice = Rig(tmp_path / "alice", name, shared={name: target}, me="alice")
    alice.states[name].queued = queued
    return bob, carol, alice


BOBS, CAROLS = "2008/2008-05-30/jpg_Canon_40D.jpg", "2008/2008-05-30/renamed.jpg"


def _shared_with_carol(rigs: tuple[Rig, Rig, Rig], logs: list[Any], path: Path, name: str) -> None:
    """Alice's photo at ``path`` is recorded as carol's copy on target ``name``, said
    shared with carol's installation, with no failed try and nothing written there."""
    _, carol, alice = rigs
    [copy] = alice.catalog.replicas(sha256(path))
    assert (name, CAROLS) == (copy.target, copy.relpath)
    said = [(e["event"], e.get("installation")) for e in logs
            if e["event"].startswith("replica")]  # fmt: skip
    assert [("replica_shared", carol.states[name].records.folder)] == said  # type: ignore[union-attr]
    assert set(alice.states[name].target.keys()) <= {BOBS, CAROLS}


@pytest.mark.parametrize("queued", [False, True], ids=["new-file", "catch-up"])
@pytest.mark.parametrize("bobs", ["gone", "rotten"])
def test_a_third_computers_copy_proves_the_photo_when_anothers_is_gone_or_rotten(
    tmp_path: Path, samples: Path, queued: bool, bobs: str
) -> None:
    """Three computers share a target, and two of them, bob and carol, hold the same
    photo there under their own names.  Bob's copy is gone from the target (or its
    bytes changed): the third computer's copy of that photo is carol's, proved and
    recorded, and nothing is written.  Only the first computer's listed copy was tried:
    the photo was stored a second time beside carol's good copy."""
    target = MemoryTarget("nas")
    rigs = _three_computers(tmp_path, samples, "nas", target, queued)
    alice = rigs[2]
    try:
        if bobs == "gone":
            del target.objects[BOBS]
        else:
            target.objects[BOBS] = b"another photo now at this name " * 1000
        path = alice.add(samples / "jpg_Canon_40D.jpg", "alice.jpg")
        with capture_logs() as logs:
            alice.ingest(path)
            assert int(queued) == alice.rep.replicate_pending("nas")
        _shared_with_carol(rigs, logs, path, "nas")
    finally:
        for rig in rigs:
            rig.close()


@pytest.mark.parametrize("queued", [False, True], ids=["new-file", "catch-up"])
@pytest.mark.parametrize("unreadable", ["bob's", "carol's"])
def test_another_computers_copy_that_cannot_be_read_now_waits_only_when_no_other_proves(
    tmp_path: Path, samples: Path, s3_server: Any, queued: bool, unreadable: str
) -> None:
    """Three computers share a target, and two of them, bob and carol, hold the same
    photo there under their own names.  Bob's copy cannot be read now (the server
    answers 500 to its downloads): the third computer takes carol's copy, proved, with
    no failed try (the photo was held back from the target as long as bob's stayed
    unreadable).  Bob's copy holding other bytes and carol's unreadable: a failed try,
    tried again later, and no second copy (the photo was stored beside carol's)."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    refused: list[str] = []  # the key whose downloads the server refuses
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 500, "InternalError", "We encountered an internal error")
        if method == "GET" and refused and path.endswith(refused[0]) else "pass"))  # fmt: skip
    target = _remote("s3", tmp_path, s3_server, proxy.endpoint)
    rigs = _three_computers(tmp_path, samples, "s3", target, queued)
    alice = rigs[2]
    try:
        if unreadable == "bob's":
            refused.append(BOBS)
        else:
            target.put(BOBS, b"another photo now at this name " * 1000)  # (not through photod)
            refused.append(CAROLS)
        path = alice.add(samples / "jpg_Canon_40D.jpg", "alice.jpg")
        with capture_logs() as logs:
            alice.ingest(path)
            alice.rep.replicate_pending("s3")
        if unreadable == "bob's":
            _shared_with_carol(rigs, logs, path, "s3")
        else:
            failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
            assert failed and all(f"another computer's copy at {CAROLS} could not be read" in f
                                  for f in failed)  # fmt: skip
            assert [] == alice.catalog.replicas(sha256(path))
            assert sorted([BOBS, CAROLS]) == sorted(target.keys())
    finally:
        for rig in rigs:
            rig.close()
        target.close()
        proxy.stop()


def _blocked_at(kind: str, target: Any, key: str) -> str:
    """The end of the path a download of ``key`` asks the server for (its encrypted
    object's on an encrypted target)."""
    return target.keys_.object_name(key) if kind == "encrypted" else key


@pytest.mark.parametrize("kind", ["s3", "rclone", "encrypted", "encrypted-no-line"])
def test_a_name_taken_by_a_file_that_can_never_be_read_holds_back_that_photo_alone(
    tmp_path: Path, samples: Path, s3_server: Any, kind: str
) -> None:
    """A photo whose name on a target holds a file of its size that can never be read
    (no permission: the server's 403 to every download of it) fails there, said with
    what to do, and is tried again later; the target stays available and the next
    photo lands.  The failed read was taken for the target's outage: the target marked
    away, and the stuck photo, the oldest, came first each time it was back, so no
    other photo was ever copied there.  The same for an encrypted object left without
    its index line (photod killed between the two)."""
    from photod.targets.crypt import sidecar
    from tests.servers import FaultProxy
    from tests.targets.test_contract import put

    if not s3_server.running():
        s3_server.start()
    blocked: list[str] = []
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 403, "AccessDenied", "Access Denied")
        if method == "GET" and blocked and path.endswith(blocked[0]) else "pass"))  # fmt: skip
    lineless, kind = kind.endswith("-no-line"), kind.removesuffix("-no-line")
    target, rig = _queued_rig(kind, tmp_path, s3_server, proxy.endpoint)
    try:
        first, second = (rig.add(p) for p in sorted(samples.glob("*.jpg"))[:2])
        rig.ingest(first)
        key = rig.catalog.asset(sha256(first)).relpath  # type: ignore[union-attr]
        put(target, key, first.read_bytes())  # (a run the catalog forgot)
        blocked.append(_blocked_at(kind, target, key))
        if lineless:  # (its line, which a kill kept from the server)
            target.inner.delete_meta(sidecar(blocked[0]))
        rig.ingest(second)
        with capture_logs() as logs:
            assert 1 == rig.rep.replicate_pending("s3")
        assert rig.states["s3"].available
        assert [] == rig.catalog.replicas(sha256(first))
        assert ["s3"] == [r.target for r in rig.catalog.replicas(sha256(second))]
        # (tried again at once: no pause between tries in this rig)
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        said = f"{blocked[0]} could not be read" if lineless else f"at {key} could not be read"
        assert failed and all(said in f and key in f and "move it away" in f
                              for f in failed)  # fmt: skip
        assert not [e for e in logs if e["event"] == "target_unavailable"]
    finally:
        rig.close()
        target.close()
        proxy.stop()


@pytest.mark.parametrize("kind", ["s3", "rclone", "encrypted"])
def test_another_photos_file_at_the_name_that_cannot_be_read_is_passed_by_unread(
    tmp_path: Path, samples: Path, s3_server: Any, kind: str
) -> None:
    """Another photo's file at a photo's name that can never be read (no permission:
    the server's 403 to every download of it) is told from the photo without reading
    it, by its size (an encrypted one by its own sealed index line): the photo goes
    beside it under a suffixed name, and nothing of it is downloaded.  It was read to
    tell, and that read failing held the photo back for ever."""
    from tests.servers import FaultProxy
    from tests.targets.test_contract import put

    if not s3_server.running():
        s3_server.start()
    blocked: list[str] = []
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 403, "AccessDenied", "Access Denied")
        if method == "GET" and blocked and path.endswith(blocked[0]) else "pass"))  # fmt: skip
    target, rig = _queued_rig(kind, tmp_path, s3_server, proxy.endpoint)
    try:
        path = rig.add(samples / "jpg_Canon_40D.jpg")
        key = "2008/2008-05-30/jpg_Canon_40D.jpg"
        other = b"another photo of this name " * 1000
        put(target, key, other)
        blocked.append(_blocked_at(kind, target, key))
        rig.ingest(path)
        proxy.begun.clear()
        with capture_logs() as logs:
            assert 1 == rig.rep.replicate_pending("s3")
        assert not [e for e in logs if e["event"] == "replica_failed"]
        assert not [p for method, p in proxy.begun if method == "GET" and p.endswith(blocked[0])]
        blocked.clear()
        _went_beside(rig, target, path, key, other)
    finally:
        rig.close()
        target.close()
        proxy.stop()


def test_another_computers_copy_recorded_counts_even_when_the_targets_list_of_it_fails(
    tmp_path: Path, samples: Path
) -> None:
    """Two computers share a target.  The second one's catch-up proves and records the
    first one's copy of its photo, then the target refuses the segment of its list
    that names it: the copy counts and is said shared, never failed (it was said
    `replica_failed`, and counted as no copy made, for a copy recorded); the list waits
    for a later flush."""
    shared = _ListRefused("b")
    first, second = _two_computers(tmp_path, samples, "b", shared, True)
    try:
        second.ingest(second.add(samples / "jpg_Canon_40D.jpg", "renamed.jpg"))
        [asset] = second.catalog.pending("b", 10, now=1e12)
        _copied_with_its_list_refused(second, shared, asset, "replica_shared")
    finally:
        first.close()
        second.close()


def _uploading(tmp_path: Path, s3_server: Any, first: str) -> tuple[Rig, dict[str, Any]]:
    """A rig uploading to two queued targets, ``first`` and "offsite", an S3 target:
    ``first`` is "minio" (a NAS's S3, a bucket too) or "nas" (a NAS's folder, in
    memory).  The rig, and its buckets by name."""
    names = (first, "offsite")
    buckets = {name: _bucket(tmp_path, s3_server, name) for name in names if name != "nas"}
    rig = Rig(tmp_path, *names, shared=buckets)
    for name in names:
        rig.states[name].queued = True
    return rig, buckets


@pytest.mark.parametrize("first", ["nas", "minio"], ids=["nas-first", "s3-first"])
def test_a_photo_copied_to_another_target_first_still_goes_to_s3_proved_by_its_ingests_md5(
    tmp_path: Path, samples: Path, s3_server: Any, first: str
) -> None:
    """The Content-MD5 taken at a photo's ingest proves its upload to an S3 target
    ("offsite") when another queued target copies the photo first: a NAS (or an
    encrypted target: no use for it), or another S3 target that uploads it in one PUT
    too (a NAS's MinIO).  That first copy took it and dropped it, and the second upload
    hashed every byte again (SHA-256 and MD5: more CPU than the rest of a small photo's
    upload).  Seen as the server's own check refusing a photo rewritten in place since
    its ingest (other bytes of the same size and time) when the first target is away:
    "not the bytes hashed", nothing stored."""
    rig, buckets = _uploading(tmp_path, s3_server, first)
    try:
        good, bad = (rig.add(p) for p in sorted(samples.glob("*.jpg"))[:2])
        for p in (good, bad):
            rig.ingest(p)
        assert 2 == rig.rep.replicate_pending(first)
        rig.states[first].available = False  # (its copies are no source now: the files are)
        _changed_in_place(bad)
        with capture_logs() as logs:
            assert 1 == rig.rep.replicate_pending("offsite")
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        assert failed and "not the bytes hashed" in failed[0]  # the server's MD5 check
        assert bad.name not in " ".join(buckets["offsite"].keys())
    finally:
        rig.close()
        for s3 in buckets.values():
            s3.close()


def test_a_rotten_drive_copy_refused_by_the_servers_md5_check_stops_counting(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A drive's copy rotted (same size); the bucket's catch-up reads it first and the
    server's check of the photo's MD5 refuses it: the copy goes up from the watch
    folder, and the drive's copy no longer counts (it still did, the photo called
    protected until the drive's next scrub)."""
    s3 = _bucket(tmp_path, s3_server, "offsite")
    rig = Rig(tmp_path, "local", "offsite", shared={"offsite": s3})
    rig.states["offsite"].queued = True
    try:
        sha, replica, good = _rotten_local_copy(rig, samples)
        assert 1 == rig.rep.replicate_pending("offsite")
        with s3.open(replica.relpath) as f:
            assert good == f.read()
        assert {"offsite"} == {r.target for r in rig.catalog.replicas(sha)}
    finally:
        rig.close()
        s3.close()


def test_a_second_bucket_takes_a_photo_from_the_first_when_its_file_changed_in_place(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """The first of two buckets holds the photo; its watch-folder file is rewritten in
    place (other bytes, same size and time), which the catch-up reads first.  The
    second bucket's copy comes from the first bucket at the same try: the server's MD5
    check refused the file's bytes, and the next source is read (that try failed with
    "not the bytes hashed", a warning and a retry later)."""
    rig, buckets = _uploading(tmp_path, s3_server, "minio")
    try:
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        original, sha = photo.read_bytes(), sha256(photo)
        rig.ingest(photo)
        assert 1 == rig.rep.replicate_pending("minio")
        _changed_in_place(photo)
        with capture_logs() as logs:
            copied = rig.rep.replicate_pending("offsite")
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        assert (1, []) == (copied, failed)
        [replica] = [r for r in rig.catalog.replicas(sha) if r.target == "offsite"]
        with buckets["offsite"].open(replica.relpath) as f:
            assert original == f.read()
    finally:
        rig.close()
        for s3 in buckets.values():
            s3.close()


def _offsite_with_the_drive_away(
    tmp_path: Path, s3_server: Any, endpoint: str = ""
) -> tuple[Any, Rig]:
    """A bucket offsite ("remote", queued; through ``endpoint`` when given) and a drive
    ("local") unplugged: what the drive catches up with once back."""
    s3 = _bucket(tmp_path, s3_server, "remote", endpoint)
    rig = Rig(tmp_path, "remote", "local", shared={"remote": s3})
    rig.states["remote"].queued = True
    rig.mem["local"].available = False
    rig.fleet.refresh("local")
    return s3, rig


def test_a_rotten_remote_copy_read_again_to_prove_it_counts_in_the_remotes_egress(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A drive back after its photo went offsite (its file gone from the watch folder)
    reads the bucket's copy, rotten (same size): hashed wrong, it is downloaded again,
    whole, to prove it rotten before it stops counting.  Both downloads count in the
    bucket's egress for the month (the second did not: a budget never saw the bytes of
    each such re-read)."""
    s3, rig = _offsite_with_the_drive_away(tmp_path, s3_server)
    try:
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        sha, good = sha256(photo), photo.read_bytes()
        rig.ingest(photo)
        assert 1 == rig.rep.replicate_pending("remote")  # from the watch folder
        photo.unlink()
        [replica] = rig.catalog.replicas(sha)
        s3.put(replica.relpath, bytes([good[0] ^ 1]) + good[1:])  # rotten, same size
        rig.mem["local"].available = True
        rig.fleet.refresh("local")
        assert 0 == rig.rep.replicate_pending("local")
        assert [] == rig.catalog.replicas(sha)  # (proved rotten: it counts no more)
        assert 2 * len(good) == rig.catalog.egress_used("remote", month())
    finally:
        rig.close()
        s3.close()


def test_a_download_cut_short_counts_in_the_remotes_egress(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A drive back after its photo went offsite (its file gone from the watch folder)
    reads the bucket's copy through a link cut part way through the download: the try
    fails, and the bytes that came count in the bucket's egress for the month (only a
    whole download counted: a link cutting a movie late at every try spent a budget
    that never saw it)."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    s3, rig = _offsite_with_the_drive_away(tmp_path, s3_server, proxy.endpoint)
    s3.part_retry = 3.0  # the rest asked for again for 3 s, not 2 minutes, then the try fails
    try:
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        sha, size = sha256(photo), photo.stat().st_size
        rig.ingest(photo)
        assert 1 == rig.rep.replicate_pending("remote")  # from the watch folder
        photo.unlink()
        gets: list[str] = []  # (the first cut, then the link gone: no resumed read)

        def cut(method: str, path: str, query: str) -> Any:
            if method != "GET" or not path.endswith(photo.name):
                return "pass"
            gets.append(path)
            return ("cut", 1000) if len(gets) == 1 else "drop"

        proxy.rule = cut
        rig.mem["local"].available = True
        rig.fleet.refresh("local")
        with capture_logs() as logs:
            assert 0 == rig.rep.replicate_pending("local")
        assert "replica_failed" in [e["event"] for e in logs]
        assert 1000 <= rig.catalog.egress_used("remote", month()) < size
        assert ["remote"] == [r.target for r in rig.catalog.replicas(sha)]
    finally:
        rig.close()
        s3.close()
        proxy.stop()


def test_a_photo_changed_in_place_is_refused_by_the_servers_md5_check_after_one_upload(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A photo rewritten in place after its ingest (other bytes, same size and time)
    goes up with the Content-MD5 its ingest took, and the server's check refuses it:
    that refusal is the answer, its bytes sent once (they went up a second time,
    through botocore's own call, for the same refusal).  The quick path stays on."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    target, rig = _queued_rig("s3", tmp_path, s3_server, proxy.endpoint)
    try:
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        rig.ingest(photo)
        _changed_in_place(photo)
        proxy.begun.clear()
        with capture_logs() as logs:
            assert 0 == rig.rep.replicate_pending("s3")
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        assert failed and "not the bytes hashed" in failed[0]  # the server's MD5 check
        puts = [p for m, p in proxy.begun if m == "PUT" and p.endswith(f"/{photo.name}")]
        assert 1 == len(puts), proxy.begun
        assert [] == list(target.keys())
        assert target.presigned.http is not None
    finally:
        rig.close()
        target.close()
        proxy.stop()


def test_bytes_damaged_on_the_way_once_leave_the_quick_path_on(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A photo's PUT refused once for its Content-MD5 (BadDigest: bytes damaged on the
    way), its file unchanged: it goes up again through botocore's own call, and the
    quick path stays on (a passing fault; it was turned off until a restart)."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    refused: list[str] = []

    def once(method: str, path: str, query: str) -> Any:
        if method == "PUT" and "/2008/" in path and not refused:
            refused.append(path)
            return ("refuse", 400, "BadDigest", "The Content-MD5 you specified did not match")
        return "pass"

    proxy = FaultProxy(s3_server.endpoint, once)
    target, rig = _queued_rig("s3", tmp_path, s3_server, proxy.endpoint)
    try:
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        rig.ingest(photo)
        with capture_logs() as logs:
            assert 1 == rig.rep.replicate_pending("s3")
        assert refused, "the link never damaged the photo's PUT"
        stored = list(target.keys())
        assert any(k.endswith(photo.name) for k in stored), stored
        assert "s3_presigned_off" not in [e["event"] for e in logs]
        assert target.presigned.http is not None
    finally:
        rig.close()
        target.close()
        proxy.stop()


def test_a_link_refusing_every_content_md5_costs_no_download_of_another_remotes_copy(
    tmp_path: Path, samples: Path, s3_server: Any
) -> None:
    """A bucket behind a link that refuses every photo's Content-MD5 (BadDigest: a proxy
    that changes bodies on the way, a server's bug), the photo's file in the watch folder
    unchanged: the refusal of the bytes its ingest hashed, whose MD5 it is, is the
    link's, and the bucket is unavailable at once.  It was taken for the file changed in
    place, and the next source was read: the other bucket's copy, downloaded (egress)
    only to be refused again."""
    from tests.servers import FaultProxy

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        ("refuse", 400, "BadDigest", "The Content-MD5 you specified did not match what "
         "was received.") if method == "PUT" and "/2008/" in path else "pass"))  # fmt: skip
    buckets = {"minio": _bucket(tmp_path, s3_server, "minio"),
               "offsite": _bucket(tmp_path, s3_server, "offsite", proxy.endpoint)}  # fmt: skip
    rig = Rig(tmp_path, "minio", "offsite", shared=buckets)
    try:
        for name in buckets:
            rig.states[name].queued = True
        photo = rig.add(sorted(samples.glob("*.jpg"))[0])
        rig.ingest(photo)
        assert 1 == rig.rep.replicate_pending("minio")
        with capture_logs() as logs:
            assert 0 == rig.rep.replicate_pending("offsite")
        assert 0 == rig.catalog.egress_used("minio", month())
        failed = [e["error"] for e in logs if e["event"] == "replica_failed"]
        assert 1 == len(failed) and "other bytes than were sent" in failed[0], failed
        assert not rig.states["offsite"].available
        assert ["minio"] == [r.target for r in rig.catalog.replicas(sha256(photo))]
    finally:
        rig.close()
        for s3 in buckets.values():
            s3.close()
        proxy.stop()
