"""`photod doctor`: one line per check with the fix, exit 1 on any problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config


def _doctor(config: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "doctor"],
                          env=env, capture_output=True, text=True)  # fmt: skip


def test_a_healthy_setup_is_all_good(tmp_path: Path) -> None:
    """Config, folders, writable dirs, a reachable target with its free space, the
    clock: each an OK line; exit 0."""
    (tmp_path / "inbox").mkdir()
    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")}],
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\nlog_dir = "{tmp_path}/log"\n',
    )
    r = _doctor(config, tmp_path)
    assert 0 == r.returncode, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for start in ("OK    config:", "OK    state dir:", "OK    log dir:", "OK    runtime dir:",
                  "OK    target lib:", "OK    folder inbox:", "OK    clock:"):  # fmt: skip
        assert any(line.startswith(start) for line in lines), (start, r.stdout)
    assert "all good" == lines[-1]


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
    assert out.rstrip().endswith("problem(s)")
