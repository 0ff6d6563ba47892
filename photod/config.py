"""Load and validate photod.toml.  The only module that imports pydantic.

Every problem becomes one line: ``FILE: key.path: what is wrong; what is allowed``.

It is better whole: the schema is one tree of models that mirrors
``etc/photod.example.toml`` key for key, and the checks that span keys need all of it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import socket
import stat
import tomllib
import urllib.parse
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from photod import configcache, durable, paths, policy, schedules
from photod.errors import ConfigError, PhotodError
from photod.media import DEFAULT_IGNORE, DEFAULT_LAYOUT, LAYOUT_FIELDS
from photod.models import Media, PolicyRule, TargetInfo
from photod.targetspec import LocalSpec, RcloneSpec, S3Spec, TargetSpec, TargetsSettings
from photod.units import parse_duration, parse_size

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _a_path(value: Any) -> Any:
    """A path key holds a path: an empty one (a template's placeholder) was read as
    the config's own folder (a target there filled it with photos, beside the config)."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(
            f"is {value!r}; allowed: a path (an empty one is not none: it was "
            "read as the config's own folder)"
        )
    return value


ConfigPath = Annotated[Path, BeforeValidator(_a_path)]


class _Strict(BaseModel):
    # defer_build: the validators are built at the first validation, not at import, so
    # a command that gets its config from ``configcache`` never builds them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own message ("Extra inputs are not permitted") names neither the key's
        # neighbours nor what is allowed; say both.
        if isinstance(data, dict):
            # Fields marked exclude (Config.path, set by the loader) are not for the file.
            allowed = [k for k, f in cls.model_fields.items() if not f.exclude]
            unknown = [k for k in data if k not in allowed]
            if unknown:
                raise ValueError(
                    f"unknown key {unknown[0]!r}; allowed keys here: {', '.join(allowed)}"
                )
        return data


class PolicyConfig(_Strict):
    copies: int = Field(3, ge=1, le=20, strict=True)
    media: int = Field(2, ge=1, le=4, strict=True)
    offsite: int = Field(1, ge=0, le=20, strict=True)

    def rule(self) -> PolicyRule:
        return PolicyRule(self.copies, self.media, self.offsite)


class FolderSource(_Strict):
    name: Name
    type: Literal["folder"]
    path: ConfigPath
    poll: bool = Field(
        False, strict=True
    )  # force polling (network folders are detected and polled anyway)


# A UDID as usbmuxd reports it: 40 hex digits (older phones) or 8-16 with a dash.
UDID_PATTERN = r"^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{16})$"


class IPhoneSource(_Strict):
    name: Name
    type: Literal["iphone"]
    # Only these phones (empty: any phone this computer is paired with).
    udids: list[Annotated[str, Field(pattern=UDID_PATTERN)]] = Field(default_factory=list)
    # Also import the rendered edits (PhotoData/Mutations), beside their originals.
    include_edits: bool = Field(False, strict=True)
    # Read the phone's Photos library at each import (albums, favourites, captions,
    # people, originals only in iCloud) and keep it beside the files as XMP sidecars.
    library: bool = Field(True, strict=True)
    # Longest wait for one answer from the phone before the link counts as stalled.
    timeout: Duration = 30.0


Source = Annotated[FolderSource | IPhoneSource, Field(discriminator="type")]


def parse_rate(value: Any) -> int:
    """'5MiB/s', '500 KB/s' -> bytes per second."""
    text = str(value).strip()
    if isinstance(value, str) and text.lower().endswith("/s"):
        text = text[:-2]
    try:
        rate = parse_size(text if isinstance(value, str) else value)
    except ValueError:
        rate = 0
    if rate <= 0:
        raise ValueError(f"is {value!r}; allowed: a rate like '5MiB/s', '500KB/s' (above 0)")
    return rate


def parse_window(value: Any) -> tuple[int, int]:
    """'01:00-06:00' -> minutes after midnight (start, end); may wrap past midnight."""
    m = re.fullmatch(r"\s*(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*", str(value))
    if m:
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return h1 * 60 + m1, h2 * 60 + m2
    raise ValueError(
        f"is {value!r}; allowed: local hours 'HH:MM-HH:MM' like '01:00-06:00' "
        "(may wrap past midnight, '22:00-06:00')"
    )


