"""``photod service install|uninstall|status``: run photod as a service and forget it.

Linux: a systemd user unit (the default: a person's photos, their drives under
/media/$USER, their desktop notifications) or, with ``--system``, a system unit with a
dedicated user and full hardening.  macOS: a launchd agent.  The unit texts live here
and the copies in the repository's ``systemd/`` and ``launchd/`` folders are these
texts rendered for the README's install (a test keeps them equal).

Install is idempotent: it rewrites the files and enables and starts the service;
uninstall stops and removes the service only, never the config, the catalog or a backup.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from photod import config as configmod
from photod import paths
from photod.errors import PhotodError
from photod.statelock import running_pid

UNIT = "photod.service"
FAILURE_UNIT = "photod-failure.service"
LABEL = "org.photod.photod"

_COMMON = """\
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=10
# photod sends WATCHDOG=1 every 5 s while its watcher threads are alive.
WatchdogSec=60
TimeoutStopSec=30
# The stop's SIGTERM goes to photod alone: it stops its rclone rcd itself, after its last
# lists and snapshot (sent to rcd too, rcd quit first); what is left after is killed.
KillMode=mixed
# Restarting does not help a bad config (exit 78), nor another photod that holds the
# state dir (exit 75, a `photod run` in a terminal): either would only restart-loop.
RestartPreventExitStatus=75 78
UMask=0077
Nice=10
IOSchedulingClass=idle
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
"""

USER_UNIT = """\
# photod as a systemd user service (the default for a person's photos).
# `photod service install` writes this with the ExecStart of the photod it runs from.
# By hand: cp systemd/photod.service systemd/photod-failure.service ~/.config/systemd/user/
#   systemctl --user daemon-reload && systemctl --user enable --now photod
#   loginctl enable-linger "$USER"    # keep it running without a login session
[Unit]
Description=photod photo backup daemon (3-2-1 copies of every original)
After=default.target
# Tell the person when the daemon itself dies (restarts gave up).
OnFailure=photod-failure.service

[Service]
{common}
[Install]
WantedBy=default.target
"""

FAILURE = """\
# Run by systemd when photod.service fails for good: a desktop notification (when a
# session bus and notify-send are there), and a line in the journal either way.
[Unit]
Description=Tell the user that the photod backup daemon stopped

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "photod stopped: {logs}" >&2; command -v notify-send >/dev/null && notify-send -u critical "photod stopped" "Your photos are not being backed up. {logs}" || true'
"""

SYSTEM_UNIT = """\
# photod as a system service for a headless machine, under its own user `photod`
# (create it first: useradd --system --home-dir /var/lib/photod photod).  The config is
# /etc/photod/photod.toml; the catalog goes to /var/lib/photod and the logs to
# /var/log/photod.  Watch folders must be readable and targets under /media or
# /run/media writable by that user.
[Unit]
Description=photod photo backup daemon (system service)
After=network-online.target local-fs.target
Wants=network-online.target
OnFailure=photod-failure.service

[Service]
User=photod
Group=photod
Environment=PHOTOD_CONFIG=/etc/photod/photod.toml
ConfigurationDirectory=photod
StateDirectory=photod
LogsDirectory=photod
RuntimeDirectory=photod
{common}ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=-/media -/run/media -/mnt
PrivateTmp=yes
PrivateDevices=no
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
MemoryDenyWriteExecute=no
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def exec_start(config: Path | None) -> list[str]:
    """The command a service runs: this Python and this photod, and the config when it
    is not the default one."""
    args = [sys.executable, "-m", "photod"]
    if config is not None:
        args += ["--config", str(config)]
    return [*args, "run"]


