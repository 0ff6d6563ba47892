"""Integration fixtures: a temp HOME with an inbox, targets and a config for a real
``photod run`` process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Photod, sha256, target_files, wait_for, write_config

FAST = """
[daemon]
state_dir = "{home}/state"
log_dir = "{home}/log"
retry_interval = "1s"
retry_max = "2s"
{daemon}
[ingest]
settle = "0.5s"
[dashboard]
listen = "127.0.0.1:0"
"""


class Setup:
    def __init__(self, home: Path, factory: Callable[[Path], Photod]) -> None:
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir()
        self.factory = factory

    def config(
        self,
        targets: list[dict[str, Any]],
        policy: dict[str, int] | None = None,
        extra: str = "",
        daemon: str = "",
    ) -> Path:
        """The inbox and ``targets``; ``daemon``: more [daemon] lines; ``extra``: more
        sections."""
        for t in targets:
            t.setdefault("type", "local")
        return write_config(
            self.home / "photod.toml",
            [{"name": "inbox", "type": "folder", "path": str(self.inbox)}],
            targets,
            policy,
            FAST.format(home=self.home, daemon=daemon) + extra,
        )

    def photod(
        self,
        targets: list[dict[str, Any]],
        policy: dict[str, int] | None = None,
        extra: str = "",
        daemon: str = "",
    ) -> Photod:
        return self.factory(self.config(targets, policy, extra, daemon))


@pytest.fixture
def setup(tmp_path: Path, photod_factory: Callable[[Path], Photod]) -> Setup:
    return Setup(tmp_path, photod_factory)


def target_lists(root: Path) -> list[Path]:
    """Every checksum list segment on a plain local target, of every installation."""
    return sorted(root.glob(".photod/installations/*/sums/*.sha256"))


def listed(root: Path) -> dict[str, str]:
    """relpath -> sha256 of every entry in every installation's list on a target."""
    out = {}
    for segment in target_lists(root):
        for line in segment.read_text().splitlines():
            sha, _, key = line.partition("  ")
            out[key] = sha
    return out


def assert_target_holds(root: Path, expected: dict[str, str]) -> None:
    """The target holds exactly the expected files (relpath -> sha256), no temporaries,
    every checksum list on it passes the stock `sha256sum -c` from its root, and
    together they list every file (a running daemon writes the lists within a second
    or two of a batch: waited for, and so is a temporary of a write in flight; one left
    behind never goes)."""
    assert expected == target_files(root)
    wait_for(lambda: not list(root.rglob(".photod-*.tmp")), 10, "no temporaries on the target",
             lambda: str([p.name for p in root.rglob(".photod-*.tmp")]))  # fmt: skip
    wait_for(lambda: expected == listed(root), 10, "the lists to name every file",
             lambda: f"{len(listed(root))} of {len(expected)} listed")  # fmt: skip
    for segment in target_lists(root):
        check = subprocess.run(
            ["sha256sum", "-c", "--strict", str(segment.relative_to(root))],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert 0 == check.returncode, check.stdout + check.stderr
    assert expected == listed(root)


def backed_up_twice(
    setup: Setup, samples: Path, extra: str = ""
) -> tuple[Photod, Path, Path, dict[str, str]]:
    """Every sample backed up by `photod run --once` to a library and an external
    folder; returns the photod, both roots, and the originals as key -> sha256."""
    lib, ext = setup.home / "lib", setup.home / "ext"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)}, {"name": "ext", "path": str(ext), "create": True}],
        extra=extra,
    )
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    return p, lib, ext, target_files(lib)


__all__ = ["Setup", "assert_target_holds", "backed_up_twice", "listed", "sha256", "target_lists"]


