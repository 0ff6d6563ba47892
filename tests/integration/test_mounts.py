"""Targets on real mounts (bind mounts, as root like CI): read-only drives, drives that
come back at another mount point, and watch folders that cannot use inotify."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import Photod, sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds, fill, samples_backed_up

if TYPE_CHECKING:
    from photod.targets.base import Identity
    from photod.targets.local import LocalTarget

pytestmark = pytest.mark.integration

Mount = Callable[..., None]


@pytest.fixture
def mount() -> Iterator[Mount]:
    """Bind-mount a folder (optionally read-only); every mount is undone afterwards."""
    done: list[Path] = []

    def bind(src: Path, dst: Path, readonly: bool = False) -> None:
        dst.mkdir(parents=True, exist_ok=True)
        cmds = [["mount", "--bind", str(src), str(dst)]]
        if readonly:
            cmds.append(["mount", "-o", "remount,ro,bind", str(dst)])
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail(
                    f"{' '.join(cmd)} failed ({r.stderr.strip()}): these tests need root and mount(8), as in CI"
                )
        done.append(dst)

    yield bind
    for dst in reversed(done):
        subprocess.run(["umount", "-l", str(dst)], capture_output=True)


def umount(dst: Path) -> None:
    """Unmount as a person ejects a drive: refused while a file on it is open, so a
    copy's or a check's moment is waited out (10 s); a drive held longer fails."""
    deadline = time.monotonic() + 10
    while (r := subprocess.run(["umount", str(dst)], capture_output=True, text=True)).returncode:
        assert time.monotonic() < deadline, f"{dst} stays busy: {r.stderr}"
        time.sleep(0.2)


def test_read_only_drive_waits_then_catches_up(setup: Setup, samples: Path, mount: Mount) -> None:
    """A target mounted read-only is unavailable ('read-only'), the library still gets
    every copy, and once the drive is writable again the pending copies complete."""
    lib, disk, mnt = setup.home / "library", setup.home / "disk", setup.home / "mnt" / "usb"
    (disk / "photos").mkdir(parents=True)
    mount(disk, mnt)
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {"name": "usb", "path": str(mnt / "photos"), "media": "external"},
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    p.wait_event("target_available", target="usb")
    p.stop()
    umount(mnt)
    mount(disk, mnt, readonly=True)
    p.start()
    p.wait_event("target_unavailable", target="usb")
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_event("replica_written", target="library")
    status = p.status()
    assert (False, "read-only") == (
        status["targets"][1]["available"],
        status["targets"][1]["reason"][-9:],
    )
    assert 1 == status["targets"][1]["pending"]
    subprocess.run(["mount", "-o", "remount,rw,bind", str(mnt)], check=True)
    p.wait_protected(1, timeout=30)
    assert_target_holds(mnt / "photos", target_files(lib))
    assert 0 == p.stop()


@pytest.mark.parametrize("encrypt", [False, True])
def test_the_drive_left_mounted_read_only_gets_every_photo_back(
    setup: Setup, samples: Path, mount: Mount, encrypt: bool
) -> None:
    """The computer gone, its one drive left and failing, mounted read-only so that
    nothing writes to it (or an NTFS drive on a Mac, which reads it only): `catalog
    rebuild --from` it and `restore` bring every photo back, byte for byte; both
    refused it ("is read-only", as a target that cannot take copies), and no photo
    came back with photod."""
    disk, mnt, key = setup.home / "disk", setup.home / "media" / "T7", setup.home / "key.txt"
    (disk / "photos").mkdir(parents=True)
    extra = f'\n[encryption]\nidentity = "{key}"\n' if encrypt else ""
    drive = {"name": "t7", "path": str(mnt / "photos"), "media": "external", "encrypt": encrypt}
    p = setup.photod([drive], {"copies": 1, "media": 1, "offsite": 0}, extra)
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    mount(disk, mnt)
    originals = samples_backed_up(setup, p, samples)
    umount(mnt)
    shutil.rmtree(setup.home / "state")
    mount(disk, mnt, readonly=True)
    rebuilt = p.cli("catalog", "rebuild", "--from", "t7")
    assert 0 == rebuilt.returncode, rebuilt.stdout + rebuilt.stderr
    restored = p.cli("restore", str(setup.home / "Restored"))
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    assert originals == sorted(target_files(setup.home / "Restored").values())


def test_what_a_read_only_disk_kept_of_a_list_write_is_removed_when_it_is_writable(
    tmp_path: Path, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list (or snapshot record) written whole, the drive turning read-only before it
    gets its name: the write fails and its temporary cannot be removed then.  It is
    removed at the first check once the drive is writable, not left until photod's
    next start (months, for a daemon: a failing disk's check passes, so no failed check
    asked for it)."""
    from photod.errors import TargetUnavailable

    t, ident, photos = _usb_target(tmp_path, mount)
    turning = _read_only_once(monkeypatch, photos.parent)
    with pytest.raises(TargetUnavailable, match="read-only"):
        t.put_meta("installations/x/sums/a.sha256", b"list")
    turning.join()
    kept = list((photos / ".photod").rglob(".photod-e0f548bc8f1e*.tmp"))
    assert [b"list"] == [k.read_bytes() for k in kept]  # (what the disk kept of it)
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    assert ident == t.check(ident)
    assert not [k for k in kept if k.exists()]


