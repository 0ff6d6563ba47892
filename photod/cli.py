"""The command line: parse, call, render, exit code.  No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from photod import __version__
from photod import config as configmod
from photod.errors import ConfigError, PhotodError


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
    print(f"ok: {cfg.path}: {len(cfg.sources)} source(s), {len(cfg.targets)} target(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from photod import status

    report = status.collect(configmod.load(_config_path(args)))
    if args.device:
        device = status.find_device(report, args.device)
        if device is None:
            known = ", ".join(repr(d["name"]) for d in report["devices"]) or "none yet"
            print(f"photod: no phone named {args.device!r}; known phones: {known}", file=sys.stderr)
            return 1
        print(json.dumps(device, indent=2) if args.json else status.render_device(device))
        return 0
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    return 0


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
    for raw, event in logs.read_events(cfg.log_dir, since=since, failures=args.failures):
        print(raw if args.json else logs.render(event))
    return 0


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

    keygen = sub.add_parser("keygen", help="make an age identity for encrypted targets")
    keygen.add_argument("--output", required=True, metavar="FILE", help="where to write it")
    keygen.set_defaults(func=cmd_keygen)

    logs = sub.add_parser("logs", help="the event log as a readable timeline")
    logs.add_argument("--failures", action="store_true", help="only warnings and errors")
    logs.add_argument("--since", metavar="WHEN", help="e.g. 30m, 2h, 7d, or 2026-01-31")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
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
