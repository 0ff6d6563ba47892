"""The command line's pages and the example config it ships: every command has a
description and every flag its help; `photod config example` prints the one example
file, which an installed photod holds, and a missing config points to it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from photod.cliparser import parser

ROOT = Path(__file__).resolve().parents[1]


def _pages(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command's parser under ``p``, subcommands' too."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _pages(sub)


def test_every_page_has_a_description_and_every_flag_its_help() -> None:
    """`photod COMMAND --help` opens with what the command does (not only its usage),
    and no flag or argument is left without a word, `catalog rebuild --from` included."""
    pages = list(_pages(parser()))
    assert len(pages) > 20
    undescribed = [p.prog for p in pages if not p.description]
    unhelped = [
        f"{p.prog} {a.option_strings or a.dest}"
        for p in pages
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert ([], []) == (undescribed, unhelped)


@pytest.mark.parametrize("columns", ["50", "132", " 100", "\u00b2", ""])
def test_help_fills_the_terminals_width_as_argparse_would(columns: str) -> None:
    """The pages wrap where argparse's own formatter wraps them (at $COLUMNS, else the
    terminal's width, else 80; a $COLUMNS that is no number is passed over, never a
    crash), though photod reads the width without shutil."""
    env = {"PATH": "/usr/bin:/bin", **({"COLUMNS": columns} if columns else {})}
    code = (
        "import argparse, sys\nfrom photod import cliparser\n"
        "cliparser.parser(['restore', '--help']).parse_args(sys.argv[1:])\n"
    )
    ours = subprocess.run([sys.executable, "-c", code, "restore", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    stock = subprocess.run([sys.executable, "-c", code.replace(
        "from photod import cliparser\n",
        "from photod import cliparser\ncliparser._Formatter = argparse.HelpFormatter\n"),
        "restore", "--help"], cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert (0, 0) == (ours.returncode, stock.returncode), ours.stderr + stock.stderr
    assert stock.stdout == ours.stdout
    width = int(columns) if columns.strip().isascii() and columns.strip().isdigit() else 80
    assert max(map(len, ours.stdout.splitlines())) <= width


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--json", "--device", "Anna"],
        ["--config", "x.toml", "restore", "out", "--album", "Trip", "--since", "2024-01-02"],
        ["--config=x.toml", "catalog", "rebuild", "--from", "nas", "--force"],
        ["service", "install", "--system"],
        ["config", "check"],
        ["pause", "--for", "2h"],
        ["logs", "--failures", "--asset", "abc"],
    ],
)
def test_a_command_parses_alike_with_only_its_page(argv: list[str]) -> None:
    """The command line builds only the page of the command it names (a lighter
    start); what it parses is what the whole grammar parses, and an unknown command
    still hears every command there is."""
    assert vars(parser(None).parse_args(argv)) | {"help_of": None} == vars(
        parser(argv).parse_args(argv)
    ) | {"help_of": None}
    r = _photod("--config", "x.toml", "statsu", cwd=ROOT)
    assert r.returncode == 64 and "'status'" in r.stderr and "'restore'" in r.stderr


def _photod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "photod", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_config_example_prints_the_one_example_file(tmp_path: Path) -> None:
    """`photod config example` prints etc/photod.example.toml, byte for byte, and needs
    no config; the package's copy is that file (a link), not a second one to keep in step."""
    r = _photod("--config", str(tmp_path / "none.toml"), "config", "example", cwd=tmp_path)
    example = ROOT / "etc" / "photod.example.toml"
    assert (0, example.read_text(encoding="utf-8")) == (r.returncode, r.stdout)
    assert example.resolve() == (ROOT / "photod" / "example.toml").resolve()


def test_an_installed_photod_holds_the_example(tmp_path: Path) -> None:
    """What a wheel is built from (setuptools' build_py, as `pip install .` runs it)
    holds the example itself, a file, not a link that would point nowhere."""
    src = tmp_path / "src"  # a copy: the build writes its egg-info beside the sources
    shutil.copytree(ROOT / "photod", src / "photod", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(ROOT / "etc", src / "etc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
         "--build-lib", str(tmp_path / "build")],
        cwd=src, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 0 == r.returncode, r.stderr
    built = tmp_path / "build" / "photod" / "example.toml"
    assert not built.is_symlink()
    assert (ROOT / "etc" / "photod.example.toml").read_bytes() == built.read_bytes()


def test_a_missing_config_points_to_the_example(tmp_path: Path) -> None:
    """The missing-config message names a command that works on an installed photod
    (etc/ is only in the source)."""
    r = _photod("--config", str(tmp_path / "none.toml"), "status", cwd=tmp_path)
    assert 78 == r.returncode
    assert "no such config file" in r.stderr and "`photod config example`" in r.stderr


def test_albums_on_a_catalog_an_older_photod_wrote_answers(tmp_path: Path) -> None:
    """`photod albums` right after an upgrade, before the daemon started again: the
    catalog has no table of the phones' libraries yet; it is brought up to date (as
    `photod status` does) and the command answers, with no traceback."""
    import sqlite3

    from photod.catalog import MIGRATIONS

    (tmp_path / "state").mkdir()
    db = sqlite3.connect(tmp_path / "state" / "catalog.sqlite")
    db.executescript(f"BEGIN; {'; '.join(MIGRATIONS[:6])}; PRAGMA user_version=6; COMMIT;")
    db.close()
    config = tmp_path / "photod.toml"
    config.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[targets]]\nname = "lib"\ntype = "local"\n'
        f'path = "{tmp_path}/lib"\n[daemon]\nstate_dir = "{tmp_path}/state"\n'
        f'log_dir = "{tmp_path}/log"\n'
    )
    r = subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "albums"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (0, "") == (r.returncode, r.stderr)
    assert "no albums yet" in r.stdout
