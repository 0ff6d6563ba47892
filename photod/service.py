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
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from photod.errors import PhotodError

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
# A bad config (exit 78) will not fix itself by restarting.
RestartPreventExitStatus=78
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


def render_user_unit(argv: list[str]) -> str:
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
            # Restarted after a crash, not after a clean stop or a bad config.
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
    tmp.write_bytes(data)
    os.replace(tmp, path)
    outcome.done.append(f"wrote {path}")


def unit_dir(system: bool, home: Path) -> Path:
    return Path("/etc/systemd/system") if system else home / ".config" / "systemd" / "user"


def install(config: Path | None, system: bool, home: Path) -> Outcome:
    out = Outcome()
    argv = exec_start(config)
    if sys.platform == "darwin":
        if system:
            raise PhotodError("--system is for Linux; on macOS photod runs as your agent")
        (home / "Library" / "Logs" / "photod").mkdir(parents=True, exist_ok=True)
        plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        _write(plist, render_plist(argv, home), out)
        target = f"gui/{os.getuid()}"
        subprocess.run(["launchctl", "bootout", f"{target}/{LABEL}"], capture_output=True)
        _run(["launchctl", "bootstrap", target, str(plist)], out)
        out.done.append("logs: ~/Library/Logs/photod/ and `photod logs`")
        return out
    folder = unit_dir(system, home)
    unit = render_system_unit(argv) if system else render_user_unit(argv)
    _write(folder / UNIT, unit.encode(), out)
    _write(folder / FAILURE_UNIT, render_failure_unit(system).encode(), out)
    ctl = ["systemctl"] if system else ["systemctl", "--user"]
    if _run([*ctl, "daemon-reload"], out):
        _run([*ctl, "enable", "--now", UNIT], out)
    journal = "journalctl -u photod" if system else "journalctl --user -u photod"
    out.done.append(f"logs: `photod logs` (every event), `{journal}` (warnings and errors)")
    return out


def uninstall(system: bool, home: Path) -> Outcome:
    out = Outcome()
    if sys.platform == "darwin":
        _run(["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"], out)
        files = [home / "Library" / "LaunchAgents" / f"{LABEL}.plist"]
    else:
        ctl = ["systemctl"] if system else ["systemctl", "--user"]
        _run([*ctl, "disable", "--now", UNIT], out)
        folder = unit_dir(system, home)
        files = [folder / UNIT, folder / FAILURE_UNIT]
    for f in files:
        if f.exists():
            f.unlink()
            out.done.append(f"removed {f}")
    if sys.platform != "darwin":
        _run([*(["systemctl"] if system else ["systemctl", "--user"]), "daemon-reload"], out)
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
        _run([*ctl, "is-active", UNIT], out)
    return out
