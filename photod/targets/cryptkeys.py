"""The owner's age identity, the recipients an encrypted target's objects are sealed
to, and the key that makes its objects' meaningless names (``crypt``)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

import pyrage
from pyrage import x25519

from photod.errors import PhotodError

DATA = "data/"  # the objects: data/<ab>/<38 hex>


class Keys:
    """The owner's identity, the recipients objects are sealed to, and the name key."""

    def __init__(self, identity_file: Path, extra: Iterable[str] = ()) -> None:
        secret = ""
        for line in identity_file.read_text(encoding="utf-8").splitlines():
            if line.startswith("AGE-SECRET-KEY-"):
                secret = line.strip()
                break
        try:
            self.identity = x25519.Identity.from_str(secret)
            self.recipients = [self.identity.to_public()] + [
                x25519.Recipient.from_str(r) for r in extra
            ]
        except (pyrage.IdentityError, pyrage.RecipientError, ValueError) as exc:
            raise PhotodError(
                f"{identity_file}: not an age identity (expected a line AGE-SECRET-KEY-1...): {exc}"
            ) from exc
        self.file = identity_file
        self.name_key = hmac.digest(secret.encode(), b"photod object names v1", "sha256")

    def object_name(self, key: str) -> str:
        digest = hmac.new(self.name_key, key.encode(), "sha256").hexdigest()
        return f"{DATA}{digest[:2]}/{digest[2:40]}"

    def encrypt(self, data: bytes) -> bytes:
        return bytes(pyrage.encrypt(data, self.recipients))

    def decrypt(self, data: bytes) -> bytes:
        return bytes(pyrage.decrypt(data, [self.identity]))
