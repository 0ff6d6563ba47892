"""Scrub and heal with real processes: damage copies on disk and on a real S3 server,
and check that the next `photod verify` finds each case, repairs it from a good copy,
logs it, and leaves every healthy copy alone."""

from __future__ import annotations

import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import Photod, S3Server, make_mov, sha256, target_files
from tests.integration.conftest import Setup, assert_target_holds, backed_up_twice
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, DamagingProxy


def _stamp(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every published file: a healthy copy must keep both."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".photod/"):
            st = p.stat()
            out[rel] = (st.st_ino, st.st_mtime_ns)
    return out


def _s3(server: S3Server) -> Any:
    """A plain boto3 client on the test server: the test's own hands on the bucket."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def _found(p: Photod) -> dict[str, str]:
    """path -> "corrupt" or "missing", as the scrub logged them."""
    return {
        e["path"]: e["event"].removeprefix("replica_")
        for e in p.events()
        if e["event"] in ("replica_corrupt", "replica_missing")
    }


def _damage(root: Path, keys: list[str]) -> dict[str, str]:
    """Flip one byte, truncate, delete, and replace four files; returns key -> how."""
    flip, cut, gone, other = keys[:4]
    with open(root / flip, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x40]))
    os.truncate(root / cut, (root / cut).stat().st_size // 2)
    (root / gone).unlink()
    (root / other).write_bytes(b"not the photo you stored")
    return {flip: "corrupt", cut: "corrupt", gone: "missing", other: "corrupt"}


def test_scrub_finds_flipped_truncated_deleted_and_replaced_copies_and_heals_them(
    setup: Setup, samples: Path
) -> None:
    """Each kind of damage on a local target is found by `photod verify`, logged as
    replica_corrupt or replica_missing, repaired from the other target and logged
    replica_repaired; the damaged bytes are kept in quarantine; no healthy copy is
    rewritten; and a second run finds nothing."""
    p, lib, ext, originals = backed_up_twice(setup, samples)
    keys = sorted(originals)
    damaged = _damage(lib, keys)
    healthy_lib = {k: v for k, v in _stamp(lib).items() if k not in damaged}
    healthy_ext = _stamp(ext)

    r = p.cli("verify", "--all")
    assert 0 == r.returncode, r.stdout + r.stderr

    assert damaged == _found(p)
    assert {e["target"] for e in p.events("replica_corrupt")} == {"lib"}
    repaired = {e["path"]: e["was"] for e in p.events("replica_repaired")}
    assert damaged == repaired
    assert_target_holds(lib, originals)
    assert_target_holds(ext, originals)
    assert healthy_lib == {k: v for k, v in _stamp(lib).items() if k not in damaged}
    assert healthy_ext == _stamp(ext)
    quarantined = sorted(q.name for q in (lib / ".photod" / "quarantine").rglob("*") if q.is_file())
    assert sorted(Path(k).name for k, how in damaged.items() if how == "corrupt") == quarantined
    assert "3 corrupt, 1 missing; 4 repaired" in r.stdout
    n = len(originals)
    assert f"ext: {n} listed, {n} re-read" in r.stdout and "all good" in r.stdout

    again = p.cli("verify", "--all")
    assert 0 == again.returncode
    assert 3 == len(p.events("replica_corrupt")) and 1 == len(p.events("replica_missing"))
    # One photo's story, from import to every check: `photod logs --asset`.
    flipped = originals[sorted(damaged)[0]]
    story = [line.split()[3] for line in p.cli("logs", "--asset", flipped[:12]).stdout.splitlines()]
    assert "asset_ingested" == story[0]
    for event in ("replica_written", "replica_corrupt", "replica_repaired", "replica_checked"):
        assert event in story
    assert 64 == p.cli("logs", "--asset", "not-a-hash").returncode
    status = p.status()
    assert status["protected"] and [] == status["lost"]
    assert all(t["oldest_check_days"] is not None for t in status["targets"])


def test_a_corrupt_copy_is_never_the_source_of_a_repair_and_a_lost_asset_is_shown_first(
    setup: Setup, samples: Path
) -> None:
    """When one asset is damaged on every target and its source file is gone, nothing
    can heal it: `asset_lost` is logged as critical, status names it first and is not
    protected, and no corrupt bytes were copied anywhere.  The last damaged copy stays
    in place under its name (all there is of the photo), the others are set aside.
    Every other asset is fine."""
    p, lib, ext, originals = backed_up_twice(setup, samples)
    victim = sorted(originals)[0]
    for root in (lib, ext):
        (root / victim).write_bytes(b"rotten")
    (setup.inbox / Path(victim).name).unlink()

    r = p.cli("verify", "--all")
    assert 1 == r.returncode  # something could not be repaired
    lost = p.events("asset_lost")
    assert [victim] == [e["path"] for e in lost]
    assert "critical" == lost[0]["level"]
    assert [] == p.events("replica_repaired")
    kept = [root for root in (lib, ext) if (root / victim).exists()]
    assert 1 == len(kept) and b"rotten" == (kept[0] / victim).read_bytes()
    assert [kept[0].name] == [e["target"] for e in p.events("replica_corrupt") if e.get("kept")]
    for root in (lib, ext):  # the other set aside, nothing copied around
        others = target_files(root)
        others.pop(victim, None)
        assert {k: v for k, v in originals.items() if k != victim} == others
    status = p.cli("status")
    assert status.stdout.startswith("LOST: 1 file has no good copy left anywhere"), status.stdout
    assert 1 == status.returncode  # lost: a script sees it
    assert victim in status.stdout.splitlines()[1]
    assert not p.status()["protected"]
    doctor = p.cli("doctor")  # (it said "all good" while a photo was lost)
    assert 1 == doctor.returncode and "1 photo with no good copy left" in doctor.stdout


def test_bit_rot_in_a_watch_folder_is_reported_and_never_replaces_the_copies(
    setup: Setup, samples: Path, small_drive: Path
) -> None:
    """A watch-folder file whose bytes rot on the disk (flipped in the filesystem's
    image, as a failing disk does: the kernel never knew) is reported as source_corrupt;
    it is not ingested again, and the copies keep the original bytes.  A file an editor
    changed and whose size and mtime it put back (`exiftool -P`) is no rot: it is taken
    as a new version, and the copies keep both."""
    lib, inbox = setup.home / "lib", small_drive / "inbox"
    inbox.mkdir()
    config = setup.config([{"name": "lib", "path": str(lib)}])
    config.write_text(config.read_text().replace(str(setup.inbox), str(inbox)))
    p = setup.factory(config)
    rotten, edited = inbox / "IMG_1.jpg", inbox / "IMG_2.jpg"
    photos = sorted(samples.glob("*.jpg"))
    shutil.copy2(photos[0], rotten)
    shutil.copy2(photos[1], edited)
    assert 0 == p.cli("run", "--once").returncode
    good, before = sha256(rotten), sha256(edited)
    time.sleep(2)  # (the catalog's times are to the second)

    st = edited.stat()  # an editor that keeps the file's times
    data = bytearray(edited.read_bytes())
    data[-3] ^= 0x01
    edited.write_bytes(bytes(data))
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = sha256(edited)
    middle = rotten.read_bytes()[4000:4064]  # the disk rots under a file nobody touched
    image = small_drive.parent.parent / "small.img"
    subprocess.run(["umount", str(small_drive)], check=True)
    raw = bytearray(image.read_bytes())
    assert 1 == raw.count(middle)
    raw[raw.index(middle) + 10] ^= 0x01
    image.write_bytes(bytes(raw))
    subprocess.run(["mount", "-o", "loop", str(image), str(small_drive)], check=True)
    assert good != sha256(rotten)

    r = p.cli("verify", "--all")
    assert 1 == r.returncode
    rot = p.events("source_corrupt")
    assert [("inbox", "IMG_1.jpg", good)] == [(e["source"], e["path"], e["asset"]) for e in rot]
    [change] = p.events("source_edited")
    assert ("IMG_2.jpg", before, after) == (change["path"], change["asset"], change["found"])
    assert 0 == p.cli("run", "--once").returncode  # a rescan takes the edit, not the rot
    assert {good, before, after} == set(target_files(lib).values())
    assert 1 == p.status()["corrupt_sources"]
    assert "changed on disk without being edited" in p.cli("status").stdout


def test_damage_on_a_real_s3_server_is_found_and_healed(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """Objects flipped, truncated, deleted and replaced in the S3 server's own storage
    are found by the download check, uploaded again from the local copy, and counted
    against the month's egress."""
    creds = s3_server.credentials(setup.home / "s3.cred")
    prefix = f"scrub-{setup.home.name}/"
    lib = setup.home / "lib"
    p = setup.photod(
        [
            {"name": "lib", "path": str(lib)},
            s3_server.target("cloud", creds, prefix=prefix),
        ],
        policy={"copies": 2, "media": 2, "offsite": 1},
    )
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    originals = target_files(lib)
    bucket = s3_server.root / BUCKET / prefix
    assert originals == target_files(bucket)
    # Damage through the S3 API, as the server would store rotten bytes: its own
    # caches then agree with what it serves.
    s3 = _s3(s3_server)

    def stored() -> dict[str, tuple[str, object]]:
        """key -> (ETag, LastModified) of every photo object."""
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return {
            o["Key"][len(prefix) :]: (o["ETag"], o["LastModified"])
            for o in page.get("Contents", [])
            if not o["Key"][len(prefix) :].startswith(".photod/")
        }

    flip, cut, gone, other = sorted(originals)[:4]
    body = bytearray((lib / flip).read_bytes())
    body[1000] ^= 0x40
    s3.put_object(Bucket=BUCKET, Key=prefix + flip, Body=bytes(body))
    s3.put_object(Bucket=BUCKET, Key=prefix + cut, Body=(lib / cut).read_bytes()[:5000])
    s3.delete_object(Bucket=BUCKET, Key=prefix + gone)
    s3.put_object(Bucket=BUCKET, Key=prefix + other, Body=b"not the photo you stored")
    damaged = {flip: "corrupt", cut: "corrupt", gone: "missing", other: "corrupt"}
    healthy = {k: v for k, v in stored().items() if k not in damaged}

    r = p.cli("verify", "--all")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert damaged == _found(p)
    assert {"cloud"} == {e["target"] for e in p.events("replica_repaired")}
    assert originals == target_files(bucket)
    assert healthy == {k: v for k, v in stored().items() if k not in damaged}  # untouched
    cloud = next(t for t in p.status()["targets"] if t["name"] == "cloud")
    assert cloud["egress_used"] >= sum(
        (samples / Path(k).name).stat().st_size for k in originals if k not in damaged
    )


def test_the_last_copy_kept_damaged_is_repaired_under_its_own_name(
    setup: Setup, samples: Path
) -> None:
    """The only copy rots while its watch-folder file is away: it is kept in place
    (all there is) and the photo is lost.  The file comes back: the repair sets the
    damaged copy aside and writes the photo under its own name, so the target's list
    passes `sha256sum -c` again (the repair went beside it, `a~….jpg`, and the damaged
    file kept the real name for ever)."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    [key] = target_files(lib)
    away = setup.home / "a.jpg"
    os.rename(setup.inbox / "a.jpg", away)
    body = bytearray((lib / key).read_bytes())
    body[5000] ^= 0x20
    (lib / key).write_bytes(bytes(body))
    assert 1 == p.cli("verify", "--all").returncode
    [found] = p.events("replica_corrupt")
    assert "the only copy" in found["kept"] and bytes(body) == (lib / key).read_bytes()
    assert "LOST" in p.cli("status").stdout
    os.rename(away, setup.inbox / "a.jpg")
    time.sleep(2.1)  # the repair that found no source then is due again (retry_max)
    assert 0 == p.cli("run", "--once").returncode
    assert {key: sha256(setup.inbox / "a.jpg")} == target_files(lib)
    assert_target_holds(lib, target_files(lib))  # the list passes sha256sum -c
    assert 0 == p.cli("status").returncode


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_a_download_damaged_on_its_way_never_condemns_a_good_offsite_copy(
    setup: Setup, samples: Path, s3_server: S3Server, sealed: bool
) -> None:
    """One download of an offsite copy damaged in transit (a bit flipped by a failing
    cable or router), the drive unplugged and the original deleted: the scrub reads it
    again, finds its photo, says a read differed, and leaves the object where it is;
    when the drive then dies, a rebuild and a restore from the offsite copy alone get
    the photo back.  (It was moved into quarantine, where neither looks.)"""
    proxy = DamagingProxy(s3_server.endpoint)
    proxy.damaging = False
    creds = s3_server.credentials(setup.home / "s3.cred")
    prefix = f"transit-{setup.home.name}/"
    lib, identity = setup.home / "lib", setup.home / "key.txt"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)},
         {**s3_server.target("cloud", creds, prefix=prefix), "endpoint": proxy.endpoint,
          "encrypt": sealed}],
        policy={"copies": 2, "media": 2, "offsite": 1},
        extra=f'\n[encryption]\nidentity = "{identity}"\n' if sealed else "",
    )  # fmt: skip
    if sealed:
        assert 0 == p.cli("keygen", "--output", str(identity)).returncode
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    [key] = target_files(lib)
    top = s3_server.root / BUCKET / prefix
    [stored] = [f for f in top.rglob("*") if f.is_file() and ".photod" not in f.parts]
    obj = prefix + stored.relative_to(top).as_posix()  # (a sealed copy's is not its name)
    whole, photo = stored.read_bytes(), (lib / key).read_bytes()
    (setup.inbox / "a.jpg").unlink()  # photod said it was safe
    lib.rename(setup.home / "drive-unplugged")
    proxy.damaging_gets[obj] = 1
    r = p.cli("verify", "--all")  # (exit 1: the drive is not there to verify)
    [said] = [line for line in r.stdout.splitlines() if line.startswith("cloud:")]
    assert said.endswith("all good"), r.stdout + r.stderr
    assert 0 == proxy.damaging_gets[obj]  # the one damaged download happened
    assert [] == p.events("replica_corrupt")
    [differed] = p.events("replica_read_differed")
    assert ("cloud", key) == (differed["target"], differed["path"])
    [cloud] = [t for t in p.status()["targets"] if t["name"] == "cloud"]
    assert 2 * len(photo) == cloud["egress_used"]  # both downloads count against egress
    assert whole == stored.read_bytes()
    # The drive dies: the offsite copy alone gives the photo back.
    rebuilt = setup.home / "rebuilt.toml"
    rebuilt.write_text(p.config.read_text().replace(str(setup.home / "state"),
                                                   str(setup.home / "state2")))  # fmt: skip
    r = p.cli("--config", str(rebuilt), "catalog", "rebuild", "--from", "cloud", config=False)
    assert 0 == r.returncode, r.stdout + r.stderr
    out = setup.home / "restored"
    r = p.cli("--config", str(rebuilt), "restore", str(out), "--target", "cloud", config=False)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert [photo] == [f.read_bytes() for f in out.rglob("*.jpg")]
    proxy.stop()


def test_an_object_the_server_will_not_read_is_never_deleted(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """An object S3 keeps archived (a lifecycle rule moved it to Glacier) answers its
    HEAD, but refuses a GET and a copy (403 InvalidObjectState).  A read that fails
    proves nothing about the bytes: the copy stops counting, and the object itself
    stays, whole, even as the last copy left (it was deleted when it could not be
    copied into quarantine)."""
    proxy = DamagingProxy(s3_server.endpoint)
    proxy.damaging = False
    creds = s3_server.credentials(setup.home / "s3.cred")
    prefix = f"archived-{setup.home.name}/"
    lib = setup.home / "lib"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)},
         {**s3_server.target("cloud", creds, prefix=prefix), "endpoint": proxy.endpoint}],
        policy={"copies": 2, "media": 2, "offsite": 1},
    )  # fmt: skip
    shutil.copy2(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    assert 0 == p.cli("run", "--once").returncode
    [key] = target_files(lib)
    stored = s3_server.root / BUCKET / prefix / key
    whole = stored.read_bytes()
    proxy.archived.add(prefix + key)
    (lib / key).unlink()  # and the object is the last copy: the others went
    (setup.inbox / "a.jpg").unlink()
    r = p.cli("verify", "--all")
    assert "Traceback" not in r.stdout + r.stderr
    assert stored.exists() and whole == stored.read_bytes()  # still there, whole
    [found] = p.events("replica_corrupt")
    assert ("cloud", True) == (found["target"], "could not be read" in found["kept"])
    # A rebuild from that target skips the one object it cannot read, says why, and
    # does not fail as a whole (the target still answers).
    rebuilt = setup.home / "rebuilt.toml"
    rebuilt.write_text(p.config.read_text().replace(str(setup.home / "state"),
                                                   str(setup.home / "state2")))  # fmt: skip
    r = p.cli("--config", str(rebuilt), "catalog", "rebuild", "--from", "cloud", config=False)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "archived (Glacier" in r.stdout + r.stderr
    # The object restored from the archive: read again, it counts again.
    proxy.archived.clear()
    time.sleep(2.1)  # the repair is due again (retry_max)
    r = p.cli("run", "--once")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert [] == p.status()["lost"] and whole == stored.read_bytes()
    proxy.stop()


def test_encrypted_copies_that_fail_authentication_are_healed(setup: Setup, samples: Path) -> None:
    """On an encrypted target, a flipped byte makes age's authentication fail: the
    scrub calls it corrupt (not an outage) and writes a fresh sealed copy."""
    key = setup.home / "key.txt"
    lib, vault = setup.home / "lib", setup.home / "vault"
    p = setup.photod(
        [
            {"name": "lib", "path": str(lib)},
            {"name": "vault", "path": str(vault), "create": True, "encrypt": True},
        ],
        extra=f'\n[encryption]\nidentity = "{key}"\n',
    )
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    for f in list(samples.iterdir())[:3]:
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    objects = sorted(q for q in (vault / "data").rglob("*") if q.is_file())
    with open(objects[0], "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\xff" * 8)
    r = p.cli("verify", "--all")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert ["vault"] == [e["target"] for e in p.events("replica_corrupt")]
    assert ["vault"] == [e["target"] for e in p.events("replica_repaired")]
    assert 0 == p.cli("verify", "--all").returncode
    assert 1 == len(p.events("replica_corrupt"))


def test_photod_verify_beside_the_daemon_asks_the_daemon(setup: Setup) -> None:
    """Two processes healing the same targets would race: with the daemon running,
    `photod verify` hands the work to it through the control socket and says how to
    follow it; the daemon scrubs."""
    p: Photod = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    try:
        r = p.cli("verify", "--all")
        assert 0 == r.returncode, r.stderr
        assert "the daemon is verifying now" in r.stdout
        p.wait_event("scrub_finished", timeout=30)
    finally:
        p.stop()


def _never_reread(p: Photod) -> set[str]:
    """Keys on 'lib' whose only full read is still the one made when they were written."""
    db = sqlite3.connect(p.home / "state" / "catalog.sqlite")
    try:
        rows = db.execute(
            "SELECT relpath FROM replicas WHERE target='lib' AND checked_at = verified_at"
        ).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


def test_each_run_reads_within_its_budget_oldest_first(setup: Setup, samples: Path) -> None:
    """Without --all, a run re-reads only as much as scrub_budget allows, the copies
    checked longest ago first; successive runs go round the whole library; status says
    the budget is too small for the cycle."""
    lib = setup.home / "lib"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)}],
        extra='\n[schedule]\nscrub_budget = "3MB"\nscrub_cycle = "1d"\n',
    )
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    sizes = {k: (lib / k).stat().st_size for k in target_files(lib)}
    runs = 0
    while _never_reread(p) and runs < len(sizes):
        time.sleep(1.05)  # check times have one-second resolution
        assert 0 == p.cli("verify").returncode
        runs += 1
    assert set() == _never_reread(p)
    done = [e["targets"]["lib"] for e in p.events("scrub_finished")]
    assert all(r["bytes"] <= 3_000_000 or r["checked"] == 1 for r in done)
    # oldest first: one round takes as many runs as the budget needs, no more
    assert runs <= -(-sum(sizes.values()) // (3_000_000 - max(sizes.values()))) + 1
    lib_status = p.status()["targets"][0]
    assert lib_status["behind"] and lib_status["full_pass_days"] > 1
    assert "BEHIND" in p.cli("status").stdout


def test_a_time_budget_stops_the_run_when_it_is_spent(setup: Setup, samples: Path) -> None:
    """scrub_budget may be a time: the run stops reading when it is spent (after one
    file at least), and the next run goes on from there."""
    p = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")}],
        extra='\n[schedule]\nscrub_budget = "1ms"\nscrub_cycle = "1d"\n',
    )
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    assert 0 == p.cli("verify").returncode
    checked = p.events("scrub_finished")[-1]["targets"]["lib"]["checked"]
    assert 1 <= checked < len(list(samples.iterdir()))


def test_a_remote_is_read_within_its_monthly_egress_budget(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """A remote's full re-reads stop at its egress_budget for the month (counted in the
    catalog, with what drills download); the cheap presence check still runs on every
    scrub and still finds a deleted object."""
    creds = s3_server.credentials(setup.home / "s3.cred")
    prefix = f"egress-{setup.home.name}/"
    p = setup.photod(
        [
            {"name": "lib", "path": str(setup.home / "lib")},
            s3_server.target("cloud", creds, prefix=prefix, egress_budget="2MB/month"),
        ],
        policy={"copies": 2, "media": 2, "offsite": 1},
    )
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    assert 0 == p.cli("verify").returncode
    used = {t["name"]: t for t in p.status()["targets"]}["cloud"]["egress_used"]
    assert 0 < used <= 2_000_000 or used == max(f.stat().st_size for f in samples.iterdir())
    assert 0 == p.cli("verify").returncode
    gone = sorted(target_files(s3_server.root / BUCKET / prefix))[0]
    _s3(s3_server).delete_object(Bucket=BUCKET, Key=prefix + gone)
    p.cli("verify")
    assert [gone] == [e["path"] for e in p.events("replica_missing")]
    cloud = {t["name"]: t for t in p.status()["targets"]}["cloud"]
    assert cloud["egress_used"] <= 2_000_000 + max(f.stat().st_size for f in samples.iterdir())
    assert cloud["behind"]
    # A drill on a remote downloads its sample: that is egress too.
    assert 0 == p.cli("drill", "--target", "cloud").returncode
    after = {t["name"]: t for t in p.status()["targets"]}["cloud"]["egress_used"]
    assert after > cloud["egress_used"]


def test_a_large_video_never_takes_a_scrub_past_the_month_s_egress_budget(
    setup: Setup, s3_server: S3Server
) -> None:
    """Two videos of 12 MB on a remote whose egress_budget is 20 MB a month (scaled: 4 GB
    videos and 10 GiB): the first scrub re-reads one; the next, 8 MB left, leaves the
    other for next month instead of reading it (it did: 24 MB, the "most a scrub may
    download" passed by a whole video)."""
    creds = s3_server.credentials(setup.home / "s3.cred")
    cloud = s3_server.target("cloud", creds, prefix=f"egress-big-{setup.home.name}/",
                             egress_budget="20MB/month")  # fmt: skip
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}, cloud],
                     policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip
    for day in (2, 3):
        make_mov(setup.inbox / f"v{day}.mov", datetime(2024, 1, day, tzinfo=UTC),
                 payload=os.urandom(12_000_000))  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode
    for _ in range(3):
        assert 0 == p.cli("verify").returncode
    cloud_now = {t["name"]: t for t in p.status()["targets"]}["cloud"]
    assert 12_000_000 < cloud_now["egress_used"] <= 20_000_000
    assert 1 == sum(e["target"] == "cloud" for e in p.events("replica_checked"))


