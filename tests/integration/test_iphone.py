"""Plugging in an iPhone, end to end: a real ``photod run`` process talks through
pymobiledevice3's own client code to a fake usbmuxd, lockdownd and AFC on a local
socket (tests/fakephone.py).  Nothing of photod is mocked."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Photod, sha256, target_files, wait_for, write_config
from tests.fakephone import CameraRoll, FakePhone, FakeUsbmuxd, camera_roll
from tests.integration.conftest import FAST, assert_target_holds, fill
from tests.servers import Webhook

UDID_A = "00008110-000A1B2C3D4E5F60"
UDID_B = "00008120-0011223344556677"


@pytest.fixture
def usbmuxd(tmp_path: Path) -> Iterator[FakeUsbmuxd]:
    mux = FakeUsbmuxd(tmp_path / "usbmuxd.sock")
    mux.start()
    yield mux
    mux.close()


class PhoneSetup:
    def __init__(self, home: Path, mux: FakeUsbmuxd, factory: Callable[[Path], Photod]) -> None:
        self.home = home
        self.mux = mux
        self.factory = factory
        self.lib = home / "lib"
        self.mirror = home / "mirror"

    def photod(
        self,
        iphone: dict[str, Any] | None = None,
        extra: str = "",
        mirror: dict[str, Any] | None = None,
        daemon: str = "",
    ) -> Photod:
        """``mirror``: more settings of the second target (``encrypt = true``, say, or
        the ``path`` of a family's drive another computer shares); ``daemon``: lines
        of ``[daemon]`` (``instance = "desktop"``)."""
        source = {"name": "phones", "type": "iphone", **(iphone or {})}
        (self.home / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
        config = write_config(
            self.home / "photod.toml",
            [source],
            [
                {"name": "lib", "type": "local", "path": str(self.lib)},
                {"name": "mirror", "type": "local", "path": str(self.mirror), **(mirror or {})},
            ],
            {"copies": 2, "media": 1, "offsite": 0},
            FAST.format(home=self.home, daemon=daemon) + extra,
        )
        p = self.factory(config)
        # Its own home, output and log: a second computer's setup on the same phones.
        p.home, p.output, p.log_dir = self.home, self.home / "photod.out", self.home / "log"
        p.env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.home / "run"),
                     USBMUXD_SOCKET_ADDRESS=str(self.mux.socket_path))  # fmt: skip
        return p

    def phone(self, udid: str, name: str, roll: CameraRoll, **kw: Any) -> FakePhone:
        return FakePhone(udid, roll.media, name=name, **kw)


@pytest.fixture
def phones(
    tmp_path: Path, usbmuxd: FakeUsbmuxd, photod_factory: Callable[[Path], Photod]
) -> PhoneSetup:
    return PhoneSetup(tmp_path, usbmuxd, photod_factory)


def hashes(roll: CameraRoll, skip: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    return {sha256(p) for afc, p in roll.files.items() if afc not in skip}


def by_hash(root: Path) -> dict[str, str]:
    return {h: rel for rel, h in target_files(root).items()}


def device(p: Photod, name: str) -> dict[str, Any]:
    r = p.cli("status", "--device", name, "--json")
    assert r.returncode in (0, 1), r.stderr  # 1: not everything on it is protected
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_plug_in_imports_every_original(phones: PhoneSetup, samples: Path, tmp_path: Path) -> None:
    roll = camera_roll(tmp_path / "phoneA", samples, photos=200, live=8, big_video=300 * 1024**2)
    # An edit rendered by Photos, and a photo duplicated byte for byte in another folder.
    render = "/PhotoData/Mutations/DCIM/100APPLE/IMG_5001/Adjustments/FullSizeRender.JPG"
    from tests.fakephone import jpeg

    roll.add(render, jpeg(roll.path(render), 99999))
    dup = "/DCIM/101APPLE/IMG_7777.JPG"
    roll.path(dup).write_bytes(roll.path("/DCIM/100APPLE/IMG_0000.JPG").read_bytes())
    roll.add(dup, roll.path(dup))
    # Something that is not a photo or video: listed, read once, not backed up.
    roll.path("/DCIM/100APPLE/notes.txt").write_text("not a photo")
    # Two originals kept only in iCloud ("Optimize iPhone Storage").
    unreadable = {"/DCIM/100APPLE/IMG_0010.JPG", "/DCIM/101APPLE/IMG_0020.JPG"}
    phone = phones.phone(UDID_A, "Anna's iPhone", roll, unreadable=set(unreadable))

    p = phones.photod({"include_edits": True}).start()
    p.wait_event("usbmuxd_connected")
    sampler = psutil.Process(p.proc.pid)  # type: ignore[union-attr]
    peak = 0
    phones.mux.plug(phone)
    started = p.wait_event("device_import_started", timeout=30)[0]
    assert started["on_phone"] == len(roll.files) + 1  # and notes.txt
    attached = p.events("device_attached")[0]
    assert (attached["device"], attached["udid"], attached["ios"]) == (
        "Anna's iPhone",
        UDID_A,
        "17.5.1",
    )
    assert attached["model"]  # the marketing name, e.g. "iPhone 13 mini"

    def finished() -> bool:
        nonlocal peak
        peak = max(peak, sampler.memory_info().rss)
        return bool(p.events("device_import_finished"))

    wait_for(finished, 180, "the import to finish")
    done = p.events("device_import_finished")[0]
    assert done["unreadable"] == 2
    assert done["imported"] == len(roll.files) - 2 - 1  # the duplicate is the same bytes
    assert p.events("device_import_progress"), "a 300 MB import reports progress"
    # Memory stays bounded whatever the file size (the 300 MB movie is read in chunks).
    assert peak < 250 * 1024**2, f"photod grew to {peak / 1e6:.0f} MB"

    # Every readable original, byte for byte, on both targets, verified.
    want = hashes(roll, skip=unreadable)
    p.wait_event("asset_protected", count=len(want), timeout=60)
    for root in (phones.lib, phones.mirror):
        held = by_hash(root)
        assert set(held) == want
        assert_target_holds(root, {rel: h for h, rel in held.items()})
        # A Live Photo's still, movie and sidecar sit together under one stem; the
        # rendered edit is named after its original and sorts right after it.
        for j in range(8):
            n = 5001 + j
            still = held[sha256(roll.path(f"/DCIM/100APPLE/IMG_{n}.HEIC"))]
            movie = held[sha256(roll.path(f"/DCIM/100APPLE/IMG_{n}.MOV"))]
            aae = held[sha256(roll.path(f"/DCIM/100APPLE/IMG_{n}.AAE"))]
            assert movie == still[: -len("HEIC")] + "MOV"
            assert aae == still[: -len("HEIC")] + "AAE"
        edit = held[sha256(roll.path(render))]
        original = held[sha256(roll.path("/DCIM/100APPLE/IMG_5001.HEIC"))]
        assert edit == original[: -len(".HEIC")] + "_edited.JPG"
        # The same name in 100APPLE and 101APPLE: both kept, neither overwritten.
        a = held[sha256(roll.path("/DCIM/100APPLE/IMG_0001.JPG"))]
        b = held[sha256(roll.path("/DCIM/101APPLE/IMG_0001.JPG"))]
        assert a != b
    # Nothing was left in staging once the targets held the copies.
    staging = phones.home / "state" / "import"
    assert not [f for f in staging.rglob("*") if f.is_file()]

    # The unreadable originals: one event each, "on the phone but not imported".
    bad = p.events("device_file_unreadable")
    assert {e["path"] for e in bad} == unreadable
    assert "Download and Keep Originals" in bad[0]["action"]
    status = p.status()
    d = status["devices"][0]
    assert (d["name"], d["state"], d["unreadable"]) == ("Anna's iPhone", "imported", 2)
    assert "Download and Keep Originals" in p.cli("status").stdout
    report = device(p, "Anna's iPhone")
    assert report["on_phone"] == len(roll.files)
    assert report["protected"] == len(roll.files) - 2
    assert {x["path"] for x in report["not_protected"]} == unreadable
    # When an unreadable file was taken, only the phone's library would say (this one
    # has none): it may be older than anything else, so nothing is called safe to
    # delete by date (the file's time on the phone is when it arrived there).
    assert report["safe_before"] == "0001-01-01T00:00:00"
    text = p.cli("status", "--device", UDID_A).stdout
    assert "a file photod could not read yet has no known capture date" in text

    # Unplug, take 10 new photos, plug in again: only those 10 (and the two
    # unreadable ones, retried) are read; the rest is skipped from the listing alone.
    phones.mux.unplug(phone)
    p.wait_event("device_detached")
    more = camera_roll(roll.media, samples, photos=10, live=0, start=20001)
    phone.reset_counters()
    phones.mux.plug(phone)
    p.wait_event("device_import_finished", count=2, timeout=60)
    assert set(phone.opened) == set(more.files) | unreadable
    assert all(n == 1 for n in phone.opened.values())
    second = p.events("device_import_finished")[1]
    assert (second["imported"], second["unreadable"]) == (10, 2)
    p.wait_protected(len(want) + 10, timeout=60)
    assert p.stop() == 0


def test_trust_lock_and_dont_trust(phones: PhoneSetup, samples: Path, tmp_path: Path) -> None:
    """Two phones at once: one waits for Trust, one is locked; a third says Don't Trust."""
    roll_a = camera_roll(tmp_path / "A", samples, photos=6, live=1)
    roll_b = camera_roll(tmp_path / "B", samples, photos=4, live=0, start=101)
    new = phones.phone(UDID_A, "New iPhone", roll_a, trust="pending")
    locked = phones.phone(UDID_B, "Locked iPhone", roll_b, locked=True)
    p = phones.photod().start()
    phones.mux.plug(new, paired_host=False)
    phones.mux.plug(locked)

    untrusted = p.wait_event("device_untrusted", udid=UDID_A)[0]
    assert untrusted["action"] == "unlock the iPhone and tap Trust"
    was_locked = p.wait_event("device_locked", udid=UDID_B)[0]
    assert was_locked["action"] == "unlock the iPhone"
    states = {d["udid"]: d for d in p.status()["devices"]}
    assert states[UDID_A]["state"] == "untrusted"
    assert states[UDID_B]["state"] == "locked"
    assert "tap Trust" in p.cli("status").stdout
    # Never listed: nothing on it is called safe to delete (exit 0 would say all of it is).
    for udid in (UDID_A, UDID_B):
        asked = p.cli("status", "--device", udid)
        assert 1 == asked.returncode and "Nothing listed yet" in asked.stdout, asked.stdout
    # photod keeps asking, but says so once.
    wait_for(lambda: new.pair_attempts >= 3, 20, "three pairing attempts")
    assert len(p.events("device_untrusted")) == 1
    assert len(p.events("device_locked")) == 1
    assert p.status()["assets"] == 0  # nothing read from either phone yet

    new.trust = "trusted"  # the person taps Trust
    locked.locked = False  # and unlocks the other phone
    p.wait_event("device_import_finished", udid=UDID_A, timeout=30)
    p.wait_event("device_import_finished", udid=UDID_B, timeout=30)
    p.wait_protected(len(roll_a.files) + len(roll_b.files))
    assert (phones.home / "state" / "pairing" / f"{UDID_A}.plist").exists()

    # Don't Trust: said once, no retry loop, until the phone is plugged in again.
    roll_c = camera_roll(tmp_path / "C", samples, photos=3, live=0, start=301)
    denied = phones.phone("00008130-0099887766554433", "Ben's iPhone", roll_c, trust="denied")
    phones.mux.plug(denied, paired_host=False)
    event = p.wait_event("device_pairing_denied")[0]
    assert "unplug and plug in again" in event["action"]
    attempts = denied.pair_attempts
    time.sleep(5)
    assert denied.pair_attempts == attempts
    phones.mux.unplug(denied)
    denied.trust = "trusted"
    phones.mux.plug(denied, paired_host=False)
    p.wait_event("device_import_finished", udid=denied.udid, timeout=30)
    p.wait_protected(len(roll_a.files) + len(roll_b.files) + len(roll_c.files))
    assert p.stop() == 0


@pytest.mark.parametrize("step", ["replica_synced", "replica_published", "replica_recorded"])
def test_a_kill_mid_copy_of_a_phone_file_is_repaired_at_the_next_start(
    phones: PhoneSetup, samples: Path, tmp_path: Path, step: str
) -> None:
    """A power cut (SIGKILL) once the third copy of a phone's file reached this step:
    synced and read back, published, or recorded.  The library, on the staging's disk,
    took the staged file by a link; the mirror, on the same disk, got its bytes written.
    The next start cleans up and imports the rest: every photo on both targets once,
    byte for byte, as two files; no temporary, nothing left in staging."""
    roll = camera_roll(tmp_path / "A", samples, photos=8, live=0)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod()
    p.env["PHOTOD_FAILPOINTS"] = f"{step}=3:kill"
    p.start()
    phones.mux.plug(phone)
    assert p.proc is not None
    wait_for(lambda: p.proc.poll() is not None, 60, f"the kill at {step}")  # type: ignore[union-attr]
    wait_for(lambda: phone.afc_sessions == 0, 10, "the dead photod's AFC sessions to end")
    p.env.pop("PHOTOD_FAILPOINTS")
    p.start()
    p.wait_protected(len(roll.files), timeout=60)
    lib, mirror = target_files(phones.lib), target_files(phones.mirror)
    assert hashes(roll) == set(lib.values()) == set(mirror.values())
    assert len(roll.files) == len(lib) == len(mirror)
    for rel in lib:
        assert (phones.lib / rel).stat().st_ino != (phones.mirror / rel).stat().st_ino
    for root in (phones.lib, phones.mirror):
        wait_for(lambda r=root: not list(r.rglob(".photod-*.tmp")), 10, "no temporaries")
    staging = phones.home / "state" / "import" / "phones"
    assert [] == [q for q in staging.rglob("*") if q.is_file()]
    assert p.stop() == 0


def test_unplug_mid_file_leaves_nothing_partial_and_resumes(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    roll = camera_roll(tmp_path / "A", samples, photos=4, live=0, big_video=150 * 1024**2)
    big = next(a for a in roll.files if a.endswith(".MOV"))
    phone = phones.phone(UDID_A, "Anna's iPhone", roll, cut_after=100 * 1024**2)
    p = phones.photod().start()
    phones.mux.plug(phone)
    gone = p.wait_event("device_detached", timeout=60)[0]
    assert gone["unfinished"] >= 1
    # The four photos are in; the movie is nowhere: not in the catalog, not on a target.
    p.wait_protected(4)
    big_hash = sha256(roll.path(big))
    for root in (phones.lib, phones.mirror):
        assert big_hash not in by_hash(root)
        # (.photod/ holds the target's own records: a list being rewritten beside
        # them at this moment is renamed into place, never a partial copy.)
        assert not [f for f in root.rglob("*.tmp") if ".photod" not in f.relative_to(root).parts]
    assert phone.bytes_read[big] >= 64 * 1024**2

    phone.reset_counters()
    phones.mux.plug(phone)
    resumed = p.wait_event("device_import_resumed", timeout=30)[0]
    assert resumed["path"] == big and resumed["offset"] >= 64 * 1024**2
    p.wait_event("device_import_finished", timeout=60)
    assert phone.seeks == [(big, resumed["offset"])]
    # Only the rest of the movie came over the cable the second time.
    assert phone.bytes_read[big] == roll.path(big).stat().st_size - resumed["offset"]
    p.wait_protected(5)
    for root in (phones.lib, phones.mirror):
        assert big_hash in by_hash(root)
    assert p.stop() == 0


def test_usbmuxd_absent_then_back_and_a_stalled_link(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    roll = camera_roll(tmp_path / "A", samples, photos=20, live=0)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    phones.mux.stop()  # no phone plugged in: on Linux usbmuxd is not running
    p = phones.photod({"timeout": "1s"}).start()
    p.wait_event("usbmuxd_waiting")
    time.sleep(5)
    assert len(p.events("usbmuxd_waiting")) == 1, "waiting is said once, not once a second"

    phones.mux.start()
    phone.stall_after = 5_000  # the USB link stops answering mid-import
    phones.mux.plug(phone)
    stalled = p.wait_event("device_stalled", timeout=30)[0]
    assert "within 1 s" in stalled["detail"]
    assert p.cli("status").returncode == 0  # the daemon is not hung
    # photod keeps retrying the stalled phone, so poll: the state shows between tries.
    wait_for(lambda: {d["state"] for d in p.status()["devices"]} == {"stalled"}, 20, "stalled")
    phones.mux.unstall(phone)
    p.wait_event("device_import_finished", timeout=30)
    p.wait_protected(20)

    # usbmuxd exits (the last phone unplugged) and comes back with the phone.
    phones.mux.stop()
    p.wait_event("device_detached")
    p.wait_event("usbmuxd_waiting", count=2)
    phone.reset_counters()
    phones.mux.start()
    phones.mux.plug(phone)
    p.wait_event("device_import_finished", count=2, timeout=30)
    assert sum(phone.opened.values()) == 0  # unchanged phone: listing and stats only
    assert p.stop() == 0


def test_only_listed_udids_are_imported(phones: PhoneSetup, samples: Path, tmp_path: Path) -> None:
    mine = phones.phone(UDID_A, "Mine", camera_roll(tmp_path / "A", samples, photos=3, live=0))
    other = phones.phone(
        UDID_B, "Other", camera_roll(tmp_path / "B", samples, photos=3, live=0, start=50)
    )
    p = phones.photod({"udids": [UDID_A.replace("-", "")]}).start()
    phones.mux.plug(other)
    phones.mux.plug(mine)
    p.wait_event("device_import_finished", udid=UDID_A)
    ignored = p.wait_event("device_ignored")[0]
    assert ignored["udid"] == UDID_B
    assert sum(other.opened.values()) == 0
    assert [d["udid"] for d in p.status()["devices"]] == [UDID_A]
    assert p.stop() == 0


def test_status_device_says_what_is_safe_to_delete(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """With the second target missing nothing meets the policy; when it comes, all does."""
    roll = camera_roll(tmp_path / "A", samples, photos=5, live=0)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod()
    toml = p.config.read_text().replace(
        f'path = "{phones.mirror}"', f'path = "{phones.mirror}"\nmedia = "external"'
    )
    p.config.write_text(toml)
    p.start()
    phones.mux.plug(phone)
    p.wait_event("device_import_finished")
    report = device(p, "Anna's iPhone")
    assert report["protected"] == 0
    assert report["safe_before"] == min(x["taken_at"] for x in report["not_protected"])
    assert all(x["why"].startswith("needs") for x in report["not_protected"])
    text = p.cli("status", "--device", "Anna's iPhone").stdout
    assert "photod never deletes anything from a phone" in text

    phones.mirror.mkdir()  # the external drive is plugged in
    p.wait_protected(5, timeout=60)
    report = device(p, UDID_A)
    assert report["protected"] == 5 and report["safe_before"] is None
    assert (
        "Everything on 'Anna's iPhone' is protected"
        in p.cli("status", "--device", "Anna's iPhone").stdout
    )
    r = p.cli("status", "--device", "Nobody's iPhone")
    assert r.returncode == 1 and "Anna's iPhone" in r.stderr
    assert p.stop() == 0


def test_status_says_when_usbmuxd_is_missing(phones: PhoneSetup) -> None:
    """No daemon needed: status reads the config and looks for usbmuxd itself."""
    p = phones.photod()
    p.env.pop("USBMUXD_SOCKET_ADDRESS")
    mux = p.status()["usbmuxd"]
    installed = any(Path(d, "usbmuxd").exists() for d in ("/usr/sbin", "/usr/bin", "/sbin"))
    assert mux == {
        "socket": "/var/run/usbmuxd",
        "installed": installed,
        "running": Path("/var/run/usbmuxd").exists(),
    }
    text = p.cli("status").stdout
    if not installed:
        assert "usbmuxd is not installed" in text and "apt install usbmuxd" in text
    elif not mux["running"]:
        assert "usbmuxd is not running" in text


def test_phone_hidden_by_usbmuxd_until_trust_is_reported(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """On Linux usbmuxd lists a phone only once it trusts this computer.  The phone is
    on the USB bus all the same (sysfs): photod says to tap Trust, then imports when
    usbmuxd shows the phone."""
    sysfs = tmp_path / "sysfs"
    bus = sysfs / "1-1"
    roll = camera_roll(tmp_path / "A", samples, photos=3, live=0)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod()
    p.env["PHOTOD_USB_SYSFS"] = str(sysfs)
    (sysfs / "2-1").mkdir(parents=True)  # a keyboard: not a phone
    for name, value in (("idVendor", "046d"), ("idProduct", "c31c"), ("serial", "KBD")):
        (sysfs / "2-1" / name).write_text(value + "\n")
    p.start()
    p.wait_event("usbmuxd_connected")
    bus.mkdir()
    for name, value in (
        ("idVendor", "05ac"),
        ("idProduct", "12a8"),
        ("serial", UDID_A.replace("-", "")),
        ("product", "iPhone"),
    ):
        (bus / name).write_text(value + "\n")
    event = p.wait_event("device_untrusted", timeout=15)[0]
    assert event["udid"] == UDID_A and event["action"] == "unlock the iPhone and tap Trust"
    assert [d["state"] for d in p.status()["devices"]] == ["untrusted"]
    time.sleep(3)
    assert len(p.events("device_untrusted")) == 1

    phones.mux.plug(phone)  # Trust tapped: usbmuxd pairs and lists the phone
    p.wait_event("device_import_finished", timeout=30)
    p.wait_protected(3)
    assert len(p.events("device_untrusted")) == 1
    assert p.stop() == 0


@pytest.mark.parametrize("what", ["movie", "photo"])
def test_full_staging_disk_is_a_clear_event_and_a_retry(
    phones: PhoneSetup, samples: Path, tmp_path: Path, small_drive: Path, what: str
) -> None:
    """Staging on a real, nearly full filesystem: the movie that does not fit (or, the
    disk quite full, a photo: small files are staged by the ingest workers) becomes one
    clear event, leaves nothing behind, and is imported once space is freed."""
    if what == "photo":
        roll = camera_roll(tmp_path / "A", samples, photos=3, live=0)
        big, leave = next(a for a in roll.files if a.endswith(".JPG")), 4096
    else:
        roll = camera_roll(tmp_path / "A", samples, photos=3, live=0, big_video=16 * 1024**2)
        big, leave = next(a for a in roll.files if a.endswith(".MOV")), 6 * 1024**2
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    staging = phones.home / "state" / "import"
    staging.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(small_drive), str(staging)], check=True)
    try:
        filler = fill(staging, leave=leave)
        p = phones.photod().start()
        phones.mux.plug(phone)
        failed = p.wait_event("device_import_failed", timeout=60)[0]
        assert failed["level"] == "warning"
        assert "No space left" in failed["error"] and "free some space" in failed["detail"]
        time.sleep(4)  # retried meanwhile (with backoff), and said once
        assert len(p.events("device_import_failed")) == 1
        if what == "movie":
            p.wait_protected(3)  # the photos that fit are in
        # No partial file is left: a retry may be writing one right now, and it goes
        # when that retry fails too.
        wait_for(lambda: not list(staging.rglob("*.part")), 15, "no partial file in staging")
        assert sha256(roll.path(big)) not in by_hash(phones.lib)

        filler.unlink()  # space is freed: the retry completes
        p.wait_protected(len(roll.files), timeout=60)
        assert sha256(roll.path(big)) in by_hash(phones.lib)
        assert p.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(staging)], capture_output=True)


def test_told_when_a_phone_waits_for_trust_and_when_its_import_finished(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """The two phone messages, end to end through the fake phone: a phone waiting for
    Trust, then the finished import with its counts, each reach the webhook once.  While
    the import runs, `photod status` asks the daemon and names the phone and how far it
    got."""
    hook = Webhook()
    try:
        roll = camera_roll(tmp_path / "A", samples, photos=12, live=1)
        phone = phones.phone(UDID_A, "Anna's iPhone", roll, trust="pending")
        p = phones.photod(extra=f'\n[notify]\nwebhook = "{hook.url}"\n').start()
        phones.mux.plug(phone, paired_host=False)
        wait_for(lambda: hook.got, 30, "the Trust message")
        trust = json.loads(hook.got[0][1])
        assert "photod: unlock Anna's iPhone and tap Trust" == trust["title"]

        # The link stalls mid-import, once the photos' bytes are served (four files are
        # read at once, so all but the last few of them are in).
        jpegs = [f for f in roll.files if f.endswith(".JPG")]
        phone.stall_after = sum(roll.files[f].stat().st_size for f in jpegs)
        phone.trust = "trusted"  # the person taps Trust

        def importing() -> list[dict[str, Any]]:
            live = p.status()["daemon"].get("live", {})
            return [i for i in live.get("imports", []) if i.get("files", 0) > 0]

        wait_for(importing, 30, "the import in the live status", lambda: json.dumps(p.status()))
        row = importing()[0]
        assert ("Anna's iPhone", UDID_A, "importing", len(roll.files)) == (
            row["device"], row["udid"], row["state"], row["of_files"],
        )  # fmt: skip
        assert 0 < row["files"] < row["of_files"]
        text = p.cli("status").stdout
        assert f"importing from Anna's iPhone: {row['files']}/{len(roll.files)} files" in text

        phones.mux.unstall(phone)
        p.wait_event("device_import_finished", timeout=30)
        wait_for(lambda: len(hook.got) == 2, 30, "the import message")
        done = json.loads(hook.got[1][1])
        assert "photod: import from Anna's iPhone finished" == done["title"]
        assert f"{len(roll.files)} new, 0 already backed up, 0 failed" == done["message"]
        p.wait_protected(len(roll.files))
        after = p.status()["daemon"]["live"]["imports"][0]
        assert ("imported", False) == (after["state"], "of_files" in after)
        assert 0 == p.stop()
        assert 2 == len(hook.got)  # the reminder of Trust is not repeated after it
    finally:
        hook.close()


def test_watchdog_stops_when_a_daemon_thread_dies(phones: PhoneSetup) -> None:
    """systemd restarts a daemon that stops sending WATCHDOG=1.  photod sends it only
    while its threads live: when the phone thread dies of a bug (a failpoint raises in
    its attach handler), the death is one `device_watcher_failed` event and the pings
    stop, though the process and its control socket still answer."""
    import socket

    sock_path = phones.home / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(15)
        p = phones.photod()
        p.env["NOTIFY_SOCKET"] = str(sock_path)
        p.env["PHOTOD_FAILPOINTS"] = "device_attached=raise"
        p.start()
        assert sock.recv(4096).startswith(b"READY=1")
        p.wait_event("usbmuxd_connected")
        assert sock.recv(4096).startswith(b"WATCHDOG=1")  # alive: pinged every 5 s

        phones.mux.plug(phones.phone(UDID_A, "Anna's iPhone", CameraRoll(phones.home)))
        failed = p.wait_event("device_watcher_failed")[0]
        assert "failpoint 'device_attached' hit" in failed["error"]
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):  # what was sent before the death
            while True:
                sock.recv(4096)
        sock.settimeout(12)
        with pytest.raises(TimeoutError):  # two ping periods and more: silence
            print(sock.recv(4096))
        assert p.proc is not None and p.proc.poll() is None
        assert 0 == p.cli("status").returncode
        assert 0 == p.stop()


def test_hostile_names_from_a_phone_never_escape_and_never_block(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """A phone (broken or malicious) lists names with '..', an absolute path, control
    characters and 300 bytes.  (AFC strings end at a NUL, so a NUL cannot reach photod;
    and pymobiledevice3 ends a listing at a name that is not UTF-8, which an iPhone's
    APFS never holds.)  Every photo behind those names is imported, named safely
    inside the targets and staging; nothing is written anywhere else; the normal
    photos beside them are not held up."""
    from tests.fakephone import jpeg

    roll = camera_roll(tmp_path / "A", samples, photos=6, live=0)
    evil = tmp_path / "evil"
    names = [
        "../../../../../../tmp/photod-escaped.jpg",
        "/etc/photod-evil.jpg",
        "ctrl\x01\x1b[31mred\x7f.jpg",
        "y" * 300 + ".jpg",
        "..",  # listed again: skipped like the real one
    ]
    hostile = {
        ("/DCIM/100APPLE", n): jpeg(evil / f"{i}.jpg", 7000 + i) for i, n in enumerate(names)
    }
    phone = phones.phone(UDID_A, "Odd iPhone", roll, hostile=hostile)
    p = phones.photod().start()
    phones.mux.plug(phone)
    done = p.wait_event("device_import_finished", timeout=60)[0]
    real = len(names) - 1  # ".." is not a file
    assert (len(roll.files) + real, 0) == (done["imported"], done["failed"])
    p.wait_protected(len(roll.files) + real)
    want = hashes(roll) | {sha256(evil / f"{i}.jpg") for i in range(real)}
    for root in (phones.lib, phones.mirror):
        held = by_hash(root)
        assert want == set(held)
        assert_target_holds(root, {rel: h for h, rel in held.items()})
        assert all(len(part.encode()) <= 255 for rel in held.values() for part in rel.split("/"))
    assert not Path("/tmp/photod-escaped.jpg").exists()
    assert not Path("/etc/photod-evil.jpg").exists()
    ours = {phones.lib, phones.mirror, phones.home / "state", phones.home / "log", evil,
            tmp_path / "A", samples}  # fmt: skip
    stray = {
        Path(folder, n).relative_to(tmp_path).as_posix()
        for folder, _, files in os.walk(tmp_path)
        if not ours & {Path(folder), *Path(folder).parents}
        for n in files
    }
    assert {"photod.toml", "photod.out", "usbmuxd.sock", "run/photod/control.sock"} == stray
    assert 0 == p.stop()


def test_photod_killed_mid_import_resumes_when_it_starts_again(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a phone's big movie (after a checkpoint): nothing partial
    reaches a target; when photod starts again, with the phone still plugged in, it
    resumes the movie from its checkpoint instead of reading it all again, and the
    staging folder is left empty."""
    import signal

    roll = camera_roll(tmp_path / "A", samples, photos=4, live=0, big_video=200 * 1024**2)
    big = next(a for a in roll.files if a.endswith(".MOV"))
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    phone.stall_after = 120 * 1024**2  # hold the movie at 120 MB: past three checkpoints
    p = phones.photod().start()
    phones.mux.plug(phone)
    wait_for(lambda: phone.served >= phone.stall_after, 60, "the movie to be half read")  # type: ignore[operator]
    assert p.proc is not None
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait()
    for root in (phones.lib, phones.mirror):
        assert sha256(roll.path(big)) not in by_hash(root)
        assert not list(root.rglob(".photod-*.tmp"))
    phones.mux.unstall(phone)  # a read of the dead photod's held by the fake ends
    wait_for(lambda: phone.afc_sessions == 0, 10, "the dead photod's AFC sessions to end")
    phone.reset_counters()
    p.start()
    resumed = p.wait_event("device_import_resumed", timeout=60)[0]
    assert (big, True) == (resumed["path"], resumed["offset"] >= 64 * 1024**2)
    p.wait_event("device_import_finished", timeout=90)
    assert phone.bytes_read[big] == roll.path(big).stat().st_size - resumed["offset"]
    p.wait_protected(len(roll.files), timeout=60)
    for root in (phones.lib, phones.mirror):
        assert hashes(roll) == set(by_hash(root))
        assert_target_holds(root, {rel: h for h, rel in by_hash(root).items()})
    staging = phones.home / "state" / "import"
    assert [] == [q for q in staging.rglob("*") if q.is_file()]
    assert 0 == p.stop()


@pytest.mark.parametrize(
    "claimed", ["../../../victim", "/ABS/victim", "00008110-000A1B2C3D4E5F60/.."]
)
def test_a_device_whose_id_is_a_path_is_refused(
    phones: PhoneSetup, samples: Path, tmp_path: Path, claimed: str
) -> None:
    """A device (a hostile one, or a fake on the wire) whose UDID is a path: its id
    names photod's staging folders, so it would write and then delete files outside
    them.  It is refused with one event and nothing is read from it; the user's files
    where it points are untouched, and a real phone plugged in beside it is imported."""
    victim = tmp_path / "victim"
    (victim / "DCIM" / "100APPLE").mkdir(parents=True)
    mine = victim / "DCIM" / "100APPLE" / "IMG_0000.JPG"
    mine.write_bytes(b"the user's own photo")
    (victim / "resume.part.json").write_text("the user's own file")
    udid = claimed.replace("/ABS", str(tmp_path)) if claimed.startswith("/ABS") else claimed
    roll = camera_roll(tmp_path / "evil", samples, photos=2, live=0)
    good = camera_roll(tmp_path / "good", samples, photos=2, live=0)
    p = phones.photod().start()
    phones.mux.plug(phones.phone(udid, "Evil", roll))
    [refused] = p.wait_event("device_refused", timeout=30)
    assert udid == refused["udid"]
    phones.mux.plug(phones.phone(UDID_A, "Anna's iPhone", good))
    p.wait_event("device_import_finished", timeout=60, udid=UDID_A)
    assert 0 == p.stop()
    assert b"the user's own photo" == mine.read_bytes()
    assert (victim / "resume.part.json").exists()
    assert {"IMG_0000.JPG", "resume.part.json"} == {
        f.name for f in victim.rglob("*") if f.is_file()
    }
    assert not [e for e in p.events() if e.get("udid") == udid and e["event"] != "device_refused"]


def import_through(
    phones: PhoneSetup, roll: CameraRoll, monkeypatch: pytest.MonkeyPatch, afc_op: Any
) -> Photod:
    """A daemon that imports ``roll`` from a phone whose AFC answers go through
    ``afc_op`` (a hostile phone's, the fake's own wrapped); stopped once the import ends."""
    from tests.fakephone import FakeUsbmuxd

    monkeypatch.setattr(FakeUsbmuxd, "_afc_op", afc_op)
    p = phones.photod().start()
    phones.mux.plug(phones.phone(UDID_A, "Anna's iPhone", roll))
    p.wait_event("device_import_finished", timeout=60)
    assert 0 == p.stop()
    return p


def with_stat(reply: bytes, field: bytes, value: bytes) -> bytes:
    """An AFC stat reply (name, value, ... each NUL-ended) with one field's value changed."""
    fields = reply.split(b"\0")
    fields[fields.index(field) + 1] = value
    return b"\0".join(fields)


def test_a_file_whose_size_lies_fails_alone_and_fills_no_disk(
    phones: PhoneSetup, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phone's file longer than its listing says, and one whose reads never end: each
    fails on its own (`device_file_failed`, retried at the next plug-in) instead of
    restarting the whole import as a disconnect, nothing beyond the listed size is
    written to staging, and every other photo is imported."""
    import struct

    from tests.fakephone import OP_DATA, OP_GET_FILE_INFO, OP_READ, FakeUsbmuxd, jpeg

    roll = camera_roll(tmp_path / "A", samples, photos=6, live=0)
    liar, endless = "/DCIM/100APPLE/AAA_0001.JPG", "/DCIM/100APPLE/AAA_0002.JPG"
    for path, n in ((liar, 4242), (endless, 4243)):
        roll.add(path, jpeg(roll.path(path), n))
    honest = hashes(roll, {liar, endless})
    real = FakeUsbmuxd._afc_op

    async def lying(self: Any, phone: Any, op: int, body: bytes, handles: Any, *rest: Any) -> Any:
        name = body.rstrip(b"\0").decode("utf-8", "replace")
        if op == OP_GET_FILE_INFO and name in (liar, endless):
            rop, data = await real(self, phone, op, body, handles, *rest)
            fields = data.split(b"\0")
            size = int(fields[fields.index(b"st_size") + 1])
            return rop, with_stat(data, b"st_size", str(size - 10).encode())  # 10 fewer
        if op == OP_READ:
            handle, size = struct.unpack_from("<QQ", body)
            if handles.get(handle, ("",))[0] == endless:
                return OP_DATA, b"\0" * size  # and more, for ever
        return await real(self, phone, op, body, handles, *rest)

    p = import_through(phones, roll, monkeypatch, lying)
    failed = sorted(e["path"] for e in p.events("device_file_failed"))
    assert [liar, endless] == failed
    assert not p.events("device_disconnected") and 1 == len(p.events("device_import_started"))
    assert honest <= set(by_hash(phones.lib))
    staged = [f for f in (phones.home / "state").rglob("*") if f.is_file() and "AAA_" in f.name]
    assert [] == staged, "nothing of theirs is kept in staging"


def test_what_a_phone_says_of_itself_reaches_no_terminal_raw(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """A phone's name with terminal escapes and a newline (clearing the screen, setting
    the window's title, forging a line of `photod status`): every place photod prints
    it shows it as text, with no escape and no line of its own."""
    hostile = "Evil\x1b[2J\x1b]0;pwned\x07\nPhones  Everything on this phone is protected\u202e"
    roll = camera_roll(tmp_path / "A", samples, photos=2, live=0)
    p = phones.photod().start()
    phones.mux.plug(phones.phone(UDID_A, hostile, roll))
    p.wait_event("device_import_finished", timeout=60)
    said = [p.cli("status").stdout, p.cli("status", "--device", UDID_A).stdout]
    assert 0 == p.stop()
    said.append(p.cli("status").stdout)  # (from the catalog, the daemon stopped)
    for text in said:
        assert "Evil" in text and not any(c in text for c in "\x1b\x07\u202e"), text
        assert not any(line.startswith("Phones  Everything") for line in text.splitlines())


@pytest.mark.parametrize(
    ("field", "value"),
    [(b"st_size", b'<a href="https://evil.example">fix</a>'), (b"st_mtime", str(10**26).encode())],
)
def test_a_file_whose_details_make_no_sense_fails_alone(
    phones: PhoneSetup,
    samples: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    field: bytes,
    value: bytes,
) -> None:
    """One file whose details (AFC's stat) are nonsense, a size that is markup or a time
    no clock reaches: that file is said failed, in one line with no traceback; every
    other photo is imported, and the import ends as it should (it failed whole at every
    plug-in before, or read as an unplug, for ever)."""
    from tests.fakephone import OP_GET_FILE_INFO, FakeUsbmuxd, jpeg

    roll = camera_roll(tmp_path / "A", samples, photos=4, live=0)
    odd = "/DCIM/100APPLE/AAA_0001.JPG"
    roll.add(odd, jpeg(roll.path(odd), 4244))
    honest = hashes(roll, {odd})
    real = FakeUsbmuxd._afc_op

    async def nonsense(self: Any, phone: Any, op: int, body: bytes, *rest: Any) -> Any:
        rop, data = await real(self, phone, op, body, *rest)
        if op == OP_GET_FILE_INFO and body.rstrip(b"\0").decode("utf-8", "replace") == odd:
            data = with_stat(data, field, value)
        return rop, data

    p = import_through(phones, roll, monkeypatch, nonsense)
    [failed] = p.events("device_file_failed")
    assert odd == failed["path"] and "exception" not in failed
    assert not p.events("device_import_failed") and not p.events("device_disconnected")
    assert honest <= set(by_hash(phones.lib))


@pytest.mark.parametrize(
    ("entire", "said"),
    [(2**40 + 40, "a reply of 1,099,511,627,776 bytes"), (10, "not framed as AFC replies are")],
)
def test_a_reply_no_phone_sends_is_refused(
    phones: PhoneSetup,
    samples: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entire: int,
    said: str,
) -> None:
    """A device whose answer to a listing says it holds a terabyte (then sends zeros), or
    whose header is shorter than a header: photod takes none of it into memory, says
    `device_refused` once (no traceback, no retry loop), shows the phone as refused, and
    reads it again only when it is plugged in again."""
    from tests.fakephone import OP_DATA, OP_READ_DIR, FakeUsbmuxd, LyingReply

    roll = camera_roll(tmp_path / "A", samples, photos=3, live=0)
    real = FakeUsbmuxd._afc_op
    hostile = True

    async def huge(self: Any, phone: Any, op: int, body: bytes, *rest: Any) -> Any:
        if hostile and op == OP_READ_DIR:
            return OP_DATA, LyingReply(entire)
        return await real(self, phone, op, body, *rest)

    monkeypatch.setattr(FakeUsbmuxd, "_afc_op", huge)
    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    sampler = psutil.Process(p.proc.pid)  # type: ignore[union-attr]
    before = sampler.memory_info().rss
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    phones.mux.plug(phone)
    [refused] = p.wait_event("device_refused", timeout=60)
    assert said in refused["detail"] and "exception" not in refused
    sessions = phone.afc_sessions
    time.sleep(5)  # a retry (every 2 s here) would connect and say it again
    assert 1 == len(p.events("device_refused")) and phone.afc_sessions <= sessions
    assert sampler.memory_info().rss - before < 200 * 2**20
    assert "refused" in p.cli("status", "--device", UDID_A).stdout
    assert not p.events("device_import_finished")

    hostile = False
    phones.mux.unplug(phone)
    phones.mux.plug(phone)
    p.wait_event("device_import_finished", timeout=60)
    assert hashes(roll) <= set(by_hash(phones.lib))
    assert 0 == p.stop()


def test_a_listing_that_never_ends_is_cut(
    phones: PhoneSetup, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder on the phone that holds itself for ever (a hostile phone's): the walk
    stops at a depth no phone's media folders reach, says so once, and the photos
    elsewhere are imported (it grew the daemon's memory by gigabytes a minute before)."""
    from tests.fakephone import OP_DATA, OP_GET_FILE_INFO, OP_READ_DIR, FakeUsbmuxd

    roll = camera_roll(tmp_path / "A", samples, photos=3, live=0)
    real = FakeUsbmuxd._afc_op
    loop = "/DCIM/loop"

    async def endless(self: Any, phone: Any, op: int, body: bytes, *rest: Any) -> Any:
        path = body.rstrip(b"\0").decode("utf-8", "replace")
        if path.startswith(loop) and op == OP_READ_DIR:
            return OP_DATA, b".\0..\0loop\0"
        if path.startswith(loop) and op == OP_GET_FILE_INFO:
            info = {
                "st_size": 0,
                "st_blocks": 0,
                "st_nlink": 2,
                "st_ifmt": "S_IFDIR",
                "st_mtime": 1_700_000_000 * 10**9,
                "st_birthtime": 1_700_000_000 * 10**9,
            }
            return OP_DATA, b"".join(f"{k}\0{v}\0".encode() for k, v in info.items())
        rop, data = await real(self, phone, op, body, *rest)
        if op == OP_READ_DIR and path == "/DCIM":
            data += b"loop\0"
        return rop, data

    p = import_through(phones, roll, monkeypatch, endless)
    [cut] = p.events("device_listing_cut")
    assert cut["folder"].startswith(loop) and "deep" in cut["reason"]
    assert hashes(roll) <= set(by_hash(phones.lib))


def test_a_folder_the_phone_will_not_list_keeps_the_phone_from_being_called_safe(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """Everything imported and protected; then the phone answers an I/O error (not "no
    such folder") when asked to list one of its folders and a new one. What photod knew
    of the first is kept (it is not taken as emptied), the new folder's photos are not
    taken as absent: the phone is not called safe to delete (exit 1, and why), until a
    plug-in lists it whole again."""
    from tests.fakephone import jpeg

    roll = camera_roll(tmp_path / "A", samples, photos=6, live=0)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod()
    p.start()
    try:
        phones.mux.plug(phone)
        p.wait_event("device_import_finished")
        p.wait_protected(6, timeout=60)
        assert 0 == p.cli("status", "--device", UDID_A).returncode
        phones.mux.unplug(phone)
        p.wait_event("device_detached")

        new = "/DCIM/102APPLE/IMG_0001.JPG"
        roll.add(new, jpeg(roll.path(new), 777))
        also = "/DCIM/100APPLE/IMG_9001.JPG"  # one it can list, cut mid-read
        roll.add(also, jpeg(roll.path(also), 778))
        phone.unlistable = {"/DCIM/101APPLE", "/DCIM/102APPLE"}
        phone.cut_after = phone.served + 100
        phones.mux.plug(phone)
        p.wait_event("device_detached", count=2)
        assert not p.events("device_import_finished")[1:]
        cut = p.cli("status", "--device", UDID_A)  # the listing's gaps outlive the cut
        assert 1 == cut.returncode and "would not list all of itself" in cut.stdout

        phones.mux.plug(phone)
        p.wait_event("device_import_finished", count=2)
        said = p.events("device_listing_incomplete")[-1]
        assert ["/DCIM/101APPLE", "/DCIM/102APPLE"] == said["paths"]
        report = device(p, UDID_A)
        assert 7 == report["on_phone"]  # 101APPLE's photos are still known
        r = p.cli("status", "--device", UDID_A)
        assert 1 == r.returncode
        assert (
            "Nothing on 'Anna's iPhone' can be called safe to delete yet: the phone would not "
            "list all of itself (/DCIM/101APPLE, /DCIM/102APPLE)" in r.stdout
        )
        phones.mux.unplug(phone)
        p.wait_event("device_detached", count=3)

        phone.unlistable = set()
        phones.mux.plug(phone)
        p.wait_event("device_import_finished", count=3)
        p.wait_protected(8, timeout=60)
        assert 0 == p.cli("status", "--device", UDID_A).returncode
    finally:
        assert 0 == p.stop()
