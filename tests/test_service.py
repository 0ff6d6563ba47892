"""Running photod as a service: the units and the plist are checked by the tools that
read them (systemd-analyze, plistlib), and `photod service install` writes them into a
temporary HOME."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photod import service
from photod.errors import PhotodError
from photod.statelock import running_pid
from tests.servers import need

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_files_are_what_install_writes() -> None:
    """systemd/ and launchd/ hold the same texts `photod service install` renders (for
    the README's install paths), so the two can never drift apart."""
    readme_user = ["%h/.local/photod/bin/photod", "run"]
    assert service.render_user_unit(readme_user) == (ROOT / "systemd/photod.service").read_text()
    assert (
        service.render_failure_unit(False) == (ROOT / "systemd/photod-failure.service").read_text()
    )
    assert (
        service.render_system_unit(["/opt/photod/bin/photod", "run"])
        == (ROOT / "systemd/photod-system.service").read_text()
    )
    assert (
        service.render_plist(["/Users/USER/.local/photod/bin/photod", "run"], Path("/Users/USER"))
        == (ROOT / "launchd/org.photod.photod.plist").read_bytes()
    )


def _verify(tmp_path: Path, units: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify in a root with the units and stub programs in place."""
    analyze = need("systemd-analyze", "apt install systemd")
    folder = tmp_path / "etc/systemd/system"
    folder.mkdir(parents=True, exist_ok=True)
    for stub in ("bin/kill", "bin/sh", "opt/photod/bin/photod"):
        path = tmp_path / stub
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    for name, text in units.items():
        (folder / name).write_text(text)
    return subprocess.run(
        [analyze, "verify", "--recursive-errors=no", "--man=no", f"--root={tmp_path}", *units],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("system", [False, True])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, system: bool) -> None:
    """Both units and the failure unit have no unknown key, typo or bad value."""
    argv = ["/opt/photod/bin/photod", "run"]
    main = service.render_system_unit(argv) if system else service.render_user_unit(argv)
    r = _verify(
        tmp_path,
        {"photod.service": main, "photod-failure.service": service.render_failure_unit(system)},
    )
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "" == r.stderr.strip()
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=", "OnFailure="):
        assert key in main


@pytest.mark.parametrize("system", [False, True])
def test_a_unit_does_not_restart_on_a_bad_config_or_beside_another_photod(system: bool) -> None:
    """Exit 78 (bad config) and 75 (another photod holds the state dir) are not
    restarted: either would only restart-loop."""
    argv = ["/opt/photod/bin/photod", "run"]
    main = service.render_system_unit(argv) if system else service.render_user_unit(argv)
    assert ["RestartPreventExitStatus=75 78"] == [
        line for line in main.splitlines() if line.startswith("RestartPreventExitStatus=")
    ]


@pytest.mark.parametrize("system", [False, True])
def test_a_config_path_with_a_percent_or_a_newline_makes_no_wrong_unit(
    tmp_path: Path, system: bool
) -> None:
    """A config in "100%Zoom/" (systemd reads %Z, %h... as its specifiers: "%h" became
    the home folder, "%Z" made the unit fail to load): written so that the path stays
    what it is; one with a newline, which no unit line can hold, is refused with why."""
    argv = service.unit_argv(
        ["/opt/photod/bin/photod", "--config", "/srv/100%Zoom %h $HOME/photod.toml", "run"]
    )
    main = service.render_system_unit(argv) if system else service.render_user_unit(argv)
    r = _verify(tmp_path, {"photod.service": main})
    assert 0 == r.returncode, r.stdout + r.stderr
    [line] = [x for x in main.splitlines() if x.startswith("ExecStart=")]
    assert "'/srv/100%%Zoom %%h $$HOME/photod.toml'" in line
    with pytest.raises(PhotodError, match="control character"):
        service.unit_argv(["/opt/photod/bin/photod", "--config", "/a\nb.toml", "run"])


def test_a_photod_installed_under_a_dollar_or_a_quote_makes_a_unit_that_runs_or_says_why(
    tmp_path: Path,
) -> None:
    """photod's Python in a folder named "$5 tools" (a venv made there): ExecStart held
    "$$5", which systemd does not read back as "$" in the program's own path (the unit
    failed: no such program); under "Bob's tools" systemd refused the unit ("special
    characters"), which only `systemctl` said.  Now the "$" stays as it is, and the
    quote is refused by `photod service install` itself, with why."""
    exe = "/opt/$5 tools %h/bin/python"
    stub = tmp_path / exe.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    argv = service.unit_argv([exe, "-m", "photod", "--config", "/srv/$HOME.toml", "run"])
    r = _verify(tmp_path, {"photod.service": service.render_user_unit(argv)})
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "'/srv/$$HOME.toml'" in service.render_user_unit(argv)
    with pytest.raises(PhotodError, match="systemd runs no program whose path holds"):
        service.unit_argv(["/opt/Bob's tools/bin/python", "-m", "photod", "run"])


def test_the_checker_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    bad = service.render_user_unit(["/opt/photod/bin/photod", "run"]).replace(
        "WatchdogSec=", "WatchDogSec="
    )
    r = _verify(tmp_path, {"photod.service": bad})
    assert 0 != r.returncode and "WatchDogSec" in r.stderr


def test_the_system_unit_is_hardened(tmp_path: Path) -> None:
    """systemd-analyze security rates the system unit's exposure OK or better (below
    3.0 of 10), while it may still write drives under /media and /run/media."""
    _verify(tmp_path, {"photod-system.service": service.render_system_unit(
        ["/opt/photod/bin/photod", "run"])})  # fmt: skip
    r = subprocess.run(
        [need("systemd-analyze", "apt install systemd"), "security", "--offline=true",
         f"--root={tmp_path}", "photod-system.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for photod-system.service: ([\d.]+)", r.stdout)
    assert m is not None, r.stdout + r.stderr
    assert float(m.group(1)) < 3.0
    text = service.render_system_unit(["/x", "run"])
    assert "ReadWritePaths=-/media -/run/media" in text and "ProtectHome=read-only" in text


LAUNCHD_KEYS = {
    "Label": str,
    "ProgramArguments": list,
    "RunAtLoad": bool,
    "KeepAlive": dict,
    "ThrottleInterval": int,
    "ProcessType": str,
    "LowPriorityIO": bool,
    "ExitTimeOut": int,
    "StandardOutPath": str,
    "StandardErrorPath": str,
}


def test_the_plist_round_trips_with_launchds_keys_and_types() -> None:
    """The agent plist parses back, uses only keys launchd knows with their types,
    restarts on a crash but not after a clean exit, and logs under ~/Library/Logs."""
    data = service.render_plist(["/usr/bin/python3", "-m", "photod", "run"], Path("/Users/anna"))
    plist = plistlib.loads(data)
    assert set(LAUNCHD_KEYS) == set(plist)
    assert all(isinstance(plist[k], t) for k, t in LAUNCHD_KEYS.items())
    assert {"SuccessfulExit": False, "Crashed": True} == plist["KeepAlive"]
    assert plist["StandardErrorPath"].startswith("/Users/anna/Library/Logs/photod/")
    assert ["/usr/bin/python3", "-m", "photod", "run"] == plist["ProgramArguments"]


def test_service_install_is_idempotent_and_uninstall_keeps_the_data(tmp_path: Path) -> None:
    """`photod service install` writes the user unit (ExecStart: this Python, this
    photod, this config) and the failure unit into HOME, and asks systemctl --user to
    enable it, saying plainly when that is not possible (no user manager here);
    a second install changes nothing; uninstall removes only the units."""
    if sys.platform != "linux":
        pytest.fail("this test covers the Linux path; run it on Linux")
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "photod.toml"
    config.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[targets]]\nname = "l"\n'
        f'type = "local"\npath = "{tmp_path / "lib"}"\n'
    )
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    def photod(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), *args],
                              env=env, capture_output=True, text=True)  # fmt: skip

    r = photod("service", "install")
    units = home / ".config/systemd/user"
    unit = (units / "photod.service").read_text()
    assert f"ExecStart={sys.executable} -m photod --config {config} run" in unit
    assert (units / "photod-failure.service").exists()
    assert f"wrote {units / 'photod.service'}" in r.stdout
    assert "journalctl --user -u photod" in r.stdout
    if shutil.which("systemctl") is None:
        print("systemctl is not installed: the enable step was skipped")  # the test says so
        assert "systemctl is not installed here" in r.stderr
    elif r.returncode != 0:  # systemctl is there, but no user manager runs (CI, containers)
        assert "photod: systemd is not reachable from here (" in r.stderr
    again = photod("service", "install")
    assert "is up to date" in again.stdout and unit == (units / "photod.service").read_text()
    assert (
        0 == photod("service", "status").returncode
        or "installed:" in photod("service", "status").stdout
    )

    (tmp_path / "state").mkdir()
    photod("service", "uninstall")
    assert not (units / "photod.service").exists()
    assert not (units / "photod-failure.service").exists()
    assert config.exists() and (tmp_path / "state").exists()
    gone = photod("service", "status")
    assert 1 == gone.returncode and "not installed" in gone.stderr


def _install_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A HOME of its own and a runtime dir with no bus in it: no systemd user manager
    can be reached (as in a container, or over ssh with no login session)."""
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True, mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    return home, env


def _config(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "photod.toml"
    config.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\n'
        f'type = "folder"\npath = "{tmp_path / "inbox"}"\n[[targets]]\nname = "l"\n'
        f'type = "local"\npath = "{tmp_path / "lib"}"\n[daemon]\nstate_dir = '
        f'"{tmp_path / "state"}"\nlog_dir = "{tmp_path / "log"}"\n'
    )
    config.chmod(0o600)
    return config


def test_install_where_systemd_cannot_be_reached_says_what_to_run(tmp_path: Path) -> None:
    """Where no systemd (user) manager answers, install still writes the unit, then
    says plainly that systemd is not reachable from here and what to run instead
    (`photod run` in the foreground; on a systemd computer, lingering), exit 1; it
    does not leave the person with systemctl's bare "Failed to connect to bus"."""
    if sys.platform != "linux":
        pytest.fail("this test covers the Linux path; run it on Linux")
    home, env = _install_env(tmp_path)
    config = _config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "service",
                        "install"], env=env, capture_output=True, text=True)  # fmt: skip
    assert 1 == r.returncode, r.stdout + r.stderr
    assert (home / ".config/systemd/user/photod.service").exists()
    problems = r.stderr.splitlines()
    assert problems[0].startswith("photod: systemd is not reachable from here ("), r.stderr
    assert problems[0].endswith("): the unit is written, but not enabled or started.")
    assert ("photod: run photod in the foreground instead: `photod run` (in tmux or screen, "
            "or as a container's command).") == problems[1]  # fmt: skip
    if shutil.which("systemctl") is None:
        assert "systemctl is not installed here" in problems[0]
    elif Path("/run/systemd/system").is_dir():  # systemd runs, but not for this user here
        assert "(no user manager answers for you: " in problems[0]
        assert 'sudo loginctl enable-linger "$USER"' in problems[2]
    else:  # a container
        assert "(it does not run on this computer: a container, or another init" in problems[0]
    assert not any(line.startswith("Failed to connect") for line in problems)


