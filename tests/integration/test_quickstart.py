"""A newcomer's first hour, as the README tells it: `photod run` in a fresh home folder
writes its default config and starts; a photo dropped into the inbox shows up in the
library; then every command of the README's Commands table runs on that default
config, and none of them prints a Python traceback or exits with a code the README's
exit-code table does not list."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Photod, sha256, wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def readme_commands() -> list[str]:
    """The commands of the README's Commands table, as written in its first column."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    commands = []
    for row in table.splitlines():
        first = row.split("|")[1] if row.startswith("|") else ""
        commands += re.findall(r"`(photod [^`]*)`", first)
    return commands


def documented_exit_codes() -> set[int]:
    """The codes in the first column of the README's exit-code table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("| code |", 1)[1].split("\n\n", 1)[0]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}


def concrete(command: str, home: Path) -> list[list[str]]:
    """The ways to run one table entry, its placeholders filled in: once with every
    option it shows (``[--x Y]``), once with none."""
    words = command.removeprefix("photod ").split()
    if words in (["run"], ["--config", "FILE", "…"]):
        return []  # the daemon is running already; --config is every command's
    fill = {
        "DEST": str(home / "Restored"),
        "NAME": "library",
        "FILE": str(home / "out" / f"{words[0]}.txt"),
        "TARGET": "library",
        "DATE": "2026-01-01",
        "GLOB": "*.jpg",
        "HASH": "0" * 12,
    }
    full, bare, optional = [], [], False
    for w in words:
        if w.strip("[]") in ("…", "...", "--system"):  # --system: a system unit: not here
            continue
        optional = optional or w.startswith("[")
        word = fill.get(w.strip("[]"), w.strip("[]"))
        full.append(word)
        if not optional:
            bare.append(word)
        optional = optional and not w.endswith("]")
    return [full] if full == bare else [full, bare]


def test_the_quick_start_and_every_command_of_the_readme(tmp_path: Path, samples: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    p = Photod(home, home / ".config" / "photod" / "photod.toml")
    p.log_dir = home / ".local" / "state" / "photod" / "log"
    p.start(config=False, wait=False)
    try:
        wait_for(lambda: (home / "Pictures" / "Inbox").is_dir(), 30, "the inbox")
        photo = next(q for q in sorted(samples.iterdir()) if q.suffix.lower() == ".jpg")
        shutil.copy(photo, home / "Pictures" / "Inbox" / photo.name)
        library = home / "Pictures" / "photod"
        wait_for(
            lambda: any(q.is_file() and sha256(q) == sha256(photo) for q in library.rglob("*")),
            60,
            "the photo in the library",
        )
        (home / "out").mkdir()
        allowed = documented_exit_codes()
        ran = 0
        for command in readme_commands():
            for argv in concrete(command, home):
                r = subprocess.run(
                    [sys.executable, "-m", "photod", *argv],
                    env={**p.env, "NO_COLOR": "1"},
                    capture_output=True,
                    text=True,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                )
                ran += 1
                said = r.stdout + r.stderr
                assert "Traceback" not in said, f"photod {' '.join(argv)}:\n{said}"
                assert r.returncode in allowed, (
                    f"photod {' '.join(argv)} exited {r.returncode}, not in the README's "
                    f"table {sorted(allowed)}:\n{said}"
                )
        assert ran >= 20, readme_commands()
    finally:
        p.stop()