@pytest.fixture
def small_drive(tmp_path: Path) -> Iterator[Path]:
    """A real 32 MB ext4 filesystem on a loop device, to fill up."""
    if shutil.which("mkfs.ext4") is None:
        pytest.fail("mkfs.ext4 not found: apt-get install e2fsprogs (CI does)")
    image, mnt = tmp_path / "small.img", tmp_path / "media" / "SMALL"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True, capture_output=True)
    r = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.fail(f"mount -o loop failed ({r.stderr.strip()}): these tests need root, as in CI")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def blank_drive(
    tmp_path: Path, kind: str, tools: tuple[str, ...], packages: str
) -> tuple[Path, Path]:
    """A 64 MiB image file for a drive of ``kind`` and the folder to mount it at
    (``media/KIND``); fails, naming the packages, where a tool to make it is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install {packages} (CI does)")
    image, mnt = tmp_path / f"{kind}.img", tmp_path / "media" / kind.upper()
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    return image, mnt


@pytest.fixture
def exfat_drive(tmp_path: Path) -> Iterator[Path]:
    """A real exFAT filesystem (no hard links, no ':' in names), as on most USB drives:
    a loop device with exfat-fuse."""
    image, mnt = blank_drive(tmp_path, "exfat", ("mkfs.exfat", "mount.exfat-fuse", "losetup"),
                             "exfatprogs exfat-fuse")  # fmt: skip
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(["mount.exfat-fuse", loop, str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


@pytest.fixture
def windows_drive(tmp_path: Path) -> Iterator[Path]:
    """A real NTFS filesystem that refuses what Windows refuses (ntfs-3g's
    ``windows_names``: a device name such as CON.jpg, a name ending in a dot or a
    space), as a drive formatted on Windows and used from there would."""
    image, mnt = blank_drive(tmp_path, "ntfs", ("mkntfs", "ntfs-3g"), "ntfs-3g")
    subprocess.run(["mkntfs", "-F", "-q", "-f", str(image)], check=True, capture_output=True)
    subprocess.run(["ntfs-3g", "-o", "windows_names", str(image), str(mnt)], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(drive: Path, leave: int) -> Path:
    """Fill a filesystem with one file until about ``leave`` bytes are free."""
    filler = drive / "filler.bin"
    free = shutil.disk_usage(drive).free
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, free - leave))
        f.flush()
        os.fsync(f.fileno())
    return filler


def live_photo_edited_later(inbox: Path, taken: str, movie_at: datetime) -> None:
    """A Live Photo in ``inbox``: IMG_0001.JPG taken at ``taken`` (EXIF's "YYYY:MM:DD
    hh:mm:ss"), its movie IMG_0001.MOV made at ``movie_at``, and the `.AAE` of an edit
    made on 10 June 2024, that file's only date."""
    from tests.conftest import make_mov
    from tests.fakephone import jpeg

    jpeg(inbox / "IMG_0001.JPG", 1, taken)
    make_mov(inbox / "IMG_0001.MOV", movie_at, payload=os.urandom(5000))
    aae = inbox / "IMG_0001.AAE"
    aae.write_text('<?xml version="1.0"?><plist version="1.0"><dict><key>adjustmentFormat'
                   "Identifier</key><string>com.apple.photo</string></dict></plist>\n")  # fmt: skip
    edited = datetime(2024, 6, 10, 9, 0, tzinfo=UTC).timestamp()
    os.utime(aae, (edited, edited))


def rebuilt_and_restored(
    setup: Setup, p: Photod, made: dict[str, str]
) -> tuple[Path, dict[str, str], str]:
    """The state dir gone, the catalog rebuilt from the target "vault" alone and all
    restored from it into `restored/`: every photo of ``made`` (name -> SHA-256) came
    back.  The folder, what it holds (relpath -> SHA-256), and what the rebuild said."""
    shutil.rmtree(setup.home / "state")
    r = p.cli("catalog", "rebuild", "--from", "vault")
    assert 0 == r.returncode, r.stdout + r.stderr
    dest = setup.home / "restored"
    restored = p.cli("restore", str(dest), "--target", "vault")
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    back = target_files(dest)
    assert sorted(made.values()) == sorted(back.values())
    return dest, back, r.stdout


def samples_backed_up(setup: Setup, p: Photod, samples: Path) -> list[str]:
    """Every sample photo put in the watch folder and backed up by one `run --once`:
    their SHA-256s, sorted."""
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    return sorted(sha256(f) for f in samples.iterdir())


def plan_steps(setup: Setup, p: Photod, target: str) -> str:
    """The recovery plan's stock-tools steps for ``target`` (its bash block), written by
    ``photod recovery-plan`` as a user would ask for it."""
    plan = setup.home / "plan.md"
    assert 0 == p.cli("recovery-plan", "--output", str(plan)).returncode
    steps = re.search(rf"### {re.escape(target)}\n\n.*?```bash\n(.*?)```", plan.read_text(), re.S)
    assert steps is not None, plan.read_text()
    return steps.group(1)