def test_a_list_write_in_flight_survives_the_sweep_of_what_a_read_only_disk_kept(
    tmp_path: Path, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check that removes what a write cut short by a read-only disk left removes
    that temporary only: another list being written at that moment (its temporary
    written, not yet renamed) is written whole, not failed by the sweep."""
    from photod import failpoints
    from photod.errors import TargetUnavailable

    t, ident, photos = _usb_target(tmp_path, mount)
    turning = _read_only_once(monkeypatch, photos.parent)
    with pytest.raises(TargetUnavailable, match="read-only"):
        t.put_meta("installations/x/sums/a.sha256", b"cut short")
    turning.join()
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    failed: list[BaseException] = []

    def write_b() -> None:  # held 2 s between its temporary and its name
        try:
            t.put_meta("installations/x/sums/b.sha256", b"in flight")
        except BaseException as exc:
            failed.append(exc)

    writing = threading.Thread(target=write_b)
    writing.start()
    wait_for(lambda: failpoints._hits.get("meta_written", 0) >= 2, 10, "b's temporary written")
    assert ident == t.check(ident)  # (the sweep of what the read-only disk kept)
    writing.join()
    assert not failed
    sums = photos / ".photod" / "installations" / "x" / "sums"
    assert b"in flight" == (sums / "b.sha256").read_bytes()
    assert not list((photos / ".photod").rglob(".photod-e0f548bc8f1e*.tmp"))


def test_a_drive_back_from_read_only_is_not_written_at_every_check(
    tmp_path: Path, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo's copy cut short by the drive turning read-only (its temporary beside
    the photo: the catalog's tidy removes it) and a list whose temporary the disk did
    not keep leave nothing under .photod/: once the drive is writable, the check that
    looks writes, and the checks after it (every 5 s) write nothing on the drive.  They
    made and removed a file under .photod/ at each, for as long as photod ran (a USB
    disk that never sleeps)."""
    import hashlib

    from photod.errors import TargetUnavailable

    t, ident, photos = _usb_target(tmp_path, mount)
    turning = _read_only_once(monkeypatch, photos.parent, at="replica_synced")
    w = t.open_writer("2026/05/a.jpg")
    w.write(b"a photo")
    with pytest.raises(TargetUnavailable, match="read-only"):
        w.commit("2026/05/a.jpg", hashlib.sha256(b"a photo").hexdigest())
    turning.join()
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    turning = _read_only_once(monkeypatch, photos.parent)
    with pytest.raises(TargetUnavailable, match="read-only"):
        t.put_meta("installations/x/sums/a.sha256", b"list")
    turning.join()
    for kept in (tmp_path / "disk" / "photos" / ".photod").rglob(".photod-*.tmp"):
        kept.unlink()  # (the disk did not keep it: cut off before its journal wrote it)
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    assert ident == t.check(ident)
    os.utime(photos / ".photod", ns=(0, 0))
    assert ident == t.check(ident)
    assert 0 == (photos / ".photod").stat().st_mtime_ns  # (nothing made or removed there)


def test_what_a_read_only_disk_kept_of_a_sidecar_write_is_removed_when_it_is_writable(
    tmp_path: Path, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo's XMP sidecar written beside it as the drive turned read-only: what the
    disk kept of it (a hidden `.photod-*.tmp` beside the photo) is removed at the first
    check once the drive is writable.  It stayed for ever: no list names it, and the
    sweep looks under .photod/ only."""
    from photod.errors import TargetUnavailable

    t, ident, photos = _usb_target(tmp_path, mount)
    (photos / "2026" / "05").mkdir(parents=True)
    (photos / "2026" / "05" / "IMG_0001.JPG").write_bytes(b"a photo")
    turning = _read_only_once(monkeypatch, photos.parent)
    with pytest.raises(TargetUnavailable, match="read-only"):
        t.put_beside("2026/05/IMG_0001.JPG.xmp", b"<x:xmpmeta/>", replace=True)
    turning.join()
    kept = list((photos / "2026" / "05").glob(".photod-*.tmp"))
    assert [b"<x:xmpmeta/>"] == [k.read_bytes() for k in kept]  # (what the disk kept of it)
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    assert ident == t.check(ident)
    assert not [k for k in kept if k.exists()]


def _usb_target(tmp_path: Path, mount: Mount) -> tuple[LocalTarget, Identity, Path]:
    """A drive (a bind mount of a folder) with a checked target on it."""
    from photod.targets.local import LocalTarget

    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    (disk / "photos").mkdir(parents=True)
    mount(disk, mnt)
    t = LocalTarget("usb", mnt / "photos", creates_root=False, owner="e0f548bc8f1e")
    return t, t.check(None), mnt / "photos"


def _read_only_once(
    monkeypatch: pytest.MonkeyPatch, mnt: Path, at: str = "meta_written"
) -> threading.Thread:
    """Every write held 2 s at the failpoint ``at`` (by default: a metadata write's
    temporary written and synced); the drive at ``mnt`` turned read-only during the
    first such hold."""
    from photod import failpoints

    monkeypatch.setattr(failpoints, "_armed", failpoints._parse(f"{at}=sleep:2"))
    monkeypatch.setattr(failpoints, "_hits", {})

    def turn_read_only() -> None:
        wait_for(lambda: failpoints._hits.get(at), 10, "the temporary synced")
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True)

    turning = threading.Thread(target=turn_read_only)
    turning.start()
    return turning


@pytest.fixture
def fstab() -> Iterator[Callable[[Path], None]]:
    """Add a mount point to the real /etc/fstab (as a drive mounted with `nofail` is
    listed there), each line taken out again afterwards."""
    fstab = Path("/etc/fstab")
    before = fstab.read_bytes() if fstab.exists() else None

    def add(point: Path) -> None:
        with open(fstab, "a", encoding="utf-8") as f:
            f.write(f"LABEL=T7 {point} ext4 defaults,nofail 0 2\n")

    yield add
    if before is None:
        fstab.unlink(missing_ok=True)
    else:
        fstab.write_bytes(before)


@pytest.mark.parametrize("linked", [False, True], ids=["the-mount-point", "a-link-to-it"])
def test_an_empty_mount_point_of_etc_fstab_is_never_taken_for_its_drive(
    setup: Setup, samples: Path, mount: Mount, fstab: Callable[[Path], None], linked: bool
) -> None:
    """A new drive target at a mount point /etc/fstab lists, the drive not plugged in
    (its mount point an empty folder on the system disk): photod claimed that folder as
    the drive, counted copies on the system disk as a second kind of media, and then
    refused the real drive as a stranger.  It now waits, saying nothing is mounted
    there (the target's path the mount point, or a link to it); once the drive is, the
    copies land on it."""
    lib, disk, point = setup.home / "library", setup.home / "disk", setup.home / "mnt" / "T7"
    disk.mkdir()
    point.mkdir(parents=True)
    fstab(point)
    path = point
    if linked:
        path = setup.home / "Backup"
        path.symlink_to(point)
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "t7", "path": str(path), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()  # fmt: skip
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_event("replica_written", target="library")
    [away] = p.wait_event("target_unavailable", target="t7")
    assert f"nothing is mounted on {point}" in away["reason"]
    assert [] == list(point.iterdir())  # nothing written on the system disk
    assert not p.status()["protected"]
    mount(disk, point)
    p.wait_protected(1, timeout=30)
    assert_target_holds(disk, target_files(lib))
    assert 0 == p.stop()


def test_drive_mounted_elsewhere_is_recognised_by_its_marker(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """An external drive that comes back at another mount point is found by its marker,
    logged as target_relocated, and its pending copies land there."""
    lib, disk = setup.home / "library", setup.home / "disk"
    first, second = setup.home / "media" / "T7", setup.home / "media" / "T7-1"
    (disk / "photos").mkdir(parents=True)
    mount(disk, first)
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {"name": "t7", "path": str(first / "photos"), "media": "external"},
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    umount(first)
    p.wait_event("target_unavailable", target="t7")
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "b.jpg")
    p.wait_event("replica_written", count=2, target="library")
    mount(disk, second)  # the desktop mounted it as T7-1 this time
    moved = p.wait_event("target_relocated", target="t7", timeout=30)
    assert str(second / "photos") == moved[0]["new"]
    p.wait_protected(2, timeout=30)
    assert_target_holds(second / "photos", target_files(lib))
    assert 0 == p.stop()


def test_folder_is_polled_when_inotify_runs_out(setup: Setup, samples: Path) -> None:
    """When inotify runs out (here: no instances left), the folder is polled instead,
    photod says so once, and new files are still taken."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    old = knob.read_text()
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}])
    try:
        knob.write_text("0\n")
    except OSError as exc:
        pytest.fail(f"cannot lower {knob} ({exc}): this test needs root, as in CI")
    try:
        p.start()
        polling = p.wait_event("source_polling", source="inbox")
    finally:
        knob.write_text(old)
    assert "fs.inotify.max_user_watches" in polling[0]["reason"]
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1, timeout=30)
    assert 1 == len(p.events("source_polling"))
    assert 0 == p.stop()


