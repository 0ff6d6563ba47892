"""What `photod status` reads of the config, in plain dataclasses (the targets, the
policy, the sources, the state dir and the daemon's socket), kept in the state dir
between runs so that the command asked most often loads no pydantic (a third of its
time) while nothing has changed.

What is kept stands for the config file's exact bytes, its path, the environment its
paths are resolved in (``~``, the XDG and systemd folders) and the code that builds
it; it is read back only through ``configcache``'s checks (ours, mode 600, its
checksum, these classes only).  Anything else validates the file in full
(``config.parse``, by the caller) and keeps what that gave.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from photod import configcache, paths
from photod.errors import ConfigError
from photod.models import Media, PolicyRule, TargetInfo
from photod.targetspec import LocalSpec, RcloneSpec, S3Spec, TargetsSettings

if TYPE_CHECKING:
    from photod.config import Config

NAME = "status.cache"
# Where a config's relative and default paths lead (paths.resolve, platformdirs).
ENVIRONMENT = (
    "HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
    "STATE_DIRECTORY", "LOGS_DIRECTORY", "RUNTIME_DIRECTORY", "TMPDIR",
)  # fmt: skip
# The code that decides what a file's bytes give here.
CODE = (
    "photod.config", "photod.statusconfig", "photod.targetspec", "photod.models",
    "photod.media", "photod.paths", "photod.units", "photod.schedules", "pydantic",
    "pydantic_core", "platformdirs",
)  # fmt: skip


class SourceView(NamedTuple):
    name: str
    type: str  # "folder" or "iphone"
    path: Path | None  # a folder's
    udids: tuple[str, ...]  # the phones an iphone source takes (none: any)


class StatusSettings(NamedTuple):
    path: Path  # the config file
    state_dir: Path
    control_socket: Path
    rule: PolicyRule
    targets: TargetsSettings
    sources: tuple[SourceView, ...]
    scrub: str  # its cron line
    scrub_cycle: float  # seconds
    scrub_budget: int | None  # bytes a scrub run reads at most

    @property
    def phones(self) -> bool:
        return any(s.type == "iphone" for s in self.sources)

    def target_infos(self) -> dict[str, TargetInfo]:
        return {t.name: t.info() for t in self.targets.targets}


_CLASSES = (
    StatusSettings, SourceView, TargetsSettings, LocalSpec, S3Spec, RcloneSpec, PolicyRule,
    Media, type(Path()),
)  # fmt: skip


def of(cfg: Config) -> StatusSettings:
    """The settings of a checked config."""
    from photod.config import FolderSource

    return StatusSettings(
        path=cfg.path or Path(),
        state_dir=cfg.state_dir,
        control_socket=cfg.control_socket,
        rule=cfg.policy.rule(),
        targets=cfg.targets_settings(),
        sources=tuple(
            SourceView(s.name, s.type, s.path, ())
            if isinstance(s, FolderSource)
            else SourceView(s.name, s.type, None, tuple(s.udids))
            for s in cfg.sources
        ),
        scrub=cfg.schedule.scrub,
        scrub_cycle=cfg.schedule.scrub_cycle,
        scrub_budget=cfg.schedule.scrub_budget[0],
    )


def load(path: Path) -> StatusSettings | None:
    """The settings kept for the config file as it is, else those that checking it in
    full gives (kept then); None when it cannot be read or has errors."""
    kept = Kept(path)
    if kept.settings is not None or kept.text is None:
        return kept.settings
    from photod import config

    try:
        settings = of(config.parse(kept.text, kept.path, cached=True))
    except ConfigError:
        return None
    kept.keep(settings)
    return settings


class Kept:
    """The config file as it is now, and the settings kept for it if any."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().absolute()
        self.text: str | None = None
        self.folder: Path | None = None
        self.key = b""
        self.settings: StatusSettings | None = None
        try:
            self.text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return  # the full check says what is wrong
        self.folder = paths.state_dir_hint(self.text, self.path.parent)
        seen = "\0".join([str(self.path), *(f"{v}={os.environ.get(v, '')}" for v in ENVIRONMENT)])
        self.key = configcache.key(f"{seen}\0{self.text}".encode(errors="surrogateescape"), CODE)
        if self.folder is not None and self.key:
            kept = configcache.read(self.folder, self.key, _CLASSES, NAME)
            self.settings = kept if isinstance(kept, StatusSettings) else None

    def keep(self, settings: StatusSettings) -> None:
        """Keep the settings that checking ``self.text`` in full gave."""
        if self.folder is not None and self.key and self.folder == settings.state_dir:
            configcache.write(self.folder, self.key, settings, NAME)
