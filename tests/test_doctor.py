"""`photod doctor`: one line per check with the fix; exit 1 on a FAIL, never on a WARN."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from photod import config as configmod
from photod.errors import TargetUnavailable
from photod.mounts import mount_of
from photod.targets.local import LocalTarget
from photod.usb import usbmuxd_installed
from tests.conftest import write_config


def _healthy(home: Path) -> Path:
    """A config with a watch folder and a library, both fine."""
    (home / "inbox").mkdir()
    return write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        [{"name": "lib", "type": "local", "path": str(home / "lib")}],
        extra=f'[daemon]\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n',
    )


def _doctor(config: Path, home: Path, **more_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"), **more_env}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "doctor"],
                          env=env, capture_output=True, text=True)  # fmt: skip


def test_a_healthy_setup_is_all_good(tmp_path: Path) -> None:
    """Config, folders, writable dirs, a reachable target with its free space, the
    clock: each an OK line; the service not installed is the one warning; exit 0."""
    config = _healthy(tmp_path)
    r = _doctor(config, tmp_path)
    assert 0 == r.returncode, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for start in ("OK    config:", "OK    state dir:", "OK    log dir:", "OK    runtime dir:",
                  "OK    target lib:", "OK    folder inbox:", "OK    clock:"):  # fmt: skip
        assert any(line.startswith(start) for line in lines), (start, r.stdout)
    # Only the service (not installed here, no daemon running) is worth a WARN.
    assert ["WARN  service"] == [x[:13] for x in lines[:-2] if not x.startswith("OK")]
    assert "1 warning" == lines[-1]


def test_each_problem_is_one_line_with_its_fix(tmp_path: Path) -> None:
    """A readable identity, a state dir that cannot be made, a drive not plugged in, a
    missing watch folder and a clock behind the log each get one line that says what
    to do; exit 1."""
    key = tmp_path / "key.txt"
    subprocess.run([sys.executable, "-m", "photod", "keygen", "--output", str(key)],
                   check=True, capture_output=True)  # fmt: skip
    key.chmod(0o644)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "nowhere")}],
        [{"name": "t7", "type": "local", "path": str(tmp_path / "T7"), "media": "external"}],
        extra=(
            f'[encryption]\nidentity = "{key}"\n'
            f'[daemon]\nstate_dir = "{tmp_path}/blocker/state"\nlog_dir = "{tmp_path}/log"\n'
        ),
    )
    (tmp_path / "log").mkdir()
    future = {"ts": "2099-01-01T00:00:00Z", "level": "info", "event": "daemon_started"}
    (tmp_path / "log" / "photod.jsonl").write_text(json.dumps(future) + "\n")
    r = _doctor(config, tmp_path)
    assert 1 == r.returncode
    out = r.stdout
    assert "FAIL  secrets:" in out and f"chmod 600 {key}" in out
    assert "FAIL  state dir:" in out and "Not a directory" in out
    assert "WARN  target t7:" in out and "-> plug the drive in" in out
    assert "WARN  folder inbox:" in out and "does not exist" in out
    assert "FAIL  clock:" in out and "before the last logged event" in out
    assert _summary(out) == out.rstrip().splitlines()[-1]


def _summary(out: str) -> str:
    """What the last line must say: the FAIL and WARN lines above it, counted apart."""
    lines = out.splitlines()
    failed = sum(line.startswith("FAIL ") for line in lines)
    warned = sum(line.startswith("WARN ") for line in lines)
    counted = [f"{n} {word}{'s' * (n != 1)}"
               for n, word in ((failed, "failure"), (warned, "warning")) if n]  # fmt: skip
    return ", ".join(counted) or "all good"


def _daemon_dirs(tmp_path: Path) -> str:
    return f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n'


def test_a_fresh_install_warns_and_exits_0(tmp_path: Path) -> None:
    """The default config as photod writes it (a watch folder, a phone source, the
    library) on a computer without usbmuxd: usbmuxd is a WARN with the install
    command, like the service not installed yet; nothing FAILs, the summary counts the
    warnings, exit 0."""
    (tmp_path / "Pictures" / "Inbox").mkdir(parents=True)
    (tmp_path / "Pictures" / "photod").mkdir()
    config = tmp_path / "photod.toml"
    config.write_text(configmod.DEFAULT_CONFIG.format(inbox="~/Pictures/Inbox",
                                                      library="~/Pictures/photod")
                      + _daemon_dirs(tmp_path))  # fmt: skip
    config.chmod(0o600)
    r = _doctor(config, tmp_path)
    out = r.stdout
    assert (0, []) == (r.returncode, [x for x in out.splitlines() if x.startswith("FAIL")]), out
    if usbmuxd_installed():
        assert "OK    usbmuxd: installed" in out
    else:
        assert ("WARN  usbmuxd: not installed: photod cannot see iPhones until it is -> "
                "sudo apt install usbmuxd") in out  # fmt: skip
    assert "WARN  service: not installed as a service" in out
    assert _summary(out) == out.splitlines()[-1] and "warning" in out.splitlines()[-1]


def test_a_file_where_the_target_folder_should_be_fails(tmp_path: Path) -> None:
    """A target path that is a regular file can never hold a backup: FAIL, saying so
    and what to do; exit 1 (not "is made when photod first runs" and "all good")."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "lib1").write_text("not a folder")
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [{"name": "lib1", "type": "local", "path": str(tmp_path / "lib1")}],
        extra=_daemon_dirs(tmp_path),
    )
    r = _doctor(config, tmp_path)
    assert 1 == r.returncode, r.stdout
    assert (f"FAIL  target lib1: {tmp_path / 'lib1'} is a file, not a folder -> move it "
            "away, or point the target's path at a folder") in r.stdout.splitlines()  # fmt: skip
    assert "1 failure, 1 warning" == r.stdout.splitlines()[-1]  # and the service


