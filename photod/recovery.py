"""``photod recovery-plan``: a Markdown page the owner can print and keep.

It names every target, what it holds and how recently that was proved, where the keys
and credentials live (never what they are), and how to get everything back from each
target: with photod, and with stock tools only.  Pure: it renders what it is given.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from shlex import quote as q  # every value a shell step names: a path may hold ' or $
from typing import Any

from photod import __version__, policy
from photod.catalog import Catalog, now_iso
from photod.config import (
    NOTIFY_SECRETS,
    Config,
    LocalTarget,
    RcloneTarget,
    S3Target,
    is_secret,
)
from photod.stocksteps import RSYNC, SUMS, encrypted_steps, plain_steps
from photod.targets.rcd import as_read
from photod.targets.records import PLAN_FORMAT, PLAN_MARK

KEPT_CONFIG = "photod.toml"  # the config as every target keeps it, beside the plan
SECRET = "<secret: put it back here>"


@dataclass(frozen=True)
class Held:
    """What one target holds, from the catalog."""

    replicas: int
    bytes: int
    oldest_check: str | None
    last_drill: str | None  # "2026-11-20T04:00:03Z passed"


def plan_for(cfg: Config, catalog: Catalog, folder: str = "") -> str:
    """The plan for this config, with what the catalog knows now (``folder``: this
    installation's records on the targets, under ``.photod/``)."""
    drills = catalog.last_drills()
    held = {}
    for t in cfg.targets:
        count, size, oldest = catalog.check_totals(t.name)
        drill = drills.get(t.name)
        held[t.name] = Held(
            count,
            size,
            oldest,
            f"{drill[0]} {'passed' if drill[1] else 'FAILED'}" if drill else None,
        )
    assets, total = catalog.counts()
    return render(cfg, assets, total, held, now_iso(), folder)


def shared_plan(t: LocalTarget | S3Target | RcloneTarget) -> str:
    """The recovery document at a target's top level, ``.photod/RECOVERY.md``: how to
    get back the photos of every installation that backs up there, with stock tools."""
    lines = [
        "# How to get these photos back",
        "",
        f"This is a photod backup target (`{t.where}`). Every photo and video on it is",
        "an untouched original. Several computers may back up here: each one's records",
        "are in its own folder under `.photod/installations/`, and the steps below",
        "restore the photos of all of them. With photod: `photod catalog rebuild --from",
        f"{t.name}` (add `--instance NAME` to take another computer's), then `photod restore`.",
        "",
        "## Without photod",
        "",
        *_by_hand(t),
        "",
        PLAN_MARK.format(PLAN_FORMAT),  # (raised with any change to the steps above)
        "",
    ]
    return "\n".join(lines)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def render(
    cfg: Config, assets: int, total: int, held: dict[str, Held], now: str, folder: str = ""
) -> str:
    p = cfg.policy
    enc = [t.name for t in cfg.targets if t.encrypt]
    lines = [
        "# photod recovery plan",
        "",
        f"Written {now} by photod {__version__} from the config `{cfg.path}`.",
        "It holds no password, key or photo: keep a printed copy away from this computer,",
        "with the offline copy of your age identity if you use encryption.",
        "",
        "## What is backed up",
        "",
        f"- {assets} photos and videos, {_size(total)}.",
        *_records_line(folder),
        f"- Policy: {policy.describe(p.copies, p.media, p.offsite)}.",
        "",
        "## Targets",
        "",
        "| target | kind | where | copies | encrypted | oldest full check | last drill |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in cfg.targets:
        h = held.get(t.name, Held(0, 0, None, None))
        kind = f"{t.type}, {t.media}" + (", offsite" if t.offsite else "")
        lines.append(
            f"| {t.name} | {kind} | `{t.where}` | {h.replicas} ({_size(h.bytes)}) | "
            f"{'yes' if t.encrypt else 'no'} | {h.oldest_check or 'never'} | "
            f"{h.last_drill or 'never'} |"
        )
    lines += ["", "## Keys and credentials (where they are, not what they are)", ""]
    if enc:
        lines.append(
            f"- The age identity `{cfg.encryption.identity}` opens the encrypted targets "
            f"({', '.join(enc)}). Without it those copies can never be read, by anyone."
        )
        if cfg.encryption.recipients:
            lines.append(
                "- Also sealed to these extra recipients (their identities open them too): "
                + ", ".join(f"`{r}`" for r in cfg.encryption.recipients)
            )
    for t in cfg.targets:
        if isinstance(t, S3Target):
            creds = (
                f"the credentials file `{t.credentials_file}`"
                if t.credentials_file
                else f"the AWS profile `{t.profile}`"
                if t.profile
                else "the AWS default chain (environment, `~/.aws/credentials`)"
            )
            lines.append(f"- Target {t.name}: S3 keys come from {creds}.")
        elif isinstance(t, RcloneTarget):
            conf = (
                "photod's own rclone.conf in its state folder (the settings are in the config)"
                if t.rclone_config
                else f"`{t.config_file}`"
                if t.config_file
                else "rclone's default config (`rclone config file` shows where)"
            )
            lines.append(f"- Target {t.name}: the rclone remote is set up in {conf}.")
    if not enc and not any(isinstance(t, S3Target | RcloneTarget) for t in cfg.targets):
        lines.append("- None: every target is a plain folder.")
    lines += [
        "",
        "## Restore with photod",
        "",
        "1. Install photod on any computer (its README's quick start: `pip install .` in a",
        "   copy of its source).",
        f"2. Put back the config (`{cfg.path}`). Every target keeps a copy without its",
        f"   secrets, `.photod/<installations folder>/{KEPT_CONFIG}`: copy it there, and write",
        f"   each value marked `{SECRET}` back in. For encrypted targets, put back the",
        "   identity file too.",
        "3. Rebuild the catalog from any target, the offsite one if nothing else is left:",
        "   `photod catalog rebuild --from TARGET`",
        "4. Restore everything, every file checked against its SHA-256:",
        "   `photod restore ~/Restored` (add `--target TARGET` to read from one target).",
        "",
        "## Restore without photod",
        "",
    ]
    for t in cfg.targets:
        lines += [f"### {t.name}", ""]
        lines += _by_hand(t)
        lines.append("")
    return "\n".join(lines)


def _records_line(folder: str) -> list[str]:
    if not folder:
        return []
    return [
        f"- This computer's records on each target: `.photod/{folder}/` (other computers",
        "  that back up to the same target have folders of their own beside it).",
    ]


def _by_hand(t: LocalTarget | S3Target | RcloneTarget) -> list[str]:
    """Stock-tool steps that restore every installation's photos from one target."""
    first: list[str] = []  # what the download needs first: where its keys are
    if isinstance(t, LocalTarget):
        fetch = f"cd {q(str(t.path))}"
    elif isinstance(t, S3Target):
        src = q(f"s3://{t.bucket}/{t.prefix}")
        endpoint = f" --endpoint-url {q(t.endpoint)}" if t.endpoint else ""
        first = [f"First, the S3 keys for the `aws` tool: {_aws_credentials(t)}", ""]
        fetch = (
            f"aws s3 cp --recursive{endpoint} {src} encrypted/"
            if t.encrypt
            else (f"aws s3 cp --recursive{endpoint} {src} restored/ && cd restored")
        )
    else:
        first = [*_rclone_remote(t), ""]
        fetch = (
            f"rclone copy {q(t.remote)} encrypted/"
            if t.encrypt
            else f"rclone copy {q(t.remote)} restored/ && cd restored"
        )
    return first + _steps(t, fetch)


def _steps(t: LocalTarget | S3Target | RcloneTarget, fetch: str) -> list[str]:
    if not t.encrypt and isinstance(t, LocalTarget):
        return [
            "The files are the originals under their dates, as plain files. Each computer's",
            "checksum list is in `.photod/installations/*/sums/`: check them, copy them out",
            "(photod's records and any unfinished copy, `.photod-*.tmp`, left behind), and",
            "check the copy:",
            "",
            "```sh",
            *plain_steps(fetch),
            "```",
            "",
            "The copy's check matters: a disk blind to case (a Mac's, exFAT) keeps one file",
            "for `IMG_0001.JPG` and `img_0001.jpg`, two photos an older photod filed so, and",
            "names the one it lost FAILED: copy that one under another name.",
        ]
    if not t.encrypt:
        return [
            "The files are the originals under their dates, as plain files. Each",
            "computer's checksum list is in `.photod/installations/*/sums/`:",
            "",
            "```sh",
            fetch,
            f"{SUMS} | sha256sum -c   # one OK per photo",
            "```",
            "",
            f"Then copy them anywhere: `{RSYNC} DEST/`",
            "(a `.photod-*.tmp` is a copy never finished, not a photo), and check the copy the",
            "same way from inside it: a disk blind to case (a Mac's, exFAT) keeps one file for",
            "`IMG_0001.JPG` and `img_0001.jpg`, two photos an older photod filed so.",
        ]
    # (its contents into encrypted/: `cp -a DRIVE encrypted`, run again after a stop,
    # copied the whole drive a second time, into encrypted/DRIVE)
    get = f"cp -a {q(str(t.path) + '/.')} encrypted/" if isinstance(t, LocalTarget) else fetch
    return [
        "Every file is an age file under a meaningless name. Each one's index line (object,",
        "SHA-256, size, capture time, file time, path) is sealed beside it in",
        "`.photod/objects/`, and each computer's index in `.photod/installations/*/index/`.",
        "With `KEY` set to the identity file, in an empty folder:",
        "",
        "```bash",
        *encrypted_steps(get),
        "```",
        "",
        "A computer that used another identity: run the same with its `KEY`, in another",
        "empty folder.",
    ]


def _aws_credentials(t: S3Target) -> str:
    """How the `aws` tool gets the keys photod used."""
    if t.credentials_file:
        return f"put back `{t.credentials_file}`, then `export AWS_SHARED_CREDENTIALS_FILE={q(str(t.credentials_file))}`."
    if t.profile:
        return f"`export AWS_PROFILE={q(t.profile)}` (its keys in `~/.aws/credentials`)."
    return "`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` in the environment, or `~/.aws/credentials`."


def _rclone_remote(t: RcloneTarget) -> list[str]:
    """The remote's definition, for a computer where rclone has never heard of it: an
    inline one is written out (its secrets marked, to be put back); else where it is."""
    section = t.remote.partition(":")[0]
    if not t.rclone_config:
        where = (
            f"`{t.config_file}` (`export RCLONE_CONFIG={q(str(t.config_file))}`)"
            if t.config_file
            else "rclone's default config"
        )
        return [
            f"First, the remote `{section}` for `rclone`: it is defined in {where}; put it back."
        ]
    # A "$" in a file's path, which stock rclone reads as a variable's start (photod's
    # own rcd is given "$$": ``rcd.as_read``), as a variable that is a "$": pasted as it
    # was, "keys/$x/key" was "keys//key" to rclone, and the remote was never reached.
    body = [f"{k} = {SECRET if is_secret(k, v) else _dollar(k, v)}"
            for k, v in t.rclone_config.items()]  # fmt: skip
    dollar = any(_dollar(k, v) != v for k, v in t.rclone_config.items())
    return [
        f"First, the remote `{section}` for `rclone`, as photod's config defines it: write",
        "this to a file `rclone.conf`, each marked secret written back (a password goes",
        "through `rclone obscure` first, as rclone.conf keeps it), and",
        '`export RCLONE_CONFIG="$PWD/rclone.conf"`'
        + (":" if not dollar else ", and `export DOLLAR='$'` (rclone reads a \"$\" in a"),
        *(["file's path as a variable's start: `${DOLLAR}` there is a \"$\"):"] if dollar else []),
        "",
        "```ini",
        f"[{section}]",
        *body,
        "```",
    ]


def _dollar(key: str, value: str) -> str:
    """An rclone setting as stock rclone is to read it: each "$" of a path photod read
    (``rcd.as_read``) as ``${DOLLAR}``."""
    if as_read({key: value})[key] == value:
        return value
    return value.replace("$", "${DOLLAR}")


def kept_config(cfg: Config) -> str:
    """The config file as every target keeps it beside the recovery plan: itself, with
    each secret it holds (an rclone remote's password or token, a webhook's or a
    heartbeat's URL) replaced by a mark to write the secret back at.  Empty when the
    file cannot be read."""
    if cfg.path is None:
        return ""
    try:
        data: dict[str, Any] = tomllib.loads(cfg.path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    for target in data.get("targets", []):
        remote = target.get("rclone_config") if isinstance(target, dict) else None
        if isinstance(remote, dict):
            for name, value in remote.items():
                if is_secret(name, str(value)):
                    remote[name] = SECRET
    notify = data.get("notify")
    if isinstance(notify, dict):
        for name in NOTIFY_SECRETS:
            if notify.get(name):
                notify[name] = SECRET
    import tomli_w  # only when a snapshot is written

    head = (
        f"# The photod config of this installation, as it was at {now_iso()}, kept on\n"
        f"# every target by photod {__version__} for a restore. Its secrets are replaced with\n"
        f"# {SECRET!r}: write them back before you use it (see RECOVERY.md).\n\n"
    )
    return head + tomli_w.dumps(data)