def parse_budget(value: Any) -> tuple[int | None, float | None]:
    """'20GiB' -> (bytes, None); '2h' -> (None, seconds).  A bare 'm' is refused: it
    could be minutes or megabytes."""
    text = str(value).strip().lower()
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?\s*m", text):
        raise ValueError(f"is {value!r}; 'm' is ambiguous: write '20MB' or '20min'")
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?\s*(ms|s|min|h|d|w)", text):
        return None, parse_duration(value)
    try:
        size = parse_size(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise ValueError(
            f"is {value!r}; allowed: a size like '20GiB' or a duration like '2h', '45min'"
        )
    return size, None


def parse_monthly(value: Any) -> int:
    """'10GiB/month' (or just '10GiB') -> bytes per month."""
    text = str(value).strip()
    if isinstance(value, str) and text.lower().endswith("/month"):
        text = text[: -len("/month")]
    try:
        return parse_size(text if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"is {value!r}; allowed: a size per month like '10GiB/month'") from None


def parse_listen(value: Any) -> tuple[str, int]:
    """'127.0.0.1:8737', 'localhost:8737', '[::1]:8737' -> (host, port): loopback only."""
    m = re.fullmatch(r"\s*(\[::1\]|localhost|127(?:\.\d{1,3}){3}):(\d{1,5})\s*", str(value))
    host = m.group(1).strip("[]") if m else ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not m or not loopback or int(m.group(2)) > 65535:
        raise ValueError(
            f"is {value!r}; allowed: a loopback address and a port, '127.0.0.1:8737', "
            "'localhost:8737' or '[::1]:8737' (the dashboard is never served to the network)"
        )
    return host, int(m.group(2))


def parse_cron(value: Any) -> str:
    """A crontab line (minute hour day month weekday), read as the scheduler will."""
    return schedules.check(value)


Rate = Annotated[int, BeforeValidator(parse_rate)]
Listen = Annotated[tuple[str, int], BeforeValidator(parse_listen)]
Budget = Annotated[tuple[int | None, float | None], BeforeValidator(parse_budget)]
Monthly = Annotated[int, BeforeValidator(parse_monthly)]
Cron = Annotated[str, BeforeValidator(parse_cron)]
Window = Annotated[tuple[int, int], BeforeValidator(parse_window)]
# age's X25519 recipient: "age1" and 58 bech32 characters.
RECIPIENT_PATTERN = r"^age1[02-9ac-hj-np-z]{58}$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REMOTE_PATTERN = r"^[A-Za-z0-9_.][A-Za-z0-9_. -]*:[^\n\r]*$"
URL_PATTERN = r"^https?://\S+$"


class _Target(_Strict):
    """What every target kind takes."""

    name: Name
    # Encrypt every object with age ([encryption] names the keys); names and listing
    # show nothing of the photos.
    encrypt: bool = Field(False, strict=True)
    bandwidth_limit: Rate | None = None  # uploads to this target, bytes per second
    window: Window | None = None  # copy only in these local hours
    on_battery: bool = Field(True, strict=True)  # false: pause while on battery
    # Tell the owner when the target has not been reachable for this long ("the
    # external drive 'T7' has not been connected for 14 days").
    expect_every: Duration | None = None

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)  # type: ignore[attr-defined]

    @property
    def where(self) -> str:
        raise NotImplementedError

    def spec(self) -> TargetSpec:
        raise NotImplementedError

    def _common(self) -> dict[str, Any]:
        """The plain fields every kind's spec has."""
        return {
            "name": self.name,
            "type": self.type,  # type: ignore[attr-defined]
            "where": self.where,
            "media": self.media,  # type: ignore[attr-defined]
            "offsite": self.offsite,  # type: ignore[attr-defined]
            "encrypt": self.encrypt,
            "bandwidth_limit": self.bandwidth_limit,
            "window": self.window,
            "on_battery": self.on_battery,
        }


class LocalTarget(_Target):
    type: Literal["local"]
    path: ConfigPath
    media: Media = Media.INTERNAL
    offsite: bool = Field(False, strict=True)
    create: bool | None = Field(
        None, strict=True
    )  # None: create the folder only for internal targets
    reserve: Size = 64 * 1024**2  # free space always left on the target

    @property
    def creates_root(self) -> bool:
        return self.media is Media.INTERNAL if self.create is None else self.create

    @property
    def where(self) -> str:
        return str(self.path)

    def spec(self) -> LocalSpec:
        return LocalSpec(
            **self._common(), path=self.path, creates_root=self.creates_root, reserve=self.reserve
        )


class _RemoteTarget(_Target):
    """What S3 and rclone targets share: uploads in parallel, and offsite by default."""

    transfers: int = Field(4, ge=1, le=32, strict=True)  # files uploaded at once
    # Most bytes a scrub may download from here each month to re-read copies in full
    # (cheap checks of presence and size run every scrub whatever this says).
    egress_budget: Monthly = 10 * 1024**3
    media: Media = Media.CLOUD
    offsite: bool = Field(True, strict=True)
    # true: upload over a metered connection too (NetworkManager's Metered: a phone's
    # hotspot); false: uploads wait for an unmetered one.  Local targets copy always.
    on_metered: bool = Field(False, strict=True)

    def _remote(self) -> dict[str, Any]:
        return {
            **self._common(),
            "transfers": self.transfers,
            "egress_budget": self.egress_budget,
            "on_metered": self.on_metered,
        }


