"""Catalog snapshots across restarts of a real `photod run`: a start whose catalog the
newest snapshot on each target already covers writes none (each restart wrote one
more generation of the same catalog to every target: a full upload offsite); a
catalog changed since, and a target without that snapshot, still get one."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from tests.conftest import Photod
from tests.fakephone import jpeg
from tests.integration.conftest import Setup
from tests.integration.test_offsite import keygen
from tests.servers import BUCKET, S3Server


def generations(root: Path) -> list[str]:
    """The snapshot generations on a local target (every installation's), oldest first."""
    return sorted(p.name for p in root.glob(".photod/installations/*/snapshots/*"))


def targets(setup: Setup, *names: str) -> list[dict[str, Any]]:
    return [{"name": n, "path": str(setup.home / n)} for n in names]


def first_run(setup: Setup, photos: int = 1) -> Photod:
    """``photos`` photos backed up to "library" and its snapshot written; stopped."""
    for seed in range(1, photos + 1):
        jpeg(setup.inbox / f"{seed}.jpg", seed=seed)
    p = setup.photod(targets(setup, "library")).start()
    p.wait_protected(photos)
    p.wait_event("catalog_snapshot_written", assets=photos)
    assert 0 == p.stop()
    assert 1 == len(generations(setup.home / "library"))
    return p


def run_again(p: Photod, photos: int) -> None:
    """A start that scans, and a stop (SIGTERM: the stop writes the snapshot that is
    due, if any)."""
    p.start()
    p.wait_event("scan_finished", count=len(p.events("daemon_started")))
    p.wait_protected(photos)
    assert 0 == p.stop()


def test_restarts_with_nothing_new_write_no_snapshot(setup: Setup) -> None:
    """Two restarts on an unchanged home: the target holds the one generation the first
    run wrote (each wrote one more: 36 MB uploaded at each start of a 100,000-photo
    home); the photo found at the next start is snapshotted."""
    p = first_run(setup)
    library = setup.home / "library"
    before = generations(library)
    for _ in range(2):
        run_again(p, 1)
    assert before == generations(library)
    jpeg(setup.inbox / "new.jpg", seed=9)
    run_again(p, 2)
    assert 2 == len(generations(library))
    assert 2 == p.events("catalog_snapshot_written")[-1]["assets"]


def test_a_restart_uploads_no_snapshot_to_an_encrypted_bucket(
    setup: Setup, s3_server: S3Server
) -> None:
    """The same with an encrypted S3 target beside the library: the restart uploads no
    snapshot to the bucket (each was a paid upload of the whole catalog)."""
    key = keygen(setup)
    creds = s3_server.credentials(setup.home / "aws-credentials")
    bucket = s3_server.target("offsite", creds, prefix="restart", encrypt=True)
    jpeg(setup.inbox / "a.jpg", seed=1)
    p = setup.photod([*targets(setup, "library"), bucket], {"copies": 2, "media": 1, "offsite": 1},
                     f'\n[encryption]\nidentity = "{key}"\n')  # fmt: skip
    p.start()
    p.wait_protected(1, timeout=90)
    p.wait_event("catalog_snapshot_written", assets=1, targets=["library", "offsite"])
    assert 0 == p.stop()
    uploaded = generations(s3_server.root / BUCKET / "restart")
    assert 1 == len(uploaded)
    run_again(p, 1)
    assert uploaded == generations(s3_server.root / BUCKET / "restart")
    assert 1 == len(p.events("catalog_snapshot_written"))


def test_a_catalog_rebuilt_while_stopped_is_snapshotted(setup: Setup) -> None:
    """`photod catalog rebuild` between two runs: the catalog it put in place is
    snapshotted at the next start."""
    p = first_run(setup)
    r = p.cli("catalog", "rebuild", "--from", "library", "--force")
    assert 0 == r.returncode, r.stdout + r.stderr
    run_again(p, 1)
    assert 2 == len(generations(setup.home / "library"))


def test_a_crash_after_a_change_before_its_snapshot_leaves_it_due(setup: Setup) -> None:
    """A photo backed up, then a power cut as its snapshot is copied: the next start
    snapshots the catalog that holds it."""
    p = first_run(setup)
    jpeg(setup.inbox / "new.jpg", seed=9)
    p.env["PHOTOD_FAILPOINTS"] = "snapshot_copied=kill"
    p.start()
    assert -signal.SIGKILL == p.proc.wait(timeout=120)  # type: ignore[union-attr]
    p.env.pop("PHOTOD_FAILPOINTS")
    run_again(p, 2)
    assert 2 == p.events("catalog_snapshot_written")[-1]["assets"]
    assert 2 == len(generations(setup.home / "library"))


def test_a_kill_before_the_snapshot_is_kept_costs_one_more_at_most(setup: Setup) -> None:
    """A power cut after the snapshot went to the target, before the catalog kept that
    it did: the next start writes it once more, and the one after none."""
    jpeg(setup.inbox / "a.jpg", seed=1)
    p = setup.photod(targets(setup, "library"))
    p.env["PHOTOD_FAILPOINTS"] = "snapshot_written=kill"
    p.start()
    assert -signal.SIGKILL == p.proc.wait(timeout=120)  # type: ignore[union-attr]
    p.env.pop("PHOTOD_FAILPOINTS")
    library = setup.home / "library"
    assert 1 == len(generations(library))
    run_again(p, 1)
    assert 2 == len(generations(library))
    run_again(p, 1)
    assert 2 == len(generations(library))


def test_a_target_without_the_newest_snapshot_gets_one(setup: Setup) -> None:
    """A target new in the config gets the snapshot at the next start (and so does the
    one that had it: the recovery plan beside it names the targets); a target whose
    snapshot was deleted gets it again, the other none."""
    p = first_run(setup)
    library, offsite = setup.home / "library", setup.home / "offsite"
    setup.config(targets(setup, "library", "offsite"))
    run_again(p, 1)
    assert 1 == len(generations(offsite))
    for snap in library.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    run_again(p, 1)
    assert 1 == len(generations(library))
    assert 1 == len(generations(offsite))


def test_a_drive_away_at_the_last_snapshot_gets_it_when_back(setup: Setup) -> None:
    """A drive unplugged when the catalog changed: the start with it back writes it the
    snapshot of the catalog as it is."""
    p = setup.photod(targets(setup, "library", "drive"))
    jpeg(setup.inbox / "a.jpg", seed=1)
    p.start()
    p.wait_protected(1)
    p.wait_event("catalog_snapshot_written", assets=1)
    assert 0 == p.stop()
    drive, library = setup.home / "drive", setup.home / "library"
    drive.rename(setup.home / "away")
    jpeg(setup.inbox / "b.jpg", seed=2)
    p.start()
    p.wait_event("catalog_snapshot_written", assets=2, targets=["library"], timeout=60)
    assert 0 == p.stop()
    assert 2 == int(generations(library)[-1].split("-")[1])
    (setup.home / "away").rename(drive)
    run_again(p, 2)
    assert 2 == int(generations(drive)[-1].split("-")[1])
