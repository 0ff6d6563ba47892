"""The command line's grammar: every command and flag, with the help and description
each page shows, and the exit codes every command shares (README, "Exit codes").

A usage error (an unknown command or flag, a bad value: ``restore --since yesterday``)
exits 64, EX_USAGE, whichever command it is in; argparse's own 2 is never used.  A
command that needs a subcommand and got none (bare ``photod``, ``photod catalog``)
prints its help to stdout and exits 64 as well: ``--help`` is the way to ask for it
with 0.  Each command is named by ``command`` in the parsed arguments: ``cli`` runs the
``cmd_<command>`` function of that name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any, NoReturn, cast

from photod import __version__, units

OK = 0
NO = 1  # done, and the answer is no: not protected, a check failed, nothing matched
NO_DAEMON = 3  # the daemon is not running (for the commands that only ask it)
USAGE = 64  # EX_USAGE
DATA = 65  # EX_DATAERR: photod does not act on its catalog
CANT_CREATE = 73  # EX_CANTCREAT: an output file cannot be made (or would be overwritten)
RUNNING = 75  # EX_TEMPFAIL: another photod holds the state dir
NO_PERMISSION = 77  # EX_NOPERM: this user may not look into the state dir (StateDirBarred)
CONFIG = 78  # EX_CONFIG


class _Formatter(argparse.HelpFormatter):
    """argparse's, told the terminal's width as ``shutil.get_terminal_size`` finds it
    without importing shutil (and bz2 and lzma with it): every flag added builds a
    formatter, so every command paid for it, `photod status` 2 % of its time."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        if width is None:
            try:
                columns = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                columns = 0
            if columns <= 0:
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    columns = 0
            width = (columns or 80) - 2  # argparse's own margin
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors exiting 64 (subcommands' parsers are made of
    the same class, so the rule holds at every level)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def _duration(text: str) -> float:
    try:
        return units.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2024-07-31") from None


def _commands(p: argparse.ArgumentParser, title: str) -> argparse._SubParsersAction[Parser]:
    """The subcommands of ``p``; with none given, ``p``'s help and exit 64."""
    p.set_defaults(command="help", help_of=p)
    return p.add_subparsers(dest=f"{p.prog.replace(' ', '_')}_command", metavar=title,
                            parser_class=Parser)  # fmt: skip


def _page(sub: argparse._SubParsersAction[Parser], name: str, line: str, about: str,
          command: str | None = None) -> Parser:  # fmt: skip
    """One command's page: ``line`` in the list of commands, ``about`` on its own page."""
    one = sub.add_parser(name, help=line, description=about)
    one.set_defaults(command=command or name.replace("-", "_"))
    return one


class _Unused:
    """The page of a command this run does not use: what it is told is dropped."""

    prog = ""

    def __getattr__(self, name: str) -> Any:  # add_argument, set_defaults, add_parser...
        return lambda *args, **kwargs: self


_UNUSED = cast(Parser, _Unused())


def _named(argv: Sequence[str]) -> str | None:
    """The command the arguments name; None when they ask for help or name none."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
        elif not arg.startswith("--config="):
            return None  # --help, --version, an abbreviation or a typo: every page
    return None


def parser(argv: Sequence[str] | None = None) -> Parser:
    """The grammar.  Given the arguments, only the page of the command they name is
    filled in: argparse takes a fifth of a light command's start (`status`) to build
    all 25 pages and their flags.  No arguments given, no command, an unknown one, or
    help: every page."""
    only = None if argv is None else _named(argv)
    built, seen = _grammar(only)
    return built if only is None or only in seen else _grammar(None)[0]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments (the process's when None), parsed."""
    args = sys.argv[1:] if argv is None else list(argv)
    return parser(args).parse_args(args)