class S3Target(_RemoteTarget):
    type: Literal["s3"]
    bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)]
    prefix: str = ""  # objects go under this prefix ("photos/" or "")
    endpoint: str | None = None  # https://s3.example.com; none for AWS itself
    region: str | None = None
    profile: str | None = None  # a profile of the shared AWS credentials file
    credentials_file: ConfigPath | None = None  # an AWS-style credentials file, mode 600
    part_size: Size = 16 * 1024**2  # larger files go up in parts of this size
    # How long a part the network cut is sent again, in the same upload, before the
    # upload is given up (and the file tried again later, from its start); and a cut
    # download asked again from where it was cut.
    part_retry: Duration = 120.0

    @property
    def where(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def spec(self) -> S3Spec:
        return S3Spec(
            **self._remote(), bucket=self.bucket, prefix=self.prefix, endpoint=self.endpoint,
            region=self.region, profile=self.profile, credentials_file=self.credentials_file,
            part_size=self.part_size, part_retry=self.part_retry,
        )  # fmt: skip


def _one_line(value: str) -> str:
    """An rclone.conf value is one line: a line break in one (a key file's path, a
    service account's JSON pasted as it came) wrote lines of its own into photod's
    rclone.conf, keys and sections that nobody set."""
    if any(ch < " " and ch != "\t" for ch in value):
        raise ValueError("holds a line break or control character (not shown: it may be a "
                         "secret), which a value in rclone.conf cannot hold; allowed: one "
                         "line (JSON too goes on one line)")  # fmt: skip
    return value


class RcloneTarget(_RemoteTarget):
    type: Literal["rclone"]
    remote: Annotated[str, Field(pattern=REMOTE_PATTERN)]  # "name:path" of an rclone remote
    # The remote's settings inline ({type = "sftp", host = ...}) instead of in the
    # user's rclone.conf; photod writes them to a private rclone.conf of its own.
    rclone_config: dict[str, Annotated[str, AfterValidator(_one_line)]] | None = None
    config_file: ConfigPath | None = None  # an rclone.conf other than rclone's default

    @property
    def where(self) -> str:
        return self.remote

    def spec(self) -> RcloneSpec:
        inline = tuple(self.rclone_config.items()) if self.rclone_config is not None else None
        return RcloneSpec(
            **self._remote(), remote=self.remote, rclone_config=inline,
            config_file=self.config_file,
        )  # fmt: skip


Target = Annotated[LocalTarget | S3Target | RcloneTarget, Field(discriminator="type")]


class EncryptionConfig(_Strict):
    identity: ConfigPath | None = None  # the age identity (`photod keygen` writes one), mode 600
    # More age recipients every encrypted object is also sealed to (a key kept offline).
    recipients: list[Annotated[str, Field(pattern=RECIPIENT_PATTERN)]] = Field(default_factory=list)


class ScheduleConfig(_Strict):
    """When the proof jobs run (cron lines in local time; a run missed while the
    computer slept or was off happens when it wakes or starts)."""

    scrub: Cron = "30 3 * * *"
    # Most one scrub run reads: bytes ('20GiB') or time ('2h').
    scrub_budget: Budget = (20 * 1024**3, None)
    # Every replica is read again in full at least this often (as far as the budgets
    # allow: `photod status` says when they do not).
    scrub_cycle: Duration = 30 * 86400.0
    # How politely a scrub reads: "idle" (only when nothing else uses the disk), "low"
    # or "normal"; it also runs at a lower CPU priority unless "normal".
    io_priority: Literal["idle", "low", "normal"] = "idle"
    drill: Cron = "0 4 * * 0"
    drill_sample: int = Field(20, ge=1, le=100_000, strict=True)  # files per target
    # false: a scrub or drill that falls due while the computer runs on battery waits
    # for mains power, and runs as soon as it is back (a laptop's battery is spared).
    on_battery: bool = Field(True, strict=True)


class NotifyConfig(_Strict):
    """Who is told when something fails (`photod logs` always has the whole story)."""

    desktop: bool = Field(True, strict=True)  # D-Bus notifications (Linux), osascript (macOS)
    webhook: Annotated[str, Field(pattern=URL_PATTERN)] | None = None
    webhook_format: Literal["json", "ntfy"] = "json"  # json: Gotify, Slack; ntfy: plain text
    email_to: str | None = None
    email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535, strict=True)
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password_file: ConfigPath | None = None  # mode 600
    every: Duration = 3600.0  # the same kind of message at most this often
    grace: Duration = 86400.0  # tell when photos stay short of the policy this long
    # A dead man's switch (healthchecks.io and the like): pinged after each healthy
    # round, its "/fail" form after one that is not (README, "Being told").
    heartbeat_url: Annotated[str, Field(pattern=URL_PATTERN)] | None = None
    # Tell when no round finished for this long ("photod: backups stopped"); 0: never.
    stale_after: Duration = 86400.0


class DaemonConfig(_Strict):
    # This installation's name on shared targets (a family's computers may back up to
    # the same drive, NAS or bucket): the host name by default.
    instance: Name | None = None
    state_dir: ConfigPath | None = None
    log_dir: ConfigPath | None = None
    runtime_dir: ConfigPath | None = None  # the control socket; default: the platform runtime dir
    workers: int = Field(4, ge=1, le=32, strict=True)
    # How politely the whole daemon runs: "idle" I/O (only when nothing else uses the
    # disk) and nice 10 by default, as the systemd units set it; "low"; "normal".
    priority: Literal["idle", "low", "normal"] = "idle"
    rescan_interval: Duration = 900.0
    retry_interval: Duration = 30.0
    retry_max: Duration = 3600.0
    log_max_size: Size = 10 * 1024**2
    log_keep: int = Field(5, ge=1, le=100, strict=True)


class DashboardConfig(_Strict):
    """The local web dashboard the daemon serves (`photod dashboard` logs in)."""

    enabled: bool = Field(True, strict=True)
    listen: Listen = ("127.0.0.1", 8737)  # loopback only; port 0: any free port
    thumbnail_cache: Size = 200 * 1024**2  # thumbnails kept in the state dir, at most


class IngestConfig(_Strict):
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    extra_ignore: list[str] = Field(default_factory=list)
    settle: Duration = 2.0
    decode_check: Literal["full", "fast", "off"] = "fast"
    layout: str = DEFAULT_LAYOUT

    @property
    def ignore_patterns(self) -> tuple[str, ...]:
        return (*self.ignore, *self.extra_ignore)


