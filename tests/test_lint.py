"""The house rules hold: ruff lint and format, and mypy --strict on photod/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "cmd",
    [
        [sys.executable, "-m", "ruff", "check", "photod", "tests", "bench"],
        [sys.executable, "-m", "ruff", "format", "--check", "photod", "tests", "bench"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(cmd: list[str]) -> None:
    """Each tool exits 0 on the tree (its output is the failure message)."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert 0 == result.returncode, result.stdout + result.stderr