def test_a_config_without_a_source_fails(tmp_path: Path) -> None:
    """A config with targets but no source backs nothing up, ever: FAIL with the fix."""
    config = write_config(
        tmp_path / "photod.toml", [],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")}],
        extra=_daemon_dirs(tmp_path),
    )  # fmt: skip
    r = _doctor(config, tmp_path)
    assert 1 == r.returncode, r.stdout
    assert (f"FAIL  config: {config}: no source: nothing will ever be backed up -> add a "
            '[[sources]]: a watch folder (type = "folder") or iPhones (type = "iphone")'
            ) == r.stdout.splitlines()[0]  # fmt: skip
    assert "OK    target lib:" in r.stdout


@pytest.fixture
def drive() -> Iterator[Path]:
    """A folder on a filesystem of its own, as a plugged-in drive is: a tmpfs (Linux
    mounts one at /dev/shm)."""
    shm = Path("/dev/shm")
    if mount_of(shm)[0] != shm:
        pytest.fail("/dev/shm is not a mount here: this test needs Linux's tmpfs at /dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="photod-drive-"))
    yield folder
    shutil.rmtree(folder)


def test_a_drive_that_is_plugged_in_but_lacks_the_folder(tmp_path: Path, drive: Path) -> None:
    """An external drive's folder that does not exist yet: with the drive mounted, the
    advice is to create the folder or set `create = true` (doctor, and the reason the
    log and status give); with nothing mounted there, to plug the drive in."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "media" / "T7").mkdir(parents=True)  # an empty mount point
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")},
         {"name": "t7", "type": "local", "path": str(drive / "Photos"), "media": "external"},
         {"name": "t8", "type": "local", "path": str(tmp_path / "media/T7/Photos"),
          "media": "external"}],
        extra=_daemon_dirs(tmp_path),
    )  # fmt: skip
    r = _doctor(config, tmp_path)
    lines = r.stdout.splitlines()
    assert (f"WARN  target t7: {drive / 'Photos'} does not exist on the drive mounted at "
            "/dev/shm -> create the folder, or set `create = true` for the target") in lines  # fmt: skip
    assert (f"WARN  target t8: {tmp_path / 'media/T7/Photos'} does not exist (drive not "
            "connected?) -> plug the drive in") in lines  # fmt: skip
    assert 0 == r.returncode, r.stdout
    with pytest.raises(TargetUnavailable) as err:
        LocalTarget("t7", drive / "Photos", creates_root=False).check(None)
    assert (f"{drive / 'Photos'} does not exist on the drive mounted at /dev/shm: create the "
            "folder, or set `create = true` for the target") == err.value.reason  # fmt: skip
    assert not (drive / "Photos").exists()
    # create = true makes a drive's folder on the drive, never under an empty mount point
    # on the system disk (it would fill the system disk and count as the drive).
    empty = tmp_path / "media/T7/Photos"
    with pytest.raises(TargetUnavailable) as err:
        LocalTarget("t8", empty, creates_root=True, relocatable=True).check(None)
    assert f"{empty} does not exist (drive not connected?)" == err.value.reason
    assert not empty.exists()
    config.write_text(config.read_text().replace('"external"', '"external"\ncreate = true'))
    lines = _doctor(config, tmp_path).stdout.splitlines()
    assert (f"WARN  target t8: {empty} does not exist (drive not connected?) -> plug the "
            "drive in") in lines, lines  # fmt: skip


def test_the_clock_line_is_local_time_as_everywhere(tmp_path: Path) -> None:
    """`photod doctor` shows the clock as every command shows a time: local, no zone
    letter (here UTC+9, where a UTC time would be nine hours off)."""
    config = _healthy(tmp_path)
    r = _doctor(config, tmp_path, TZ="Asia/Tokyo")
    line = next(x for x in r.stdout.splitlines() if x.startswith("OK    clock:"))
    shown = datetime.strptime(line.split("clock:")[1].strip(), "%Y-%m-%d %H:%M")
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None)
    assert abs((tokyo - shown).total_seconds()) < 120, line


def test_doctor_leaves_no_rclone_behind(tmp_path: Path) -> None:
    """`photod doctor` checks an rclone target and exits: the rclone it started ends
    with it (it was started again after the target was closed, and stayed)."""
    import psutil

    (tmp_path / "inbox").mkdir()
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")},
         {"name": "nas", "type": "rclone", "remote": f"dir:{tmp_path / 'nas'}",
          "rclone_config": {"type": "local"}, "media": "nas", "offsite": False}],
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n',
    )  # fmt: skip
    assert 0 == subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "run",
                                "--once"], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HOME": str(tmp_path)}).returncode  # fmt: skip
    r = _doctor(config, tmp_path)
    assert "OK    target nas:" in r.stdout, r.stdout + r.stderr

    def ours() -> list[str]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            if "rcd" in line and str(tmp_path / "state") in line:
                found.append(line)
        return found

    assert [] == ours()