def test_poll_option_forces_polling(setup: Setup, samples: Path) -> None:
    """`poll = true` on a source polls it (for mounts that deliver no events)."""
    lib = setup.home / "library"
    cfg = setup.config([{"name": "library", "path": str(lib)}])
    cfg.write_text(cfg.read_text().replace('type = "folder"', 'type = "folder"\npoll = true'))
    p = setup.factory(cfg).start()
    assert "poll = true" in p.wait_event("source_polling")[0]["reason"]
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1, timeout=30)
    assert 0 == p.stop()


def test_exfat_drive_gets_every_file(setup: Setup, samples: Path, exfat_drive: Path) -> None:
    """On exFAT (no hard links; ':' and '?' refused), copies are still published without
    replacing anything, names stay valid, and `sha256sum -c` passes on the drive."""
    lib = setup.home / "library"
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {
                "name": "usb",
                "path": str(exfat_drive / "photos"),
                "media": "external",
                "create": True,
                "reserve": 0,  # (a drive smaller than the default)
            },
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "12:30 what?.jpg")
    shutil.copy(samples / "heic_IMG_5195.HEIC", setup.inbox / "IMG_5195.HEIC")
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "IMG_5195.jpg")
    p.wait_protected(3, timeout=30)
    held = target_files(lib)
    assert "2008/2008-05-30/12_30 what_.jpg" in held
    assert_target_holds(exfat_drive / "photos", held)
    assert 0 == p.stop()