class Config(_Strict):
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    sources: list[Source] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    path: Path | None = Field(default=None, exclude=True)  # the file this came from

    # Under a systemd system unit, StateDirectory= and friends say where (they come
    # before the platform's defaults, after the config's own keys).
    @property
    def state_dir(self) -> Path:
        return self.daemon.state_dir or paths.default_state_dir()

    @property
    def log_dir(self) -> Path:
        import platformdirs

        return (
            self.daemon.log_dir
            or paths.systemd_dir("LOGS_DIRECTORY")
            or Path(platformdirs.user_log_dir(paths.APP))
        )

    @property
    def runtime_dir(self) -> Path:
        chosen = self.daemon.runtime_dir or paths.systemd_dir("RUNTIME_DIRECTORY")
        if chosen is not None:
            return chosen
        import platformdirs

        with warnings.catch_warnings():
            # Without a usable $XDG_RUNTIME_DIR (cron, su) platformdirs warns and uses
            # /tmp/runtime-UID, the same for the daemon and the command line: fine.
            warnings.simplefilter("ignore")
            return Path(platformdirs.user_runtime_dir(paths.APP))

    @property
    def control_socket(self) -> Path:
        return paths.socket_path(self.runtime_dir, self.state_dir)

    @property
    def instance(self) -> str:
        return self.daemon.instance or host_name()

    @property
    def folders(self) -> list[FolderSource]:
        return [s for s in self.sources if isinstance(s, FolderSource)]

    @property
    def iphones(self) -> list[IPhoneSource]:
        return [s for s in self.sources if isinstance(s, IPhoneSource)]

    def source_roots(self) -> dict[str, Path]:
        """Where each source's files are on this computer.  A phone's files are staged
        under the state dir while they are imported (and kept there until at least one
        target holds a verified copy)."""
        return {
            s.name: s.path if isinstance(s, FolderSource) else self.state_dir / "import" / s.name
            for s in self.sources
        }

    @property
    def locals(self) -> list[LocalTarget]:
        return [t for t in self.targets if isinstance(t, LocalTarget)]

    def target_infos(self) -> dict[str, TargetInfo]:
        return {t.name: t.info() for t in self.targets}

    def targets_settings(self) -> TargetsSettings:
        """What ``fleet.build_targets`` makes the targets from."""
        return TargetsSettings(
            tuple(t.spec() for t in self.targets),
            self.state_dir,
            self.encryption.identity,
            tuple(self.encryption.recipients),
        )


def host_name() -> str:
    """The host name as an instance name (letters, digits, '.', '_', '-')."""
    raw = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-._")[:64]
    return name or "photod"


SOURCE_TYPES = ("folder", "iphone")
TARGET_TYPES = ("local", "s3", "rclone")
_PATTERNS = {
    RECIPIENT_PATTERN: "an age recipient, 'age1' and 58 more characters (`photod keygen` prints one)",
    BUCKET_PATTERN: "a bucket name: 3-63 lowercase letters, digits, '.' and '-'",
    REMOTE_PATTERN: "an rclone remote 'name:path' on one line, e.g. 'b2:my-photos' "
    "(`rclone listremotes`)",
    URL_PATTERN: "a URL starting with http:// or https://",
}


def _keypath(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part in (*SOURCE_TYPES, *TARGET_TYPES) and i and isinstance(loc[i - 1], int):
            continue  # pydantic names the union member taken; the file has no such key
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == UDID_PATTERN:
        return (
            f"is {err['input']!r}; allowed: an iPhone UDID, 40 hex digits or "
            "8 and 16 hex digits with a dash (Finder or `idevice_id -l` shows it)"
        )
    if err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == URL_PATTERN:
        # A webhook's or a heartbeat's URL carries its token: never echoed (the
        # message goes to a terminal, a log, a `config_invalid` event).
        return f"is not a URL (not shown: it may hold a token); allowed: {_PATTERNS[URL_PATTERN]}"
    if err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] in _PATTERNS:
        return f"is {err['input']!r}; allowed: {_PATTERNS[err['ctx']['pattern']]}"
    if err["type"] == "string_pattern_mismatch":
        return f"is {err['input']!r}; allowed: letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit"
    if err["type"] == "path_type":  # (pydantic's own words name a Python class)
        shown = str(err["input"]).lower() if isinstance(err["input"], bool) else repr(err["input"])
        return f"is {shown}; allowed: a path in quotes, like '~/Pictures'"
    is_target = bool(err["loc"]) and err["loc"][0] == "targets"
    kinds = TARGET_TYPES if is_target else SOURCE_TYPES
    what = "target" if is_target else "source"
    if err["type"] == "union_tag_invalid":
        return f"{what} type {err['ctx']['tag']!r} is not known; allowed: " + ", ".join(
            repr(t) for t in kinds
        )
    if err["type"] == "union_tag_not_found":
        return "required key 'type' is missing; allowed: " + ", ".join(repr(t) for t in kinds)
    if (
        err["type"].startswith(
            (
                "literal_",
                "int_",
                "bool_",
                "float_",
                "string_",
                "greater",
                "less",
                "list_",
                "model_",
                "dict_",
            )
        )
        or err["type"] == "enum"
    ):
        # One style for every value refused, pydantic's checks and photod's own alike:
        # "is 'three'; allowed: a whole number".
        shown = str(err["input"]).lower() if isinstance(err["input"], bool) else repr(err["input"])
        return f"is {shown}; allowed: {_allowed(err, msg)}"
    return msg


def _allowed(err: Any, msg: str) -> str:
    """What a key takes, from pydantic's error: its type's name for it, or its bound."""
    ctx = err.get("ctx") or {}
    kind = err["type"].split("_")[0]
    named = {"int": "a whole number", "bool": "true or false", "float": "a number",
             "string": "text in quotes", "list": "a list like [\"a\", \"b\"]",
             "dict": "a table", "model": "a table"}  # fmt: skip
    bounds = (("ge", "{} or more"), ("gt", "more than {}"), ("le", "{} or less"),
              ("lt", "less than {}"))  # fmt: skip
    for key, words in bounds:
        if key in ctx:
            return words.format(ctx[key])
    if err["type"] in ("literal_error", "enum") or kind not in named:
        rest = msg.removeprefix("Input should be ")
        return f"{rest[0].lower()}{rest[1:]}"
    return named[kind]


