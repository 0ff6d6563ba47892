"""Tightening photod's folders changes what photod's user owns there, through
descriptors: never a file a link points at, never another user's entry."""

from __future__ import annotations

import os
from pathlib import Path

from photod import private


def mode(p: Path) -> int:
    return p.lstat().st_mode & 0o777


def test_tighten_takes_others_bits_from_what_is_ours_and_nothing_else(tmp_path: Path) -> None:
    state, outside = tmp_path / "state", tmp_path / "outside"
    (state / "sub").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "passwd"
    victim.write_text("x")
    catalog = state / "catalog.sqlite"
    catalog.write_text("x")
    (state / "sub" / "log.jsonl").write_text("x")
    os.mkfifo(state / "fifo")
    (state / "to-file").symlink_to(victim)
    (state / "sub" / "to-folder").symlink_to(outside)
    for p in (state, state / "sub", catalog, state / "sub" / "log.jsonl", state / "fifo",
              victim, outside):  # fmt: skip
        p.chmod(0o755 if p.is_dir() else 0o644)
    theirs = state / "theirs"  # another user's folder, left in an open state dir
    theirs.mkdir(mode=0o755)
    (theirs / "file").write_text("x")
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
        os.chown(theirs / "file", 65534, 65534)
    (theirs / "file").chmod(0o644)
    theirs.chmod(0o755)

    changed = private.tighten([state])

    assert 0o700 == mode(state) == mode(state / "sub")
    assert 0o600 == mode(catalog) == mode(state / "sub" / "log.jsonl") == mode(state / "fifo")
    assert 0o644 == mode(victim) and 0o755 == mode(outside)  # never through a link
    assert str(catalog) in changed and str(victim) not in changed
    if os.geteuid() == 0:  # as root, another user's entries stay as they are
        assert 0o755 == mode(theirs) and 0o644 == mode(theirs / "file")
    assert [] == private.tighten([state])  # once: the next start has nothing to say