def test_full_drive_waits_then_completes(setup: Setup, samples: Path, small_drive: Path) -> None:
    """A drive too full for a video gets the photos that fit, reports target_full with
    the space needed, holds no partial file, and takes the video once space is freed."""
    lib, photos = setup.home / "library", small_drive / "photos"
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {
                "name": "small",
                "path": str(photos),
                "media": "external",
                "create": True,
                "reserve": 0,
            },
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    p.wait_event("target_available", target="small")
    filler = fill(small_drive, leave=3 * 1024 * 1024)
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    os.rename(big_video(setup.home / "big.mov", 8), setup.inbox / "big.mov")
    full = p.wait_event("target_full", target="small", timeout=30)
    assert full[0]["needed"] >= 8 * 1024 * 1024
    p.wait_event("replica_written", count=2, target="library")
    status = p.status()
    assert (1, 1) == (status["targets"][1]["replicas"], status["targets"][1]["pending"])
    # No partial copy stays (a list being written at this moment goes by itself).
    wait_for(lambda: not list(photos.rglob(".photod-*.tmp")), 10, "no temporaries",
             lambda: str(list(photos.rglob(".photod-*.tmp"))))  # fmt: skip
    assert ["2008/2008-05-30/a.jpg"] == sorted(target_files(photos))
    filler.unlink()  # the person frees some space
    p.wait_protected(2, timeout=30)
    assert_target_holds(photos, target_files(lib))
    assert 0 == p.stop()


def test_a_catch_up_leaves_the_reserve_free(setup: Setup, small_drive: Path) -> None:
    """A drive plugged in after the photos came gets them by the catch-up, and that
    keeps the target's `reserve` free as a new photo's copy does: what does not fit
    waits (`target_full`, the space it needed), the drive is never filled past it."""
    lib, photos = setup.home / "library", small_drive / "photos"
    for i in range(6):  # 30 MB: more than the 32 MB drive holds beside its reserve
        os.rename(big_video(setup.home / f"v{i}.mov", 5), setup.inbox / f"v{i}.mov")
    p = setup.photod([{"name": "library", "path": str(lib)}])
    assert 0 == p.cli("run", "--once").returncode
    reserve = 12 * 1024 * 1024
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "small", "path": str(photos), "media": "external", "create": True,
          "reserve": reserve}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    )  # fmt: skip
    run = p.cli("run", "--once")
    assert 1 == run.returncode, run.stdout + run.stderr  # not everything is protected
    copied = target_files(photos)
    assert 1 <= len(copied) < 6
    assert shutil.disk_usage(small_drive).free >= reserve
    full = [e for e in p.events("target_full") if e.get("target") == "small"]
    assert full and full[0]["needed"] == 5 * 1024 * 1024 + 28
    assert [] == temps(small_drive)


def test_disk_full_mid_write_leaves_nothing(small_drive: Path) -> None:
    """ENOSPC in the middle of a copy becomes TargetFull and removes the temporary: no
    partial file is left on the drive."""
    from photod.errors import TargetFull
    from photod.targets.local import LocalTarget

    target = LocalTarget("small", small_drive / "t", creates_root=True)
    target.check(None)
    fill(small_drive, leave=1024 * 1024)
    writer = target.open_writer("2024/2024-01-01/big.mov")
    with pytest.raises(TargetFull):  # from write(), or from fsync() in commit()
        for _ in range(8):
            writer.write(os.urandom(1024 * 1024))
        writer.commit("2024/2024-01-01/big.mov", "0" * 64)
    assert [] == list((small_drive / "t").rglob(".photod-*.tmp"))