def _quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def unit_argv(argv: list[str]) -> list[str]:
    """Real paths as a unit's ExecStart must hold them: each %, $ and \\ of an argument
    doubled (systemd reads "%h" in a folder's name as the home folder, "%Z" fails the
    unit, "$HOME" is a variable, and a backslash starts an escape); in the program's
    own path only %, as systemd reads no variable there and runs no program whose path
    holds a quote or a backslash (refused here, with why).  A control character
    cannot be written in a unit's line: refused."""
    for arg in argv:
        if any(ch < " " or ch == "\x7f" for ch in arg):
            raise PhotodError(f"{arg!r} holds a control character (a newline?), which a "
                              "systemd unit cannot hold: move or rename it")  # fmt: skip
    if any(ch in "'\"\\" for ch in argv[0]):  # (systemd refused the unit, said nowhere)
        raise PhotodError(f"{argv[0]!r}: systemd runs no program whose path holds ', \" or "
                          "\\: install photod in a folder without them (`pipx install`)")  # fmt: skip
    # The program's own path is not read for $VARIABLES: "$$" stayed two.
    program = argv[0].replace("%", "%%")
    return [
        program,
        *(a.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$") for a in argv[1:]),
    ]


def render_user_unit(argv: list[str]) -> str:
    """``argv`` as ExecStart, specifiers and all (``unit_argv`` of real paths)."""
    return USER_UNIT.format(common=_COMMON.format(exec_start=_quote(argv)))


def render_system_unit(argv: list[str]) -> str:
    return SYSTEM_UNIT.format(common=_COMMON.format(exec_start=_quote(argv)))


def render_failure_unit(system: bool) -> str:
    logs = "journalctl -u photod" if system else "journalctl --user -u photod"
    return FAILURE.format(logs=f"see {logs} and photod logs --failures")


def render_plist(argv: list[str], home: Path) -> bytes:
    logs = home / "Library" / "Logs" / "photod"
    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": argv,
            "RunAtLoad": True,
            # Restarted after a crash (a signal) or any exit that is not 0; not after a
            # clean stop.  launchd has no RestartPreventExitStatus: after a bad config
            # (78) or with another photod holding the state dir (75) it starts photod
            # again each ThrottleInterval (30 s), one line in stderr.log each time,
            # until that is fixed; so `install` does not start the agent beside a
            # photod that runs.
            "KeepAlive": {"SuccessfulExit": False, "Crashed": True},
            "ThrottleInterval": 30,
            "ProcessType": "Standard",  # Background throttles big copies to a crawl
            "LowPriorityIO": True,
            "ExitTimeOut": 30,
            "StandardOutPath": str(logs / "stdout.log"),
            "StandardErrorPath": str(logs / "stderr.log"),
        }
    )


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)  # what was done, for the person
    problems: list[str] = field(default_factory=list)


def _run(cmd: list[str], outcome: Outcome) -> bool:
    if shutil.which(cmd[0]) is None:
        outcome.problems.append(f"{cmd[0]} is not installed here: run `{_quote(cmd)}` yourself")
        return False
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        why = (r.stderr or r.stdout).strip().splitlines()
        outcome.problems.append(f"`{_quote(cmd)}` failed: {why[-1] if why else r.returncode}")
        return False
    outcome.done.append(f"ran `{_quote(cmd)}`")
    return True


def _write(path: Path, data: bytes, outcome: Outcome) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        outcome.done.append(f"{path} is up to date")
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
    except PermissionError as exc:  # (--system by a user: /etc/systemd/system is root's)
        raise PhotodError(f"cannot write {path}: {exc.strerror}; run it with sudo") from exc
    tmp.chmod(0o644)  # a unit is no secret (photod's umask is 077): systemctl cat shows it
    os.replace(tmp, path)
    outcome.done.append(f"wrote {path}")


def unit_dir(system: bool, home: Path) -> Path:
    return Path("/etc/systemd/system") if system else home / ".config" / "systemd" / "user"


def install(config: Path | None, system: bool, home: Path) -> Outcome:
    out = Outcome()
    argv = exec_start(config)
    # A photod that runs already (`photod run` in a terminal) holds the state dir: the
    # service would exit 75 at once.  It is not started beside one.
    other = None if system else _running(config)
    if sys.platform == "darwin":
        if system:
            raise PhotodError("--system is for Linux; on macOS photod runs as your agent")
        (home / "Library" / "Logs" / "photod").mkdir(parents=True, exist_ok=True)
        plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        _write(plist, render_plist(argv, home), out)
        target = f"gui/{os.getuid()}"
        if other is not None and other[0] != _agent_pid(target):
            out.problems.append(_beside(*other, f"`launchctl bootstrap {target} {plist}`"))
        else:
            subprocess.run(["launchctl", "bootout", f"{target}/{LABEL}"], capture_output=True)
            _run(["launchctl", "bootstrap", target, str(plist)], out)
        out.done.append("logs: ~/Library/Logs/photod/ and `photod logs`")
        return out
    folder = unit_dir(system, home)
    unit = (render_system_unit if system else render_user_unit)(unit_argv(argv))
    _write(folder / UNIT, unit.encode(), out)
    _write(folder / FAILURE_UNIT, render_failure_unit(system).encode(), out)
    ctl = ["systemctl"] if system else ["systemctl", "--user"]
    why = _unreachable(ctl)
    if why:
        out.problems += _instead(why, system, other)
    elif other is not None and other[0] != _unit_pid(ctl):
        if _run([*ctl, "daemon-reload"], out):
            _run([*ctl, "enable", UNIT], out)
        out.problems.append(_beside(*other, f"`{_quote(ctl)} start photod`"))
    elif _run([*ctl, "daemon-reload"], out):
        _run([*ctl, "enable", "--now", UNIT], out)
    journal = "journalctl -u photod" if system else "journalctl --user -u photod"
    out.done.append(f"logs: `photod logs` (every event), `{journal}` (warnings and errors)")
    return out