def _resolve_target(t: LocalTarget | S3Target | RcloneTarget, base: Path, at: str) -> Any:
    keys = ("path", "credentials_file", "config_file")
    update: dict[str, Any] = {
        k: paths.resolve(v, base, f"{at}.{k}")
        for k in keys
        if k in type(t).model_fields and (v := getattr(t, k)) is not None
    }
    if isinstance(t, RcloneTarget) and t.rclone_config:
        # An inline remote's files (key_file, known_hosts_file, service_account_file,
        # Azure's client_certificate_path) are read from the config's folder as every
        # path in it is: rclone read a relative one from photod's working folder (the
        # service's: home or /), and the key was found in a terminal opened there only.
        # "$VAR/..." is rclone's own.
        update["rclone_config"] = {
            k: str(paths.resolve(Path(v), base, f"{at}.rclone_config.{k}"))
            if k.endswith(("_file", "_path")) and v and not v.startswith("$")
            else v
            for k, v in t.rclone_config.items()
        }
    return t.model_copy(update=update)


def secret_files(cfg: Config) -> list[tuple[str, Path]]:
    """(key path, file) of every file that holds a secret: the age identity and the
    credentials files."""
    files: list[tuple[str, Path]] = []
    if cfg.encryption.identity is not None:
        files.append(("encryption.identity", cfg.encryption.identity))
    if cfg.notify.smtp_password_file is not None:
        files.append(("notify.smtp_password_file", cfg.notify.smtp_password_file))
    for i, t in enumerate(cfg.targets):
        if isinstance(t, S3Target) and t.credentials_file is not None:
            files.append((f"targets[{i}].credentials_file", t.credentials_file))
        if isinstance(t, RcloneTarget) and t.config_file is not None:
            files.append((f"targets[{i}].config_file", t.config_file))
    return files


def inline_secrets(cfg: Config) -> list[str]:
    """Keys of the config file itself that hold a secret: an rclone remote's settings
    (passwords, tokens), a webhook URL (its token)."""
    keys = [f"targets[{i}].rclone_config.{name}" for i, t in enumerate(cfg.targets)
            if isinstance(t, RcloneTarget) and t.rclone_config
            for name, value in t.rclone_config.items() if _is_secret(name, value)]  # fmt: skip
    return keys + [f"notify.{name}" for name in NOTIFY_SECRETS if getattr(cfg.notify, name)]


# The notifications' URLs that hold a token (a heartbeat's: whoever has it can ping
# "all is well").
NOTIFY_SECRETS = ("webhook", "heartbeat_url")


def without_secrets(cfg: Config, mark: str = "<secret>") -> Config:
    """The config with each secret it holds inline (``inline_secrets``) replaced by
    ``mark``: what may be told beyond this computer, a hash of it too (the catalog,
    which every target keeps a copy of, names the config its last snapshot was
    written by)."""
    targets = [
        t.model_copy(update={"rclone_config": {k: mark if _is_secret(k, v) else v
                                               for k, v in t.rclone_config.items()}})
        if isinstance(t, RcloneTarget) and t.rclone_config
        else t
        for t in cfg.targets
    ]  # fmt: skip
    hidden = {name: mark for name in NOTIFY_SECRETS if getattr(cfg.notify, name)}
    return cfg.model_copy(
        update={"targets": targets, "notify": cfg.notify.model_copy(update=hidden)}
    )


# Names of rclone options that hold a credential (pass, password2, token, client_secret,
# secret_access_key, key, sas_url, service_account_credentials, ...): a name that merely
# points at a file (key_file, service_account_file) holds none, nor does an empty value.
# Also those whose names say less (storj's access_grant, azurefiles' connection_string,
# http's headers, iCloud's cookies, a SAS), and a URL with a password in it.
_SECRET_WORDS = ("pass", "token", "secret", "key", "credentials", "sas", "auth", "grant",
                 "connection_string", "header", "cookie")  # fmt: skip


def _is_secret(name: str, value: str) -> bool:
    name = name.lower()
    if not value or name.endswith("_file"):
        return False
    # A URL with a user and password in it (https://alice:hunter2@dav.example.org/)
    userinfo = value.partition("://")[2].partition("/")[0].rpartition("@")[0]
    return ":" in userinfo or any(w in name for w in _SECRET_WORDS)


is_secret = _is_secret  # the recovery plan marks the same values


def _remotes_overlapping(targets: list[Target]) -> list[str]:
    """Two S3 or rclone targets where one's objects are inside the other's (one bucket,
    prefixes "photos/" and "photos/enc/"): a rebuild from the outer one would take the
    inner one's objects (ciphertext, lists, markers) for photos, and restore them."""
    places: list[tuple[int, tuple[str, ...], str]] = []  # (index, the store, the path in it)
    for ti, t in enumerate(targets):
        if isinstance(t, S3Target):
            places.append((ti, ("s3", (t.endpoint or "").rstrip("/"), t.bucket), t.prefix))
        elif isinstance(t, RcloneTarget):
            name, _, path = t.remote.partition(":")
            places.append(
                (ti, ("rclone", name, repr(sorted((t.rclone_config or {}).items()))), path)
            )
    problems = []
    for i, (ti, store, path) in enumerate(places):
        for tj, other, other_path in places[:i]:
            a, b = path.strip("/"), other_path.strip("/")
            if store == other and (not a or not b or a == b or a.startswith(b + "/")
                                   or b.startswith(a + "/")):  # fmt: skip
                problems.append(
                    f"targets[{ti}]: {targets[ti].name!r} ({targets[ti].where}) overlaps "
                    f"targets[{tj}]: {targets[tj].name!r} ({targets[tj].where}); each "
                    "target needs a prefix or folder of its own, neither inside the other"
                )
    return problems


