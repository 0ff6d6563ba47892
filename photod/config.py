"""Load and validate photod.toml.  The only module that imports pydantic.

Every problem becomes one line: ``FILE: key.path: what is wrong; what is allowed``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from photod import policy
from photod.errors import ConfigError, PhotodError
from photod.media import DEFAULT_IGNORE, DEFAULT_LAYOUT, LAYOUT_FIELDS
from photod.models import Media, PolicyRule, TargetInfo

APP = "photod"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: Any) -> int:
    """'1GiB', '500 MB', 1024 -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if isinstance(value, str)
        else None
    )
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(
            f"is {value!r}; allowed: a byte count or a size like '100MiB', '2GB', '1TiB'"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(value: Any) -> float:
    """'2s', '15m', '1h', 30 -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value))
        if isinstance(value, str)
        else None
    )
    if not m or (m.group(2) or "s") not in _SECONDS:
        raise ValueError(
            f"is {value!r}; allowed: seconds or a duration like '500ms', '2s', '15m', '1h', '7d'"
        )
    return float(m.group(1)) * _SECONDS[m.group(2) or "s"]


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
    path: Path
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
    # Longest wait for one answer from the phone before the link counts as stalled.
    timeout: Duration = 30.0


Source = Annotated[FolderSource | IPhoneSource, Field(discriminator="type")]


class LocalTarget(_Strict):
    name: Name
    type: Literal["local"]
    path: Path
    media: Media = Media.INTERNAL
    offsite: bool = Field(False, strict=True)
    create: bool | None = Field(
        None, strict=True
    )  # None: create the folder only for internal targets
    reserve: Size = 64 * 1024**2  # free space always left on the target

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)

    @property
    def creates_root(self) -> bool:
        return self.media is Media.INTERNAL if self.create is None else self.create


class DaemonConfig(_Strict):
    state_dir: Path | None = None
    log_dir: Path | None = None
    workers: int = Field(2, ge=1, le=32, strict=True)
    rescan_interval: Duration = 900.0
    retry_interval: Duration = 30.0
    retry_max: Duration = 3600.0
    log_max_size: Size = 10 * 1024**2
    log_keep: int = Field(5, ge=1, le=100, strict=True)


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
    targets: list[LocalTarget] = Field(default_factory=list)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)

    path: Path | None = Field(default=None, exclude=True)  # the file this came from

    @property
    def state_dir(self) -> Path:
        return self.daemon.state_dir or Path(platformdirs.user_state_dir(APP))

    @property
    def log_dir(self) -> Path:
        return self.daemon.log_dir or Path(platformdirs.user_log_dir(APP))

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

    def target_infos(self) -> dict[str, TargetInfo]:
        return {t.name: t.info() for t in self.targets}


def default_config_path() -> Path:
    env = os.environ.get("PHOTOD_CONFIG")
    if env:
        return Path(env).expanduser()
    user = Path(platformdirs.user_config_dir(APP)) / "photod.toml"
    system = Path("/etc/photod/photod.toml")
    return system if not user.exists() and system.exists() else user


SOURCE_TYPES = ("folder", "iphone")


def _keypath(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part in SOURCE_TYPES and i and isinstance(loc[i - 1], int):
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
    if err["type"] == "string_pattern_mismatch":
        return f"is {err['input']!r}; allowed: letters, digits, '.', '_' and '-', up to 64, starting with a letter or digit"
    if err["type"] == "union_tag_invalid":
        return f"source type {err['ctx']['tag']!r} is not known; allowed: " + ", ".join(
            repr(t) for t in SOURCE_TYPES
        )
    if err["type"] == "union_tag_not_found":
        return "required key 'type' is missing; allowed: " + ", ".join(
            repr(t) for t in SOURCE_TYPES
        )
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
        return f"{msg[0].lower()}{msg[1:]} (got {err['input']!r})"
    return msg


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path)


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
    for ti, target in enumerate(cfg.targets):
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
            other = cfg.targets[tj].path.resolve()
            t = target.path.resolve()
            if t == other or other in t.parents or t in other.parents:
                problems.append(
                    f"targets[{ti}].path: {target.path} overlaps targets[{tj}].path "
                    f"({cfg.targets[tj].path}); each target needs its own folder"
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


def parse(text: str, path: Path) -> Config:
    """Validate TOML text; raise ConfigError with one line per problem."""
    path = path.absolute()
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from exc
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{where}: {_keypath(e['loc'])}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(lines) from exc
    base = path.parent
    cfg = cfg.model_copy(
        update={
            "path": path,
            "sources": [
                s.model_copy(update={"path": _resolve(s.path, base)})
                if isinstance(s, FolderSource)
                else s
                for s in cfg.sources
            ],
            "targets": [t.model_copy(update={"path": _resolve(t.path, base)}) for t in cfg.targets],
            "daemon": cfg.daemon.model_copy(
                update={
                    k: _resolve(v, base)
                    for k in ("state_dir", "log_dir")
                    if (v := getattr(cfg.daemon, k)) is not None
                }
            ),
        }
    )
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    return cfg


def load(path: Path) -> Config:
    path = path.expanduser().absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            [
                f"{path}: no such config file; run `photod run` once to write a "
                "default one, or copy etc/photod.example.toml"
            ]
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the config: {exc}"]) from exc
    return parse(text, path)


DEFAULT_CONFIG = """\
# photod configuration, written by `photod run` because no config existed.
# Every key is documented in etc/photod.example.toml of the photod source.
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
        with open(path, "x", encoding="utf-8") as f:  # never overwrite a config
            f.write(text)
    except OSError as exc:
        raise PhotodError(f"cannot write the default config to {path}: {exc}") from exc
    return inbox, library


def _tilde(p: Path, home: Path) -> str:
    try:
        return "~/" + p.relative_to(home).as_posix()
    except ValueError:
        return str(p)
