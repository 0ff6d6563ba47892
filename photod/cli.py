"""The command line: call, render, exit code.  No logic lives here; the grammar (every
command, flag and help page) and the exit codes are in ``cliparser``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photod import paths, private
from photod.cliparser import CANT_CREATE, DATA, NO, NO_DAEMON, NO_PERMISSION, OK, USAGE, parse
from photod.errors import AlreadyRunning, CatalogUntrusted, ConfigError, PhotodError
from photod.policy import plural, size
from photod.progress import Bar

# The config's schema (pydantic, a third of a short command's start) is imported by
# the commands that check a config; `photod status` mostly reads its kept settings.
if TYPE_CHECKING:
    from photod import config as configmod
    from photod.config import Config


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config).expanduser() if args.config else paths.default_config_path()


def _load(args: argparse.Namespace, secrets: bool = False, cached: bool = False) -> Config:
    """The config, checked (with ``secrets``, as a reload is: secret files, the age key)."""
    from photod import config as configmod

    cfg = configmod.load(_config_path(args), cached=cached)
    if secrets:
        from photod import fleet

        fleet.check_secrets_and_keys(cfg)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from photod import config as configmod
    from photod import precheck, throttle

    path = _config_path(args)
    if not path.exists() and not args.config:
        inbox, library = configmod.write_default(path)
        print(f"photod: no config found; wrote a default one to {path}\nphotod: drop "
              f"photos into {inbox}, or plug in an iPhone; they are copied to {library}",
              file=sys.stderr)  # fmt: skip
    cfg = configmod.load(path, cached=True)  # (these bytes' kept check: no validator built)
    configmod.check_secrets(cfg)
    throttle.lower_priority(cfg.daemon.priority, nice=10)  # (first: every thread inherits it)
    precheck.begin(cfg.state_dir / paths.CATALOG_NAME)  # (on the other core meanwhile:)
    from photod.daemon import Daemon

    daemon = Daemon(cfg, once=args.once)
    try:
        code = daemon.run()
    except AlreadyRunning as exc:
        if not args.once:
            raise
        return _beside(exc, "ask it to back up now with `photod backup`")
    if daemon.summary is None:  # stopped before anything was done
        return code
    print(daemon.summary.render())  # also off a terminal: a cron job's mail says it
    return code or (OK if daemon.summary.ok else NO)


def _beside(exc: AlreadyRunning, advice: str) -> int:
    """A command that cannot run beside the daemon: what to do instead (exit 75)."""
    print(f"photod: the daemon is running (pid {exc.pid or 'unknown'}, state dir "
          f"{exc.state_dir}): {advice}", file=sys.stderr)  # fmt: skip
    return exc.exit_code


def cmd_config_example(args: argparse.Namespace) -> int:
    """The example config shipped in the package (``photod/example.toml``, the same file
    as ``etc/photod.example.toml``): every key documented."""
    from importlib.resources import files

    print(files("photod").joinpath("example.toml").read_text(encoding="utf-8"), end="")
    return OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from photod import config as configmod

    cfg = _load(args, secrets=True)
    for line in configmod.warnings_for(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(f"ok: {cfg.path}: {plural(len(cfg.sources), 'source')}, "
          f"{plural(len(cfg.targets), 'target')}")  # fmt: skip
    return 0


def _daemon_config(args: argparse.Namespace, cached: bool = False) -> configmod.Config:
    """The config, for a command that reads the state or asks the daemon (status,
    logs, pause, resume, backup): when the file has errors, the one the daemon runs on,
    said once on stderr, so that a broken edit never locks anyone out of their daemon."""
    from photod import config as configmod

    path = _config_path(args)
    try:
        return configmod.load(path, cached=cached)
    except ConfigError as exc:
        kept = configmod.last_good(path)
        if kept is None:
            raise
        print(f"photod: {exc.problems[0]}\nphotod: the config has errors (`photod config "
              "check` lists them); using the one the daemon runs on until they are fixed",
              file=sys.stderr)  # fmt: skip
        return kept


def cmd_status(args: argparse.Namespace) -> int:
    from photod import phonestatus, status, statusconfig

    cfg = statusconfig.load(_config_path(args))
    if cfg is None:  # a config with errors: the daemon's, said once
        cfg = statusconfig.of(_daemon_config(args, cached=True))
    report = status.collect(cfg)
    if report["daemon"]["running"]:
        try:
            live = _ask(cfg.control_socket, {"cmd": "status"})
        except PhotodError as exc:
            live = {"ok": False, "message": str(exc)}
        report["daemon"]["live"] = live
        if live and live.get("ok"):
            status.merge_live(report, live)
    if args.device:
        device, why = phonestatus.find_device(report, args.device)
        if device is None:
            print(f"photod: {why}", file=sys.stderr)
            return NO
        print(json.dumps(device, indent=2) if args.json else phonestatus.render_device(device))
        # Not all of it safe to delete from the phone (the same test as its last line).
        return NO if device["not_protected"] or device["safe_before"] is not None else OK
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    if report["catalog_problem"]:
        return DATA
    return OK if report["protected"] else NO  # so that `photod status || alert` works


def cmd_dashboard(args: argparse.Namespace) -> int:
    from photod.dashboard import login

    url = login.link(_daemon_config(args))
    print(f"{url}\n(a login link for this user: good once, for two minutes)")
    if not args.no_browser:
        login.open_in_browser(url)
    return OK


def cmd_albums(args: argparse.Namespace) -> int:
    from photod.albums import albums, render
    from photod.catalog import CATALOG_NAME, Catalog, no_catalog

    cfg = _load(args, cached=True)
    db = cfg.state_dir / CATALOG_NAME
    if no_catalog(db):
        print(f"photod: no catalog at {db} yet", file=sys.stderr)
        return 1
    catalog = Catalog(db)  # brought up to date, as status does: an older one has no libraries
    try:
        infos = catalog.counting(cfg.target_infos(), cfg.schedule.scrub_cycle)
        found = albums(catalog, cfg.policy.rule(), infos, args.device)
    finally:
        catalog.close()
    text, code = render(found, args.device, args.json)
    print(text)
    return code


def cmd_logs(args: argparse.Namespace) -> int:
    from photod import logs

    cfg = _daemon_config(args)
    try:
        since = logs.parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"photod: {exc}", file=sys.stderr)
        return USAGE
    if args.asset is not None and not re.fullmatch(r"[0-9a-fA-F]{6,64}", args.asset):
        print(f"photod: --asset {args.asset!r}: give a SHA-256, or its first 6 to 64 hex digits "
              "(as the timeline shows it)", file=sys.stderr)  # fmt: skip
        return USAGE
    if not (cfg.log_dir / logs.LOG_NAME).exists():
        print(f"photod: no log yet in {cfg.log_dir}", file=sys.stderr)
        return NO
    only = logs.Filter(since, args.failures, args.device, args.target, args.asset)
    shown = 0
    for raw, event in logs.read_events(cfg.log_dir, only=only):
        print(raw if args.json else logs.render(event))
        shown += 1
    if shown:
        return OK
    print(f"photod: {_nothing_matched(cfg, args)}", file=sys.stderr)
    return NO


def _nothing_matched(cfg: configmod.Config, args: argparse.Namespace) -> str:
    """The one line `photod logs` says when no event matched: the filters, and the
    targets or phones there are to choose from."""
    from photod import logs

    given = [f"--{flag} {value!r}" for flag, value in (("since", args.since),
             ("device", args.device), ("target", args.target), ("asset", args.asset)) if value]  # fmt: skip
    given += ["--failures"] if args.failures else []
    line = "no event in the log" + (f" matches {' '.join(given)}" if given else "")
    if args.target is not None:
        line += f"; the targets: {', '.join(t.name for t in cfg.targets)}"
    if args.device is not None:
        phones = sorted(
            {str(e["device"]) for _, e in logs.read_events(cfg.log_dir) if e.get("device")}
        )
        line += (
            f"; phones in the log: {', '.join(phones)}" if phones else "; no phone in the log yet"
        )
    return line


def _ask(socket: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The running daemon's answer, or None when no daemon listens."""
    from photod.control import ask

    try:
        return ask(socket, request)
    except PermissionError as exc:
        raise PhotodError(f"cannot reach the daemon at {socket}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise PhotodError(f"the daemon did not answer at {socket}: {exc}") from exc


def _tell(answer: dict[str, Any] | None, alone: str) -> int:
    """Print the daemon's answer (or say clearly that none runs); the exit code."""
    if answer is None:
        print(f"photod: the daemon is not running; {alone}", file=sys.stderr)
        return NO_DAEMON
    print(answer.get("message", ""))
    return OK if answer.get("ok") else NO


def cmd_control(args: argparse.Namespace) -> int:
    # A reload must read the file as it is now: its errors (those of its secret files and
    # its age key too, which the daemon would refuse) are the answer, said the same.
    cfg = _load(args, secrets=True) if args.control == "reload" else _daemon_config(args)
    request: dict[str, Any] = {"cmd": args.control}
    if args.control == "pause" and args.duration is not None:
        if args.duration <= 0:  # not "forever": that is --for left out
            print("photod: pause --for: give a duration above 0, or leave --for out to "
                  "pause until `photod resume`", file=sys.stderr)  # fmt: skip
            return USAGE
        request["seconds"] = args.duration
    alone = {
        "backup": "`photod run --once` backs up now, or start it with `photod run`",
        "reload": "nothing to reload (the config is read when photod starts)",
        "pause": "nothing to pause",
        "resume": "nothing to resume",
    }[args.control]
    return _tell(_ask(cfg.control_socket, request), alone)


def cmd_verify(args: argparse.Namespace) -> int:
    from photod import standalone

    cfg = _load(args, secrets=True)
    answer = _ask(cfg.control_socket, {"cmd": "verify", "target": args.target, "all": args.all})
    if answer is not None:  # the daemon scrubs; two processes healing at once would race
        return _tell(answer, "")
    with Bar("verifying") as bar:
        report = standalone.verify(cfg, args.target, args.all, bar.total, bar.advance)
    for name, t in report.targets.items():
        if t.skipped:
            print(f"{name}: not verified: {t.skipped}")
            continue
        line = f"{name}: {t.listed} listed, {t.checked} re-read ({size(t.bytes)})"
        bad = [f"{n} {what}" for n, what in ((t.corrupt, "corrupt"), (t.missing, "missing"),
                                              (t.lost, "LOST")) if n]  # fmt: skip
        if bad:
            line += f"; {', '.join(bad)}; {t.repaired} repaired"
        if t.earlier:
            line += f"; {t.earlier} found bad before, repaired now"
        print(line + ("" if bad or t.earlier else "; all good"))
    if report.sources_checked or report.sources_corrupt:
        print(
            f"watch folders: {report.sources_checked} files re-read, "
            f"{report.sources_corrupt} corrupt"
        )
    if report.problems:
        print("problems were found: `photod logs --failures` has the details", file=sys.stderr)
    lost = sum(t.lost for t in report.targets.values())
    unrepaired = sum(t.corrupt + t.missing - t.repaired for t in report.targets.values())
    skipped = any(t.skipped for t in report.targets.values())
    return 1 if lost or unrepaired or report.sources_corrupt or skipped else 0


def cmd_restore(args: argparse.Namespace) -> int:
    from photod import config as configmod
    from photod import logs, signals, standalone

    cfg = _load(args)
    configmod.check_secrets(cfg, lost_identity_ok=True)  # the plain targets still restore
    signals.interrupt_on_stop()
    logs.setup(None, console=True, level=logs.WARNING)  # failures only; the summary below
    dest = Path(args.dest).expanduser()
    try:
        with Bar("restoring") as bar:
            report = standalone.restore(
                cfg, dest, args.target, args.since, args.until, args.match, bar.total,
                bar.advance, args.album,
            )  # fmt: skip
    except FileNotFoundError as exc:
        print(f"photod: no catalog at {exc}; rebuild it first: photod catalog rebuild "
              "--from TARGET", file=sys.stderr)  # fmt: skip
        return DATA  # as every command that finds no catalog to act on
    if not (report.restored or report.skipped or report.failures):
        given = [f"--{flag} {value}" for flag, value in (("since", args.since), ("until", args.until),
                 ("match", args.match), ("album", args.album), ("target", args.target)) if value]  # fmt: skip
        print(f"photod: nothing to restore: no photo or video in the catalog matches "
              f"{' '.join(given) or 'anything'}", file=sys.stderr)  # fmt: skip
        return NO
    print(report.render(dest))
    return 1 if report.failures else 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    from photod import doctor

    lines, ok = doctor.try_channels(_load(args, secrets=True).notify)
    print("\n".join(lines))
    return OK if ok else NO


def cmd_drill(args: argparse.Namespace) -> int:
    from photod import standalone

    cfg = _load(args, secrets=True)
    answer = _ask(cfg.control_socket, {"cmd": "drill", "target": args.target})
    if answer is not None:  # the daemon holds the catalog: it drills, as it does on schedule
        return _tell(answer, "")
    try:
        results = standalone.run_drill(cfg, args.target)
    except AlreadyRunning as exc:  # it started just now
        return _beside(exc, "run `photod drill` again: the daemon takes it now")
    if not results:
        print("nothing to drill: no reachable target holds a copy yet")
    for name, r in results.items():
        print(r.line(name))
    return 0 if all(r.passed for r in results.values()) else 1


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from photod import config as configmod
    from photod import standalone

    cfg = _load(args)
    configmod.check_secrets(cfg, lost_identity_ok=True)  # a plain target still rebuilds it
    try:
        result, aside = standalone.rebuild(cfg, args.source, args.force, args.instance,
                                           args.take_over)  # fmt: skip
    except AlreadyRunning as exc:  # it acts on the catalog this would replace
        return _beside(exc, "stop the daemon first (`systemctl --user stop photod`, or Ctrl-C "
                       "where it runs), then rebuild, then start it again")  # fmt: skip
    whose = f" of installation {result.taken.folder.rpartition('/')[2]!r}" if result.taken else ""
    how = f"its catalog snapshot{whose}, its lists and its files" if result.from_snapshot else ""
    print(
        f"rebuilt the catalog from {args.source!r} ({how or f'a full re-scan{whose}'}): "
        f"{result.assets} assets, {result.adopted} read from the target"
        + (f", {result.missing} gone from it since the snapshot" if result.missing else "")
    )
    if aside:
        print(f"the previous catalog is kept as {aside}")
    for line in result.skipped:
        print(f"  not adopted: {line}")
    if result.lost:  # (its photos: in no catalog now, so no restore or status would say)
        print(f"{result.lost} file(s) on {args.source!r} could not be given back whole (above): "
              "the catalog does not know them, and no restore brings them back; another "
              "target may hold them: `photod run --once` with it at hand counts its copies")  # fmt: skip
    if result.from_snapshot:
        print("next: `photod status`, then `photod verify --all` to check every other target")
    else:  # the other targets' copies are not in the catalog yet: a run adopts them
        print("next: `photod run --once` (or start the daemon): it finds the copies already "
              "on the other targets and counts them, without copying them again; then "
              "`photod status`")  # fmt: skip
    return 1 if result.lost else 0


def cmd_recovery_plan(args: argparse.Namespace) -> int:
    from photod import instance
    from photod.catalog import CATALOG_NAME, Catalog, no_catalog
    from photod.recovery import plan_for

    cfg = _load(args)
    known = instance.load(cfg.state_dir)
    db = cfg.state_dir / CATALOG_NAME
    if no_catalog(db):  # never made here: an empty one would hide a lost one
        raise CatalogUntrusted(f"there is no catalog at {db}", instance.FIX)
    catalog = Catalog(db)
    try:
        text = plan_for(cfg, catalog, known.installation.folder if known else "")
    finally:
        catalog.close()
    if args.output:
        out = Path(args.output).expanduser()
        try:
            out.write_text(text, encoding="utf-8")
        except FileNotFoundError:
            print(f"photod: cannot write {out}: the folder {out.parent} does not exist; "
                  "create it first", file=sys.stderr)  # fmt: skip
            return CANT_CREATE
        except OSError as exc:
            print(f"photod: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return CANT_CREATE
        print(f"wrote the recovery plan to {out}; print it and keep it away from this computer")
    else:
        print(text)
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from photod import config as configmod
    from photod import service

    home = Path.home()
    config = Path(args.config).expanduser().absolute() if args.config else None
    if args.action == "install":
        if config is not None:
            configmod.load(config)  # a service on a bad config would only restart in vain
        outcome = service.install(config, args.system, home)
    elif args.action == "uninstall":
        outcome = service.uninstall(args.system, home)
    else:
        outcome = service.status(args.system, home)
    for line in outcome.done:
        print(line)
    for line in outcome.problems:
        print(f"photod: {line}", file=sys.stderr)
    return 1 if outcome.problems else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from photod import doctor

    findings = doctor.run(_config_path(args), Path.home())
    for f in findings:
        print(f.line())
    print(f"\n{doctor.summary(findings)}")
    return 1 if any(f.level == "fail" for f in findings) else 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from photod.targets.agekeygen import keygen

    out = Path(args.output).expanduser().absolute()  # (the config reads its paths from its folder)
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        recipient = keygen(out)
    except FileExistsError:
        print(f"photod: {out} exists; photod never overwrites a key", file=sys.stderr)
        return CANT_CREATE
    except OSError as exc:
        print(f"photod: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return CANT_CREATE
    print(f"wrote the age identity {out} (readable only by you)")
    print(f"public key (recipient): {recipient}")
    print(
        "\nWARNING: without this file, encrypted copies can never be read again, by you or\n"
        "anyone.  Keep a copy offline now: print it, or store it in a password manager.\n"
        f"To use it, add to photod.toml:\n\n[encryption]\nidentity = {json.dumps(str(out), ensure_ascii=False)}\n",
    )
    return 0


def cmd_help(args: argparse.Namespace) -> int:
    """A command that needs a subcommand got none (bare `photod`): its help, exit 64."""
    print(args.help_of.format_help(), end="")
    return USAGE


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command: Callable[[argparse.Namespace], int] = globals()[f"cmd_{args.command}"]
    private.go_private()  # what any command makes is its user's alone (restore: the caller's)
    try:
        return int(command(args))
    except ConfigError as exc:
        print(*exc.problems, sep="\n", file=sys.stderr)  # each names the file and the key
        return exc.exit_code
    except (PhotodError, PermissionError) as exc:
        if not (said := paths.said(exc)):
            raise  # (a PermissionError on this user's own file: a bug, its traceback kept)
        print(f"photod: {said}", file=sys.stderr)
        return getattr(exc, "exit_code", NO_PERMISSION)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