def _unreachable(ctl: list[str]) -> str:
    """Why systemd cannot enable a unit from here (the user manager, for a user unit),
    or '' when it answers."""
    if shutil.which(ctl[0]) is None:
        return "systemctl is not installed here"
    try:
        r = subprocess.run([*ctl, "is-system-running"], capture_output=True, text=True,
                           timeout=15)  # fmt: skip
    except subprocess.TimeoutExpired:
        return ""  # slow, but there: enabling says what goes wrong, if anything
    # A manager that answers says its state ("running", "degraded", ... : the exit
    # status is not 0 for some of them, so the words are what count); "offline": the
    # computer did not boot with systemd; nothing: no manager could be reached.
    state = r.stdout.strip()
    if state and state != "offline":
        return ""
    if state == "offline" or not Path("/run/systemd/system").is_dir():
        return "it does not run on this computer: a container, or another init system"
    said = (r.stderr.strip().splitlines() or [""])[-1] or "no login session?"
    return f"no user manager answers for you: {said}" if "--user" in ctl else said


def _instead(why: str, system: bool, other: tuple[int, Path] | None) -> list[str]:
    """What to run when systemd cannot be reached: the unit is written all the same."""
    lines = [f"systemd is not reachable from here ({why}): the unit is written, but not "
             "enabled or started."]  # fmt: skip
    if other is not None:
        pid, state = other
        lines.append(f"a photod already runs on {state} (pid {pid}) and backs up your "
                     "photos: keep it running.")  # fmt: skip
    else:
        lines.append("run photod in the foreground instead: `photod run` (in tmux or screen, "
                     "or as a container's command).")  # fmt: skip
    if not system and "user manager" in why:
        lines.append('or let your systemd user manager run without a login session: '
                     '`sudo loginctl enable-linger "$USER"`, then log in again (ssh or a '
                     "desktop) and run `photod service install` again.")  # fmt: skip
    return lines


def _beside(pid: int, state: Path, start: str) -> str:
    return (f"a photod already runs on {state} (pid {pid}), not as the service (a `photod "
            "run` in a terminal?): the service is installed but not started (it would find "
            "the state dir taken and exit 75). Stop that one (Ctrl-C in its terminal, or "
            f"`kill {pid}`), then run {start}.")  # fmt: skip


def _running(config: Path | None) -> tuple[int, Path] | None:
    """(pid, state dir) of a photod running on this config's state dir, if one runs."""
    try:
        cfg = configmod.load(config or paths.default_config_path())
    except (PhotodError, OSError):
        return None  # no config yet (or a bad one, said elsewhere): no daemon of it
    pid = running_pid(cfg.state_dir)
    return (pid, cfg.state_dir) if pid else None


def _unit_pid(ctl: list[str]) -> int:
    """The pid of the service's photod (0: not running)."""
    r = subprocess.run([*ctl, "show", "--property=MainPID", "--value", UNIT],
                       capture_output=True, text=True)  # fmt: skip
    return int(r.stdout.strip()) if r.stdout.strip().isdigit() else 0


def _agent_pid(target: str) -> int:
    """The pid of the launchd agent's photod (0: not running)."""
    r = subprocess.run(["launchctl", "print", f"{target}/{LABEL}"], capture_output=True,
                       text=True)  # fmt: skip
    found = re.search(r"^\s*pid = (\d+)", r.stdout, re.MULTILINE)
    return int(found.group(1)) if found else 0


def uninstall(system: bool, home: Path) -> Outcome:
    out = Outcome()
    ctl, why = ["systemctl"] if system else ["systemctl", "--user"], ""
    if sys.platform == "darwin":
        _run(["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"], out)
        files = [home / "Library" / "LaunchAgents" / f"{LABEL}.plist"]
    else:
        why = _unreachable(ctl)  # (then no systemd runs the unit: nothing to stop)
        if why:
            out.done.append(f"systemd is not reachable from here ({why}): nothing to stop")
        else:
            _run([*ctl, "disable", "--now", UNIT], out)
        folder = unit_dir(system, home)
        files = [folder / UNIT, folder / FAILURE_UNIT]
    for f in files:
        if f.exists():
            f.unlink()
            out.done.append(f"removed {f}")
    if sys.platform != "darwin" and not why:
        _run([*ctl, "daemon-reload"], out)
    out.done.append("the config, the catalog and every backup are left as they are")
    return out


def status(system: bool, home: Path) -> Outcome:
    out = Outcome()
    path = (
        home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        if sys.platform == "darwin"
        else unit_dir(system, home) / UNIT
    )
    if not path.exists():
        out.problems.append(f"not installed ({path} does not exist): `photod service install`")
        return out
    out.done.append(f"installed: {path}")
    if sys.platform == "darwin":
        _run(["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"], out)
    else:
        ctl = ["systemctl"] if system else ["systemctl", "--user"]
        why = _unreachable(ctl)
        if why:
            out.problems.append(f"not running as a service: systemd is not reachable from "
                                f"here ({why})")  # fmt: skip
        else:
            _run([*ctl, "is-active", UNIT], out)
    return out
