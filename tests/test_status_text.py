"""The text of `photod status` and `photod doctor` as a person reads it: the headline
first (PAUSED before "all protected"), one time style (local, no zone letter), the last
scrub, and colour on a terminal only (NO_COLOR honoured)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from photod import config as configmod
from photod import status, statusconfig
from photod.doctor import Finding
from tests.conftest import damage_catalog, write_config

RED, YELLOW, GREEN, RESET = "\033[31m", "\033[33m", "\033[32m", "\033[0m"


@pytest.fixture(autouse=True)
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+9, with colour allowed: a UTC time shown as it is stands out."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _config(home: Path) -> Path:
    """A watch folder, a library that is there and a drive that is not plugged in."""
    for folder in ("inbox", "lib", "state"):
        (home / folder).mkdir(exist_ok=True)
    return write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        [
            {"name": "lib", "type": "local", "path": str(home / "lib")},
            {"name": "usb", "type": "local", "path": str(home / "T7"), "media": "external"},
        ],
        policy={"copies": 1, "media": 1, "offsite": 0},
        extra=f'[daemon]\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n',
    )


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    """A real `photod status` report, then as it reads with 11 photos protected, a
    drill and the running daemon's next scrub."""
    s = status.collect(statusconfig.of(configmod.load(_config(tmp_path))))
    s.update(assets=11, bytes=12_000_000, protected=True)
    s["policy"].update(compliant=11, noncompliant=0)
    s["targets"][0].update(
        oldest_check_days=1.5,
        full_pass_days=30.0,
        behind=False,
        last_drill={"at": "2026-01-02T03:04:05Z", "passed": True, "files": 3, "detail": ""},
    )
    s["daemon"] = {"running": True, "pid": 4242, "live": _live()}
    return s


def _live(paused: bool = False, until: str | None = None) -> dict[str, Any]:
    """The running daemon's answer (live.status_reply's keys)."""
    return {"ok": True, "pid": 4242, "paused": paused, "paused_until": until, "busy": False,
            "running": [], "waiting_for_mains": [], "imports": [],
            "next_runs": {"scrub": "2026-01-03T17:00:00+00:00", "drill": None},
            "targets": {}, "reasons": {}}  # fmt: skip


def test_paused_is_the_headline_and_says_new_files_wait(report: dict[str, Any]) -> None:
    """Paused, the first line says PAUSED and until when (local time), and that new
    files wait; "all protected" then counts only what photod has seen."""
    report["daemon"]["live"] = _live(True, "2026-01-02T15:30:00Z")
    lines = status.render(report, tty=False).splitlines()
    assert lines[0].startswith("PAUSED until 2026-01-03 00:30: new files wait")
    assert "`photod resume` ends the pause now" in lines[0]
    assert lines[1].startswith("All 11 photos and videos photod has seen (12.0 MB) are protected")

    report["daemon"]["live"] = _live(True, None)
    first = status.render(report, tty=False).splitlines()[0]
    assert first.startswith("PAUSED until `photod resume`: new files wait")

    report["daemon"]["live"] = _live(False)
    first = status.render(report, tty=False).splitlines()[0]
    assert first.startswith("All 11 photos and videos (12.0 MB) are protected")


def test_times_are_local_with_no_zone_letter(report: dict[str, Any]) -> None:
    """The last drill, the last scrub, the next scrub and when a drive whose copies do
    not count was last seen: this computer's local time, YYYY-MM-DD HH:MM, never UTC
    nor a Z (the last sighting was shown as the catalog keeps it, in UTC with a Z)."""
    report["last_scrub"] = "2026-01-02T20:15:00Z"
    report["targets"][1].update(counted=False, last_seen="2026-01-01T23:30:00Z")
    text = status.render(report, tty=False)
    assert "its copies do not count: not seen since 2026-01-02 08:30, " in text
    assert "last drill 2026-01-02 12:04 passed" in text
    assert "Scrub    last run 2026-01-03 05:15" in text
    assert "next scrub 2026-01-04 02:00" in text
    assert "UTC" not in text and not re.search(r"\d(Z|\+00:00)\b", text)


def test_status_has_a_last_scrub_line(report: dict[str, Any]) -> None:
    """The text says when the last scrub ran, or that none has yet, as --json does."""
    report["last_scrub"] = None
    assert "Scrub    not run yet" in status.render(report, tty=False)
    report["last_scrub"] = "2026-01-02T03:04:05Z"
    assert "Scrub    last run 2026-01-02 12:04" in status.render(report, tty=False)


