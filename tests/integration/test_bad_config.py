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


@pytest.mark.parametrize("where", ["home", "config folder", "state home"])
def test_a_path_that_is_not_utf8_is_one_line_naming_the_key(tmp_path: Path, where: str) -> None:
    """A folder named in another encoding (byte 0xff): a target under a HOME so named
    ('~/lib'), a config in such a folder, or a default state dir under such an
    XDG_STATE_HOME.  Every command said a traceback (the catalog, the logs and every
    message keep a path as UTF-8 text); now one line naming the key, exit 78."""
    odd = os.fsencode(tmp_path) + b"/Fotos \xff\xfe"
    os.makedirs(odd)
    (tmp_path / "in").mkdir()
    home = odd if where == "home" else os.fsencode(tmp_path / "home")
    folder = odd if where == "config folder" else os.fsencode(tmp_path)
    state = "" if where == "state home" else 'state_dir = "state"\n'
    config = folder + b"/photod.toml"
    with open(config, "w") as f:
        f.write(f'[daemon]\n{state}log_dir = "{tmp_path}/log"\n[policy]\ncopies = 1\nmedia = 1\n'
                f'offsite = 0\n[[sources]]\nname = "in"\ntype = "folder"\npath = "{tmp_path}/in"\n'
                '[[targets]]\nname = "lib"\ntype = "local"\npath = "~/lib"\n')  # fmt: skip
    env = {**os.environb, b"HOME": home, b"XDG_RUNTIME_DIR": os.fsencode(tmp_path / "run"),
           b"XDG_STATE_HOME": odd if where == "state home" else os.fsencode(tmp_path / "st")}  # fmt: skip
    key = {"home": "targets[0].path", "config folder": "the config file's path",
           "state home": "daemon.state_dir"}[where]  # fmt: skip
    for command in (["run", "--once"], ["status"], ["restore", str(tmp_path / "out")]):
        r = subprocess.run([sys.executable, "-m", "photod", b"--config", config, *command],
                           env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert (78, 1) == (r.returncode, len(r.stderr.splitlines())), r.stderr
        assert key in r.stderr and "\\xff\\xfe" in r.stderr and "not UTF-8" in r.stderr, r.stderr
    assert not (tmp_path / "log").exists()
