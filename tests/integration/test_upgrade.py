"""Targets an older photod wrote, read by this one: the day a user upgrades.

Each test writes the older layout itself, in the words the older photod used (no
stored blob): what it wrote is derived from what this photod writes, then turned
into the older form."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import sha256, target_files
from tests.integration.conftest import Setup
from tests.integration.test_truth import make_photos, three_targets


def _age(*args: str, data: bytes) -> bytes:
    return subprocess.run(["age", *args], input=data, capture_output=True, check=True).stdout


def test_an_encrypted_target_of_a_photod_before_installations_is_rebuilt_from(
    setup: Setup,
) -> None:
    """An encrypted target as photod wrote it before per-installation records (until
    2026-12-02): one sealed index at `.photod/index/<24 hex>` of five-field lines
    (object, SHA-256, size, capture time, path), no `.photod/installations/` and no
    object's own line.  The computer lost, `catalog rebuild --from` it finds every
    photo (it said "0 assets" and exit 0) and `restore` gives each back byte for byte
    under its name."""
    p, _, vault, key = three_targets(setup)
    made = make_photos(setup.inbox, 4)
    assert 0 == p.cli("run", "--once").returncode
    lines = b""
    for segment in vault.glob(".photod/installations/*/index/*.age"):
        lines += _age("-d", "-i", str(key), data=segment.read_bytes())
    old = b"".join(  # object sha size taken path: the file time came later
        b"\t".join(f[:4] + f[5:]) + b"\n"
        for f in (line.split(b"\t") for line in lines.splitlines())
    )
    assert 4 == old.count(b"\n")
    recipient = _age_recipient(key)
    shutil.rmtree(vault / ".photod" / "installations")
    shutil.rmtree(vault / ".photod" / "objects")
    (vault / ".photod" / "index").mkdir()
    (vault / ".photod" / "index" / ("ab" * 12)).write_bytes(_age("-r", recipient, data=old))
    shutil.rmtree(setup.home / "state")
    r = p.cli("catalog", "rebuild", "--from", "vault")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "4 assets" in r.stdout, r.stdout
    dest = setup.home / "restored"
    r = p.cli("restore", str(dest), "--target", "vault")
    assert 0 == r.returncode, r.stdout + r.stderr
    back = target_files(dest)
    assert sorted(made.values()) == sorted(back.values())
    assert sorted(target_files(setup.home / "lib")) == sorted(back)  # the original names
    assert all(sha256(dest / k) == v for k, v in back.items())


def _age_recipient(key: Path) -> str:
    out = subprocess.run(["age-keygen", "-y", str(key)], capture_output=True, text=True)
    return out.stdout.strip()
