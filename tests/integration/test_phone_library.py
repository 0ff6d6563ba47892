"""A phone's Photos library, end to end: a real ``photod run`` imports from the fake
phone (pymobiledevice3's own client code over usbmux, lockdownd and AFC on a local
socket), reads the library database the phone serves beside ``DCIM``, and keeps it on
both targets as XMP sidecars that the real ``exiftool`` reads.  The user's view: the
sidecars, `photod status --device`, `photod albums`, `photod restore --album`, the
webhook."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests import photoslib
from tests.conftest import sha256, wait_for
from tests.fakephone import camera_roll
from tests.integration import test_iphone
from tests.integration.conftest import Setup
from tests.integration.test_iphone import UDID_A, PhoneSetup, device
from tests.servers import Webhook

pytestmark = pytest.mark.integration

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
    lib = [
        photoslib.Photo("IMG_0000.JPG", directory="DCIM/100APPLE", favorite=True,
                        caption="first steps", people=("Ann Lee",),
                        captured=datetime(2026, 9, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))),
        photoslib.Photo("IMG_0001.JPG", directory="DCIM/100APPLE", keywords=("beach",)),
        photoslib.Photo("IMG_5001.HEIC", live=True, title="Live one"),
        # Only in iCloud: one absent from DCIM, one listed there but unreadable.
        photoslib.Photo("IMG_0900.HEIC", local=False, original_name="IMG_0900.HEIC",
                        captured=datetime(2026, 8, 30, 9, 0, tzinfo=UTC)),
        photoslib.Photo("IMG_0002.JPG", directory="DCIM/101APPLE", local=False),
    ]  # fmt: skip
    albums = [(("Trips", "Beach 2026"), [lib[1].uuid, lib[2].uuid]), (("Family",), [lib[0].uuid])]
    db = photoslib.build(roll.media, "17.6", lib, albums, wal_only=2)
    phone = phones.phone(UDID_A, "Anna's iPhone", roll, unreadable={"/DCIM/101APPLE/IMG_0002.JPG"})
    hook = Webhook()
    try:
        p = phones.photod(extra=f'\n[notify]\nwebhook = "{hook.url}"\n').start()
        p.wait_event("usbmuxd_connected")
        phones.mux.plug(phone)
        p.wait_event("device_import_finished", timeout=60)
        [read] = p.wait_event("device_library_read", timeout=30)
        assert (5, 2, 2) == (read["assets"], read["albums"], read["not_on_phone"])
        [icloud] = p.wait_event("device_originals_in_icloud")
        assert (2, True) == (icloud["count"], icloud["grew"])
        wait_for(lambda: any("only in iCloud" in json.loads(b)["title"] for _, b in hook.got),
                 30, "the iCloud message")  # fmt: skip

        # Beside each original, on both targets: a sidecar exiftool reads.
        for root in (phones.lib, phones.mirror):
            wait_for(lambda root=root: len(list(root.rglob("*.xmp"))) == 3, 30, "the sidecars")
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
        assert dev["safe_before"] is not None
        text = p.cli("status", "--device", "Anna's iPhone").stdout
        assert (
            "2 photos in this phone's library are not backed up: their originals are only in iCloud"
            in text
        )
        assert "Download and Keep Originals" in text
        assert "Everything on 'Anna's iPhone' is protected" not in text

        # albums, and one restored: the Live Photo's still and movie, bit for bit,
        # each photo with its sidecar.
        listed = p.cli("albums")
        assert 0 == listed.returncode, listed.stderr
        assert "Trips/Beach 2026  2 photos, 2 protected" in listed.stdout
        assert "Family  1 photos, 1 protected" in listed.stdout
        dest = tmp_path / "restored"
        r = p.cli("restore", str(dest), "--album", "Beach 2026")
        assert 0 == r.returncode, r.stdout + r.stderr
        got = {q.name: sha256(q) for q in dest.rglob("*") if q.is_file()}
        want = {Path(a).name: sha256(roll.files[a]) for a in
                ("/DCIM/100APPLE/IMG_0001.JPG", still, movie, still.replace(".HEIC", ".AAE"))}  # fmt: skip
        assert want == {n: h for n, h in got.items() if not n.endswith(".xmp")}
        assert {"IMG_0001.JPG.xmp", "IMG_5001.HEIC.xmp"} <= set(got)
        assert "Live one" == exiftool(next(dest.rglob("IMG_5001.HEIC.xmp")))["XMP-dc:Title"]
        nothing = p.cli("restore", str(tmp_path / "none"), "--album", "Nowhere")
        assert 0 != nothing.returncode and "no album named 'Nowhere'" in nothing.stderr

        # Starred on the phone after the import: the sidecar follows at the next plug-in.
        phones.mux.unplug(phone)
        p.wait_event("device_detached")
        photoslib.update(db, lib[1].uuid, favorite=True, caption="after")
        sidecar = next(phones.lib.rglob("IMG_0001*.JPG.xmp"))
        original = sidecar.with_name(sidecar.name.removesuffix(".xmp"))
        before = hashlib.sha256(original.read_bytes()).hexdigest()
        phones.mux.plug(phone)
        p.wait_event("device_library_read", count=2, timeout=60)
        wait_for(lambda: exiftool(sidecar).get("XMP-xmp:Rating") == 5, 30, "the new sidecar")
        assert "after" == exiftool(sidecar)["XMP-dc:Description"]
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
    assert "Trips/Beach 2026  2 photos, " in mine.stdout
    assert photos_before == int(r.stdout.split(" assets,")[0].rsplit(" ", 1)[1])
    unknown = p.cli("albums", "--device", "Bob's iPhone")
    assert 1 == unknown.returncode and 'no albums on "Bob\'s iPhone" yet' in unknown.stdout


def test_a_database_photod_cannot_read_imports_every_file_all_the_same(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """A garbage Photos.sqlite on the phone: one device_library_unreadable with the
    reason, and every file imported and protected as without a library."""
    roll = camera_roll(tmp_path / "phone", samples, photos=4, live=1)
    photoslib.garbage(roll.media / "PhotoData" / "Photos.sqlite")
    phone = phones.phone(UDID_A, "Anna's iPhone", roll)
    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    phones.mux.plug(phone)
    [bad] = p.wait_event("device_library_unreadable", timeout=60)
    assert "not a SQLite database" in bad["reason"]
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