def _grammar(only: str | None) -> tuple[Parser, set[str]]:
    seen: set[str] = set()
    p = Parser(
        prog="photod",
        description="Photo backup daemon: 3 copies, 2 media, 1 offsite. "
        "`photod COMMAND --help` says more of each command.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $PHOTOD_CONFIG, else the user config dir, else "
        "/etc/photod/photod.toml)",
    )
    p.add_argument("--version", action="version", version=f"photod {__version__}")
    sub = _commands(p, "COMMAND")

    def page(name: str, line: str, about: str, command: str | None = None) -> Parser:
        seen.add(name)
        return _page(sub, name, line, about, command) if only in (None, name) else _UNUSED

    run = page("run", "run the daemon in the foreground",
                "Run the daemon in the foreground: watch the sources, copy every new file to "
                "each target, verify, scrub and drill on schedule, until TERM or INT. With no "
                "config yet, write a default one first.")  # fmt: skip
    run.add_argument(
        "--once", action="store_true",
        help="scan, copy everything pending, say what happened, then exit (1 if any "
        "photo is not protected)",
    )  # fmt: skip

    cfg = page("config", "config commands", "Check the config, or print the example.")
    cfg_sub = _commands(cfg, "SUBCOMMAND")
    _page(cfg_sub, "check", "validate the config: 'ok' or one line per problem",
          "Validate the config: print 'ok', or one line per problem naming the file and the "
          "key, and exit 78.", "config_check")  # fmt: skip
    _page(cfg_sub, "example", "print the example config, every key documented",
          "Print the example config: every key, with its default and what it does. "
          "`photod config example > ~/.config/photod/photod.toml` starts a config from it.",
          "config_example")  # fmt: skip

    status = page("status", "is everything protected? where are the copies?",
                   "Say whether every photo is protected by the policy, and if not why; each "
                   "target with its copies and pending work. Exit 0 when every photo is "
                   "protected and none is lost, 1 otherwise, 65 when photod does not act on "
                   "its catalog, 77 when this user may not look into its state dir.")  # fmt: skip
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument(
        "--device",
        metavar="NAME",
        help="one phone (name or UDID): what on it is protected and safe to delete "
        "(exit 1 when anything on it is not)",
    )

    albums = page("albums", "the phones' albums: photos in each, how many protected",
                   "The albums of each phone's Photos library: the photos in each, how many "
                   "are protected, how many are not backed up.")  # fmt: skip
    albums.add_argument("--device", metavar="NAME", help="one phone (name or UDID)")
    albums.add_argument("--json", action="store_true", help="one JSON list")

    daemon = "Exit 3 when the daemon is not running."
    dash = page("dashboard", "a one-time login link to the daemon's local dashboard",
                 "Print a login link to the dashboard the running daemon serves on "
                 "loopback (good once, for two minutes), and open it in the browser where "
                 f"there is one. {daemon}")  # fmt: skip
    dash.add_argument("--no-browser", action="store_true", help="only print the link")
    backup = page("backup", "ask the daemon to scan and copy now",
                   "Ask the running daemon to scan the watch folders and copy what is "
                   f"pending now. {daemon}", "control")  # fmt: skip
    backup.add_argument("--now", action="store_true", help="now (the default; kept for scripts)")
    backup.set_defaults(control="backup")
    reload = page("reload", "ask the daemon to read its config again",
                   "Check the config (secrets' permissions too), then ask the running "
                   f"daemon to read it again, as `kill -HUP` does. {daemon}",
                   "control")  # fmt: skip
    reload.set_defaults(control="reload")
    pause = page("pause", "ask the daemon to start no new work",
                  "Ask the running daemon to start no new import, copy, scan, scrub or drill "
                  f"for a while, or until `photod resume`; work in flight finishes. {daemon}",
                  "control")  # fmt: skip
    pause.add_argument("--for", dest="duration", type=_duration, metavar="DURATION",
                       help="e.g. 30m, 2h (default: until `photod resume`)")  # fmt: skip
    pause.set_defaults(control="pause")
    resume = page("resume", "end a pause",
                   f"Ask the running daemon to end a pause. {daemon}", "control")  # fmt: skip
    resume.set_defaults(control="resume")

    verify = page("verify",
                   "re-read copies now (through the daemon when it runs): find, repair, report",
                   "Scrub now: re-read copies (within the budgets, or every one), repair what "
                   "is bad from a good copy, and print what was found (exit 1 when something "
                   "could not be repaired, a target could not be verified or a watch folder's "
                   "file is corrupt). With the daemon running, the daemon does it.")  # fmt: skip
    verify.add_argument("--target", metavar="NAME", help="only this target")
    verify.add_argument(
        "--all", action="store_true", help="re-read every copy, whatever the budgets say"
    )

    restore = page("restore", "copy originals back, every file checked",
                    "Copy originals back into DEST under their library paths, every file "
                    "checked against its SHA-256; a different file is never overwritten. "
                    "Exit 1 when a file failed or nothing matched.")  # fmt: skip
    restore.add_argument("dest", metavar="DEST", help="folder to restore into")
    restore.add_argument("--target", metavar="NAME", help="read only from this target")
    restore.add_argument("--since", type=_date, metavar="DATE", help="taken on or after")
    restore.add_argument("--until", type=_date, metavar="DATE", help="taken on or before")
    restore.add_argument("--match", metavar="GLOB", help="path or name, e.g. '2024/*' '*.HEIC'")
    restore.add_argument(
        "--album", metavar="NAME", help="one album of a phone ('Trips/Rome' or its title)"
    )

    drill = page("drill", "restore a random sample from each target and check it",
                  "Restore a random sample from each target into a temporary folder, check "
                  "every byte and that it decodes, then delete it (exit 1 when a drill "
                  "fails). With the daemon running, the daemon does it.")  # fmt: skip
    drill.add_argument("--target", metavar="NAME", help="only this target")

    cat = page("catalog", "catalog commands", "Rebuild the catalog from a target.")
    cat_sub = _commands(cat, "SUBCOMMAND")
    rebuild = _page(cat_sub, "rebuild", "rebuild a lost catalog from one target",
                    "Rebuild the catalog from one target: its newest good snapshot, its lists "
                    "and every file on it. The daemon must be stopped meanwhile.",
                    "catalog_rebuild")  # fmt: skip
    rebuild.add_argument("--from", dest="source", required=True, metavar="TARGET",
                         help="the target to rebuild from (a name in the config)")  # fmt: skip
    rebuild.add_argument("--force", action="store_true", help="even if a catalog exists")
    rebuild.add_argument(
        "--instance", metavar="NAME",
        help="take this installation's records (another computer's, for a new one); "
        "default: this one's",
    )  # fmt: skip
    rebuild.add_argument("--take-over", action="store_true",
                         help="with --instance, on a computer that has an installation of its "
                         "own: become the other one (it must never run again)")  # fmt: skip

    plan = page("recovery-plan", "write the recovery plan for this config",
                 "Write the recovery plan for this config as Markdown: how to get every "
                 "photo back from each target, with photod or without it.")  # fmt: skip
    plan.add_argument("--output", metavar="FILE", help="write here instead of printing")

    svc = page("service", "run photod as a systemd service or launchd agent",
                "Install, remove or look at photod as a systemd user service (Linux) or a "
                "launchd agent (macOS).")  # fmt: skip
    svc_sub = _commands(svc, "ACTION")
    for action, text in (
        ("install", "write the unit (or plist), enable and start it"),
        ("uninstall", "stop and remove it (config, catalog and backups stay)"),
        ("status", "is it installed and running?"),
    ):
        one = _page(svc_sub, action, text, text[0].upper() + text[1:] + ".", "service")
        one.add_argument("--system", action="store_true",
                         help="a system unit with its own user (Linux, as root)")  # fmt: skip
        one.set_defaults(action=action)

    page("notify-test", "send a test message to every notification channel",
          "Send a test message to every channel in [notify] (the desktop, the webhook, "
          "e-mail) now, and print what each answered. Exit 1 when one failed or none is "
          "set up.")  # fmt: skip

    page("doctor", "check everything photod needs, with the fix for each",
          "Check everything photod needs, one line each with the fix: the config, secrets, "
          "folders, the catalog, each target and source, usbmuxd, the service, the clock. "
          "Exit 1 when a check fails; warnings alone exit 0.")  # fmt: skip

    keygen = page("keygen", "make an age identity for encrypted targets",
                   "Write a new age identity (mode 600) for encrypted targets and print its "
                   "public key. An existing file is never overwritten: exit 73.")  # fmt: skip
    keygen.add_argument("--output", required=True, metavar="FILE", help="where to write it")

    logs = page("logs", "the event log as a readable timeline",
                 "The event log as a readable timeline, oldest first. Exit 1 when no event "
                 "matches (the line says which targets or phones there are).")  # fmt: skip
    logs.add_argument("--failures", action="store_true", help="only warnings and errors")
    logs.add_argument("--since", metavar="WHEN", help="e.g. 30m, 2h, 7d, or 2026-01-31")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
    logs.add_argument("--device", metavar="NAME", help="one phone's events (its name or UDID)")
    logs.add_argument("--target", metavar="NAME", help="one target's events")
    logs.add_argument(
        "--asset", metavar="HASH", help="one photo, from import to every check (SHA-256 or prefix)"
    )
    return p, seen
