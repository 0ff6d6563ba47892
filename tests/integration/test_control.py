"""The control socket with a real daemon: private to its owner, robust to garbage, and
the commands that talk through it (`backup --now`, `verify`, `reload`, `pause`,
`resume`, the live part of `status`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from photod import paths
from tests.conftest import Photod, wait_for
from tests.integration.conftest import Setup

pytestmark = pytest.mark.integration


def _daemon(setup: Setup) -> Photod:
    return setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()


def _socket(p: Photod) -> Path:
    return p.home / "run" / "photod" / "control.sock"


def _raw(path: Path, data: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    answer = json.loads(out)
    assert isinstance(answer, dict)
    return answer


def test_the_socket_is_private_and_status_shows_the_live_daemon(setup: Setup) -> None:
    """The socket is in the runtime dir, mode 600 in a folder of mode 700; `photod
    status` adds the daemon's live state (idle or busy, next scrub and drill)."""
    p = _daemon(setup)
    try:
        sock = _socket(p)
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert 0o600 == stat.S_IMODE(sock.stat().st_mode)
        assert 0o700 == stat.S_IMODE(sock.parent.stat().st_mode)
        live = p.status()["daemon"]["live"]
        assert live["ok"] and live["pid"] == (p.proc.pid if p.proc else None)
        assert live["next_runs"]["scrub"] and live["next_runs"]["drill"]
        text = p.cli("status").stdout
        assert "next scrub" in text and "idle" in text
    finally:
        assert 0 == p.stop()
    assert not _socket(p).exists()  # removed on the way out


