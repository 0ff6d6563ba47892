"""How an upload to an rclone remote is proved: by the remote's own hash of the object,
where it says one without reading it, else by the bytes read back and hashed.

A bucket store keeps no SHA-256 (S3, GCS and Azure an MD5, B2 a SHA-1), and a photo
proved by reading it back was downloaded again: twice the traffic, and on a cloud an
egress charge for each.  The writer computes the remote's hash of the bytes it sends,
in the same pass as their SHA-256, and the remote's own answer for what it stored (on
S3 a single PUT's ETag; after a multipart upload, the MD5 rclone kept in its metadata,
or none) must be that.  Not a hash the remote computes only when asked (rclone's
``SlowHash``: an SFTP NAS runs md5sum over the whole file): there the bytes are read
back, which needs no command on the NAS.  Nor another remote's (WebDAV, cloud drives),
whose hash may be only the one rclone sent with the file (Nextcloud's ``OC-Checksum``),
which proves nothing of what it stored.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from photod.errors import TargetUnavailable
from photod.models import VerifyMethod
from photod.targets.base import CHUNK

if TYPE_CHECKING:
    from photod.targets.rclone import RcloneTarget

OTHERS = ("md5", "sha1")  # a remote's own hashes that prove an upload, after SHA-256


def proof_hash(fsinfo: dict[str, Any]) -> str:
    """The hash an upload to the remote is proved by, from its ``operations/fsinfo``:
    its SHA-256 (which a remote may keep, or rclone compute: a local folder's), else
    where a bucket store keeps it at no cost (``BucketBased``, in ``Hashes``, and no
    ``SlowHash``), its MD5 or SHA-1."""
    hashes = fsinfo.get("Hashes") or []
    features = fsinfo.get("Features") or {}
    if "sha256" in hashes or features.get("SlowHash") or not features.get("BucketBased"):
        return "sha256"
    return next((kind for kind in OTHERS if kind in hashes), "sha256")


def remote_sha256(
    t: RcloneTarget, key: str, sha256: str, kind: str = "sha256", digest: str = ""
) -> tuple[str, VerifyMethod]:
    """The SHA-256 of an object: ``sha256`` where the remote's own ``kind`` hash of it
    is ``digest`` (that of the bytes sent: ``sha256`` itself when empty), else the
    bytes read back and hashed: where the remote gives none (S3 after a multipart
    upload rclone kept no MD5 of), and where it gives another: the bytes read back judge
    (a copy damaged there is refused by its SHA-256, as before)."""
    item = t.call("operations/stat", fs=t.remote, remote=key,
                  opt={"hashTypes": [kind]}).get("item") or {}  # fmt: skip
    theirs = str((item.get("Hashes") or {}).get(kind, "")).lower()
    if theirs and theirs == (digest or sha256):
        return sha256, VerifyMethod.SERVER
    h = hashlib.sha256()
    try:
        with t.open(key) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise TargetUnavailable(t.name, str(exc)) from exc
    return h.hexdigest(), VerifyMethod.READBACK
