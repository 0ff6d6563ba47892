"""The command line: parse, call, render, exit code.  No logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

from photod import __version__
from photod import config as configmod
from photod.errors import CatalogUntrusted, ConfigError, PhotodError
from photod.progress import Bar


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config).expanduser() if args.config else configmod.default_config_path()


def cmd_run(args: argparse.Namespace) -> int:
    from photod.daemon import Daemon

    path = _config_path(args)
    if not path.exists() and not args.config:
        inbox, library = configmod.write_default(path)
        print(
            f"photod: no config found; wrote a default one to {path}\n"
            f"photod: drop photos into {inbox}, or plug in an iPhone; they are copied to "
            f"{library}",
            file=sys.stderr,
        )
    cfg = configmod.load(path)
    configmod.check_secrets(cfg)
    return Daemon(cfg, once=args.once).run()


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = configmod.load(_config_path(args))
    configmod.check_secrets(cfg)
    for line in configmod.warnings_for(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(f"ok: {cfg.path}: {len(cfg.sources)} source(s), {len(cfg.targets)} target(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from photod import phonestatus, status

    # cached: while the file is unchanged, its schema check is the one kept in the state
    # dir (``configcache``): a question asked often starts faster.
    cfg = configmod.load(_config_path(args), cached=True)
    report = status.collect(cfg)
    if report["daemon"]["running"]:
        try:
            live = _ask(cfg, {"cmd": "status"})
        except PhotodError as exc:
            live = {"ok": False, "message": str(exc)}
        report["daemon"]["live"] = live
        if live and live.get("ok"):
            status.merge_live(report, live)
    if args.device:
        device = phonestatus.find_device(report, args.device)
        if device is None:
            known = ", ".join(repr(d["name"]) for d in report["devices"]) or "none yet"
            print(f"photod: no phone named {args.device!r}; known phones: {known}", file=sys.stderr)
            return 1
        print(json.dumps(device, indent=2) if args.json else phonestatus.render_device(device))
        return 0
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    return CATALOG_UNTRUSTED if report["catalog_problem"] else 0


def cmd_albums(args: argparse.Namespace) -> int:
    from photod.albums import albums, render
    from photod.catalog import CATALOG_NAME, Catalog

    cfg = configmod.load(_config_path(args), cached=True)
    db = cfg.state_dir / CATALOG_NAME
    if not db.exists():
        print(f"photod: no catalog at {db} yet", file=sys.stderr)
        return 1
    catalog = Catalog(db, readonly=True)
    try:
        found = albums(catalog, cfg.policy.rule(), cfg.target_infos(), args.device)
    finally:
        catalog.close()
    text, code = render(found, args.device, args.json)
    print(text)
    return code


CATALOG_UNTRUSTED = 65  # EX_DATAERR: photod does not act on its catalog (status says why)


def cmd_logs(args: argparse.Namespace) -> int:
    from photod import logs

    cfg = configmod.load(_config_path(args))
    try:
        since = logs.parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"photod: {exc}", file=sys.stderr)
        return 64
    if not (cfg.log_dir / logs.LOG_NAME).exists():
        print(f"photod: no log yet in {cfg.log_dir}", file=sys.stderr)
        return 0
    if args.asset is not None and not re.fullmatch(r"[0-9a-fA-F]{6,64}", args.asset):
        print(f"photod: --asset {args.asset!r}: give a SHA-256, or its first 6 to 64 hex digits "
              "(as the timeline shows it)", file=sys.stderr)  # fmt: skip
        return 64
    only = logs.Filter(since, args.failures, args.device, args.target, args.asset)
    for raw, event in logs.read_events(cfg.log_dir, only=only):
        print(raw if args.json else logs.render(event))
    return 0


def _ask(cfg: configmod.Config, request: dict[str, Any]) -> dict[str, Any] | None:
    """The running daemon's answer, or None when no daemon listens."""
    from photod.control import ask

    try:
        return ask(cfg.control_socket, request)
    except PermissionError as exc:
        raise PhotodError(f"cannot reach the daemon at {cfg.control_socket}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise PhotodError(f"the daemon did not answer at {cfg.control_socket}: {exc}") from exc


def _tell(answer: dict[str, Any] | None, alone: str) -> int:
    """Print the daemon's answer (or say clearly that none runs); the exit code."""
    if answer is None:
        print(f"photod: the daemon is not running; {alone}", file=sys.stderr)
        return 3
    print(answer.get("message", ""))
    return 0 if answer.get("ok") else 1


def cmd_control(args: argparse.Namespace) -> int:
    cfg = configmod.load(_config_path(args))
    request: dict[str, Any] = {"cmd": args.control}
    if args.control == "pause" and args.duration:
        request["seconds"] = args.duration
    alone = {
        "backup": "`photod run --once` backs up now, or start it with `photod run`",
        "reload": "nothing to reload (the config is read when photod starts)",
        "pause": "nothing to pause",
        "resume": "nothing to resume",
    }[args.control]
    return _tell(_ask(cfg, request), alone)


def _duration(text: str) -> float:
    try:
        return configmod.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_verify(args: argparse.Namespace) -> int:
    from photod import standalone

    cfg = configmod.load(_config_path(args))
    configmod.check_secrets(cfg)
    answer = _ask(cfg, {"cmd": "verify", "target": args.target, "all": args.all})
    if answer is not None:  # the daemon scrubs; two processes healing at once would race
        return _tell(answer, "")
    with Bar("verifying") as bar:
        report = standalone.verify(cfg, args.target, args.all, bar.total, bar.advance)
    for name, t in report.targets.items():
        if t.skipped:
            print(f"{name}: not verified: {t.skipped}")
            continue
        line = f"{name}: {t.listed} listed, {t.checked} re-read ({t.bytes / 1e6:.1f} MB)"
        bad = [
            f"{n} {what}"
            for n, what in ((t.corrupt, "corrupt"), (t.missing, "missing"), (t.lost, "LOST"))
            if n
        ]
        if bad:
            line += f"; {', '.join(bad)}; {t.repaired} repaired"
        print(line + ("" if bad else "; all good"))
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


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2024-07-31") from None


def cmd_restore(args: argparse.Namespace) -> int:
    from photod import logs, standalone

    cfg = configmod.load(_config_path(args))
    configmod.check_secrets(cfg)
    logs.setup(None, console=True, level=logging.WARNING)  # failures only; the summary below
    dest = Path(args.dest).expanduser()
    try:
        with Bar("restoring") as bar:
            report = standalone.restore(
                cfg, dest, args.target, args.since, args.until, args.match, bar.total,
                bar.advance, args.album,
            )  # fmt: skip
    except FileNotFoundError as exc:
        print(
            f"photod: no catalog at {exc}; rebuild it first: photod catalog rebuild --from TARGET",
            file=sys.stderr,
        )
        return 1
    print(
        f"restored {report.restored} files ({report.bytes / 1e6:.1f} MB) to {dest}, "
        f"skipped {report.skipped} already there, failed {len(report.failed)}"
    )
    for path, why in report.failed:
        print(f"  failed: {path}: {why}")
    return 1 if report.failed else 0


def cmd_drill(args: argparse.Namespace) -> int:
    from photod import standalone

    cfg = configmod.load(_config_path(args))
    configmod.check_secrets(cfg)
    results = standalone.run_drill(cfg, args.target)
    if not results:
        print("nothing to drill: no reachable target holds a copy yet")
    for name, passed in results.items():
        print(f"{name}: drill {'passed' if passed else 'FAILED (photod logs --failures)'}")
    return 0 if all(results.values()) else 1


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from photod import standalone

    cfg = configmod.load(_config_path(args))
    configmod.check_secrets(cfg)
    result, aside = standalone.rebuild(cfg, args.source, args.force, args.instance)
    whose = f" of installation {result.taken.folder.rpartition('/')[2]!r}" if result.taken else ""

    how = (
        f"its catalog snapshot{whose}, its lists and its files"
        if result.from_snapshot
        else f"a full re-scan{whose}"
    )
    print(
        f"rebuilt the catalog from {args.source!r} ({how}): {result.assets} assets, "
        f"{result.adopted} read from the target"
        + (f", {result.missing} gone from it since the snapshot" if result.missing else "")
    )
    if aside:
        print(f"the previous catalog is kept as {aside}")
    for line in result.skipped:
        print(f"  not adopted: {line}")
    print("next: `photod status`, then `photod verify --all` to check every other target")
    return 0


def cmd_recovery_plan(args: argparse.Namespace) -> int:
    from photod import instance
    from photod.catalog import CATALOG_NAME, Catalog
    from photod.recovery import plan_for

    cfg = configmod.load(_config_path(args))
    known = instance.load(cfg.state_dir)
    db = cfg.state_dir / CATALOG_NAME
    if not db.exists():  # never made here: an empty one would hide a lost one
        raise CatalogUntrusted(f"there is no catalog at {db}", instance.FIX)
    catalog = Catalog(db)
    try:
        text = plan_for(cfg, catalog, known.installation.folder if known else "")
    finally:
        catalog.close()
    if args.output:
        out = Path(args.output).expanduser()
        out.write_text(text, encoding="utf-8")
        print(f"wrote the recovery plan to {out}; print it and keep it away from this computer")
    else:
        print(text)
    return 0


def cmd_service(args: argparse.Namespace) -> int:
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
    failed = sum(f.level == "fail" for f in findings)
    print(f"\n{failed} problem(s)" if failed else "\nall good")
    return 1 if failed else 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from photod.targets.crypt import keygen

    out = Path(args.output).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        recipient = keygen(out)
    except FileExistsError:
        print(f"photod: {out} exists; photod never overwrites a key", file=sys.stderr)
        return 73  # EX_CANTCREAT
    except OSError as exc:
        print(f"photod: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 73
    print(f"wrote the age identity {out} (readable only by you)")
    print(f"public key (recipient): {recipient}")
    print(
        "\nWARNING: without this file, encrypted copies can never be read again, by you or\n"
        "anyone.  Keep a copy offline now: print it, or store it in a password manager.\n"
        f'To use it, add to photod.toml:\n\n[encryption]\nidentity = "{out}"\n',
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="photod", description="Photo backup daemon: 3 copies, 2 media, 1 offsite."
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $PHOTOD_CONFIG or the user config dir)",
    )
    p.add_argument("--version", action="version", version=f"photod {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--once", action="store_true", help="scan, copy everything pending, then exit")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="config commands")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="validate the config: 'ok' or one line per problem")
    check.set_defaults(func=cmd_config_check)

    status = sub.add_parser("status", help="is everything protected? where are the copies?")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument(
        "--device",
        metavar="NAME",
        help="one phone (name or UDID): what on it is protected and safe to delete",
    )
    status.set_defaults(func=cmd_status)

    albums = sub.add_parser("albums", help="the phones' albums: photos in each, how many protected")
    albums.add_argument("--device", metavar="NAME", help="one phone (name or UDID)")
    albums.add_argument("--json", action="store_true", help="one JSON list")
    albums.set_defaults(func=cmd_albums)

    backup = sub.add_parser("backup", help="ask the daemon to scan and copy now")
    backup.add_argument("--now", action="store_true", required=True, help="now (required)")
    backup.set_defaults(func=cmd_control, control="backup")
    reload = sub.add_parser("reload", help="ask the daemon to read its config again")
    reload.set_defaults(func=cmd_control, control="reload")
    pause = sub.add_parser("pause", help="ask the daemon to start no new work")
    pause.add_argument("--for", dest="duration", type=_duration, metavar="DURATION",
                       help="e.g. 30m, 2h (default: until `photod resume`)")  # fmt: skip
    pause.set_defaults(func=cmd_control, control="pause")
    resume = sub.add_parser("resume", help="end a pause")
    resume.set_defaults(func=cmd_control, control="resume")

    verify = sub.add_parser(
        "verify", help="re-read copies now (through the daemon when it runs): find, repair, report"
    )
    verify.add_argument("--target", metavar="NAME", help="only this target")
    verify.add_argument(
        "--all", action="store_true", help="re-read every copy, whatever the budgets say"
    )
    verify.set_defaults(func=cmd_verify)

    restore = sub.add_parser("restore", help="copy originals back, every file checked")
    restore.add_argument("dest", metavar="DEST", help="folder to restore into")
    restore.add_argument("--target", metavar="NAME", help="read only from this target")
    restore.add_argument("--since", type=_date, metavar="DATE", help="taken on or after")
    restore.add_argument("--until", type=_date, metavar="DATE", help="taken on or before")
    restore.add_argument("--match", metavar="GLOB", help="path or name, e.g. '2024/*' '*.HEIC'")
    restore.add_argument(
        "--album", metavar="NAME", help="one album of a phone ('Trips/Rome' or its title)"
    )
    restore.set_defaults(func=cmd_restore)

    drill = sub.add_parser("drill", help="restore a random sample from each target and check it")
    drill.add_argument("--target", metavar="NAME", help="only this target")
    drill.set_defaults(func=cmd_drill)

    cat = sub.add_parser("catalog", help="catalog commands")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True, metavar="SUBCOMMAND")
    rebuild = cat_sub.add_parser("rebuild", help="rebuild a lost catalog from one target")
    rebuild.add_argument("--from", dest="source", required=True, metavar="TARGET")
    rebuild.add_argument("--force", action="store_true", help="even if a catalog exists")
    rebuild.add_argument(
        "--instance", metavar="NAME",
        help="take this installation's records (another computer's, for a new one); "
        "default: this one's",
    )  # fmt: skip
    rebuild.set_defaults(func=cmd_catalog_rebuild)

    plan = sub.add_parser("recovery-plan", help="write the recovery plan for this config")
    plan.add_argument("--output", metavar="FILE", help="write here instead of printing")
    plan.set_defaults(func=cmd_recovery_plan)

    svc = sub.add_parser("service", help="run photod as a systemd service or launchd agent")
    svc_sub = svc.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("install", "write the unit (or plist), enable and start it"),
        ("uninstall", "stop and remove it (config, catalog and backups stay)"),
        ("status", "is it installed and running?"),
    ):
        one = svc_sub.add_parser(action, help=text)
        one.add_argument("--system", action="store_true",
                         help="a system unit with its own user (Linux, as root)")  # fmt: skip
        one.set_defaults(func=cmd_service)

    doctor = sub.add_parser("doctor", help="check everything photod needs, with the fix for each")
    doctor.set_defaults(func=cmd_doctor)

    keygen = sub.add_parser("keygen", help="make an age identity for encrypted targets")
    keygen.add_argument("--output", required=True, metavar="FILE", help="where to write it")
    keygen.set_defaults(func=cmd_keygen)

    logs = sub.add_parser("logs", help="the event log as a readable timeline")
    logs.add_argument("--failures", action="store_true", help="only warnings and errors")
    logs.add_argument("--since", metavar="WHEN", help="e.g. 30m, 2h, 7d, or 2026-01-31")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
    logs.add_argument("--device", metavar="NAME", help="one phone's events (its name or UDID)")
    logs.add_argument("--target", metavar="NAME", help="one target's events")
    logs.add_argument(
        "--asset", metavar="HASH", help="one photo, from import to every check (SHA-256 or prefix)"
    )
    logs.set_defaults(func=cmd_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for line in exc.problems:  # each already names the file and the key
            print(line, file=sys.stderr)
        return exc.exit_code
    except PhotodError as exc:
        print(f"photod: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
