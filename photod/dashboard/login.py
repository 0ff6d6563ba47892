"""`photod dashboard`: a one-time login link, made from the secret only this user can
read, for the dashboard the running daemon says it serves."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from photod.dashboard.auth import login_token, read_secret
from photod.dashboard.server import url_of
from photod.errors import NotRunning, PhotodError
from photod.statelock import running_pid

if TYPE_CHECKING:
    from photod.config import Config


def link(cfg: Config) -> str:
    if not cfg.dashboard.enabled:
        raise PhotodError("the dashboard is off ([dashboard] enabled = false)")
    url = url_of(cfg.state_dir) if running_pid(cfg.state_dir) else None
    key = read_secret(cfg.state_dir)
    if url is None or key is None:
        raise NotRunning(
            "the daemon is not running, or its dashboard is not up (`photod logs "
            "--failures` says why); start it with `photod run` or its service"
        )
    return f"{url}/login?t={login_token(key)}"


def open_in_browser(url: str) -> bool:
    """Open the link where there is a desktop (macOS, or a display on Linux), through
    a private page that forwards to it: a browser started with the link itself would
    show its token to every local user (``ps``, /proc/PID/cmdline)."""
    if sys.platform != "darwin" and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    import html
    import tempfile
    import webbrowser
    from pathlib import Path

    fd, path = tempfile.mkstemp(prefix="photod-login-", suffix=".html")  # mode 600
    with os.fdopen(fd, "w") as f:
        f.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">')
    # (encoded: a '#', '?' or '%' in the temporary folder's name sent the browser elsewhere)
    return webbrowser.open(Path(path).as_uri())
