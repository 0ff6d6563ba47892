"""A config broken by an edit while the daemon runs on the one it started with: the
commands that read photod's state or ask the daemon still work (on the config the
daemon runs on, with the edit's first error said once), and `photod reload` is refused
with the errors.  Without a daemon that ever ran, the errors are the answer."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import Setup

pytestmark = pytest.mark.integration


def test_a_broken_edit_never_locks_you_out_of_your_daemon(setup: Setup, samples: Path) -> None:
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    p.start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    good = p.config.read_text()
    p.config.write_text(good.replace("[policy]", "[policy]\ncopiez = 3"))
    assert 78 == p.cli("config", "check").returncode

    status = p.cli("status")
    assert 0 == status.returncode, status.stderr
    assert "policy.copiez" in status.stderr or "copiez" in status.stderr
    assert "using the one the daemon runs on" in status.stderr
    assert "Traceback" not in status.stderr
    logs = p.cli("logs")
    assert 0 == logs.returncode and "daemon_started" in logs.stdout, logs.stderr
    assert 0 == p.cli("pause", "--for", "1h").returncode
    assert p.status()["daemon"]["live"]["paused_until"]
    assert 0 == p.cli("resume").returncode
    reload = p.cli("reload")
    assert 78 == reload.returncode and "copiez" in reload.stderr
    p.config.write_text(good)
    assert 0 == p.stop()

    # A config that was never good (no daemon ever ran on it): its errors, exit 78.
    other = setup.home / "never.toml"
    other.write_text(good.replace("[policy]", "[policy]\ncopiez = 3").replace(
        str(setup.home / "state"), str(setup.home / "state2")))  # fmt: skip
    never = p.cli("--config", str(other), "status", config=False)
    assert 78 == never.returncode and "copiez" in never.stderr


def test_a_config_saved_by_windows_notepad_reloads(setup: Setup) -> None:
    """A config saved with a byte-order mark and CRLF line ends (Windows Notepad's
    UTF-8) is the same config: `config check` passes it and a reload applies it, naming
    the key changed, rather than 'Invalid statement (at line 1, column 1)'."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    text = p.config.read_text().replace('retry_max = "2s"', 'retry_max = "7s"')
    p.config.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    r = p.cli("config", "check")
    assert (0, "") == (r.returncode, r.stderr)
    r = p.cli("reload")
    assert 0 == r.returncode, r.stderr
    [reloaded] = p.wait_event("daemon_reloaded")
    assert ["daemon.retry_max"] == reloaded["changed"]
    assert [] == p.events("config_invalid")
    assert 0 == p.stop()


def test_a_config_not_in_utf8_names_the_line(setup: Setup) -> None:
    """A config saved in Latin-1 (a comment with 'café'): `config check`, `reload` and
    a SIGHUP name the line and what is allowed, not a codec's byte offset; the daemon
    keeps running on the config it has."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    text = p.config.read_bytes()
    p.config.write_bytes(text + "# photos du café\n".encode("latin-1"))
    line = text.count(b"\n") + 1
    want = (
        f"{p.config}: line {line}: byte 0xe9 is not UTF-8; allowed: UTF-8 text "
        "(save the file as UTF-8)"
    )
    for args in (["config", "check"], ["reload"]):
        r = p.cli(*args)
        assert (78, [want]) == (r.returncode, r.stderr.splitlines()), args
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    [invalid] = p.wait_event("config_invalid")
    assert [want] == invalid["problems"]
    assert p.proc.poll() is None  # type: ignore[union-attr]
    assert 0 == p.stop()
