"""A file that changes while photod copies it (a sync client still writing, an editor
saving over it): the copy in flight is dropped and never recorded with a hash the file
never had as a whole; the file is taken again once it is stable."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.conftest import sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds
from tests.integration.test_mounts import big_video, temps

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_a_file_changed_mid_copy_is_taken_again_once_stable(setup: Setup, change: str) -> None:
    """Mid-copy, 1 MB in the middle is rewritten (same size, new mtime), or the file is
    cut to half: `source_changed`, and in the end the catalog and both targets hold the
    final bytes only (the first version may count too, as it was complete once)."""
    lib, ext = setup.home / "library", setup.home / "ext"
    p = setup.photod(
        [{"name": "library", "path": str(lib)}, {"name": "ext", "path": str(ext), "create": True}]
    ).start()
    video = setup.inbox / "clip.mov"
    os.rename(big_video(setup.home / "clip.mov", 300), video)
    first = sha256(video)
    wait_for(lambda: temps(lib) or temps(ext), 30, "the copy to start")
    with open(video, "r+b") as f:
        if change == "rewritten":
            f.seek(150 * 1024 * 1024)
            f.write(os.urandom(1024 * 1024))
        else:
            f.truncate(150 * 1024 * 1024)
    final = sha256(video)
    event = p.wait_event("source_changed", timeout=60)[0]
    assert ("inbox", "clip.mov") == (event["source"], event["path"])
    p.wait_event("asset_protected", asset=final, timeout=60)
    db = sqlite3.connect(setup.home / "state" / "catalog.sqlite")
    recorded = {r[0] for r in db.execute("SELECT sha256 FROM assets")}
    db.close()
    assert final in recorded and recorded <= {first, final}
    for root in (lib, ext):
        held = target_files(root)
        assert final in held.values() and set(held.values()) <= {first, final}
        assert_target_holds(root, held)
    assert 0 == p.stop()