def test_status_words_in_colour_on_a_terminal_only(
    report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal NOT PROTECTED, UNAVAILABLE and LOST are red, protected green,
    PAUSED yellow; the columns stay aligned; off a terminal, or with NO_COLOR, plain."""
    text = status.render(report, tty=True)
    assert f"are {GREEN}protected{RESET}" in text
    assert f"onsite   {RED}UNAVAILABLE{RESET}  " in text
    assert f"onsite   {GREEN}available{RESET}    " in text
    report["daemon"]["live"] = _live(True, None)
    report.update(protected=False, lost=[{"asset": "ab" * 32, "path": "a.jpg"}], lost_count=1)
    report["policy"].update(compliant=10, noncompliant=1, missing={"1 copies": 1})
    text = status.render(report, tty=True)
    for word, shade in (("NOT PROTECTED", RED), ("LOST", RED), ("PAUSED", YELLOW)):
        assert f"{shade}{word}{RESET}:" in text or f"{shade}{word}{RESET} until" in text, word
    plain = status.render(report, tty=False)
    assert "\033[" not in plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert plain == status.render(report, tty=True)


def test_doctor_words_in_colour_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor's OK is green, WARN yellow, FAIL red on a terminal, each padded as before;
    off a terminal, or with NO_COLOR, the line is plain."""
    ok, warn, fail = (Finding(level, "x", "y") for level in ("ok", "warn", "fail"))
    assert f"{GREEN}OK{RESET}    x: y" == ok.line(tty=True)
    assert f"{YELLOW}WARN{RESET}  x: y" == warn.line(tty=True)
    assert f"{RED}FAIL{RESET}  x: y" == fail.line(tty=True)
    assert "FAIL  x: y" == fail.line(tty=False)
    monkeypatch.setenv("NO_COLOR", "yes")
    assert "FAIL  x: y" == fail.line(tty=True)


def _on_a_terminal(home: Path, *args: str, no_color: str = "") -> str:
    """What a photod command prints to a terminal (a pseudo-terminal)."""
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"),
           "NO_COLOR": no_color}  # fmt: skip
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    main, tty = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "photod", *args], env=env, stdout=tty,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(tty)
        out = b""
        while True:
            try:
                ready = select.select([main], [], [], 30)[0]
                chunk = os.read(main, 65536) if ready else b""
            except OSError:  # the terminal is gone: the command ended
                chunk = b""
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=30)
    finally:
        os.close(main)
    return out.decode()


@pytest.mark.parametrize(
    ("command", "word", "shade"), [("status", "UNAVAILABLE", RED), ("doctor", "OK", GREEN)]
)
def test_commands_colour_a_terminal_unless_no_color(
    tmp_path: Path, command: str, word: str, shade: str
) -> None:
    """`photod status` and `photod doctor` on a terminal colour their words by
    themselves; NO_COLOR (any non-empty value) turns it off; a pipe never gets it."""
    config = str(_config(tmp_path))
    coloured = _on_a_terminal(tmp_path, "--config", config, command)
    assert f"{shade}{word}{RESET}" in coloured, coloured
    plain = _on_a_terminal(tmp_path, "--config", config, command, no_color="1")
    assert "\033[" not in plain and word in plain, plain
    piped = subprocess.run([sys.executable, "-m", "photod", "--config", config, command],
                           env={**os.environ, "HOME": str(tmp_path)}, capture_output=True,
                           text=True)  # fmt: skip
    assert "\033[" not in piped.stdout


def test_counts_agree_with_their_words(report: dict[str, Any]) -> None:
    """One photo is "the one photo or video ... is", one lost file "has", one short of
    the policy "falls" and "needs": never "1 file(s)" or "1 of 1 assets fall"."""
    report.update(assets=1, bytes=2_000_000)
    first = status.render(report, tty=False).splitlines()[0]
    assert first.startswith("The one photo or video (2.0 MB) is protected")

    report.update(protected=False, lost=[{"path": "inbox/IMG_1.HEIC"}], lost_count=1, undecodable=1)
    report["policy"].update(compliant=0, noncompliant=1, missing={"1 more copy": 1})
    text = status.render(report, tty=False)
    assert text.startswith("LOST: 1 file has no good copy left anywhere")
    assert "NOT PROTECTED: 1 of 1 photo or video falls short of the policy" in text
    assert "1 needs 1 more copy." in text
    assert "Warning  1 file does not decode as images" in text

    report.update(assets=3, lost=[{"path": f"inbox/IMG_{i}.HEIC"} for i in range(2)], lost_count=2)
    report["policy"].update(noncompliant=2, missing={"1 more copy": 2})
    text = status.render(report, tty=False)
    assert text.startswith("LOST: 2 files have no good copy left anywhere")
    assert "NOT PROTECTED: 2 of 3 photos and videos fall short" in text
    assert "2 need 1 more copy." in text
    assert "file(s)" not in text