def test_install_beside_a_foreground_photod_says_so(tmp_path: Path) -> None:
    """With `photod run` already running in a terminal on the same state dir, install
    says so, with its pid: the service is not started beside it (it would exit 75)."""
    if sys.platform != "linux":
        pytest.fail("this test covers the Linux path; run it on Linux")
    _, env = _install_env(tmp_path)
    config = _config(tmp_path)
    daemon = subprocess.Popen([sys.executable, "-m", "photod", "--config", str(config), "run"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while running_pid(tmp_path / "state") != daemon.pid:
            assert daemon.poll() is None and time.monotonic() < deadline, "photod run did not start"
            time.sleep(0.1)
        r = subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "service",
                            "install"], env=env, capture_output=True, text=True)  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert 1 == r.returncode
    said = f"a photod already runs on {tmp_path / 'state'} (pid {daemon.pid})"
    assert any(said in line for line in r.stderr.splitlines()), r.stderr
    assert "`photod run` (in tmux" not in r.stderr  # one runs already: no need to start one


def test_status_and_uninstall_where_systemd_cannot_be_reached_say_so(tmp_path: Path) -> None:
    """`photod service status` and `uninstall`, where no systemd (user) manager answers,
    say so in the words install uses, not systemctl's bare "Failed to connect to bus":
    status says the service is not running (exit 1); uninstall removes the units, has
    nothing to stop, and exits 0."""
    if sys.platform != "linux":
        pytest.fail("this test covers the Linux path; run it on Linux")
    home, env = _install_env(tmp_path)
    config = _config(tmp_path)

    def photod(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "photod", "--config", str(config), *args],
                              env=env, capture_output=True, text=True)  # fmt: skip

    photod("service", "install")
    units = home / ".config/systemd/user"
    status = photod("service", "status")
    assert 1 == status.returncode, status.stdout + status.stderr
    assert f"installed: {units / 'photod.service'}" in status.stdout
    assert status.stderr.startswith(
        "photod: not running as a service: systemd is not reachable from here ("
    ), status.stderr
    gone = photod("service", "uninstall")
    assert 0 == gone.returncode, gone.stdout + gone.stderr
    assert "): nothing to stop" in gone.stdout
    assert not (units / "photod.service").exists()
    for said in (status, gone):
        assert "Failed to connect" not in said.stdout + said.stderr