def _not_trusted(path: Path) -> str:
    """Why nobody but photod's user may have written this config ('' when none): it
    says what photod reads and where it copies it.  As ssh asks of its own config:
    its owner is this user or root (through a link too), and not every user may write
    it (a group's write is left alone: many systems give each user a group of one)."""
    try:
        st = path.stat()
    except OSError:
        return ""  # (load() has read it: gone since, the next reload says so)
    allowed = "allowed: a config of your own (or root's) that only its owner may change"
    if st.st_uid not in (os.geteuid(), 0):
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        real = path.resolve()
        it = f"links to {real}, a file" if real != path else "is a file"
        return f"{it} of user {owner}, who could make photod copy your photos anywhere; {allowed}"
    if st.st_mode & 0o002:
        return (f"every user may change it (mode {st.st_mode & 0o777:03o}); {allowed}, "
                f"run `chmod 600 {path}`")  # fmt: skip
    return ""


def check_secrets(cfg: Config, lost_identity_ok: bool = False) -> None:
    """Refuse secrets others can read, as ssh does with private keys: a key readable
    by the group or everyone has to be assumed copied.  The config file itself too,
    when it holds one, and whenever another user could have written it.  ``lost_identity_ok``: a missing age identity is no problem here
    (a restore goes on from the targets that are not encrypted)."""
    where = str(cfg.path)
    problems = (
        [f"{where}: {why}"] if cfg.path is not None and (why := _not_trusted(cfg.path)) else []
    )
    held = inline_secrets(cfg)
    if held and cfg.path is not None:
        try:
            mode = cfg.path.stat().st_mode & 0o777
        except OSError:
            mode = 0
        if mode & 0o077:
            problems.append(
                f"{where}: {held[0]}: the config holds a secret and is readable by others "
                f"(mode {mode:03o}); allowed: only its owner, run `chmod 600 {where}`"
            )
    for key, path in secret_files(cfg):
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            if lost_identity_ok and "identity" in key:
                continue
            hint = (" (create it with `photod keygen --output FILE`; if it was lost, put your"
                    " copy back: a new key does not open what was encrypted with the old one)"
                    if "identity" in key else "")  # fmt: skip
            problems.append(f"{where}: {key}: {path} does not exist{hint}")
            continue
        except OSError as exc:
            problems.append(f"{where}: {key}: cannot read {path}: {exc.strerror}")
            continue
        if mode & 0o077:
            problems.append(
                f"{where}: {key}: {path} is readable by others (mode {mode:03o}); "
                f"allowed: only its owner, run `chmod 600 {path}`"
            )
        elif key.endswith("].credentials_file") and not _ini(path):
            # (botocore's own parse of it raised, a traceback that stopped the daemon)
            problems.append(f"{where}: {key}: {path} is not an AWS credentials file "
                            "([profile] sections of key = value lines)")  # fmt: skip
    if problems:
        raise ConfigError(problems)


def _ini(path: Path) -> bool:
    """Whether a file reads as botocore reads a credentials file (an unreadable one is
    said by the one who reads it)."""
    import configparser  # only an S3 target's credentials file is one (2 ms of a start)

    try:
        configparser.RawConfigParser().read_string(path.read_text())
    except configparser.Error:
        return False
    except (OSError, UnicodeDecodeError):
        pass
    return True


def _on_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: never a name that merely starts like one."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warnings_for(cfg: Config) -> list[str]:
    """What works but is worth knowing: an S3 endpoint over plain http that is not on
    this computer sends photos (and credentials' signatures) in clear; one on this
    computer counted as offsite is offsite only through a tunnel."""
    out = []
    for i, t in enumerate(cfg.targets):
        if not (isinstance(t, S3Target) and t.endpoint):
            continue
        url = urllib.parse.urlsplit(t.endpoint)
        if t.offsite and _on_loopback(url.hostname or ""):
            out.append(f"{cfg.path}: targets[{i}].endpoint: {t.endpoint} is this computer, and "
                       "the target counts as offsite: right only through a tunnel to a server "
                       "elsewhere; else set offsite = false")  # fmt: skip
        if url.scheme.lower() == "http" and not _on_loopback(url.hostname or ""):
            clear = "photos and metadata" if not t.encrypt else "metadata (names are sealed)"
            out.append(f"{cfg.path}: targets[{i}].endpoint: {t.endpoint} is plain http: "
                       f"{clear} travel in clear; use https://")  # fmt: skip
    return out


