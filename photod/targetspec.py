"""What a configured target is, in plain frozen records: all that
``fleet.build_targets`` needs to make its storage and all that `photod status` shows of
it.  ``config`` builds these from the checked file; a command that keeps them between
runs (``statusconfig``) reads them back without loading pydantic.

Named tuples, not dataclasses: `photod status` reads these, and generating a
dataclass's methods costs its start a few ms each (``dataclasses`` itself more).  A
named tuple has no fields by inheritance, so each kind lists the nine every target has
first, in the same order: ``TargetSpec`` and ``RemoteSpec`` are the unions callers ask
``isinstance`` of.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from photod.models import Media, TargetInfo


class LocalSpec(NamedTuple):
    # What every kind of target has:
    name: str
    type: str  # "local", "s3", "rclone": as the config says it
    where: str  # the folder, bucket or remote, as a person reads it
    media: Media
    offsite: bool
    encrypt: bool
    bandwidth_limit: int | None  # bytes per second
    window: tuple[int, int] | None  # copy only in these local hours
    on_battery: bool
    # A folder's own:
    path: Path
    creates_root: bool
    reserve: int  # bytes always left free

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)


class S3Spec(NamedTuple):
    name: str  # the nine every target has, as in LocalSpec
    type: str
    where: str
    media: Media
    offsite: bool
    encrypt: bool
    bandwidth_limit: int | None
    window: tuple[int, int] | None
    on_battery: bool
    # What S3 and rclone targets share: uploads queued and in parallel.
    transfers: int
    egress_budget: int  # bytes a month the scrub may read back
    on_metered: bool
    # A bucket's own:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    profile: str | None
    credentials_file: Path | None
    part_size: int
    part_retry: float  # seconds a cut part is sent again before its upload is given up

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)


class RcloneSpec(NamedTuple):
    name: str  # the nine every target has, as in LocalSpec
    type: str
    where: str
    media: Media
    offsite: bool
    encrypt: bool
    bandwidth_limit: int | None
    window: tuple[int, int] | None
    on_battery: bool
    transfers: int  # the three remote targets share, as in S3Spec
    egress_budget: int
    on_metered: bool
    # A remote's own:
    remote: str
    rclone_config: tuple[tuple[str, str], ...] | None  # the remote's settings, inline
    config_file: Path | None

    def info(self) -> TargetInfo:
        return TargetInfo(self.name, self.media, self.offsite)


TargetSpec = LocalSpec | S3Spec | RcloneSpec
RemoteSpec = S3Spec | RcloneSpec  # uploads queued and in parallel


class TargetsSettings(NamedTuple):
    """Every configured target, and where their keys and private files are."""

    targets: tuple[TargetSpec, ...]
    state_dir: Path
    identity: Path | None  # the age identity, for the targets that encrypt
    recipients: tuple[str, ...]
