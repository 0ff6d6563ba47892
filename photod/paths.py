"""Where photod's own files are, as every command finds them without loading the part
that uses them: the control socket of a state dir."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

SOCKET_NAME = "control.sock"


def socket_path(runtime_dir: Path, state_dir: Path) -> Path:
    """The socket for the daemon of this state dir.  A Unix socket path holds at most
    107 bytes: a deeper runtime dir gets a short private folder in /tmp instead."""
    path = runtime_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= 100:
        return path
    tag = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"photod-{os.getuid()}-{tag}" / SOCKET_NAME