def _cross_checks(cfg: Config) -> list[str]:
    """Rules that span keys: unique names, no target inside a watch folder, a policy
    the targets can meet, a layout that renders."""
    problems: list[str] = []
    sections = (
        ("sources", [s.name for s in cfg.sources]),
        ("targets", [t.name for t in cfg.targets]),
    )
    for section, names in sections:
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                problems.append(
                    f"{section}[{i}].name: {name!r} is already the name of "
                    f"{section}[{seen[name]}]; names must be unique"
                )
            seen.setdefault(name, i)
    state = cfg.state_dir.resolve()
    for si, source in enumerate(cfg.sources):
        if not isinstance(source, FolderSource):
            continue
        s = source.path.resolve()
        if s == state or s in state.parents or state in s.parents:
            # Its thumbnails (JPEGs) and the phones' staged photos would be backed up
            # as photos, and a thumbnail of each of those in turn.
            problems.append(
                f"sources[{si}].path: {source.path} overlaps photod's "
                f"state dir ({cfg.state_dir}: its catalog, thumbnails and the phones' "
                "staged files); keep watch folders and the state dir apart"
            )
    for ti, target in enumerate(cfg.targets):
        if not isinstance(target, LocalTarget):
            continue
        for si, source in enumerate(cfg.sources):
            if not isinstance(source, FolderSource):
                continue
            t, s = target.path.resolve(), source.path.resolve()
            if t == s or s in t.parents:
                problems.append(
                    f"targets[{ti}].path: {target.path} is inside watch folder "
                    f"sources[{si}].path ({source.path}); photod would back up its own backups"
                )
            elif t in s.parents:
                problems.append(
                    f"sources[{si}].path: {source.path} is inside target "
                    f"targets[{ti}].path ({target.path}); keep watch folders outside targets"
                )
        for tj in range(ti):
            earlier = cfg.targets[tj]
            if not isinstance(earlier, LocalTarget):
                continue
            other, t = earlier.path.resolve(), target.path.resolve()
            if t == other or other in t.parents or t in other.parents:
                problems.append(
                    f"targets[{ti}].path: {target.path} overlaps targets[{tj}].path "
                    f"({earlier.path}); each target needs its own folder"
                )
    problems += _remotes_overlapping(cfg.targets)
    for ti, target in enumerate(cfg.targets):
        if not isinstance(target, RcloneTarget):
            continue
        backend = (target.rclone_config or {}).get("type")
        if backend in ("local", "alias") and not {"media", "offsite"} <= target.model_fields_set:
            problems.append(
                f"targets[{ti}].offsite: remote {target.remote!r} is a folder on this computer "
                f"(type = {backend!r}), not a cloud offsite: set media and offsite for where it "
                "really is (a local target is the usual way to a folder)"
            )
    if cfg.notify.email_to and not cfg.notify.smtp_host:
        problems.append("notify.email_to: needs notify.smtp_host, the server that sends it")
    encrypted = [i for i, t in enumerate(cfg.targets) if t.encrypt]
    if encrypted and cfg.encryption.identity is None:
        problems.append(
            f"targets[{encrypted[0]}].encrypt: needs [encryption] identity = FILE: the "
            "identity file its copies were sealed with (after a disaster, the copy you kept: "
            "a new key opens none of them); for a new target, create one with `photod "
            "keygen --output FILE`"
        )
    for why in policy.achievable(cfg.policy.rule(), [t.info() for t in cfg.targets]):
        problems.append(f"policy: {why}; add targets or lower the policy")
    try:
        sample = {f: "x" for f in LAYOUT_FIELDS}
        rendered = cfg.ingest.layout.format(**sample)
        if (
            "{" in rendered
            or "}" in rendered
            or not ("name" in cfg.ingest.layout or "stem" in cfg.ingest.layout)
        ):
            raise ValueError
        if rendered.startswith("/") or ".." in rendered.split("/"):
            raise ValueError
    except (KeyError, ValueError, IndexError):
        problems.append(
            f"ingest.layout: {cfg.ingest.layout!r} is not a usable template; allowed "
            f"fields: {', '.join('{' + f + '}' for f in LAYOUT_FIELDS)}, and it must "
            "contain {name} or {stem} and stay relative"
        )
    return problems


def _resolved(cfg: Config, path: Path) -> Config:
    """The config with every path made absolute against the config file's folder (``~``
    expanded).  Raises ConfigError for a ``~user`` of no user of this computer."""
    base = path.parent
    return cfg.model_copy(
        update={
            "path": path,
            "sources": [
                s.model_copy(update={"path": paths.resolve(s.path, base, f"sources[{i}].path")})
                if isinstance(s, FolderSource)
                else s
                for i, s in enumerate(cfg.sources)
            ],
            "targets": [
                _resolve_target(t, base, f"targets[{i}]") for i, t in enumerate(cfg.targets)
            ],
            "notify": cfg.notify.model_copy(
                update={
                    "smtp_password_file": cfg.notify.smtp_password_file
                    and paths.resolve(
                        cfg.notify.smtp_password_file, base, "notify.smtp_password_file"
                    )
                }
            ),
            "encryption": cfg.encryption.model_copy(
                update={
                    "identity": cfg.encryption.identity
                    and paths.resolve(cfg.encryption.identity, base, "encryption.identity")
                }
            ),
            "daemon": cfg.daemon.model_copy(
                update={
                    k: paths.resolve(v, base, f"daemon.{k}")
                    for k in ("state_dir", "log_dir", "runtime_dir")
                    if (v := getattr(cfg.daemon, k)) is not None
                }
            ),
        }
    )


def parse(text: str, path: Path, cached: bool = False) -> Config:
    """Validate TOML text; raise ConfigError with one line per problem.  ``cached``: the
    schema check of these very bytes may be the one kept in the state dir
    (``configcache``), and is kept there when it is not; all that follows it (paths
    resolved, the checks across keys) runs every time."""
    path = path.absolute()
    _text_path(path)
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from exc
    except RecursionError as exc:  # (tomllib's parser recurses: tables nested thousands deep)
        raise ConfigError([f"{where}: not valid TOML: nested too deep"]) from exc
    folder, key = (
        (paths.unchecked_state_dir(data, path.parent), _cache_key(text)) if cached else (None, b"")
    )
    kept = configcache.read(folder, key, _CACHEABLE) if folder and key else None
    try:
        cfg = kept if isinstance(kept, Config) else Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{where}: {_keypath(e['loc'])}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(lines) from exc
    checked = cfg  # what the schema check gave, before its paths are resolved: kept
    try:
        cfg = _resolved(cfg, path)
    except ConfigError as exc:
        raise ConfigError([f"{where}: {p}" for p in exc.problems]) from None
    problems = [f"daemon.{k}: (default) {paths.not_text(v)}" for k, v in
                (("state_dir", cfg.state_dir), ("log_dir", cfg.log_dir)) if not paths.is_text(v)]  # fmt: skip
    if not problems and (
        deep := paths.state_dir_too_deep(cfg.state_dir, [s.name for s in cfg.iphones])
    ):
        problems.append(f"daemon.state_dir: {deep}")
    problems += _cross_checks(cfg)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    if folder is not None and key and checked is not kept and folder == cfg.state_dir:
        configcache.write(folder, key, checked)
    return cfg


