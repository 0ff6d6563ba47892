"""Targets on real mounts (bind mounts, as root like CI): read-only drives, drives that
come back at another mount point, and watch folders that cannot use inotify."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import target_files
from tests.integration.conftest import Setup, assert_target_holds, fill

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
    subprocess.run(["umount", str(dst)], check=True)


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


@pytest.fixture
def exfat_drive(tmp_path: Path) -> Iterator[Path]:
    """A real exFAT filesystem (no hard links, no ':' in names), as on most USB drives:
    a loop device with exfat-fuse."""
    for tool in ("mkfs.exfat", "mount.exfat-fuse", "losetup"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install exfatprogs exfat-fuse (CI does)")
    image, mnt = tmp_path / "exfat.img", tmp_path / "media" / "EXFAT"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(["mount.exfat-fuse", loop, str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


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
    video = setup.inbox / "big.mov"
    with open(video, "wb") as f:
        f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + os.urandom(8 * 1024 * 1024))
    full = p.wait_event("target_full", target="small", timeout=30)
    assert full[0]["needed"] >= 8 * 1024 * 1024
    p.wait_event("replica_written", count=2, target="library")
    status = p.status()
    assert (1, 1) == (status["targets"][1]["replicas"], status["targets"][1]["pending"])
    assert [] == list(photos.rglob(".photod-*.tmp"))
    assert ["2008/2008-05-30/a.jpg"] == sorted(target_files(photos))
    filler.unlink()  # the person frees some space
    p.wait_protected(2, timeout=30)
    assert_target_holds(photos, target_files(lib))
    assert 0 == p.stop()


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