def deep_daemon(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> tuple[Photod, Path]:
    """A daemon (not started) whose XDG_RUNTIME_DIR and TMPDIR are both 150 bytes deep,
    and where its control socket goes (in a folder of its own in /tmp)."""
    deep = setup.home / "deep"
    deep = deep / ("d" * (150 - len(str(deep)) - 1))
    deep.mkdir(parents=True, mode=0o700)
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.env |= {"XDG_RUNTIME_DIR": str(deep), "TMPDIR": str(deep)}
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # (as the daemon's)
    return p, paths.socket_path(deep / "photod", setup.home / "state")


def test_a_daemon_whose_runtime_and_temporary_folders_are_both_deep_starts(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XDG_RUNTIME_DIR and TMPDIR both 150 bytes deep: the control socket, in a folder
    of the temporary folder when the runtime dir is too deep for it, was too deep there
    too, and the daemon did not start ("cannot open the control socket ...: AF_UNIX
    path too long"). It starts, and the commands reach it; the folder made for the
    socket in /tmp is gone once it stopped (one was left there at every stop)."""
    p, sock = deep_daemon(setup, monkeypatch)
    p.start()
    try:
        assert p.status()["daemon"]["live"]["ok"]
        assert 0 == p.cli("pause").returncode
        p.wait_event("daemon_paused")
        assert sock.parent.parent == Path("/tmp") and stat.S_ISSOCK(sock.stat().st_mode)
    finally:
        stopped = p.stop()
        left = sock.parent.exists()
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert 0 == stopped
    assert not left


def test_the_socket_folder_in_tmp_a_crash_left_goes_at_the_next_clean_stop(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon whose runtime dir is too deep for its control socket, killed (a crash,
    the OOM killer): its socket's folder in /tmp stays.  The next start takes it, and
    its clean stop removes it: it stayed in /tmp for good (only a folder that very start
    made went at its stop)."""
    p, sock = deep_daemon(setup, monkeypatch)
    p.start()
    try:
        assert p.status()["daemon"]["live"]["ok"]
        p.stop(signal.SIGKILL)
        assert sock.parent.is_dir()  # (the crash's)
        p.start()
        assert p.status()["daemon"]["live"]["ok"]
    finally:
        stopped = p.stop()
        left = sock.parent.exists()
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert (0, False) == (stopped, left)


def test_another_user_is_refused(setup: Setup) -> None:
    """Another user cannot even reach the socket (its folder is 700); with the folder
    and the socket opened up by hand, the daemon itself refuses the caller by uid."""
    runtime = Path(tempfile.mkdtemp(prefix="photod-rt-"))  # under /tmp: others can pass
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.env["XDG_RUNTIME_DIR"] = str(runtime)
    p.start()
    try:
        sock = runtime / "photod" / "control.sock"
        assert sock.exists()

        def as_nobody() -> str:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child becomes 'nobody' and tries
                os.close(read)
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    answer = json.dumps(_raw(sock, b'{"cmd": "pause"}\n'))
                except OSError as exc:
                    answer = type(exc).__name__
                os.write(write, answer.encode())
                os._exit(0)
            os.close(write)
            os.waitpid(pid, 0)
            with os.fdopen(read) as f:
                return f.read()

        os.chmod(runtime, 0o755)
        assert "PermissionError" == as_nobody()  # stopped by photod's own folder
        os.chmod(sock.parent, 0o777)
        os.chmod(sock, 0o777)
        assert "not your photod" in as_nobody()
        assert [] == p.events("daemon_paused")
        assert p.events("control_refused")
    finally:
        p.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def test_malformed_requests_get_an_error_and_the_daemon_goes_on(setup: Setup) -> None:
    """Garbage, broken JSON, a JSON list, an unknown command and an oversized request
    each get one error answer; the daemon keeps answering."""
    p = _daemon(setup)
    try:
        sock = _socket(p)
        for data, why in (
            (b"\x00\xff\xfe garbage\n", "bad request"),
            (b'{"cmd": "backup"\n', "bad request"),
            (b"[1, 2]\n", "expected one JSON object"),
            (b'{"cmd": "format-disk"}\n', "unknown command 'format-disk'"),
            (b'{"cmd": "pause", "seconds": -5}\n', "positive number"),
            (b"x" * 200_000, "too long"),
            (b"", "bad request"),
        ):
            answer = _raw(sock, data)
            assert False is answer["ok"]
            assert why in str(answer["message"]), (data[:20], answer)
        assert p.status()["daemon"]["live"]["ok"]
    finally:
        assert 0 == p.stop()


def test_pause_holds_new_work_until_resume_or_its_time(setup: Setup, samples: Path) -> None:
    """While paused, a new photo waits (status says PAUSED); `photod resume` lets it
    in; `pause --for` ends by itself."""
    p = _daemon(setup)
    photos = sorted(samples.iterdir())
    try:
        r = p.cli("pause")
        assert 0 == r.returncode and "until `photod resume`" in r.stdout
        shutil.copy2(photos[0], setup.inbox / "a.jpg")
        p.wait_event("daemon_paused")
        time.sleep(3)
        assert [] == p.events("asset_ingested")
        assert "PAUSED until `photod resume`" in p.cli("status").stdout
        assert "resumed" == p.cli("resume").stdout.strip()
        p.wait_event("asset_ingested", timeout=20)

        r = p.cli("pause", "--for", "3s")
        assert 0 == r.returncode and "paused until 20" in r.stdout
        shutil.copy2(photos[1], setup.inbox / "b.jpg")
        p.wait_event("asset_ingested", count=2, timeout=20)
        assert "not paused: nothing to resume" == p.cli("resume").stdout.strip()
        bad = p.cli("pause", "--for", "soon")
        assert 64 == bad.returncode and "duration like" in bad.stderr  # EX_USAGE
    finally:
        assert 0 == p.stop()


def test_a_pause_ends_on_time_when_the_clock_is_set_back(setup: Setup, samples: Path) -> None:
    """`pause --for 2s`, then the computer's clock is set back a year (NTP correcting a
    clock that ran ahead): the pause still ends 2 s later (`status` no longer says
    PAUSED), and `photod backup` takes a new photo at once instead of holding it for a
    year.  (The wall clock of every process here is moved by libfaketime; the
    monotonic clocks are left alone, as the kernel leaves them.)"""
    from tests.integration.test_schedule import _faked

    offset = setup.home / "faketime.rc"
    offset.write_text("+0\n")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    _faked(p, offset)
    p.start()
    try:
        r = p.cli("pause", "--for", "2s")
        assert 0 == r.returncode and "paused until" in r.stdout, r.stdout + r.stderr
        offset.write_text("-365d\n")
        time.sleep(3)
        status = p.cli("status")
        assert "PAUSED" not in status.stdout, status.stdout
        photo = setup.inbox / "a.jpg"
        shutil.copy2(sorted(samples.iterdir())[0], photo)
        old = time.time() - 2 * 365 * 86400  # a camera's photo, its date kept
        os.utime(photo, (old, old))
        r = p.cli("backup")
        assert 0 == r.returncode and "(paused" not in r.stdout, r.stdout + r.stderr
        p.wait_event("asset_ingested", timeout=20)
    finally:
        assert 0 == p.stop()


def test_a_pause_too_long_for_a_date_is_refused_and_leaves_status_working(
    setup: Setup,
) -> None:
    """`pause --for 3000000d` ends past the year 9999, which no date can say: it is
    refused with what is allowed, the daemon is not paused, and `photod status`
    still shows the daemon (it answered "bad request" while paused so, and the pause
    had taken effect though the command said it failed)."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.start()
    try:
        r = p.cli("pause", "--for", "3000000d")  # (refused by the command: durations end by 3650d)
        assert 0 != r.returncode and "allowed: a duration up to 3650d" in r.stderr, r.stderr
        status = p.cli("status")
        assert "bad request" not in status.stdout and "PAUSED" not in status.stdout, status.stdout
        assert "not paused" in p.cli("resume").stdout
    finally:
        assert 0 == p.stop()


def test_backup_reload_and_verify_through_the_daemon(setup: Setup) -> None:
    """`backup --now` starts a scan at once, `reload` reads the config again, `verify`
    runs a scrub in the daemon; with no daemon each says so and exits 3."""
    p = _daemon(setup)
    try:
        scans = len(p.wait_event("scan_finished"))
        r = p.cli("backup", "--now")
        assert 0 == r.returncode and "backing up now" in r.stdout
        p.wait_event("scan_finished", count=scans + 1, timeout=20)
        assert 0 == p.cli("reload").returncode
        p.wait_event("daemon_reloaded", timeout=20)
        assert 0 == p.cli("verify", "--target", "lib").returncode
        p.wait_event("scrub_started", timeout=30, target="lib")
        p.wait_event("scrub_finished", timeout=30)
        nope = p.cli("verify", "--target", "nope")
        assert 1 == nope.returncode and "no target named 'nope'" in nope.stdout
    finally:
        assert 0 == p.stop()
    for args in (("backup", "--now"), ("reload",), ("pause",), ("resume",)):
        r = p.cli(*args)
        assert 3 == r.returncode
        assert "the daemon is not running" in r.stderr


def test_status_names_the_job_that_runs_now(setup: Setup) -> None:
    """While the daemon re-reads a large library for `photod verify --all`, `photod
    status` says so (from daemon.live.running); once it is done, nothing runs."""
    from tests.integration.test_mounts import big_video

    p = _daemon(setup)
    try:
        os.rename(big_video(setup.home / "big.mov", 800), setup.inbox / "big.mov")
        p.wait_protected(1, timeout=60)
        assert 0 == p.cli("verify", "--all").returncode
        seen = ""

        def verifying() -> bool:
            nonlocal seen
            seen = p.cli("status").stdout
            return "verifying (photod verify)" in seen

        wait_for(verifying, 30, "the verify among the running jobs", lambda: seen)
        p.wait_event("scrub_finished", timeout=60)
        wait_for(lambda: [] == p.status()["daemon"]["live"]["running"], 10, "idle")
    finally:
        assert 0 == p.stop()
