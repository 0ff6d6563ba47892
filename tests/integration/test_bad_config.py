"""Bad config, as a person meets it: each of the malformed configs of
tests/test_config.py given to a real `photod run` gives exactly one line on stderr, naming the file, the key and what is allowed, and exit 78;
the daemon never starts (no state, no log, no lock, no default config written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_config import BAD

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("text", "key", "why"), BAD, ids=[f"{i:02d}-{k}" for i, (_, k, _) in enumerate(BAD)]
)
def test_a_bad_config_is_one_line_and_exit_78_and_nothing_starts(
    tmp_path: Path, text: str, key: str, why: str
) -> None:
    """One line with the key and the reason; exit 78 (EX_CONFIG); nothing created."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "photod.toml"
    config.write_text(text)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"),
           "XDG_STATE_HOME": str(home / "state"), "XDG_CONFIG_HOME": str(home / "config")}  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "photod", "--config", str(config), "run"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = r.stderr.splitlines()
    assert (78, 1) == (r.returncode, len(lines)), r.stderr
    assert lines[0].startswith(f"{config}: ")
    assert key in lines[0] and why in lines[0], lines[0]
    assert "" == r.stdout
    assert [] == sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
