"""`photod drill` in the foreground (no daemon): what it prints per target."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
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
    from photod.restore import drill
    from tests.test_replicate import Rig

    rig = Rig(tmp_path, "a", "b")
    try:
        rig.ingest(rig.add(samples / "jpg_Canon_40D.jpg"))
        stop = threading.Event()
        stop.set()
        assert {} == drill(rig.catalog, rig.states, 5, stop, tmp_path)
        assert None is rig.catalog.last_run("drill")
        results = drill(rig.catalog, rig.states, 5, threading.Event(), tmp_path)
        assert {"a": (1, 0), "b": (1, 0)} == results
        assert {"a": True, "b": True} == rig.catalog.last_run("drill")[1]["passed"]  # type: ignore[index]
    finally:
        rig.close()
