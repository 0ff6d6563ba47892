"""Failpoints act only where, when and how the environment says, in a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HITS = "from photod import failpoints\nfor i in range(1, 4):\n    print(i, flush=True)\n    failpoints.hit('x')\nprint('done')"


def run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PHOTOD_FAILPOINTS"}
    if spec is not None:
        env["PHOTOD_FAILPOINTS"] = spec
    return subprocess.run([sys.executable, "-c", HITS], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("spec", "code", "printed"),
    [
        (None, 0, "1 2 3 done"),  # unset: nothing happens
        ("y=raise", 0, "1 2 3 done"),  # another failpoint armed
        ("x=raise", 1, "1"),  # the first hit raises
        ("x", 1, "1"),  # raise is the default action
        ("x=2:raise", 1, "1 2"),  # the second hit only
        ("y=kill, x=3:kill", -9, "1 2 3"),  # SIGKILL: no clean-up, no "done"
        ("x=sleep:0.01", 0, "1 2 3 done"),
    ],
)
def test_failpoint_actions(spec: str | None, code: int, printed: str) -> None:
    """Each spec acts on the hits it names and on no other."""
    r = run(spec)
    assert (code, printed) == (r.returncode, " ".join(r.stdout.split()))
    if code == 1:
        assert "FailpointHit: failpoint 'x' hit" in r.stderr
