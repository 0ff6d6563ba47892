"""A computer cloned from another's disk image (its state dir, installation id and
internal library with it) backs up to the family's NAS: the first computer, started
again, finds a newer snapshot of "itself" there and rebuilds its catalog from it.  Its
counts and its library's list never take the clone's photos for copies on its own
library, which never had them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Photod, target_files, write_config
from tests.integration.conftest import assert_target_holds
from tests.integration.test_truth import make_photos

pytestmark = pytest.mark.integration


def computer(home: Path, nas: Path, factory: Callable[[Path], Photod]) -> Photod:
    (home / "inbox").mkdir(parents=True, exist_ok=True)
    config = write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        [
            {"name": "lib", "type": "local", "path": str(home / "lib"), "media": "internal"},
            {"name": "nas", "type": "local", "path": str(nas), "media": "nas"},
        ],
        {"copies": 2, "media": 2, "offsite": 0},
        f'\n[daemon]\ninstance = "laptop"\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n'
        'retry_interval = "1s"\nretry_max = "2s"\n[ingest]\nsettle = "0.5s"\n',
    )
    p = factory(config)
    p.home, p.output, p.log_dir = home, home / "photod.out", home / "log"
    p.env = {**p.env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return p


def test_a_cloned_computers_snapshot_never_counts_copies_the_library_lacks(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    laptop = computer(tmp_path / "laptop", nas, photod_factory)
    make_photos(laptop.home / "inbox", 1, start=0)
    laptop.start()
    laptop.wait_protected(1, timeout=60)
    assert 0 == laptop.stop()
    for part in ("state", "lib"):  # the disk image, cloned onto the desktop
        shutil.copytree(laptop.home / part, tmp_path / "desktop" / part)
    desktop = computer(tmp_path / "desktop", nas, photod_factory)
    make_photos(desktop.home / "inbox", 3, start=10)
    desktop.start()
    desktop.wait_protected(4, timeout=60)
    assert 0 == desktop.stop()  # its snapshot on the NAS: a newer generation of "laptop"

    make_photos(laptop.home / "inbox", 1, start=20)
    laptop.start()
    laptop.wait_event("catalog_recovered", timeout=30)
    status = laptop.wait_protected(5, timeout=60)
    lib = next(t for t in status["targets"] if t["name"] == "lib")
    held = target_files(laptop.home / "lib")
    assert lib["replicas"] == len(held)  # counted only where they really are
    assert_target_holds(laptop.home / "lib", held)  # and listed only where they are
    assert 0 == laptop.stop()