def _on_a_terminal(p: Photod, *args: str) -> str:
    """Run a photod command with a pseudo-terminal for its output; returns it all."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "photod", "--config", str(p.config), *args],
        stdin=slave, stdout=slave, stderr=slave, env={**p.env, "TERM": "xterm"},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert 0 == proc.wait(timeout=60)
    return b"".join(chunks).decode("utf-8", "replace")


def test_verify_and_restore_draw_a_progress_bar_only_on_a_terminal(
    setup: Setup, samples: Path
) -> None:
    """On a terminal, `photod verify` and `photod restore` draw a progress bar (with
    bytes done and the total); in a pipe or a log they print only their summary."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    shown = _on_a_terminal(p, "verify", "--all")
    assert "verifying" in shown and "MB" in shown and "lib:" in shown
    shown = _on_a_terminal(p, "restore", str(setup.home / "back"))
    assert "restoring" in shown and f"restored {len(list(samples.iterdir()))} files" in shown
    piped = p.cli("verify", "--all")
    assert "verifying" not in piped.stdout + piped.stderr


def test_an_unplugged_drive_is_skipped_never_taken_for_missing_copies(
    setup: Setup, samples: Path
) -> None:
    """A drive that is not there is reported as not verified, with the reason; none of
    its copies is marked missing or copied again, and once it is back the next scrub
    finds everything in place."""
    p, _, ext, originals = backed_up_twice(setup, samples)
    away = setup.home / "unplugged"
    ext.rename(away)
    r = p.cli("verify", "--all")
    assert 1 == r.returncode
    assert "ext: not verified:" in r.stdout and "does not exist" in r.stdout
    assert [] == p.events("replica_missing") and [] == p.events("replica_repaired")
    assert {"ext"} == {e["target"] for e in p.events("scrub_skipped")}
    away.rename(ext)
    assert 0 == p.cli("verify", "--all").returncode
    assert [] == p.events("replica_missing")
    assert_target_holds(ext, originals)


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_a_copy_repaired_from_the_offsite_copy_keeps_the_photos_file_time(
    setup: Setup, samples: Path, s3_server: S3Server, sealed: bool
) -> None:
    """A photo whose file time is its only date (2020-09-13) is on a drive and in an S3
    bucket; its source is deleted, then the drive's copy rots.  The scrub repairs it
    from the bucket (which keeps no file times, or a sealed one read through age): the
    repaired copy has the photo's own time again, so that the drive alone, by rsync
    or by `photod restore`, gives the photo its date; it had the moment of the repair."""
    extra = ""
    if sealed:
        key = setup.home / "key.txt"
        extra = f'\n[encryption]\nidentity = "{key}"\n'
    creds = s3_server.credentials(setup.home / "s3.cred")
    drive = setup.home / "drive"
    p = setup.photod(
        [{"name": "drive", "path": str(drive), "create": True},
         s3_server.target("cloud", creds, prefix=f"times-{sealed}-{setup.home.name}/",
                          encrypt=sealed)],
        policy={"copies": 2, "media": 2, "offsite": 1}, extra=extra,
    )  # fmt: skip
    if sealed:
        assert 0 == p.cli("keygen", "--output", str(key)).returncode
    photo = setup.inbox / "a.jpg"
    shutil.copy(samples / "jpg_Canon_40D.jpg", photo)
    os.utime(photo, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    assert 0 == p.cli("run", "--once").returncode
    [rel] = target_files(drive)
    assert 1_600_000_000_123_456_789 == (drive / rel).stat().st_mtime_ns
    photo.unlink()
    body = bytearray((drive / rel).read_bytes())
    body[5000] ^= 0x20
    (drive / rel).write_bytes(bytes(body))
    r = p.cli("verify", "--all")
    assert "1 repaired" in r.stdout, r.stdout + r.stderr
    assert sha256(samples / "jpg_Canon_40D.jpg") == sha256(drive / rel)
    assert 1_600_000_000_123_456_789 == (drive / rel).stat().st_mtime_ns


def test_a_copy_found_rotten_as_a_repair_source_is_repaired_by_the_next_verify(
    setup: Setup, samples: Path
) -> None:
    """Both copies of a photo rot.  `photod verify --target ext` repairs ext's from the
    watch folder's file, after lib's copy, read as its first source, hashed wrong (it is
    set aside, `method: copy source`).  The next `photod verify` repairs lib's too: it
    said "all good" and left lib one copy short (only what a run found itself was
    repaired)."""
    p, lib, ext, originals = backed_up_twice(setup, samples)
    victim = sorted(originals)[1]
    for root in (lib, ext):
        data = bytearray((root / victim).read_bytes())
        data[100] ^= 1
        (root / victim).write_bytes(bytes(data))
    assert 0 == p.cli("verify", "--target", "ext", "--all").returncode
    assert [("lib", "copy source")] == [
        (e["target"], e["method"]) for e in p.events("replica_corrupt") if e["target"] == "lib"
    ]
    assert target_files(ext)[victim] == originals[victim]
    r = p.cli("verify")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "lib: 10 listed" in r.stdout and "1 found bad before, repaired now" in r.stdout
    assert target_files(lib) == originals
    p.wait_protected(len(originals), timeout=10)
