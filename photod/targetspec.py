"""What a configured target is, in plain frozen dataclasses: all that
``fleet.build_targets`` needs to make its storage and all that `photod status` shows of
it.  ``config`` builds these from the checked file; a command that keeps them between
runs (``statusconfig``) reads them back without loading pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from photod.models import Media, TargetInfo


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """What every kind of target has."""

    name: str
    type: str  # "local", "s3", "rclone": as the config says it
    where: str  # the folder, bucket or remote, as a person reads it
    media: Media
    offsite: bool
    encrypt: bool
    bandwidth_limit: int | None  # bytes per second
    window: tuple[int, int] | None  # copy only in these local hours
    on_battery: bool

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)


@dataclass(frozen=True, kw_only=True)
class LocalSpec(TargetSpec):
    path: Path
    creates_root: bool
    reserve: int  # bytes always left free


@dataclass(frozen=True, kw_only=True)
class RemoteSpec(TargetSpec):
    """What S3 and rclone targets share: uploads queued and in parallel."""

    transfers: int
    egress_budget: int  # bytes a month the scrub may read back
    on_metered: bool


@dataclass(frozen=True, kw_only=True)
class S3Spec(RemoteSpec):
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    profile: str | None
    credentials_file: Path | None
    part_size: int


@dataclass(frozen=True, kw_only=True)
class RcloneSpec(RemoteSpec):
    remote: str
    rclone_config: tuple[tuple[str, str], ...] | None  # the remote's settings, inline
    config_file: Path | None


@dataclass(frozen=True)
class TargetsSettings:
    """Every configured target, and where their keys and private files are."""

    targets: tuple[TargetSpec, ...]
    state_dir: Path
    identity: Path | None  # the age identity, for the targets that encrypt
    recipients: tuple[str, ...]