def big_video(path: Path, mb: int) -> Path:
    """A QuickTime file of ``mb`` MB of random media data, whole (its 'mdat' box says
    its own length: a file that ends early is waited for as one still being written)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
        f.write((8 + mb * (1 << 20)).to_bytes(4, "big") + b"mdat")
        for i in range(mb):
            f.write(block[:-4] + i.to_bytes(4, "big"))
    return path


def temps(root: Path) -> list[Path]:
    return list(root.rglob(".photod-*.tmp")) if root.is_dir() else []


def test_drive_renamed_away_mid_copy_then_back(setup: Setup, samples: Path) -> None:
    """The drive's folder disappears while a video is being copied to it (renamed away:
    to photod, the same as an unplug): the copy fails, nothing partial stays on the
    drive, no folder is recreated where the drive was, the library gets every copy;
    when the folder is back, the copy completes."""
    lib, drive = setup.home / "library", setup.home / "T7"
    (drive / "photos").mkdir(parents=True)
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "t7", "path": str(drive / "photos"), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()  # fmt: skip
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    os.rename(big_video(setup.home / "big.mov", 300), setup.inbox / "big.mov")
    wait_for(lambda: temps(drive), 30, "the copy to the drive to start")
    away = setup.home / "T7-away"
    os.rename(drive, away)  # yanked mid-copy
    p.wait_event("target_unavailable", target="t7", timeout=30)
    p.wait_event("replica_written", count=2, target="library", timeout=60)
    wait_for(lambda: not temps(away), 30, "the partial copy to go")
    assert not drive.exists(), "a folder was made where the drive was"
    assert ["2008/2008-05-30/a.jpg"] == sorted(target_files(away / "photos"))
    os.rename(away, drive)  # plugged back in
    p.wait_protected(2, timeout=60)
    assert_target_holds(drive / "photos", target_files(lib))
    assert 0 == p.stop()


def test_drive_turns_read_only_mid_copy_and_comes_back_elsewhere(
    setup: Setup, samples: Path, tmp_path: Path
) -> None:
    """A failing disk: the kernel remounts it read-only in the middle of a copy (ext4's
    errors=remount-ro, set off through sysfs).  The copy fails with a clear reason, the
    library is unaffected; the person unplugs the drive, it is checked (e2fsck) and
    mounted at another path: photod finds it by its marker, removes the partial copy
    the read-only disk kept, and completes."""
    need_tools = [t for t in ("mkfs.ext4", "e2fsck") if shutil.which(t) is None]
    if need_tools:
        pytest.fail(f"{need_tools} not found: apt-get install e2fsprogs (CI does)")
    image, first, second = (
        tmp_path / "t7.img",
        tmp_path / "media" / "T7",
        tmp_path / "media" / "T7-1",
    )
    with open(image, "wb") as f:
        f.truncate(512 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    first.mkdir(parents=True)
    second.mkdir()
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(first)], check=True)
    mounted = [first]
    try:
        lib = setup.home / "library"
        p = setup.photod(
            [{"name": "library", "path": str(lib)},
             {"name": "t7", "path": str(first / "photos"), "media": "external", "create": True}],
            policy={"copies": 2, "media": 2, "offsite": 0},
        ).start()  # fmt: skip
        shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
        p.wait_protected(1)
        os.rename(big_video(setup.home / "big.mov", 300), setup.inbox / "big.mov")
        wait_for(lambda: temps(first), 30, "the copy to the drive to start")
        device = os.path.basename(os.path.realpath(subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(first)], capture_output=True, text=True,
            check=True).stdout.strip()))  # fmt: skip
        # The partial copy on the disk, as it is once the journal commits (every 5 s):
        # the disk keeps it through the error and e2fsck.  (Without it, the copy was
        # kept only when the error came 5 s into it: under load; else it never got there.)
        subprocess.run(["sync", "-f", str(first)], check=True)
        Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("1")
        gone = p.wait_event("target_unavailable", target="t7", timeout=60)[0]
        # (the write in flight as the error is set off may fail with EIO before the
        # kernel has remounted the disk read-only: either is what the disk said)
        assert "read-only" in gone["reason"] or "Input/output error" in gone["reason"], gone
        p.wait_event("replica_written", count=2, target="library", timeout=60)
        # Unplugged: photod let go of the drive, so it unmounts.
        wait_for(lambda: subprocess.run(["umount", str(first)]).returncode == 0, 30, "umount")
        mounted.remove(first)
        subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(second)], check=True)
        mounted.append(second)
        p.wait_event("target_relocated", target="t7", timeout=30)
        p.wait_protected(2, timeout=90)
        # What the read-only disk kept is swept when the drive is back (a list being
        # written right now goes by itself within moments).
        wait_for(lambda: not temps(second), 10, "no temporaries", lambda: str(temps(second)))
        assert_target_holds(second / "photos", target_files(lib))
        assert 0 == p.stop()
    finally:  # lazily: a daemon left by a failed assertion may still hold the drive
        for m in mounted:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_drive_fills_up_mid_copy_then_completes(setup: Setup, tmp_path: Path) -> None:
    """Another program takes the drive's last free space while photod copies a video to
    it (the test reserves it with fallocate the moment the copy starts): the copy fails
    with `target_full` and the space it needed, nothing partial stays, the library
    completes; once the space is freed the drive gets the video by itself."""
    image, drive = tmp_path / "t7.img", tmp_path / "media" / "T7"
    with open(image, "wb") as f:
        f.truncate(256 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True, capture_output=True)
    drive.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(drive)], check=True)
    try:
        lib = setup.home / "library"
        p = setup.photod(
            [{"name": "library", "path": str(lib)},
             {"name": "t7", "path": str(drive / "photos"), "media": "external",
              "create": True, "reserve": 0}],
            policy={"copies": 2, "media": 2, "offsite": 0},
        ).start()  # fmt: skip
        p.wait_event("target_available", target="t7")
        os.rename(big_video(setup.home / "big.mov", 160), setup.inbox / "big.mov")
        wait_for(lambda: temps(drive), 30, "the copy to the drive to start")
        filler = drive / "other-program.bin"
        with open(filler, "wb") as f:  # takes the rest of the drive at once
            for _ in range(50):  # photod writes meanwhile: take what is left each time
                free = shutil.disk_usage(drive).free
                try:
                    os.posix_fallocate(f.fileno(), f.seek(0, 2), max(free - 256 * 1024, 4096))
                except OSError:
                    continue
                if shutil.disk_usage(drive).free < 1024 * 1024:
                    break
        full = p.wait_event("target_full", target="t7", timeout=30)[0]
        assert (160 * 1024 * 1024 + 28, True) == (full["needed"], full["free"] < 1024 * 1024)
        p.wait_event("replica_written", target="library", timeout=60)
        wait_for(lambda: not temps(drive), 15, "the partial copy to go")
        assert {} == target_files(drive / "photos")
        filler.unlink()  # the person makes room
        p.wait_protected(1, timeout=60)
        assert_target_holds(drive / "photos", target_files(lib))
        assert 0 == p.stop()
    finally:  # lazily: a daemon left by a failed assertion may still hold the drive
        subprocess.run(["umount", "-l", str(drive)], capture_output=True)


def test_a_copy_of_a_drive_is_not_a_copy_of_its_own(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """A second backup drive made by copying the first (`cp -a`: its marker too) is not
    a third copy: it is refused with the way out; with the first drive unplugged, photod
    does not take the copy for it either.  Its marker moved away, it is a drive of its
    own and gets its own copies."""
    lib, disk7, disk8 = setup.home / "library", setup.home / "disk7", setup.home / "disk8"
    t7, t8 = setup.home / "media" / "T7", setup.home / "media" / "T8"
    (disk7 / "photos").mkdir(parents=True)
    mount(disk7, t7)
    drives = [
        {"name": "library", "path": str(lib)},
        {"name": "t7", "path": str(t7 / "photos"), "media": "external"},
    ]
    rule = {"copies": 3, "media": 2, "offsite": 0}
    p = setup.photod(drives, policy={**rule, "copies": 2}).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_event("replica_written", target="t7")
    assert 0 == p.stop()
    subprocess.run(["cp", "-a", str(disk7), str(disk8)], check=True)
    mount(disk8, t8)
    eight = {"name": "t8", "path": str(t8 / "photos"), "media": "external"}
    p = setup.photod([*drives, eight], policy=rule).start()
    [refused] = p.wait_event("target_unavailable", target="t8")
    assert "holds target 't7''s id" in refused["reason"] and "target.json away" in refused["reason"]
    status = p.status()
    assert 0 == status["policy"]["compliant"], "two copies are not three"
    doctor = p.cli("doctor")
    assert 1 == doctor.returncode and "holds target 't7''s id" in doctor.stdout, doctor.stdout

    umount(t7)  # the first drive unplugged: its copy must not stand in for it
    p.wait_event("target_unavailable", target="t7")
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "b.jpg")
    p.wait_event("replica_written", count=2, target="library")
    time.sleep(2)  # the fleet's checks go on
    assert not p.events("target_relocated")
    assert 1 == len(target_files(t8 / "photos")), "nothing written to the copy as t7"

    shutil.move(t8 / "photos" / ".photod" / "target.json", setup.home / "t7-marker.json")
    mount(disk7, t7)
    p.wait_protected(2, timeout=60)
    assert_target_holds(t8 / "photos", target_files(lib))
    assert_target_holds(t7 / "photos", target_files(lib))
    assert 0 == p.stop()


def test_one_folder_reached_twice_is_one_copy(setup: Setup, samples: Path, mount: Mount) -> None:
    """A target whose folder is another target's, reached through a bind mount (no path
    check can see it): one of the two is refused, and the photo is one copy, not two."""
    lib, twice = setup.home / "library", setup.home / "media" / "usb"
    lib.mkdir()
    mount(lib, twice)
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {"name": "usb", "path": str(twice), "media": "external"},
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_event("asset_ingested")
    [refused] = p.wait_event("target_unavailable")
    assert "the same folder as target" in refused["reason"]
    time.sleep(2)
    status = p.status()
    assert (1, 0) == (status["assets"], status["policy"]["compliant"])
    assert 1 == len(target_files(lib))
    assert 0 == p.stop()


def test_two_drives_plugged_in_the_other_way_round_are_each_found(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """Two drives of one model (a desktop mounts both as T7 and T71, in the order they
    are plugged in) come back the other way round: each is found by its own id at the
    other's mount point, neither is taken for a copy of the other, and both get the new
    photo."""
    lib, disk_a, disk_b = setup.home / "library", setup.home / "disk-a", setup.home / "disk-b"
    first, second = setup.home / "media" / "T7", setup.home / "media" / "T71"
    for disk in (disk_a, disk_b):
        (disk / "photos").mkdir(parents=True)
    mount(disk_a, first)
    mount(disk_b, second)
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {"name": "a", "path": str(first / "photos"), "media": "external"},
            {"name": "b", "path": str(second / "photos"), "media": "external"},
        ],
        policy={"copies": 3, "media": 2, "offsite": 0},
    )
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    umount(first)
    umount(second)
    mount(disk_b, first)  # b plugged in first this time
    mount(disk_a, second)
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "b.jpg")
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert not p.events("target_unavailable"), p.events("target_unavailable")
    moved = {e["target"]: e["new"] for e in p.events("target_relocated")}
    assert {"a": str(second / "photos"), "b": str(first / "photos")} == moved
    assert_target_holds(disk_a / "photos", target_files(lib))
    assert_target_holds(disk_b / "photos", target_files(lib))


def test_create_makes_a_drives_folder_on_the_drive_only(
    setup: Setup, samples: Path, small_drive: Path, mount: Mount
) -> None:
    """`create = true` on external drives: the folder is made on a drive that is
    mounted, never under an empty mount point on the system disk (a bind mount of a
    system folder, as systemd's ReadWritePaths makes, is the system disk too), nor on a
    filesystem in RAM: there the target waits, "drive not connected?"."""
    import tempfile

    unplugged = setup.home / "media" / "T8"
    unplugged.mkdir(parents=True)
    bound = setup.home / "mnt"
    mount(setup.home / "media", bound)  # (the same disk, seen through a bind mount)
    ram = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        drives = {"t7": small_drive / "photos", "t8": unplugged / "photos",
                  "t9": bound / "T9" / "photos", "ram": ram / "T7" / "photos"}  # fmt: skip
        p = setup.photod(
            [
                {"name": "library", "path": str(setup.home / "library")},
                {
                    "name": "t7",
                    "path": str(drives.pop("t7")),
                    "media": "external",
                    "create": True,
                    "reserve": 0,
                },
            ]
            + [
                {"name": n, "path": str(d), "media": "external", "create": True}
                for n, d in drives.items()
            ],
            policy={"copies": 2, "media": 2, "offsite": 0},
        )
        shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
        assert 0 == p.cli("run", "--once").returncode
        assert 1 == len(target_files(small_drive / "photos"))
        waiting = {e["target"]: e["reason"] for e in p.events("target_unavailable")}
        assert ["ram", "t8", "t9"] == sorted(waiting)
        assert all("drive not connected?" in why for why in waiting.values()), waiting
        assert not any(drives[n].exists() for n in ("t8", "t9", "ram"))
    finally:
        shutil.rmtree(ram)


def test_a_card_on_exfat_is_not_read_again_at_every_scan(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """A camera card (exFAT keeps no ctime: it reports the mtime), its photos' times a
    year ahead of this computer's (a camera's clock): each photo is read once, not at
    every run or rescan because its "ctime" is newer than photod's reading of it."""
    card = exfat_drive / "DCIM"
    card.mkdir()
    ahead = time.time() + 365 * 86400
    for i, name in enumerate(("jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg")):
        shutil.copy(samples / name, card / f"IMG_{i}.JPG")
        os.utime(card / f"IMG_{i}.JPG", (ahead, ahead))
    lib = setup.home / "library"
    p = setup.photod(
        [{"name": "library", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0}
    )
    p.config.write_text(p.config.read_text().replace(str(setup.inbox), str(exfat_drive)))
    assert 0 == p.cli("run", "--once").returncode
    for _ in range(2):
        assert 0 == p.cli("run", "--once").returncode
    scans = p.events("scan_finished")
    assert [2, 0, 0] == [s["changed"] for s in scans], scans
    assert [] == p.events("asset_seen_again")


def _library_and_drive(
    setup: Setup, mount: Mount, extra: str = ""
) -> tuple[Photod, Path, Path, Path]:
    """A library folder and an external drive (the folder ``disk`` bind-mounted at
    media/T7, its target the folder photos/ on it), under policy 2/2/0; returns the
    photod (not started), the library, the drive's disk and its mount point."""
    lib, disk, mnt = setup.home / "library", setup.home / "disk", setup.home / "media" / "T7"
    (disk / "photos").mkdir(parents=True)
    mount(disk, mnt)
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "t7", "path": str(mnt / "photos"), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
        extra=extra,
    )  # fmt: skip
    return p, lib, disk, mnt


