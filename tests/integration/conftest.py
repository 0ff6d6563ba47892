"""Integration fixtures: a temp HOME with an inbox, targets and a config for a real
``photod run`` process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Photod, sha256, target_files, write_config

FAST = """
[daemon]
state_dir = "{home}/state"
log_dir = "{home}/log"
retry_interval = "1s"
retry_max = "2s"

[ingest]
settle = "0.5s"
"""


class Setup:
    def __init__(self, home: Path, factory: Callable[[Path], Photod]) -> None:
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir()
        self.factory = factory

    def config(
        self, targets: list[dict[str, Any]], policy: dict[str, int] | None = None, extra: str = ""
    ) -> Path:
        for t in targets:
            t.setdefault("type", "local")
        return write_config(
            self.home / "photod.toml",
            [{"name": "inbox", "type": "folder", "path": str(self.inbox)}],
            targets,
            policy,
            FAST.format(home=self.home) + extra,
        )

    def photod(
        self, targets: list[dict[str, Any]], policy: dict[str, int] | None = None, extra: str = ""
    ) -> Photod:
        return self.factory(self.config(targets, policy, extra))


@pytest.fixture
def setup(tmp_path: Path, photod_factory: Callable[[Path], Photod]) -> Setup:
    return Setup(tmp_path, photod_factory)


def assert_target_holds(root: Path, expected: dict[str, str]) -> None:
    """The target holds exactly the expected files (relpath -> sha256), no temporaries,
    and its manifest passes the stock `sha256sum -c` from its root."""
    assert expected == target_files(root)
    assert [] == [p.name for p in root.rglob(".photod-*.tmp")]
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", ".photod/SHA256SUMS"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert 0 == check.returncode, check.stdout + check.stderr
    assert len(expected) == check.stdout.count(": OK")


__all__ = ["Setup", "assert_target_holds", "sha256"]
