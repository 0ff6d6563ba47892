"""One configured target's storage, made from its spec: local, S3 or rclone, sealed by
age where it asks; the storage libraries (boto3, pyrage) load only for a target that
uses them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from photod.models import Media
from photod.targets.base import Target
from photod.targets.local import LocalTarget
from photod.targetspec import LocalSpec, RcloneSpec, S3Spec, TargetSpec

if TYPE_CHECKING:
    from photod.targets.cryptkeys import Keys


def make_target(
    state_dir: Path, t: TargetSpec, keys: Keys | None, owner: str, stop: threading.Event
) -> Target:
    """One configured target, wrapped in encryption when it asks for it; ``owner``:
    this installation's short id; ``stop``: set when photod stops."""
    inner: Target
    if isinstance(t, LocalSpec):
        inner = LocalTarget(
            t.name, t.path, t.creates_root, t.reserve, relocatable=t.media is not Media.INTERNAL,
            owner=owner,
        )  # fmt: skip
    elif isinstance(t, S3Spec):
        from photod.targets.s3 import S3Target  # boto3 takes 0.1 s to load: only when used

        inner = S3Target(
            t.name, t.bucket, t.prefix, t.endpoint, t.region, t.profile, t.credentials_file,
            t.part_size, owner=owner, stop=stop, part_retry=t.part_retry,
        )  # fmt: skip
    else:
        from photod.targets.rclone import RcloneTarget  # http.client, ssl: only when used

        assert isinstance(t, RcloneSpec)
        conf = t.config_file
        if t.rclone_config is not None:
            conf = RcloneTarget.write_inline_config(
                state_dir / "rclone" / f"{t.name}.conf", t.remote, dict(t.rclone_config)
            )
        inner = RcloneTarget(t.name, t.remote, conf, owner=owner)
    if t.encrypt:
        from photod.targets.crypt import CryptTarget  # pyrage: only when a target is sealed

        assert keys is not None  # the config requires [encryption] identity
        return CryptTarget(inner, keys)
    return inner
