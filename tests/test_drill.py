"""`photod drill` in the foreground (no daemon): what it prints per target."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import target_files, write_config


def test_a_drill_prints_how_many_photos_it_restored_and_checked(
    tmp_path: Path, samples: Path
) -> None:
    """Each target's line counts the photos restored and checked and the ones that
    failed ("lib: drill passed: 3 photos restored and checked, 0 failed"); a damaged
    copy makes that target's line FAILED with its count, and exit 1."""
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    inbox.mkdir()
    for name in sorted(p.name for p in samples.iterdir() if p.suffix == ".jpg")[:3]:
        shutil.copy(samples / name, inbox / name)
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(inbox)}],
        [{"name": "lib", "type": "local", "path": str(lib)}],
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n',
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir(mode=0o700)

    def photod(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), *args],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    once = photod("run", "--once")
    assert 0 == once.returncode, once.stdout + once.stderr
    copies = target_files(lib)
    assert 3 == len(copies)

    r = photod("drill")
    assert (0, "lib: drill passed: 3 photos restored and checked, 0 failed") == (
        r.returncode,
        r.stdout.strip(),
    ), r.stderr
    (lib / sorted(copies)[0]).write_bytes(b"rotten")
    r = photod("drill")
    assert (
        1,
        "lib: drill FAILED: 2 photos restored and checked, 1 failed (photod logs --failures)",
    ) == (r.returncode, r.stdout.strip()), r.stderr


def test_a_drill_cut_short_by_a_stop_is_not_recorded_as_run(tmp_path: Path, samples: Path) -> None:
    """A drill a stop cut short is not counted as the run its schedule wanted: the
    next start still catches up on it (a whole drill is counted)."""
    from photod.drill import drill
    from tests.test_replicate import Rig

    rig = Rig(tmp_path, "a", "b")
    try:
        rig.ingest(rig.add(samples / "jpg_Canon_40D.jpg"))
        stop = threading.Event()
        stop.set()
        assert {} == drill(rig.catalog, rig.states, 5, stop, tmp_path)
        assert None is rig.catalog.last_run("drill")
        results = drill(rig.catalog, rig.states, 5, threading.Event(), tmp_path)
        assert {"a": (1, 0, ""), "b": (1, 0, "")} == results
        assert {"a": True, "b": True} == rig.catalog.last_run("drill")[1]["passed"]  # type: ignore[index]
    finally:
        rig.close()


def test_a_drill_keeps_one_file_at_a_time_and_names_a_target_it_could_not_reach(
    tmp_path: Path, samples: Path
) -> None:
    """`photod drill` with the external drive put away: that target's line says it was
    not drilled and why, and the exit is 1 (it said nothing and exited 0). The sample
    restored from the other is removed file by file as it is checked (it all stayed in
    the state dir to the end: a sample of phone videos would fill the catalog's disk)."""
    inbox, lib, usb = tmp_path / "inbox", tmp_path / "lib", tmp_path / "usb"
    inbox.mkdir()
    usb.mkdir()  # the external drive, plugged in for the backup
    for i, name in enumerate(sorted(p.name for p in samples.iterdir() if p.suffix == ".jpg")[:6]):
        (inbox / name).write_bytes((samples / name).read_bytes() + os.urandom(300_000 + i))
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(inbox)}],
        [{"name": "lib", "type": "local", "path": str(lib)},
         {"name": "usb", "type": "local", "path": str(usb), "media": "external"}],
        policy={"copies": 2, "media": 1, "offsite": 0},
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n'
        "[schedule]\ndrill_sample = 6\n",
    )  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir(mode=0o700)
    command = [sys.executable, "-m", "photod", "--config", str(config)]
    once = subprocess.run([*command, "run", "--once"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert 0 == once.returncode, once.stdout + once.stderr
    usb.rename(tmp_path / "usb-in-a-drawer")

    slow = {**env, "PHOTOD_FAILPOINTS": "restore_chunk=sleep:0.05"}
    drill = subprocess.Popen([*command, "drill"], env=slow, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    most = 0  # files in the drill's folder at once
    while drill.poll() is None:
        held = set()  # files, not names: a restored file has two for an instant (its
        # temporary's, its own); a folder the drill removes mid-walk ends this look.
        with contextlib.suppress(FileNotFoundError):
            for f in (tmp_path / "state").glob("photod-drill-*/**/*"):
                with contextlib.suppress(FileNotFoundError):
                    if f.is_file():
                        held.add(f.stat().st_ino)
        most = max(most, len(held))
        time.sleep(0.005)
    out, err = drill.communicate()
    lines = out.splitlines()
    assert 1 == drill.returncode, out + err
    assert "lib: drill passed: 6 photos restored and checked, 0 failed" in lines
    assert [line for line in lines if line.startswith("usb: not drilled: ")], out
    # One file at a time, not the sample of six kept to the end.  (A glob walks one day
    # folder after another: it may see a file that is deleted meanwhile and the next.)
    assert 1 <= most <= 2, most
