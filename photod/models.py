"""Plain, frozen records shared by every part of photod.  No I/O here."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple


class IngestResult(enum.StrEnum):
    """What one ingest did with a file (the values are what the catalog and the log say)."""

    STORED = "stored"  # new bytes: copied to the targets
    KNOWN = "known"  # bytes photod already holds: recorded at this place too
    UNCHANGED = "unchanged"  # the same file as at the last look: nothing to do
    IGNORED = "ignored"  # not a photo or video (nor a sidecar of one)
    SKIPPED = "skipped"  # refused (a link, not a file, unreadable...): one file_skipped
    GONE = "gone"  # removed before it could be read


class Kind(enum.StrEnum):
    PHOTO = "photo"
    VIDEO = "video"
    RAW = "raw"
    SIDECAR = "sidecar"


class Media(enum.StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"
    NAS = "nas"
    CLOUD = "cloud"


class VerifyMethod(enum.StrEnum):
    READBACK = "readback"  # bytes read back from the target after fsync and hashed
    EXISTING = "existing"  # a file already on the target was hashed and matched
    SERVER = "server"  # the server checked each request's Content-MD5 before storing it,
    # or its own hash of what it stored is photod's (an rclone remote's SHA-256 or MD5)


class Probe(NamedTuple):
    """What photod learned about a file's content before copying it."""

    kind: Kind
    format: str  # sniffed container: "jpeg", "heif", "quicktime", "mp4", ... or "unknown"
    captured_at: datetime  # aware when the offset is known, local time otherwise
    capture_source: str  # "exif", "quicktime", "mtime"
    decodable: bool | None  # None: not checked (videos, sidecars)
    problem: str = ""  # why it does not decode, when it does not


class TargetInfo(NamedTuple):
    """What the policy needs to know about a target."""

    name: str
    media: Media
    offsite: bool


class PolicyRule(NamedTuple):
    copies: int = 3
    media: int = 2
    offsite: int = 1


class Compliance(NamedTuple):
    """The policy's answer for one asset."""

    copies: int
    media: int
    offsite: int
    missing: tuple[str, ...] = ()

    @property
    def compliant(self) -> bool:
        return not self.missing


class Asset(NamedTuple):
    sha256: str
    size: int
    kind: Kind
    relpath: str
    captured_at: str


class Replica(NamedTuple):
    asset: str
    target: str
    relpath: str
    size: int
    verified_at: str
    method: VerifyMethod


class ManifestEntry(NamedTuple):
    """One verified object as a target's list (or encrypted index) records it.  A plain
    list keeps only the hash and the key: size -1, capture time '' and file time None
    where the format keeps none."""

    sha256: str
    key: str
    size: int = -1
    captured_at: str = ""
    mtime_ns: int | None = None
