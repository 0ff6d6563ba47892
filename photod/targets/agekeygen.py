"""A new age identity for an encrypted target (``photod keygen``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pyrage import x25519


def keygen(output: Path) -> str:
    """Write a new identity file readable only by its owner (never over an existing
    file), in age-keygen's format; return its public recipient."""
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return recipient