def test_the_line_systemd_shows_says_when_the_catalog_cannot_be_read(tmp_path: Path) -> None:
    """The line `systemctl status photod` shows counts the catalog's photos; a catalog
    damaged under the running daemon makes it say so (and the daemon notices the damage
    and settles the catalog again) instead of ending the daemon's loop with an error."""
    from datetime import datetime

    from photod.catalog import Catalog
    from photod.errors import CatalogDamaged
    from photod.live import status_line
    from photod.models import Kind, Probe
    from photod.pipeline import Pipeline
    from photod.targets.records import Installation

    info = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)
    cfg = configmod.load(_config(tmp_path))
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    db = cfg.state_dir / "catalog.sqlite"
    me = Installation("1" * 32, "rig")
    for damaged in (False, True):
        if damaged:
            damage_catalog(db, "holdings")  # as bit rot would: found when it is read
        catalog = Catalog(db)
        if not damaged:
            for i in range(300):
                catalog.add_asset(f"{i:064x}", 10, f"k/{i}.jpg", info, "inbox", f"{i}.jpg")
        pipeline = Pipeline(cfg, catalog, me)
        line = status_line(pipeline)
        catalog.close()
        if not damaged:
            assert line.startswith("1 folder, 0 phones, 300 photos, 300 not protected yet")
    assert line.startswith(f"cannot read the catalog: the catalog {db} is damaged"), line
    assert isinstance(catalog.problem, CatalogDamaged)  # what the daemon's loop acts on


def test_run_once_counts_a_large_librarys_files_without_holding_them(tmp_path: Path) -> None:
    """`photod run --once` ends with "N files in the watch folders": it read every file
    the catalog knows of each folder (name, size, time) into memory only to count them,
    a million photos' 250 MB on a small computer, after the scan had let go of its own.
    Counted by the catalog, what it holds stays small, and the count is the same."""
    import hashlib

    from bench.scale import fill_catalog

    cfg = configmod.load(_config(tmp_path))
    db = cfg.state_dir / "catalog.sqlite"
    n = 100_000
    fill_catalog(db, [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                       1000 + i, 10**18 + i) for i in range(n)], ["lib"])  # fmt: skip
    summary, peak = _stock_taken(cfg, db)
    assert (n, n) == (summary.known, summary.assets)
    assert f"{n} files in the watch folders" in summary.render()
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"


def _stock_taken(cfg: configmod.Config, db: Path) -> tuple[Any, int]:
    """`run --once`'s summary of the catalog at ``db``, and the most it held meanwhile."""
    import tracemalloc

    from photod.catalog import Catalog
    from photod.oneshot import Summary
    from photod.pipeline import Pipeline
    from photod.targets.records import Installation

    catalog = Catalog(db)
    try:
        pipeline = Pipeline(cfg, catalog, Installation("1" * 32, "rig"))
        summary = Summary()
        tracemalloc.start()
        try:
            summary.take_stock(pipeline)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        catalog.close()
    return summary, peak


def test_a_library_whose_drive_died_is_counted_lost_without_holding_every_photo(
    tmp_path: Path,
) -> None:
    """When a dead drive leaves a large library with no good copy, `photod run --once`,
    `photod doctor` and the daemon's heartbeat count the photos lost: each read every
    one of them whole only to count them (100,000: 100 MB, a million would not fit a
    small computer).  Counted by the catalog, what they hold stays small.  `photod
    status` (and the dashboard, at each refresh) listed every one: 100,000 lost, 104 MB
    held, a 14 MB `--json`; it names the first 50 by path and counts them all."""
    import hashlib
    import json
    import sqlite3
    import tracemalloc

    from bench.scale import fill_catalog

    cfg = configmod.load(_config(tmp_path))
    db = cfg.state_dir / "catalog.sqlite"
    n = 100_000
    fill_catalog(db, [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                       1000 + i, 10**18 + i) for i in range(n)], [])  # fmt: skip
    with sqlite3.connect(db) as c:
        c.execute("UPDATE assets SET lost_at='2026-01-01T00:00:00Z'")
    c.close()
    summary, peak = _stock_taken(cfg, db)
    assert f"{n} photos and videos LOST: no good copy left anywhere" in summary.render()
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"
    tracemalloc.start()
    try:
        s = status.collect(statusconfig.of(cfg))
        said = json.dumps(s, indent=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"
    assert len(said) < 100_000, f"{len(said)} bytes of JSON"
    paths = sorted(f"lib/{2010 + i % 15}/IMG_{i:07d}.JPG" for i in range(n))
    assert (n, paths[: status.LOST_SHOWN]) == (s["lost_count"], [i["path"] for i in s["lost"]])
    assert not s["protected"]
    assert hashlib.sha256(b"0").hexdigest() == next(
        item["asset"] for item in s["lost"] if item["path"] == "lib/2010/IMG_0000000.JPG"
    )
    text = status.render(s)
    assert f"LOST: {n} files have no good copy left anywhere" in text, text[:500]
    assert [f"  {p}" for p in paths[:20]] == [line for line in text.splitlines()
                                             if line.startswith("  lib/")]  # fmt: skip
