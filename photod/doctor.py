"""``photod doctor``: check everything photod depends on, one line each with the fix.

Each check returns findings: ``ok`` (fine), ``warn`` (works, but worth knowing) or
``fail`` (something will not work).  The command exits 1 when anything fails.  Nothing
here writes to a target or the catalog; writability is tested with a temporary file
that is removed at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from photod import colour, instance, private, service
from photod import config as configmod
from photod.catalog import CATALOG_NAME, STATE_MIN_FREE, Catalog, no_catalog, unwritable
from photod.config import Config, FolderSource, LocalTarget, NotifyConfig
from photod.config import Target as TargetConfig
from photod.errors import (
    CatalogDamaged,
    ClockSkewed,
    ConfigError,
    PhotodError,
    SameDrive,
    TargetUnavailable,
)
from photod.fleet import TargetState, build_targets, refuse_twin
from photod.logs import LOG_NAME
from photod.mounts import NETWORK_FS, mount_of
from photod.paths import other_form
from photod.policy import plural, size
from photod.statelock import running_pid
from photod.targets.base import Identity, Target
from photod.targets.missing import in_memory, missing_folder, on_system_disk
from photod.targets.records import installations
from photod.usb import usbmuxd_installed, usbmuxd_socket

# A clock before this is wrong (photod did not exist): capture dates, logs and the
# scrub's schedule would all be nonsense.
TEST_DEADLINE = 20.0  # seconds `photod notify-test` waits for a channel's whole answer
EARLIEST = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "fail"
    what: str
    detail: str
    fix: str = ""

    def line(self, tty: bool | None = None) -> str:
        """One line of the report; on a terminal (``tty``, None: whether standard output
        is one) OK is green, WARN yellow, FAIL red, unless NO_COLOR is set."""
        shade = {"ok": colour.GREEN, "warn": colour.YELLOW}.get(self.level, colour.RED)
        word = colour.padded(self.level.upper(), 5, shade, colour.enabled(tty))
        text = f"{word} {self.what}: {self.detail}"
        return text + (f" -> {self.fix}" if self.fix else "")


def run(path: Path, home: Path) -> list[Finding]:
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        return [Finding("fail", "config", p, "fix the key named, then `photod config check`")
                for p in exc.problems]  # fmt: skip
    counts = f"{plural(len(cfg.sources), 'source')}, {plural(len(cfg.targets), 'target')}"
    found = [
        Finding("ok", "config", f"{cfg.path}: {counts}")
        if cfg.sources
        else Finding("fail", "config", f"{cfg.path}: no source: nothing will ever be backed up",
                     "add a [[sources]]: a watch folder (type = \"folder\") or iPhones (type = \"iphone\")")
    ]  # fmt: skip
    try:
        configmod.check_secrets(cfg)
        if configmod.secret_files(cfg) or configmod.inline_secrets(cfg):
            found.append(Finding("ok", "secrets", "the config, identity and credentials "
                                 "files that hold secrets are private"))  # fmt: skip
    except ConfigError as exc:
        found += [Finding("fail", "secrets", p, "chmod 600 the file named") for p in exc.problems]
    found += [Finding("warn", "config", w) for w in configmod.warnings_for(cfg)]
    skewed: list[ClockSkewed] = []  # the targets' servers that refuse this clock
    checks: list[Callable[[], list[Finding]]] = [
        lambda: _dirs(cfg),
        lambda: _catalog(cfg),
        lambda: _targets(cfg, skewed),
        lambda: _folders(cfg),
        lambda: _phones(cfg) if cfg.iphones else [],
        lambda: _service(cfg, home),
        lambda: [_clock(cfg.log_dir, skewed)],
    ]
    for check in checks:
        try:
            found += check()
        except Exception as exc:  # one broken check must not hide the others
            found.append(Finding("fail", "doctor", f"a check failed: {type(exc).__name__}: {exc}"))
    return found


def summary(findings: list[Finding]) -> str:
    """The last line: 'all good', or the failures and the warnings counted apart
    ('1 failure, 1 warning').  Only a failure makes `photod doctor` exit 1."""
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    counted = [plural(n, word) for n, word in ((failed, "failure"), (warned, "warning")) if n]
    return ", ".join(counted) or "all good"


def _writable(folder: Path) -> str:
    """'' when a file can be created in the folder (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".photod-doctor-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _dirs(cfg: Config) -> list[Finding]:
    out = []
    for what, folder in (
        ("state dir", cfg.state_dir),
        ("log dir", cfg.log_dir),
        ("runtime dir", cfg.runtime_dir),
    ):
        why = private.not_ours(folder) or _writable(folder)
        if what == "log dir" and not why and (theirs := private.not_ours(folder / LOG_NAME)):
            why = f"{LOG_NAME}: {theirs}"
        free = _free(folder)
        if not why and what == "state dir" and free < STATE_MIN_FREE:
            out.append(Finding("fail", what, f"{folder} is full ({size(free)} free): "
                               "new files wait until there is room for the catalog",
                               "free some space on that disk, or move [daemon] state_dir"))  # fmt: skip
            continue
        out.append(
            Finding("ok", what, f"{folder} is writable")
            if not why
            else Finding(
                "fail",
                what,
                f"{folder}: {why}",
                "give your user write access, or move it in [daemon]",
            )
        )
    return out


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _catalog(cfg: Config) -> list[Finding]:
    """The catalog is sound (every page, as SQLite proves it) and not missing or older
    than its last snapshot; and photod may write it, -wal and -shm too (a catalog it
    can only read passes every other check, and the daemon holds)."""
    db = cfg.state_dir / CATALOG_NAME
    # (Asked first: opening a read-only catalog would leave its -wal and -shm read-only.)
    if (readonly := unwritable(db)) is not None:
        return [Finding("fail", "catalog", readonly.found, readonly.fix)]
    problem = instance.check_catalog(cfg.state_dir, thorough=True)
    if problem is not None:
        return [Finding("fail", "catalog", problem.found, problem.fix)]
    if not db.exists():
        return [Finding("ok", "catalog", f"{db} is made when photod first runs")]
    catalog = Catalog(db)
    try:
        assets, _ = catalog.counts()
        found = [Finding("ok", "catalog", f"{db} is sound: {assets} photos, snapshot "
                         f"generation {catalog.generation}")]  # fmt: skip
        if lost := catalog.lost_count():  # (sound, and still not "all good")
            found.append(Finding("fail", "photos", f"{lost} photo{'s' if lost > 1 else ''} "
                                 "with no good copy left on any target",
                                 "`photod status` names them; bring back a drive that "
                                 "held them, or the files, and run `photod verify`"))  # fmt: skip
        return found
    finally:
        catalog.close()


def _installations(target: Target) -> str:
    """Who keeps records on a target: ' (installations: a, b)', or ''."""
    try:
        seen = installations(target)
    except (PhotodError, OSError):
        return ""
    if not seen:
        return ""
    return " (installations: " + ", ".join(f"{s.name} {s.short}" for s in seen) + ")"


def _targets(cfg: Config, skewed: list[ClockSkewed]) -> list[Finding]:
    """Each target reachable and writable, or why not; a server that refuses this
    computer's clock goes to ``skewed`` too (the clock's line says it)."""
    out = []
    db = cfg.state_dir / CATALOG_NAME
    try:  # (not opened when photod may not write it: SQLite would leave -wal and -shm so)
        catalog = None if no_catalog(db) or unwritable(db) is not None else Catalog(db)
    except CatalogDamaged:
        catalog = None  # said by the catalog check; the targets are checked all the same
    states: dict[str, TargetState] = {}
    try:
        try:
            states = build_targets(cfg.targets_settings())
        except PhotodError as exc:  # the identity cannot be read: no target can be built
            return [Finding("fail", "targets", str(exc), "see the secrets line above")]
        for name, state in states.items():
            record = catalog.target(name) if catalog else None
            known = Identity(record.target_id, record.root, record.mount_rel) if record else None
            try:
                why = state.paused()
                if why:
                    out.append(Finding("warn", f"target {name}", f"paused: {why}"))
                    continue
                ident = state.target.check(known, prepare=False)
                refuse_twin(name, ident, known, catalog, states)
            except SameDrive as exc:  # (waiting never mends it)
                out.append(Finding("fail", f"target {name}", exc.reason))
                continue
            except ClockSkewed as exc:  # (nor this: not the path, network or credentials)
                out.append(Finding("fail", f"target {name}", exc.how, exc.FIX))
                skewed.append(exc)
                continue
            except TargetUnavailable as exc:
                t = next(t for t in cfg.targets if t.name == name)
                out.append(_unavailable(t, state.info.media.value, known is None, exc.reason))
                continue
            pending = catalog.pending_bytes(name) if catalog else 0
            free = state.target.free_bytes()
            if free is not None and free < pending:
                out.append(Finding("fail", f"target {name}", f"{size(free)} free, "
                                   f"{size(pending)} waiting to be copied there",
                                   "free space or use a bigger drive"))  # fmt: skip
                continue
            local = ident.root if ident.root else state.target.name
            if ident.target_id == "" and known is None:
                out.append(Finding("ok", f"target {name}", f"{local} is reachable (first use)"))
            else:
                room = f", {size(free)} free" if free is not None else ""
                who = _installations(state.target)
                out.append(Finding("ok", f"target {name}", f"{local} is reachable{room}{who}"))
    finally:
        for state in states.values():  # (after their last use: an rclone rcd would stay)
            state.target.close()
        if catalog:
            catalog.close()
    return out


def _unavailable(t: TargetConfig, media: str, first_use: bool, reason: str) -> Finding:
    """A target that cannot be used now.  A local folder that is missing says why: made
    at the first run (OK), a drive not plugged in or a drive without the folder (WARN
    for an external drive), or a file in its place (FAIL: it never works by itself)."""
    what = f"target {t.name}"
    if isinstance(t, LocalTarget) and not t.path.is_dir():
        missing = missing_folder(t.path, first_use)
        if missing.blocked:
            return Finding("fail", what, missing.found, missing.fix)
        drive = media != "internal" and (on_system_disk(t.path) or in_memory(t.path))
        if t.creates_root and first_use and not drive:
            parent = next(p for p in t.path.parents if p.exists())
            if os.access(parent, os.W_OK):
                return Finding("ok", what, f"{t.path} is made when photod first runs")
        level = "warn" if media == "external" else "fail"
        return Finding(level, what, missing.found, missing.fix)
    if media == "external":
        return Finding("warn", what, reason, "plug the drive in")
    return Finding("fail", what, reason, "check the path, the network and the credentials")


def _watch_limit() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return None


def _folders(cfg: Config) -> list[Finding]:
    out = []
    limit = _watch_limit()
    dirs = 0
    for source in cfg.sources:
        if not isinstance(source, FolderSource):
            continue
        what = f"folder {source.name}"
        if not source.path.is_dir():
            out.append(Finding("warn", what, f"{source.path} does not exist", other_form(
                source.path) or "create it, or mount the drive it is on"))  # fmt: skip
            continue
        if not os.access(source.path, os.R_OK | os.X_OK):
            out.append(Finding("fail", what, f"{source.path} is not readable",
                               "give your user read access"))  # fmt: skip
            continue
        _, fstype = mount_of(source.path)
        if fstype in NETWORK_FS or source.poll:
            out.append(Finding("warn", what, f"{source.path} is polled ({fstype}): new files "
                               "are noticed at each scan, not at once"))  # fmt: skip
            continue
        count = sum(1 for _ in os.walk(source.path))
        dirs += count
        out.append(
            Finding("ok", what, f"{source.path}: {count} folder{'s' * (count != 1)} to watch")
        )
    if limit is not None and dirs > limit * 0.8:
        out.append(Finding("warn", "inotify", f"{dirs} folders to watch, limit {limit}",
                           "sysctl fs.inotify.max_user_watches=524288 (and in /etc/sysctl.d/)"))  # fmt: skip
    return out


def _phones(cfg: Config) -> list[Finding]:
    if not usbmuxd_installed():  # the phone sources wait; nothing else is held up
        return [Finding("warn", "usbmuxd", "not installed: photod cannot see iPhones until it is",
                        "sudo apt install usbmuxd")]  # fmt: skip
    out = [Finding("ok", "usbmuxd", "installed")]
    sock = usbmuxd_socket()
    if ":" not in sock and not Path(sock).exists():
        out.append(Finding("warn", "usbmuxd", f"{sock} is missing: it starts by itself when "
                           "an iPhone is plugged in (Linux)"))  # fmt: skip
    why = _writable(cfg.state_dir / "pairing")
    out.append(
        Finding("ok", "pairing", "pairing records can be kept") if not why
        else Finding("fail", "pairing", f"{cfg.state_dir / 'pairing'}: {why}", "fix the state dir")
    )  # fmt: skip
    return out


def _service(cfg: Config, home: Path) -> list[Finding]:
    installed = service.status(False, home)
    pid = running_pid(cfg.state_dir)
    running = f"the daemon runs (pid {pid})" if pid else "the daemon is not running"
    if installed.problems and not installed.done:
        level = "ok" if pid else "warn"
        return [Finding(level, "service", f"not installed as a service; {running}",
                        "" if pid else "`photod service install`")]  # fmt: skip
    return [Finding("ok" if pid else "warn", "service", f"installed; {running}",
                    "" if pid else "`systemctl --user start photod`")]  # fmt: skip


def _clock(log_dir: Path, skewed: list[ClockSkewed]) -> Finding:
    """The clock is after photod existed, not before the last logged event (a clock
    that jumped back makes new copies look older than old ones), and not refused by a
    target's server (``skewed``: S3 refuses a request dated 15 minutes off)."""
    now = time.time()
    fix = ClockSkewed.FIX
    shown = time.strftime("%Y-%m-%d %H:%M", time.localtime(now))  # local, as everywhere
    if skewed:
        names = ", ".join(repr(s.target) for s in skewed)
        return Finding("fail", "clock", f"{shown}: {skewed[0].how} (target {names})", fix)
    if now < EARLIEST:
        return Finding("fail", "clock", f"{shown} is before photod existed", fix)
    last = _last_event_time(log_dir)
    if last is not None and last > now + 3600:
        return Finding("fail", "clock", f"{shown} is before the last logged event "
                       f"({time.strftime('%Y-%m-%d %H:%M', time.localtime(last))})", fix)  # fmt: skip
    return Finding("ok", "clock", shown)


def _last_event_time(log_dir: Path) -> float | None:
    from datetime import datetime

    from photod.logs import LOG_NAME

    try:
        with open(log_dir / LOG_NAME, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            tail = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        start = line.find(b'"ts": "')
        if start >= 0:
            stamp = line[start + 7 : start + 7 + 27].split(b'"')[0].decode(errors="replace")
            try:
                return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def try_channels(cfg: NotifyConfig) -> tuple[list[str], bool]:
    """`photod notify-test`: a test message sent now to each channel; a line for each
    (never its URL: it may hold a token), and whether every one took it."""
    from photod import notify  # (smtplib and friends: only for this command)
    from photod.alerts import TEST
    from photod.deadline import within

    lines, ok = [], True
    channels = notify.Notifier(cfg).channels()
    for channel, send in channels:
        try:  # (a server dripping its answer must not hold the command for ever)
            within(TEST_DEADLINE, lambda: send(TEST), f"notify-test-{channel}")  # noqa: B023
            lines.append(f"{channel}: sent")
        except Exception as exc:  # each channel's own answer, whatever it is
            lines.append(f"{channel}: FAILED: {notify.why(exc)}")
            ok = False
    if cfg.desktop and all(channel != "desktop" for channel, _ in channels):
        lines.append("desktop: not tried: no desktop session here (no D-Bus session bus)")
    if cfg.heartbeat_url:
        lines.append("heartbeat: not pinged (it would tell its monitor that photod runs)")
    if not channels:
        lines.append("no notification channel to try: set `webhook` or `email_to` in [notify]")
    return lines, ok and bool(channels)
