"""The old catalogs rebuilds keep aside (``catalog.sqlite.<time>.bak``): their names,
and the end of all but the newest."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path


def aside(db_path: Path, rebuilt: Path) -> Path:
    """The name the catalog a finished rebuild (``rebuilt``) replaces is kept under:
    its time, to the nanosecond (two rebuilds in one second shared one, and the
    second's old catalog went beside the first's WAL: what it kept read as the catalog
    before both); the same at each call, so that a swap killed half way and run again
    keeps a WAL with its file.  Sorted by name, they are in time order."""
    ns = rebuilt.stat().st_mtime_ns
    stamp = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y%m%d-%H%M%S")
    return db_path.with_name(f"{db_path.name}.{stamp}-{ns % 10**9:09d}.bak")


def drop_older(db_path: Path, newest: Path) -> None:
    """Remove the catalogs earlier rebuilds kept (with their WAL; names to the second
    too, of earlier versions), all but ``newest``; one that will not go is left, tried
    at the next."""
    mine = re.compile(re.escape(db_path.name) + r"\.\d{8}-\d{6}(?:-\d{9})?\.bak(?:-wal|-shm)?")
    for old in db_path.parent.iterdir():
        if mine.fullmatch(old.name) and not old.name.startswith(newest.name):
            with contextlib.suppress(OSError):
                old.unlink()