def test_a_drive_unplugged_while_its_list_is_completed_loses_no_copy(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """The drive comes with a list that lacks copies the catalog counts (its `.photod`
    put back from an old copy of itself), so photod completes the list, looking for
    each copy on the drive; the drive is unplugged in the middle of that.  Copies not
    found then are the drive gone, not copies missing: none is called missing
    (`replica_missing`) or stops counting, and once the drive is back the list is
    completed and every photo is protected."""
    p, _, disk, mnt = _library_and_drive(setup, mount)
    p.start()
    p.wait_event("target_available", target="t7")
    assert 0 == p.stop()
    old = setup.home / "old-meta"
    shutil.copytree(disk / "photos" / ".photod", old)  # the drive's records, as they were
    p.start()
    for name in ("jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg"):
        shutil.copy(samples / name, setup.inbox / name)
    p.wait_protected(2, timeout=30)
    assert 0 == p.stop()
    shutil.rmtree(disk / "photos" / ".photod")
    shutil.copytree(old, disk / "photos" / ".photod")  # put back from the old copy
    p.env["PHOTOD_FAILPOINTS"] = "relist_copy=1:sleep:6"  # a slow drive: time to unplug
    p.start(wait=False)
    p.wait_event("target_available", count=3, target="library")  # (the third start)
    time.sleep(1)
    umount(mnt)  # unplugged while photod looks for the first copy
    p.wait_event("target_unavailable", target="t7", timeout=30)
    assert [] == p.events("replica_missing")
    assert 2 == p.status()["targets"][1]["replicas"]
    mount(disk, mnt)
    p.wait_event("list_completed", target="t7", timeout=30)
    p.wait_protected(2, timeout=30)
    assert [] == p.events("replica_missing")
    assert 0 == p.stop()


def test_a_drive_put_back_from_an_old_copy_of_itself_gets_the_copies_it_lost(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """The drive's folder is put back from an old copy of itself (`cp -a` of the drive,
    taken after a scrub repaired a copy there, so its list names that photo twice): the
    copies photod made since are gone from it, files and list alike.  photod notices
    its own list lost segments, looks for every copy it counts there, calls the lost one
    missing (`replica_missing`) and copies it again, instead of counting a copy that is
    not there until some later scrub."""
    p, lib, disk, mnt = _library_and_drive(setup, mount)
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    rotten = mnt / "photos" / "2008" / "2008-05-30" / "a.jpg"
    data = bytearray(rotten.read_bytes())
    data[3000] ^= 1
    rotten.write_bytes(bytes(data))  # a bit flipped on the drive
    assert "1 repaired" in p.cli("verify", "--all").stdout  # found and repaired
    old = setup.home / "old-copy"
    subprocess.run(["cp", "-a", str(disk / "photos"), str(old)], check=True)
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "b.jpg")
    assert 0 == p.cli("run", "--once").returncode
    umount(mnt)
    shutil.rmtree(disk / "photos")
    subprocess.run(["cp", "-a", str(old), str(disk / "photos")], check=True)
    mount(disk, mnt)  # the drive, put back from its old copy
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    missing = [e for e in p.events("replica_missing") if e["target"] == "t7"]
    assert ["2008/2008-10-22/b.jpg"] == [e["path"] for e in missing]
    assert_target_holds(mnt / "photos", target_files(lib))
    assert 2 == p.status()["targets"][1]["replicas"]


def test_a_drive_away_at_the_scrub_is_scrubbed_when_it_comes(
    setup: Setup, samples: Path, mount: Mount
) -> None:
    """A drive plugged in only between scrubs (away at 03:30 every night) was never
    re-read, its copies counting on no proof.  The scheduled scrub that finds it away
    (`scrub_skipped`) is owed to it: when the drive comes, it is scrubbed at once (a
    scrub of that target), not at the next scheduled time it may miss again."""
    # (a scrub every minute: "03:30" in a test)
    p, _, disk, mnt = _library_and_drive(setup, mount, '\n[schedule]\nscrub = "* * * * *"\n')
    p.start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    umount(mnt)  # taken away for the night
    p.wait_event("target_unavailable", target="t7")
    p.wait_event("scrub_skipped", target="t7", timeout=75)
    started = len(p.events("scrub_started"))
    mount(disk, mnt)  # plugged in the next day, between two scrubs
    p.wait_event("target_available", count=2, target="t7", timeout=30)
    owed = p.wait_event("scrub_started", count=started + 1, timeout=20)[-1]
    assert "t7" == owed.get("target"), owed
    done = p.wait_event("scrub_finished", count=started + 1, timeout=20)[-1]
    assert 1 == done["targets"]["t7"].get("listed"), done
    assert 0 == p.stop()


@pytest.mark.parametrize("encrypt", [False, True])
def test_a_drive_unplugged_mid_restore_says_so_once_and_a_second_run_completes(
    setup: Setup, samples: Path, mount: Mount, encrypt: bool
) -> None:
    """`photod restore` from a drive (plain, or encrypted: CryptTarget over it) that is
    unplugged while the first photo is read: no traceback; the report counts what was
    restored, says once that the drive went away and that running the same restore
    again completes it (it printed the same "unavailable" line once per photo left, a
    library's worth); and run again with the drive back it brings every photo, the
    first one skipped as already there."""
    disk, mnt = setup.home / "disk", setup.home / "media" / "T7"
    (disk / "photos").mkdir(parents=True)
    mount(disk, mnt)
    key = setup.home / "key.txt"
    t7 = {"name": "t7", "path": str(mnt / "photos"), "media": "external", "encrypt": encrypt}
    p = setup.photod([t7], policy={"copies": 1, "media": 1, "offsite": 0},
                     extra=f'\n[encryption]\nidentity = "{key}"\n' if encrypt else "")  # fmt: skip
    if encrypt:
        assert 0 == p.cli("keygen", "--output", str(key)).returncode
    originals = samples_backed_up(setup, p, samples)
    dest = setup.home / "back"
    proc = subprocess.Popen([*p.cli_command(), "restore", str(dest)],
                            env={**p.env, "PHOTOD_FAILPOINTS": "restore_chunk=1:sleep:4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    # The first photo is being read once its file is open in the destination (a fixed
    # wait lost the race on a busy machine: the drive went before the restore began).
    wait_for(lambda: any(f.is_file() for f in dest.rglob("*")), 60, "the first photo's read")
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # unplugged
    out, err = proc.communicate(timeout=60)
    assert 1 == proc.returncode, out + err
    assert "Traceback" not in out + err
    assert 1 == out.count("unavailable"), out
    assert "run the same restore again" in out, out
    assert "restored 1 file" in out and f"not restored: {len(originals) - 1} files" in out, out
    mount(disk, mnt)  # plugged back in
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "skipped 1 already there" in r.stdout, r.stdout
    assert originals == sorted(sha256(f) for f in dest.rglob("*") if f.is_file()
                               and not f.name.endswith(".xmp"))  # fmt: skip


def test_what_a_read_only_disk_kept_of_a_snapshot_write_is_removed_when_it_is_writable(
    tmp_path: Path, mount: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog snapshot written whole, the drive turning read-only before it gets its
    name: the snapshot fails, and its temporary (as large as the snapshot) cannot be
    removed then.  It is removed at the first check once the drive is writable, as a
    list's is, not left until photod's next start (a failing disk's check passes: no
    failed check asked for it)."""
    import io

    from photod.errors import TargetUnavailable

    t, ident, photos = _usb_target(tmp_path, mount)
    turning = _read_only_once(monkeypatch, photos.parent, at="replica_synced")
    with pytest.raises(TargetUnavailable, match="read-only"):
        t.put_private_file("installations/x/snapshots/0000000001", io.BytesIO(b"db" * 500_000))
    turning.join()
    kept = list((photos / ".photod").rglob(".photod-e0f548bc8f1e*.tmp"))
    assert [1_000_000] == [k.stat().st_size for k in kept]  # (what the disk kept of it)
    subprocess.run(["mount", "-o", "remount,rw,bind", str(photos.parent)], check=True)
    assert ident == t.check(ident)
    assert not [k for k in kept if k.exists()]
