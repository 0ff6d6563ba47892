"""What a person reads from a real daemon: its terminal prints the `photod logs`
timeline (colour only on a terminal, NO_COLOR honoured), a reload is one event, and
pause/resume say local times and log only what happened."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Photod, wait_for, write_config
from tests.integration.conftest import FAST, Setup

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  (\x1b\[\d+m)?[A-Z]+")


class Terminal:
    """The daemon's stdout and stderr on a pseudo-terminal, read as it writes."""

    def __init__(self) -> None:
        self.main, self.tty = pty.openpty()
        self.data = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.main, 65536)
            except OSError:  # the daemon ended and its side is closed
                return
            if not chunk:
                return
            self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        os.close(self.main)
        self._reader.join(timeout=5)


def _on_a_terminal(p: Photod, term: Terminal) -> Photod:
    p.out = open(os.devnull, "ab")  # noqa: SIM115  (Photod.stop closes it)
    p.proc = subprocess.Popen(
        [sys.executable, "-m", "photod", "--config", str(p.config), "run"],
        env=p.env, stdin=subprocess.DEVNULL, stdout=term.tty, stderr=term.tty,
    )  # fmt: skip
    os.close(term.tty)
    p.wait_event("daemon_started")
    return p


@pytest.mark.parametrize("no_color", ["", "1"])
def test_the_daemon_on_a_terminal_prints_the_timeline(setup: Setup, no_color: str) -> None:
    """Every event the daemon prints on a terminal is the `photod logs` line: local
    time, level, event, key=value, hashes of 12 digits, no ``None``; a warning's level
    in colour unless NO_COLOR is set (to anything)."""
    p = setup.photod(
        [
            {"name": "lib", "path": str(setup.home / "lib")},
            {"name": "usb", "path": str(setup.home / "T7"), "media": "external"},
        ],
        policy={"copies": 1, "media": 1, "offsite": 0},
    )
    p.env.update(NO_COLOR=no_color, TERM="xterm")
    term = Terminal()
    try:
        _on_a_terminal(p, term)
        (setup.inbox / "a.jpg").write_bytes((SAMPLES / "jpg_Canon_40D.jpg").read_bytes())
        p.wait_event("replica_written")
        p.wait_event("target_unavailable", target="usb")
        wait_for(lambda: "replica_written" in term.text(), 10, "the terminal's lines")
        assert 0 == p.stop()
    finally:
        term.close()
    lines = [line for line in term.text().splitlines() if line]
    timeline = p.cli("logs").stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert not re.search(r"[0-9a-f]{64}", term.text())
    assert "=None" not in term.text()
    written = next(line for line in lines if " replica_written " in line)
    assert written in timeline  # the very line `photod logs` prints
    warning = next(line for line in lines if " target_unavailable " in line)
    shown = "WARNING" if no_color else "\x1b[33mWARNING\x1b[0m"
    assert f"  {shown}  target_unavailable  target=usb " in warning, warning
    assert ("\x1b[" in term.text()) is (not no_color)


def test_a_reload_is_one_event(tmp_path: Path, photod_factory) -> None:  # type: ignore[no-untyped-def]
    """`photod reload` logs one `daemon_reloaded` naming what changed: no
    daemon_stopping, daemon_started or pipeline_stopped, and usbmuxd's absence is not
    said a second time; systemd hears RELOADING=1 then READY=1, never STOPPING=1."""
    (tmp_path / "inbox").mkdir()
    sources = [
        {"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")},
        {"name": "iphone", "type": "iphone"},
    ]
    extra = FAST.format(home=tmp_path, daemon="")

    def config(*names: str) -> Path:
        targets = [{"name": n, "type": "local", "path": str(tmp_path / n)} for n in names]
        return write_config(tmp_path / "photod.toml", sources, targets, None, extra)

    p = photod_factory(config("lib"))
    p.env["USBMUXD_SOCKET_ADDRESS"] = str(tmp_path / "no-usbmuxd.sock")  # not running
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify.sock"))
    systemd.settimeout(30)
    p.env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    p.start()
    try:
        p.wait_event("usbmuxd_waiting")
        assert systemd.recv(4096).startswith(b"READY=1")
        config("lib", "second")
        assert 0 == p.cli("reload").returncode
        told = [systemd.recv(4096).decode()]
        while not told[-1].startswith("READY=1"):
            told.append(systemd.recv(4096).decode())
        assert "RELOADING=1" in told and "STOPPING=1" not in told, told
        reloaded = p.wait_event("daemon_reloaded", timeout=20)[0]
        assert ["policy.copies", "targets.second"] == reloaded["changed"]
        time.sleep(3)  # the new phone watcher has looked for usbmuxd by now
        for name, count in (("daemon_started", 1), ("daemon_stopping", 0),
                            ("pipeline_stopped", 0), ("usbmuxd_waiting", 1),
                            ("daemon_reloaded", 1)):  # fmt: skip
            assert count == len(p.events(name)), name
        shown = p.cli("logs").stdout
        assert (
            "daemon_reloaded  config=" in shown and "changed=policy.copies,targets.second" in shown
        )
    finally:
        assert 0 == p.stop()
        systemd.close()
    assert 1 == len(p.events("daemon_stopping"))  # a real stop still says so


def test_pause_and_resume_say_local_times_and_only_what_happened(setup: Setup) -> None:
    """`pause --for 0` is refused (64), not a pause forever; `pause --for 2h` says until
    when in local time (no Z), and status leads with it; a second `resume` says "not
    paused" and logs nothing; a pause with no end logs no ``until``."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.env["TZ"] = "Asia/Tokyo"
    p.start()
    try:
        zero = p.cli("pause", "--for", "0")
        assert 64 == zero.returncode
        assert "give a duration above 0, or leave --for out" in zero.stderr
        assert [] == p.events("daemon_paused")

        r = p.cli("pause", "--for", "2h")
        assert 0 == r.returncode, r.stderr
        until = re.search(r"paused until (\d{4}-\d\d-\d\d \d\d:\d\d):", r.stdout)
        assert until is not None and "Z" not in r.stdout, r.stdout
        tokyo = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=9 + 2)
        assert abs(datetime.strptime(until[1], "%Y-%m-%d %H:%M") - tokyo) < timedelta(minutes=2)
        first = p.cli("status").stdout.splitlines()[0]
        assert first.startswith(f"PAUSED until {until[1]}: new files wait"), first

        assert "resumed" == p.cli("resume").stdout.strip()
        again = p.cli("resume")
        assert 0 == again.returncode and "not paused: nothing to resume" == again.stdout.strip()
        assert 1 == len(p.events("daemon_resumed"))

        assert 0 == p.cli("pause").returncode
        forever = p.wait_event("daemon_paused", count=2)[1]
        assert "until" not in forever
    finally:
        assert 0 == p.stop()


def test_a_scrub_of_every_target_names_none(setup: Setup) -> None:
    """`photod verify` over every target logs `scrub_started` with no ``target`` at all
    (not ``null``), and the timeline shows no ``None`` anywhere."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    try:
        assert 0 == p.cli("verify").returncode
        started = p.wait_event("scrub_started", timeout=30)[0]
        assert "target" not in started, started
        p.wait_event("scrub_finished", timeout=30)
        assert "None" not in p.cli("logs").stdout
    finally:
        assert 0 == p.stop()
