"""A phone's session, case by case, in milliseconds: the phones' thread runs as in the
daemon, on a real catalog, the real ingest and replication to a local target folder;
only the phone is in memory (``tests/memphone.py``, reached through the same
``PhoneLink`` interface as a real one).  Each test asserts what a person would notice:
the photos in the target folder, byte for byte; the phone's state in `photod status`
(its record in the catalog); the events in the log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from photod import config, staging
from photod.catalog import Catalog, DeviceRecord
from photod.devices import DeviceManager
from photod.errors import SourceChanged
from photod.fleet import Fleet, build_targets
from photod.ingest import Ingestor
from photod.models import VerifyMethod
from photod.replicate import Replicator
from photod.targets.records import Installation
from tests.conftest import make_mov, no_room_for_a_file, target_files
from tests.fakephone import jpeg
from tests.memphone import MTIME_NS, MemLink, MemPhone, MemUsbmux

UDID = "00008110-000A1B2C3D4E5F60"
Events = list[MutableMapping[str, Any]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(pred: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class PhoneRig:
    """photod's phone side on a real pipeline: catalog, ingest, replication to the
    local target ``lib``, and the phones' thread with in-memory usbmuxd and phones.
    Retries wait 1 ms instead of seconds."""

    def __init__(
        self,
        tmp: Path,
        external: bool = False,
        also: Path | None = None,
        mux: MemUsbmux | None = None,
        reserve: str = "",
    ) -> None:
        """``also``: a second local target's folder ("lib2"); ``mux``: another usbmuxd;
        ``reserve``: the space ``lib`` keeps free."""
        self.tmp = tmp
        self.lib = tmp / "lib"
        media = '\nmedia = "external"' if external else ""
        media += f'\nreserve = "{reserve}"' if reserve else ""
        second = f'[[targets]]\nname = "lib2"\ntype = "local"\npath = "{also}"\n' if also else ""
        text = (
            '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n'
            '[[sources]]\nname = "phones"\ntype = "iphone"\ntimeout = "20ms"\n'
            f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{self.lib}"{media}\n{second}'
            f'[daemon]\nstate_dir = "{tmp}/state"\nretry_interval = "1ms"\nretry_max = "1ms"\n'
            'rescan_interval = "1h"\n'
        )  # fmt: skip
        cfg = config.parse(text, tmp / "photod.toml")
        (tmp / "state").mkdir(exist_ok=True)  # (a second rig on it: a restart)
        self.staging = cfg.source_roots()["phones"]
        self.catalog = Catalog(tmp / "state" / "catalog.sqlite")
        stop = threading.Event()
        me = Installation("1" * 32, "rig")
        self.fleet = Fleet(
            self.catalog, build_targets(cfg.targets_settings(), stop, me), stop, retry_max=0
        )
        for name in ("lib", "lib2") if also else ("lib",):
            self.fleet.refresh(name)
        self.replicator = Replicator(
            self.catalog, self.fleet, cfg.policy.rule(), stop, cfg.source_roots(), 0, 0
        )
        ingestor = Ingestor(cfg.ingest, cfg.source_roots(), self.catalog, self.replicator)
        self.ingestor = ingestor  # what the phone import hands each staged file to
        self.workers = ThreadPoolExecutor(2, thread_name_prefix="ingest")
        self.mux = mux or MemUsbmux()
        self.on_bus: dict[str, str] = {}  # the USB bus as sysfs shows it
        self.phones = DeviceManager(
            cfg.iphones,
            cfg.daemon,
            cfg.source_roots(),
            tmp / "state" / "pairing",
            self.catalog,
            ingestor,
            self.workers,
            lambda: bool(self.fleet.available()),  # as the pipeline asks
            connect=self.mux.connect,
            watch=self.mux.watch,
            on_bus=lambda: dict(self.on_bus),
            retry=0.001,
        )
        self.phones.start()
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.phones.stop()
        self.workers.shutdown(wait=True)
        self.replicator.close()
        self.catalog.close()

    def record(self) -> DeviceRecord | None:
        """The phone as `photod status` shows it, once the states photod already gave
        it are in the catalog: they are saved in order on the phones' catalog lane, a
        moment after their event is logged (under load, "device_import_finished" and
        even "device_detached" were seen before the import's counts were saved)."""
        queued = self.phones.lane.post(lambda: None)  # (None: the lane is closed, flushed)
        if queued is not None:
            queued.result(timeout=30)
        return next((d for d in self.catalog.devices() if d.udid == UDID), None)

    def state(self) -> tuple[str, str] | None:
        r = self.record()
        return None if r is None else (r.state, r.detail)

    def on_target(self) -> set[str]:
        """The SHA-256 of every photo in the target folder."""
        return set(target_files(self.lib).values()) if self.lib.is_dir() else set()

    def staged(self) -> list[str]:
        return sorted(p.name for p in self.staging.rglob("*") if p.is_file())


@pytest.fixture
def events() -> Iterator[Events]:
    with capture_logs() as captured:
        yield captured


def named(events: Events, name: str) -> Events:
    return [e for e in list(events) if e["event"] == name]


def photos(tmp: Path, n: int, start: int = 1) -> dict[str, bytes]:
    """n small, unique, real JPEGs by AFC path."""
    out = {}
    for i in range(start, start + n):
        path = f"/DCIM/100APPLE/IMG_{i:04d}.JPG"
        out[path] = jpeg(tmp / "roll" / path.lstrip("/"), i).read_bytes()
    return out


def imported(rig: PhoneRig, phone: MemPhone) -> bool:
    return rig.on_target() == {sha(b) for b in phone.files.values()}


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., PhoneRig]]:
    rigs: list[PhoneRig] = []

    def make(**kw: Any) -> PhoneRig:
        rigs.append(PhoneRig(tmp_path, **kw))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def test_untrusted_phone_is_asked_again_and_imports_once_trust_is_tapped(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone that does not trust this computer: 'tap Trust' is said once and shown as
    its state while photod keeps asking; once Trust is tapped, everything is imported."""
    rig = make_rig()
    phone = MemPhone(UDID, photos(tmp_path, 5), name="Anna's iPhone", paired=False)
    phone.trust = "pending"
    rig.mux.plug(phone)

    wait_until(lambda: rig.state() == ("untrusted", "unlock the iPhone and tap Trust"), "untrusted")
    wait_until(lambda: phone.pair_attempts >= 3, "three pairing requests")
    [told] = named(events, "device_untrusted")
    assert ("Anna's iPhone", UDID, "unlock the iPhone and tap Trust") == (
        told["device"], told["udid"], told["action"],
    )  # fmt: skip
    assert (set(), {}) == (rig.on_target(), dict(phone.opened))  # nothing read yet

    phone.trust = "trusted"  # the person taps Trust
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    wait_until(lambda: rig.state() == ("imported", "everything on the phone is imported"), "state")
    assert imported(rig, phone)
    assert 5 == rig.record().last_import["imported"]  # type: ignore[union-attr]
    assert 1 == len(named(events, "device_untrusted"))
    rig.phones.stop()  # photod stops, the phone still plugged in
    assert ("detached", "photod stopped") == rig.state()


def test_dont_trust_is_said_once_and_asked_again_only_at_the_next_plug_in(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """Don't Trust: one event and the state that says to plug in again; no retry loop
    asks the phone again until it is unplugged and plugged in."""
    rig = make_rig()
    phone = MemPhone(UDID, photos(tmp_path, 3), paired=False, trust="denied")
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_pairing_denied"), "Don't Trust said")
    action = named(events, "device_pairing_denied")[0]["action"]
    assert "unplug and plug in again" in action
    wait_until(lambda: rig.state() == ("pairing_denied", action), "its state")
    attempts, connects = phone.pair_attempts, phone.connects
    time.sleep(0.05)  # 50 retry intervals
    assert (attempts, connects) == (phone.pair_attempts, phone.connects)

    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    phone.trust = "trusted"
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert 1 == len(named(events, "device_pairing_denied"))


def test_locked_phone_waits_and_imports_after_unlock(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A locked phone: 'unlock the iPhone' is said once and shown while photod tries
    again; after the unlock every photo is imported."""
    rig = make_rig()
    phone = MemPhone(UDID, photos(tmp_path, 4), locked=True)
    rig.mux.plug(phone)
    wait_until(lambda: rig.state() == ("locked", "unlock the iPhone"), "locked")
    wait_until(lambda: phone.connects >= 3, "tries again")
    assert 1 == len(named(events, "device_locked"))
    assert "info" == named(events, "device_locked")[0]["log_level"]
    assert set() == rig.on_target()

    phone.locked = False  # the person unlocks it
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    wait_until(lambda: rig.state() == ("imported", "everything on the phone is imported"), "state")


def test_stalled_link_is_reported_and_retried_until_it_answers(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The link stops answering mid-import: each stall is a warning naming the timeout,
    the phone shows 'stalled', the import is tried again; once the link answers,
    everything is imported, nothing half-read left in staging."""
    rig = make_rig()
    files = photos(tmp_path, 6)
    phone = MemPhone(UDID, files, stall_after=sum(len(b) for b in files.values()) // 2)
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_stalled")) >= 2, "two stalls")
    stalled = named(events, "device_stalled")[0]
    assert ("warning", "no answer to 'read' within 0.02 s") == (
        stalled["log_level"], stalled["detail"],
    )  # fmt: skip
    assert "try another cable or port" in stalled["action"]
    wait_until(lambda: (rig.state() or ("",))[0] == "stalled", "the state")
    assert phone.connects >= 2  # retried

    phone.stall_after = None  # the link answers again
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert [] == rig.staged()


def test_a_full_staging_disk_is_said_once_whichever_file_it_strikes(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """Staging on a real filesystem with room for no more files: each retry fails on
    whichever file or folder it reaches first (a folder, or a file in another), and
    still the full disk is one warning (it was one per name, a flood), shown in status
    while the retries go on; once space is freed, everything is imported."""
    staging = tmp_path / "state" / "import"
    with no_room_for_a_file(staging, keep=(f"phones/{UDID}/DCIM/100APPLE",)) as fillers:
        files = photos(tmp_path, 3)
        for i in range(3):  # and three more in another folder
            files[f"/DCIM/101APPLE/IMG_{i:04d}.JPG"] = jpeg(
                tmp_path / f"b{i}.jpg", 50 + i
            ).read_bytes()
        rig = make_rig()
        phone = MemPhone(UDID, files)
        rig.mux.plug(phone)
        wait_until(lambda: phone.connects >= 20, "many retries")
        [failed] = named(events, "device_import_failed")
        assert "No space left" in failed["error"] and "free some space" in failed["detail"]
        wait_until(lambda: rig.state() == ("error", failed["error"]), "the full disk in status")

        shutil.rmtree(fillers)
        wait_until(lambda: named(events, "device_import_finished"), "the import")
        assert imported(rig, phone)
        rig.close()


def test_unplug_mid_file_leaves_nothing_partial_and_next_plug_in_finishes(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """Unplugged in the middle of a file: the detach says how many files are left;
    nothing half-read is in staging, the catalog or the target; the next plug-in
    imports the rest, every file byte for byte."""
    rig = make_rig()
    files = photos(tmp_path, 8)
    phone = MemPhone(UDID, files, cut_after=sum(len(b) for b in files.values()) // 2 + 100)
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    gone = named(events, "device_detached")[0]
    assert gone["unfinished"] >= 1
    left = gone["unfinished"]
    wait_until(lambda: rig.state() == ("detached", f"{left} file(s) not imported yet"), "state")
    # (A small file handed to an ingest worker just before is written whole under its
    # partial name for a moment: nothing half-read stays.)
    wait_until(
        lambda: not [n for n in rig.staged() if n.endswith((".part", ".part.json"))],
        "no partial file in staging",
        timeout=2,
    )
    # A file handed to ingest before the unplug was whole: it lands.  Once it has,
    # the catalog and the target hold the same whole photos, and not all of them.
    wait_until(lambda: len(rig.on_target()) == rig.catalog.counts()[0], "the hand-overs")
    assert rig.on_target() < {sha(b) for b in files.values()}

    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    # Only what was left is read again (a file being handed to ingest at the unplug
    # was whole in staging: it is in by now).
    assert 0 < named(events, "device_import_started")[-1]["to_read"] <= left
    assert [] == rig.staged()


def test_a_phone_answering_each_read_in_small_pieces_still_gives_whole_files(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone whose reads answer less than asked before a file's end (a busy phone, a
    slow link): each file is read on to its end, byte for byte, even one whose
    length is a whole number of pieces; none is taken for ended early."""
    rig = make_rig()
    files = photos(tmp_path, 3)
    piece = 100  # (the photos are some 750 bytes)
    exact = "/DCIM/100APPLE/IMG_0009.JPG"
    data = next(iter(files.values()))
    files[exact] = data[: len(data) // piece * piece]  # (a cut JPEG, kept as it is)
    phone = MemPhone(UDID, files, piece=piece)
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert not named(events, "device_file_failed")
    # One grows after the listing (the phone finishing it) to past a piece's end: its
    # listed length is never taken for the whole photo.
    grown, whole = "/DCIM/100APPLE/IMG_0010.JPG", photos(tmp_path, 1, start=10)
    [data] = whole.values()
    phone.files[grown] = data[: len(data) // piece * piece]

    def finishes(path: str) -> None:
        if path == grown:
            phone.files[grown] = data

    phone.on_read = finishes
    rig.mux.unplug(phone)
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_import_finished")) == 2, "the second import")
    assert sha(phone.files[grown][: len(data) // piece * piece]) not in rig.on_target()


def test_a_file_grown_to_past_one_piece_of_its_listed_length_is_never_cut_there(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone answering in pieces, and a photo it lists (still being written) at just
    one piece's length: by the read it has grown. The first read brings exactly the
    listed length, short of what was asked: that is no proof of the file's end (no
    earlier read showed the phone answers in full). Its cut first piece is never
    stored as the photo; the file is one failure, and comes in whole at the next
    plug-in."""
    rig = make_rig()
    path = "/DCIM/100APPLE/IMG_0077.JPG"
    [whole] = photos(tmp_path, 1, start=77).values()
    piece = 300  # (the photo is some 750 bytes)
    phone = MemPhone(UDID, {path: whole[:piece]}, piece=piece)

    def finishes(p: str) -> None:
        phone.files[path] = whole  # the phone finishes writing it

    phone.on_read = finishes
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert sha(whole[:piece]) not in rig.on_target()
    [failed] = named(events, "device_file_failed")
    assert (path, False) == (failed["path"], failed["exc_info"])
    assert [] == rig.staged()

    rig.mux.unplug(phone)
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_import_finished")) == 2, "the next import")
    assert {sha(whole)} == rig.on_target()


def test_unplug_mid_movie_resumes_from_its_checkpoint(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A movie longer than a checkpoint, unplugged past it: the next plug-in seeks to
    the checkpoint and reads only the rest; the copy on the target is byte-identical."""
    rig = make_rig()
    when = datetime(2026, 9, 20, 8, 0, tzinfo=UTC)
    payload = bytes(range(256)) * ((staging.CHECKPOINT + 4 * 1024**2) // 256)
    movie = make_mov(tmp_path / "IMG_9001.MOV", when, payload=payload).read_bytes()
    path = "/DCIM/100APPLE/IMG_9001.MOV"
    phone = MemPhone(UDID, {path: movie}, cut_after=staging.CHECKPOINT + 2 * 1024**2)
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    assert set() == rig.on_target()

    phone.reset_counters()
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    [resumed] = named(events, "device_import_resumed")
    assert (path, staging.CHECKPOINT) == (resumed["path"], resumed["offset"])
    assert [(path, staging.CHECKPOINT)] == phone.seeks
    assert len(movie) - staging.CHECKPOINT == phone.bytes_read[path]
    assert imported(rig, phone)
    assert [] == rig.staged()


def test_phone_with_no_target_waits_and_imports_when_one_is_ready(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """No target can take the files (the external drive is not plugged in): the phone
    waits, said once, and nothing is read from it; when the drive comes, it imports."""
    rig = make_rig(external=True)
    phone = MemPhone(UDID, photos(tmp_path, 4))
    rig.mux.plug(phone)
    wait_until(lambda: rig.state() == ("waiting", "no target is available"), "waiting")
    wait_until(lambda: phone.connects >= 3, "tries again")
    [waiting] = named(events, "device_waiting")
    assert "warning" == waiting["log_level"]
    assert {} == dict(phone.opened)

    rig.lib.mkdir()  # the drive is plugged in
    rig.fleet.refresh("lib")
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert 1 == len(named(events, "device_waiting"))


def test_phone_hidden_by_usbmuxd_until_trust_is_reported_from_the_bus(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """On Linux usbmuxd lists a phone only once it trusts this computer: seen on the
    USB bus, it is said (once) to wait for Trust; once usbmuxd lists it, it imports."""
    rig = make_rig()
    rig.on_bus[UDID.replace("-", "")] = "iPhone"
    wait_until(lambda: rig.state() == ("untrusted", "unlock the iPhone and tap Trust"), "told")
    time.sleep(0.02)  # 20 looks at the bus
    assert 1 == len(named(events, "device_untrusted"))

    phone = MemPhone(UDID, photos(tmp_path, 2))
    rig.mux.plug(phone)  # Trust tapped: usbmuxd lists the phone
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert 1 == len(named(events, "device_untrusted"))


def test_an_older_phone_waiting_for_trust_is_one_phone_in_status(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone from before the iPhone XS has a 40-digit UDID, which usbmuxd gives in
    lower case: seen on the bus waiting for Trust, then imported, it is one phone in
    `photod status`, not two (one of them stuck at "tap Trust" for ever)."""
    old = "2b6f0cc904d137be2e1730235f5664094b831186"
    rig = make_rig()
    rig.on_bus[old.upper()] = "iPhone"  # (as the bus's serial is kept: ``usb.normal``)
    wait_until(lambda: any(d.state == "untrusted" for d in rig.catalog.devices()), "told")
    phone = MemPhone(old, photos(tmp_path, 2))
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    assert [old] == [d.udid for d in rig.catalog.devices()]


def test_a_phone_copy_on_the_staging_disk_is_proved_and_made_as_any_copy(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The library is on the disk that holds the staging folder (the usual home
    folder): each staged file becomes the library's copy by a link, not a second
    write.  Each copy still counted only once read back; each has the phone's time and
    the mode a written copy gets (under the umask, whatever the staging's)."""
    when = datetime(2026, 9, 20, 8, 0, tzinfo=UTC)
    files = photos(tmp_path, 3)
    files["/DCIM/100APPLE/IMG_0001.MOV"] = make_mov(tmp_path / "IMG_0001.MOV", when).read_bytes()
    old = os.umask(0o002)  # a file created with the default 0o666 would be group-writable
    try:
        rig = make_rig()
        phone = MemPhone(UDID, files)
        rig.mux.plug(phone)
        wait_until(lambda: named(events, "device_import_finished"), "the import")
    finally:
        os.umask(old)
    assert imported(rig, phone)
    copies = [p for p in rig.lib.rglob("*") if p.is_file() and ".photod" not in p.parts]
    assert 4 == len(copies)
    for copy in copies:
        st = copy.stat()
        assert 0o644 == stat.S_IMODE(st.st_mode), copy.name
        assert MTIME_NS == st.st_mtime_ns, copy.name
        assert 1 == st.st_nlink, f"{copy.name}: still linked into staging"
        [replica] = rig.catalog.replicas(sha(copy.read_bytes()))
        assert VerifyMethod.READBACK == replica.method
    assert [] == rig.staged()


def test_two_targets_on_the_staging_disk_get_two_copies_not_one_file(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A library and an archive folder on the same disk as the staging: one may take
    the staged file by a link, the other gets its bytes written. Two copies are two
    files: changing one (a photo editor writing tags in place) leaves the other whole."""
    rig = make_rig(also=tmp_path / "archive")
    phone = MemPhone(UDID, photos(tmp_path, 2))
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    assert imported(rig, phone)
    for path, data in phone.files.items():
        name = path.rpartition("/")[2]
        [a] = [p for p in rig.lib.rglob(name)]
        [b] = [p for p in (tmp_path / "archive").rglob(name)]
        assert a.stat().st_ino != b.stat().st_ino
        with open(a, "r+b") as f:
            f.write(b"tags written in place")
        assert data == b.read_bytes()
        assert {"lib", "lib2"} == {r.target for r in rig.catalog.replicas(sha(data))}


@pytest.mark.parametrize("targets", ["the library alone", "and a drive on another disk"])
def test_staged_bytes_that_are_not_what_the_phone_sent_are_copied_nowhere(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path, targets: str
) -> None:
    """The staged file went bad after it was hashed (rot, a bug): the ingest says the
    file changed, neither the target that would link it nor one on another disk holds or
    records a copy, and the phone's file is read again: the next plug-in brings it in."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        rig = make_rig(also=shm / "usb" if targets.startswith("and") else None)
        files = photos(tmp_path, 1)
        [(path, good)] = files.items()
        staged = staging.staged_path(rig.staging, UDID, path)
        staged.parent.mkdir(parents=True)
        staged.write_bytes(good[:-10] + b"rotten....")
        with pytest.raises(SourceChanged):
            rig.ingestor.ingest("phones", staged, sha256=sha(good))
        for root in (rig.lib, shm / "usb"):
            if root.exists():
                copies = [p for p in root.rglob("*") if p.is_file() and ".photod" not in p.parts]
                assert [] == copies
        assert [] == rig.catalog.replicas(sha(good))
        assert 1 == staged.stat().st_nlink

        phone = MemPhone(UDID, files)
        rig.mux.plug(phone)
        wait_until(lambda: named(events, "device_import_finished"), "the import")
        rig.replicator.replicate_pending("lib")  # the daemon's catch-up, from the staging
        assert imported(rig, phone)
    finally:
        shutil.rmtree(shm)


class _CloseSwallowsCancel(MemUsbmux):
    """A usbmuxd whose links' ``close`` (after an import) waits until it is cancelled,
    and swallows that cancel: as pymobiledevice3's AFC close does with one, and Python
    3.11's ``asyncio.wait_for`` with one that lands as what it awaits completes."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = threading.Event()

    async def connect(self, udid: str, pair_dir: Path, timeout: float) -> MemLink:
        link = await super().connect(udid, pair_dir, timeout)
        closing = self.closing

        class Link(MemLink):
            async def close(self) -> None:
                await super().close()
                if self.phone.files and not closing.is_set():  # the first import's close
                    closing.set()
                    with contextlib.suppress(asyncio.CancelledError):  # swallowed
                        await asyncio.Event().wait()  # until the stop or the unplug

        return Link(self, link.phone, timeout)


def test_a_stop_while_the_phones_link_closes_ends_at_once(
    make_rig: Callable[..., PhoneRig], tmp_path: Path
) -> None:
    """The daemon stops just as an import ends and the phone's link is closed, and the
    close swallows the stop (a library's race): the stop still ends at once, not after
    the phones' thread's 30 s grace, and `photod status` says photod stopped."""
    mux = _CloseSwallowsCancel()
    rig = make_rig(mux=mux)
    phone = MemPhone(UDID, photos(tmp_path, 2))
    rig.mux.plug(phone)
    assert mux.closing.wait(20), "the import never ended"
    assert imported(rig, phone)
    started = time.monotonic()
    rig.phones.stop()
    took = time.monotonic() - started
    assert not rig.phones.alive(), "the phones' thread still runs after the stop"
    assert took < 5, f"the stop took {took:.1f} s"
    assert ("detached", "photod stopped") == rig.state()


def test_an_unplug_while_the_phones_link_closes_ends_the_session(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The phone is unplugged just as its import ends and its link is closed, and the
    close swallows the unplug's cancel: the session still ends (the phone is detached,
    nothing left to import), and the next plug-in is a new session that finds the
    photo taken meanwhile."""
    mux = _CloseSwallowsCancel()
    rig = make_rig(mux=mux)
    phone = MemPhone(UDID, photos(tmp_path, 2))
    rig.mux.plug(phone)
    assert mux.closing.wait(20), "the import never ended"
    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the session ends at the unplug")
    assert "nothing left to import" == named(events, "device_detached")[0]["detail"]
    phone.files.update(photos(tmp_path, 1, start=3))  # a photo taken while unplugged
    rig.mux.plug(phone)
    wait_until(lambda: imported(rig, phone), "the next plug-in imports the new photo")


def test_a_staged_copy_lost_before_any_target_took_it_is_read_from_the_phone_again(
    tmp_path: Path, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library drive has no room: a phone's photos wait in staging, their only copy
    off the phone, synced to the disk before the phone's files are counted as read.
    Those staged files are then lost (emptied, as a power cut left unsynced files): with
    room again, they are not said lost ("deleted before any target could take a copy")
    while the phone still has them; they are read from it again at the next plug-in,
    and reach the library."""
    synced: list[str] = []  # the files and folders os.fsync made durable
    fsync = os.fsync

    def spied(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spied)
    rig = PhoneRig(tmp_path, reserve="1000TiB")
    phone = MemPhone(UDID, photos(tmp_path, 3))
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    staged = sorted(p for p in rig.staging.rglob("*") if p.is_file())
    assert (3, set()) == (len(staged), rig.on_target())
    assert {str(p) for p in staged} | {str(staged[0].parent)} <= set(synced)
    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    rig.close()

    for path in staged:
        os.truncate(path, 0)
    rig = PhoneRig(tmp_path, mux=rig.mux)  # room again: photod restarted
    try:
        rig.replicator.replicate_pending("lib")
        assert [] == named(events, "asset_lost")
        again = named(events, "device_file_read_again")
        assert {f"/DCIM/100APPLE/IMG_000{i}.JPG" for i in (1, 2, 3)} == {
            e["phone_path"] for e in again
        }
        rig.mux.plug(phone)
        wait_until(lambda: len(named(events, "device_import_finished")) == 2, "the re-read")
        assert 3 == named(events, "device_import_started")[-1]["to_read"]
        rig.replicator.replicate_pending("lib")
        assert imported(rig, phone)
    finally:
        rig.close()


def test_a_photo_waiting_in_staging_is_never_replaced_by_another_of_its_name(
    tmp_path: Path, events: Events
) -> None:
    """A photo whose only copy off the phone is in staging (the library drive full),
    deleted on the phone, and another photo takes its name there: the new one is not
    staged over the first (its copy would be gone with no target holding it); it waits,
    said failed and retried, and once a target has the first, both are backed up."""
    path = "/DCIM/100APPLE/IMG_0001.JPG"
    first = photos(tmp_path, 1)[path]
    second = photos(tmp_path / "later", 1, start=2)["/DCIM/100APPLE/IMG_0002.JPG"]
    assert len(first) != len(second)  # (the in-memory phone gives every file one time)
    rig = PhoneRig(tmp_path, reserve="1000TiB")  # the library drive has no room
    phone = MemPhone(UDID, {path: first})
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    staged = staging.staged_path(rig.staging, UDID, path)
    assert (sha(first), set()) == (sha(staged.read_bytes()), rig.on_target())
    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")

    phone.files = {path: second}  # deleted on the phone; a new photo of the same name
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_import_finished")) == 2, "the next import")
    assert sha(first) == sha(staged.read_bytes())  # the first photo's only copy, kept
    [waits] = named(events, "device_file_failed")
    assert path == waits["path"] and "staging name holds another photo" in waits["error"]
    rig.mux.unplug(phone)
    wait_until(lambda: len(named(events, "device_detached")) == 2, "the unplug")
    rig.close()

    rig = PhoneRig(tmp_path, mux=rig.mux)  # room again: photod restarted
    try:
        rig.replicator.replicate_pending("lib")  # the first photo, from staging
        rig.mux.plug(phone)
        wait_until(lambda: len(named(events, "device_import_finished")) == 3, "the retry")
        rig.replicator.replicate_pending("lib")
        assert {sha(first), sha(second)} == rig.on_target()
    finally:
        rig.close()


def _both_backed_up_once_restarted(
    tmp_path: Path,
    rig: PhoneRig,
    phone: MemPhone,
    events: Events,
    imports: int,
    pair: tuple[bytes, bytes],
) -> None:
    """photod restarted with room on the library drive again: what waited in staging
    goes to the target, the phone is plugged in again (its ``imports``-th import), and
    both photos of ``pair`` end up backed up."""
    rig.close()
    rig = PhoneRig(tmp_path, mux=rig.mux)  # room again: photod restarted
    try:
        rig.replicator.replicate_pending("lib")
        rig.mux.plug(phone)
        wait_until(lambda: len(named(events, "device_import_finished")) == imports, "the retry")
        rig.replicator.replicate_pending("lib")
        assert {sha(pair[0]), sha(pair[1])} == rig.on_target()
    finally:
        rig.close()


def test_two_paths_of_one_staging_name_in_one_import_never_stage_over_each_other(
    tmp_path: Path, events: Events
) -> None:
    """Two of the phone's paths making one staging name (a name ending as a partial
    copy's, and one spelled as its staging name), both new at one plug-in and read at once, the
    library drive full: the second is never staged over the first while the first is
    still on its way in (its only copy off the phone would be gone, with the catalog
    calling it imported); one waits, said failed, and both are backed up in the end."""
    odd = "/DCIM/100APPLE/IMG_0001.JPG.part"
    plain = "/DCIM/100APPLE/" + staging.stage_name("IMG_0001.JPG.part")
    staged = staging.staged_path(tmp_path, UDID, odd)
    assert staged == staging.staged_path(tmp_path, UDID, plain)
    [first, second] = photos(tmp_path, 2).values()
    rig = PhoneRig(tmp_path, reserve="1000TiB")  # the library drive has no room
    phone = MemPhone(UDID, {odd: first, plain: second})
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    [waits] = named(events, "device_file_failed")
    assert "of its staging name is being read" in waits["error"]
    held = staging.staged_path(rig.staging, UDID, odd).read_bytes()
    kept = {odd: first, plain: second}[({odd, plain} - {waits["path"]}).pop()]
    assert sha(kept) == sha(held)  # the photo recorded as read is the one staged
    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    _both_backed_up_once_restarted(tmp_path, rig, phone, events, 2, (first, second))


def test_two_spellings_of_one_accented_name_never_stage_over_each_other(
    tmp_path: Path, events: Events
) -> None:
    """Two of the phone's paths that differ only in how an accent is spelled ("é" as one
    code point, and as "e" with a combining accent: a file saved from an app, another
    from a Mac) are one staging file on a Mac's disk, which is blind to that.  Both
    new at one plug-in, the library drive full: the second waits (said failed) rather
    than being staged over the first's only copy off the phone, and both are backed up
    in the end."""
    composed, decomposed = "/DCIM/100APPLE/Caf\u00e9.JPG", "/DCIM/100APPLE/Cafe\u0301.JPG"
    first = photos(tmp_path, 1)["/DCIM/100APPLE/IMG_0001.JPG"]
    second = photos(tmp_path / "later", 1, start=2)["/DCIM/100APPLE/IMG_0002.JPG"]
    rig = PhoneRig(tmp_path, reserve="1000TiB")  # the library drive has no room
    phone = MemPhone(UDID, {composed: first, decomposed: second})
    rig.mux.plug(phone)
    wait_until(lambda: named(events, "device_import_finished"), "the import")
    [waits] = named(events, "device_file_failed")
    assert waits["error"].startswith("StagingTaken: ")
    rig.mux.unplug(phone)
    wait_until(lambda: named(events, "device_detached"), "the unplug")
    _both_backed_up_once_restarted(tmp_path, rig, phone, events, 2, (first, second))


@pytest.fixture
def case_blind_staging(tmp_path: Path) -> Iterator[Path]:
    """The rig's staging folder on a real disk blind to case, as a Mac's state dir is
    (APFS's default): exFAT on a loop device, with exfat-fuse (ext4's casefold needs a
    kernel built with CONFIG_UNICODE, which not every one is)."""
    for tool in ("mkfs.exfat", "mount.exfat-fuse", "losetup"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install exfatprogs exfat-fuse (CI does)")
    image, mnt = tmp_path / "staging.img", tmp_path / "state" / "import" / "phones"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    r = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"losetup failed ({r.stderr.strip()}): this test needs root, as in CI")
    loop = r.stdout.strip()
    try:
        subprocess.run(["mount.exfat-fuse", loop, str(mnt)], check=True, capture_output=True)
        (mnt / "Case").touch()
        assert (mnt / "CASE").exists(), "exFAT here tells names apart by case"
        (mnt / "Case").unlink()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


@pytest.mark.parametrize("later", [False, True], ids=["one-plug-in", "a-later-plug-in"])
def test_two_names_only_case_tells_apart_never_stage_over_each_other_on_a_case_blind_disk(
    tmp_path: Path, events: Events, case_blind_staging: Path, later: bool
) -> None:
    """Staging on a disk blind to case (a Mac's, by default), the library drive full:
    two of the phone's paths that only case tells apart (``IMG_0001.JPG`` and
    ``img_0001.jpg``, as an iPhone's case-sensitive disk may list them) are one staging
    file there.  Whether both are new at one plug-in or the second comes at a later
    one, the second is never staged over the first's only copy off the phone: one
    waits, said failed, and both are backed up in the end."""
    upper, lower = "/DCIM/100APPLE/IMG_0001.JPG", "/DCIM/100APPLE/img_0001.jpg"
    first = photos(tmp_path, 1)[upper]
    second = photos(tmp_path / "later", 1, start=2)["/DCIM/100APPLE/IMG_0002.JPG"]
    assert len(first) != len(second)  # (the in-memory phone gives every file one time)
    rig = PhoneRig(tmp_path, reserve="1000TiB")  # the library drive has no room
    phone = MemPhone(UDID, {upper: first} if later else {upper: first, lower: second})
    if later:
        rig.mux.plug(phone)
        wait_until(lambda: named(events, "device_import_finished"), "the first import")
        rig.mux.unplug(phone)
        wait_until(lambda: named(events, "device_detached"), "the unplug")
        phone.files = {upper: first, lower: second}
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_import_finished")) == 1 + later, "the import")
    [waits] = named(events, "device_file_failed")
    assert waits["error"].startswith("StagingTaken: ")  # (not the disk's doing)
    kept = {upper: first, lower: second}[({upper, lower} - {waits["path"]}).pop()]
    held = staging.staged_path(rig.staging, UDID, upper).read_bytes()
    assert sha(kept) == sha(held)  # the photo recorded as read is the one staged
    assert [] == named(events, "asset_lost")
    rig.mux.unplug(phone)
    wait_until(lambda: len(named(events, "device_detached")) == 1 + later, "the unplug")
    _both_backed_up_once_restarted(tmp_path, rig, phone, events, 2 + later, (first, second))


def test_two_phones_of_one_name_are_never_taken_for_each_other(
    tmp_path: Path, events: Events
) -> None:
    """A family's two phones both called "iPhone" (iOS's own name): `photod status
    --device iPhone` does not answer for the first it finds (this one all protected,
    the other not: "safe to delete" would be about the wrong phone); it names both
    UDIDs and exits 1, and each answers by its UDID."""
    other = "00008120-0011223344556677"
    rig = PhoneRig(tmp_path)
    roll = photos(tmp_path, 3, start=10)
    rig.mux.plug(MemPhone(UDID, photos(tmp_path, 3), name="iPhone"))
    rig.mux.plug(MemPhone(other, roll, name="iPhone", unreadable=set(list(roll)[:2])))
    wait_until(lambda: len(named(events, "device_import_finished")) == 2, "both imports")
    rig.close()
    config = tmp_path / "photod.toml"  # the rig's, as a file
    config.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n'
        '[[sources]]\nname = "phones"\ntype = "iphone"\n'
        f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{rig.lib}"\n'
        f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n'
    )  # fmt: skip
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")}

    def status(device: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "status",
                               "--device", device], capture_output=True, text=True, env=env,
                              timeout=60)  # fmt: skip

    both = status("iPhone")
    assert (1, "") == (both.returncode, both.stdout)
    assert f"2 phones are named 'iPhone': ask for one by its UDID ({UDID}, {other})" in both.stderr
    assert (0, 1) == (status(UDID).returncode, status(other).returncode)


def test_safe_to_delete_goes_by_when_a_photo_was_taken_not_when_it_reached_the_phone(
    tmp_path: Path, events: Events
) -> None:
    """A photo taken in 2019 and saved to the phone in 2026 (AirDropped, downloaded):
    the phone's file times say 2026, its EXIF says 2019, and Photos sorts it by 2019.
    While it is not protected, "everything taken before …" must not reach past 2019
    (it said 2026: deleting by date in Photos would have taken it)."""
    from photod import phonestatus
    from photod.models import PolicyRule

    old = "/DCIM/100APPLE/IMG_0007.JPG"
    roll = {old: jpeg(tmp_path / "roll" / "old.jpg", 7, "2019:03:04 10:00:00").read_bytes()}
    rig = PhoneRig(tmp_path, reserve="1000TiB")  # the library drive has no room
    try:
        rig.mux.plug(MemPhone(UDID, roll))
        wait_until(lambda: named(events, "device_import_finished"), "the import")
        record = rig.record()
        assert record is not None
        infos = {"lib": rig.fleet.targets["lib"].info}
        report = phonestatus.device_report(rig.catalog, record, PolicyRule(1, 1, 0), infos)
        assert "2019-03-04T10:00:00" == report["safe_before"]
        assert [(old, "2019-03-04T10:00:00")] == [
            (f["path"], f["taken_at"]) for f in report["not_protected"]
        ]
    finally:
        rig.close()


def test_a_live_photos_movie_waits_once_for_its_still_and_stays_beside_it(
    tmp_path: Path, events: Events
) -> None:
    """The still of a Live Photo cannot be read at one plug-in (its original briefly in
    iCloud, a read error): its movie is not imported alone then (it would be filed under
    its own date, away from its still for good); at the next plug-in both come in, side
    by side. Should the still fail again, the movie comes in without it (never held
    twice)."""
    from datetime import UTC, datetime

    from tests.conftest import make_mov

    still, movie = "/DCIM/100APPLE/IMG_0042.JPG", "/DCIM/100APPLE/IMG_0042.MOV"
    other_still, other_movie = "/DCIM/100APPLE/IMG_0043.JPG", "/DCIM/100APPLE/IMG_0043.MOV"
    files = {
        still: jpeg(tmp_path / "s.jpg", 42, "2026:09:15 22:00:00").read_bytes(),
        movie: make_mov(tmp_path / "m.mov", datetime(2026, 10, 20, 2, tzinfo=UTC)).read_bytes(),
        other_still: jpeg(tmp_path / "s2.jpg", 43, "2026:09:15 23:00:00").read_bytes(),
        other_movie: make_mov(
            tmp_path / "m2.mov", datetime(2026, 10, 21, 2, tzinfo=UTC), payload=b"\x01" * 4096
        ).read_bytes(),
    }
    rig = PhoneRig(tmp_path)
    try:
        phone = MemPhone(UDID, files, unreadable={still, other_still})
        rig.mux.plug(phone)
        wait_until(lambda: named(events, "device_import_finished"), "the first import")
        assert set() == rig.on_target()
        # (the phone's state is recorded just after the event that says the import ended)
        wait_until(lambda: "2 file(s) wait for their still" in (rig.state() or ("", ""))[1],
                   "the phone's state to say two files wait")  # fmt: skip
        rig.mux.unplug(phone)
        wait_until(lambda: named(events, "device_detached"), "the unplug")

        phone.unreadable = {other_still}  # one still reads now, the other still does not
        rig.mux.plug(phone)
        wait_until(lambda: len(named(events, "device_import_finished")) == 2, "the next import")
        keys = {rel: digest for rel, digest in target_files(rig.lib).items()}
        by_name = {Path(rel).name: Path(rel).parent for rel in keys}
        assert by_name["IMG_0042.MOV"] == by_name["IMG_0042.JPG"]  # side by side
        assert "IMG_0043.MOV" in by_name and "IMG_0043.JPG" not in by_name  # not held twice
    finally:
        rig.close()


def test_a_live_photo_is_not_called_safe_while_its_movie_is_not_protected(
    tmp_path: Path, events: Events
) -> None:
    """A Live Photo is one item in Photos: deleting its still deletes its movie (and its
    edit's .AAE) with it.  The movie's copy found rotten by a scrub (or short of the
    policy for any reason) while the still's are fine, and the movie dated a moment after
    the still (its recording ends after the shutter): "everything taken before <the
    movie's time>" took in the still, so deleting by that date lost the movie.  The whole
    Live Photo must stay on the not-yet-safe side of the line."""
    from photod import phonestatus
    from photod.models import PolicyRule

    still, movie = "/DCIM/100APPLE/IMG_0042.JPG", "/DCIM/100APPLE/IMG_0042.MOV"
    other = "/DCIM/100APPLE/IMG_0041.JPG"
    files = {
        other: jpeg(tmp_path / "o.jpg", 41, "2026:09:15 09:00:00").read_bytes(),
        still: jpeg(tmp_path / "s.jpg", 42, "2026:09:15 10:00:00").read_bytes(),
        movie: make_mov(tmp_path / "m.mov", datetime(2026, 9, 17, 10, tzinfo=UTC)).read_bytes(),
    }
    rig = PhoneRig(tmp_path)
    try:
        rig.mux.plug(MemPhone(UDID, files))
        wait_until(lambda: named(events, "device_import_finished"), "the import")
        wait_until(lambda: len(rig.on_target()) == 3, "three copies")
        # A scrub finds the movie's copy rotten: it no longer counts.
        assert 0 == rig.catalog.replica_bad(sha(files[movie]), "lib", "corrupt", "sha256")
        record = rig.record()
        assert record is not None
        infos = {"lib": rig.fleet.targets["lib"].info}
        report = phonestatus.device_report(rig.catalog, record, PolicyRule(1, 1, 0), infos)
        # The still and its movie are not safe to delete; the other photo is.
        assert (1, [still, movie]) == (
            report["protected"],
            [f["path"] for f in report["not_protected"]],
        )
        assert "2026-09-15T10:00:00" == report["safe_before"]
        assert "IMG_0042.MOV" in report["not_protected"][0]["why"]
        text = phonestatus.render_device(report)
        assert "Everything taken before 2026-09-15 10:00:00 is safe to delete" in text
    finally:
        rig.close()


def test_a_phone_plugged_in_again_and_again_leaves_no_session_behind(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone plugged in every day for a year: each plug-in's session (its progress,
    its task) is let go once it ended, not held by the next one's."""
    import gc

    from photod.phonesession import PhoneSession

    rig = make_rig()
    phone = MemPhone(UDID, photos(tmp_path, 2))
    for n in range(1, 31):
        rig.mux.plug(phone)
        wait_until(lambda n=n: len(named(events, "device_import_finished")) >= n, "the import")
        rig.mux.unplug(phone)
        wait_until(lambda n=n: len(named(events, "device_detached")) >= n, "the unplug")
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, PhoneSession)]
    assert len(alive) <= 2, f"{len(alive)} sessions of 30 plug-ins still held"  # (30 before)