# The code that decides what a file's bytes validate to: a kept check stands for these
# modules' files as they are.
_CHECKED_BY = (
    "photod.config",
    "photod.media",
    "photod.models",
    "photod.schedules",
    "photod.units",
    "cronsim",
    "pydantic",
    "pydantic_core",
)
# All a kept check may be made of: this file's models, the media kinds and paths.
_CACHEABLE: tuple[type, ...] = (
    Media,
    type(Path()),
    *(m for m in list(globals().values()) if isinstance(m, type) and issubclass(m, _Strict)),
)


def _cache_key(text: str) -> bytes:
    return configcache.key(text.encode(), _CHECKED_BY)


LAST_GOOD = "config.lastgood"  # in the state dir: the text of the config the daemon runs on


def keep_last_good(cfg: Config) -> None:
    """The daemon keeps the text of the config it runs on (private, in its state dir):
    when the file is later broken by an edit, `photod status`, `logs`, `pause`... still
    reach the daemon, which runs on this one.  The file is read and checked again: an
    edit since the start must not be kept as good.  Best effort."""
    if cfg.path is None:
        return
    with contextlib.suppress(OSError, UnicodeDecodeError, ConfigError):
        text = cfg.path.read_text(encoding="utf-8-sig")
        parse(text, cfg.path, cached=True)  # (these bytes were just checked: the kept check)
        if _private_bytes(cfg.state_dir / LAST_GOOD) == text.encode():
            return  # kept already, as it is: no rewrite and two fsyncs at every start
        # (a write that fails, the state dir full, removes its temporary)
        durable.write_atomic(cfg.state_dir / LAST_GOOD, text.encode())


def _private_bytes(path: Path) -> bytes | None:
    """The bytes of this user's own private regular file (reached through no link);
    None when it is not one, or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        return f.read()


def last_good(path: Path) -> Config | None:
    """The config the daemon last ran on, for a config file that is broken now (its
    state dir found from the broken file's keys where they can be read, else the
    default); None when there is none, or it is not this user's own private file."""
    path = path.expanduser().absolute()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    folder = paths.unchecked_state_dir(data, path.parent)
    if folder is None:
        return None
    kept = _private_bytes(folder / LAST_GOOD)
    if kept is None:
        return None
    try:
        return parse(kept.decode("utf-8"), path)
    except (ConfigError, UnicodeDecodeError):
        return None


def _text_path(path: Path) -> None:
    """The config file's own path is UTF-8 text: the paths in it may be relative to
    its folder, and every message names it."""
    if not paths.is_text(path):
        raise ConfigError([f"the config file's path {paths.not_text(path)}"])


def load(path: Path, cached: bool = False) -> Config:
    path = path.expanduser().absolute()
    _text_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(
            [
                f"{path}: no such config file; run `photod run` once to write a "
                "default one, or write one from the example `photod config example` prints"
            ]
        ) from exc
    except UnicodeDecodeError as exc:  # (its offset in bytes is nothing an editor shows)
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: byte 0x{exc.object[exc.start]:02x} is not "
                           "UTF-8; allowed: UTF-8 text (save the file as UTF-8)"]) from exc  # fmt: skip
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config: {exc}"]) from exc
    return parse(text, path, cached)


DEFAULT_CONFIG = """\
# photod configuration, written by `photod run` because no config existed.
# Every key is documented in the example config: `photod config example`.
#
# Drop photos and videos into the inbox folder, or plug in an iPhone: photod copies
# every original, byte for byte, to each target below and verifies every copy.

[policy]
# The 3-2-1 rule is the goal: copies = 3, media = 2, offsite = 1.  With only the one
# library folder below, photod can keep one verified copy; add an external drive and
# an offsite target, then raise these numbers.  `photod status` says what is missing.
copies = 1
media = 1
offsite = 0

[[sources]]
name = "inbox"
type = "folder"
path = "{inbox}"

[[sources]]
# Plug in an iPhone and every photo and video on it that photod has not seen is
# imported.  Needs usbmuxd: built into macOS; `sudo apt install usbmuxd` on
# Debian/Ubuntu.  The first time, unlock the phone and tap Trust.
name = "iphone"
type = "iphone"

[[targets]]
name = "library"
type = "local"
path = "{library}"
media = "internal"      # internal | external | nas | cloud
offsite = false
"""


def write_default(path: Path) -> tuple[Path, Path]:
    """Write the commented default config and create its folders; return them."""
    home = Path.home()
    inbox, library = home / "Pictures" / "Inbox", home / "Pictures" / "photod"
    inbox.mkdir(parents=True, exist_ok=True)
    library.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = DEFAULT_CONFIG.format(inbox=_tilde(inbox, home), library=_tilde(library, home))
    try:
        # Never overwrite a config; private from the start, as it may come to hold a
        # secret (an rclone password, a webhook's token) that check_secrets guards.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise PhotodError(f"cannot write the default config to {path}: {exc}") from exc
    return inbox, library


def _tilde(p: Path, home: Path) -> str:
    try:
        return "~/" + p.relative_to(home).as_posix()
    except ValueError:
        return str(p)
