"""A phone's Photos library, in milliseconds: the database copied consistently over
the phone link, read, kept in the catalog, and written beside the originals as XMP
sidecars that the real ``exiftool`` reads back.  The phone is in memory
(``tests/memphone.py``); the catalog, ingest, replication and target folder are real."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from photod import librarycopy
from photod.catalog import Catalog
from photod.errors import LibraryUnreadable
from photod.sidecars import LibraryKeeper, take_indexes
from tests import photoslib
from tests import test_phone_session as session
from tests.conftest import tmpfs
from tests.memphone import MemPhone, MemUsbmux
from tests.test_phone_session import UDID, Events, PhoneRig, named, photos, wait_until

# The session tests' rig and event capture, as fixtures here too.
make_rig = session.make_rig
events = session.events

DB, WAL, SHM = librarycopy.PARTS


def exiftool(path: Path) -> dict[str, Any]:
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl")
    out = subprocess.run(
        ["exiftool", "-j", "-n", "-G1", "-struct", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)[0]  # type: ignore[no-any-return]


async def _copy(phone: MemPhone, folder: Path) -> librarycopy.LibraryCopy | None:
    mux = MemUsbmux()
    mux.plug(phone)
    link = await mux.connect(phone.udid, folder, 1.0)
    await link.start_files()
    return await librarycopy.copy_library(link, folder)


def test_the_database_is_copied_with_its_log_and_again_if_the_phone_wrote_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The three files are copied as one snapshot: a write to the log while it was
    read makes photod take the copy again, and the copy holds the phone's last bytes."""
    monkeypatch.setattr(librarycopy, "SETTLE", 0.0)
    phone = MemPhone(UDID, {DB: b"main" * 1000, WAL: b"log1" * 100, SHM: b"shm" * 10})
    writes = []

    def phone_writes(path: str) -> None:
        if path == WAL and not writes:  # once: a commit lands in the log as it is read
            writes.append(path)
            phone.files[WAL] += b"commit"

    phone.on_read = phone_writes
    copy = asyncio.run(_copy(phone, tmp_path / "copy"))
    assert copy is not None
    assert phone.files[WAL] == (tmp_path / "copy" / "Photos.sqlite-wal").read_bytes()
    assert phone.files[DB] == copy.db.read_bytes()
    assert 2 == phone.opened[DB]  # taken twice: the first copy did not count
    again = asyncio.run(_copy(MemPhone(UDID, dict(phone.files)), tmp_path / "again"))
    assert again is not None and again.digest == copy.digest  # same bytes, same digest


def test_a_phone_that_never_stops_writing_gives_one_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(librarycopy, "SETTLE", 0.0)
    phone = MemPhone(UDID, {DB: b"main" * 1000, WAL: b"log" * 100})
    phone.on_read = lambda path: phone.files.__setitem__(WAL, phone.files[WAL] + b"x")
    with pytest.raises(LibraryUnreadable, match="kept changing it while it was copied"):
        asyncio.run(_copy(phone, tmp_path / "copy"))


def test_a_phone_without_a_library_database_has_none(tmp_path: Path) -> None:
    assert None is asyncio.run(
        _copy(MemPhone(UDID, {"/DCIM/100APPLE/IMG_0001.JPG": b"x"}), tmp_path)
    )


# -- the whole way: phone, catalog, sidecars on the target ------------------------------

TOKYO = timezone(timedelta(hours=9))


def library_phone(
    tmp: Path, generation: str = "18", udid: str = UDID, more_albums: bool = False
) -> tuple[MemPhone, Path, list[photoslib.Photo]]:
    """A phone with 4 photos in DCIM (one a Live Photo with its movie) and a library
    that knows them, plus one photo whose original only iCloud has."""
    files = photos(tmp, 3)
    files["/DCIM/100APPLE/IMG_0009.HEIC"] = files.pop("/DCIM/100APPLE/IMG_0003.JPG")
    files["/DCIM/100APPLE/IMG_0009.MOV"] = b"\0\0\0\x14ftypqt  " + b"movie" * 100
    # Taken on the person's iPad: iCloud Photos keeps its original outside DCIM.
    ipad = "/PhotoData/CPLAssets/group12/2B1E0F6C.JPG"
    files[ipad] = files.pop("/DCIM/100APPLE/IMG_0002.JPG")
    media = tmp / "media"
    lib = [
        photoslib.Photo("IMG_0001.JPG", favorite=True, title="Sunset", caption="Gion <at> dusk",
                        keywords=("travel",), people=("Ann Lee",),
                        captured=datetime(2024, 4, 1, 18, 30, tzinfo=TOKYO),
                        latitude=35.0036, longitude=135.7780),
        photoslib.Photo("2B1E0F6C.JPG", directory="PhotoData/CPLAssets/group12", hidden=True),
        photoslib.Photo("IMG_0009.HEIC", live=True, trashed=True),
        photoslib.Photo("IMG_0777.HEIC", local=False, original_name="IMG_0777.HEIC",
                        captured=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)),
        # The library says it is on the phone, but no listing shows it.
        photoslib.Photo("IMG_0666.HEIC", captured=datetime(2022, 5, 6, 7, 8, 9, tzinfo=UTC)),
    ]  # fmt: skip
    albums = [
        (("Trips", "2024", "Kyoto"), [lib[0].uuid, lib[2].uuid]),
        (("Family",), [lib[1].uuid]),
    ]
    if more_albums:  # a second album titled Kyoto, in another folder
        albums.append((("Trips", "2019", "Kyoto"), [lib[1].uuid]))
    db = photoslib.build(media, generation, lib, albums, wal_only=1)
    for part in librarycopy.PARTS:
        files[part] = (media / part.lstrip("/")).read_bytes()
    return MemPhone(udid, files, name="Anna's iPhone"), db, lib


def plug_and_import(rig: PhoneRig, phone: MemPhone, events: Events, imports: int) -> None:
    """Plug the phone in, wait for its ``imports``-th import of the test to finish
    (its library read included), unplug it and wait until photod let it go."""
    rig.mux.plug(phone)
    wait_until(lambda: len(named(events, "device_import_finished")) >= imports, "the import")
    rig.mux.unplug(phone)
    wait_until(lambda: len(named(events, "device_detached")) >= imports, "unplugged")


def refresh(phone: MemPhone, db: Path) -> None:
    for part, local in zip(librarycopy.PARTS, ("", "-wal", "-shm"), strict=True):
        phone.files[part] = Path(f"{db}{local}").read_bytes()


def test_the_library_reaches_the_target_as_sidecars_that_exiftool_reads(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    rig = make_rig()
    phone, _, lib = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    [read] = named(events, "device_library_read")
    assert (5, 2, 1) == (read["assets"], read["albums"], read["not_on_phone"])
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    target = rig.fleet.targets["lib"].target
    assert 3 == keeper.sync("lib", target)  # one per original on the phone

    sidecars = {p.name: p for p in rig.lib.rglob("*.xmp")}
    assert ["2B1E0F6C.JPG.xmp", "IMG_0001.JPG.xmp", "IMG_0009.HEIC.xmp"] == sorted(sidecars)
    first = exiftool(sidecars["IMG_0001.JPG.xmp"])
    assert "Sunset" == first["XMP-dc:Title"]
    assert "Gion <at> dusk" == first["XMP-dc:Description"]
    assert 5 == first["XMP-xmp:Rating"]
    assert ["Ann Lee"] == first["XMP-iptcExt:PersonInImage"]
    assert {"Albums|Trips|2024|Kyoto", "travel"} == set(first["XMP-lr:HierarchicalSubject"])
    assert "2024:04:01 18:30:00+09:00" == first["XMP-exif:DateTimeOriginal"]
    assert abs(first["XMP-exif:GPSLatitude"] - 35.0036) < 1e-6
    assert lib[0].uuid == first["XMP-photod:Uuid"]
    assert exiftool(sidecars["2B1E0F6C.JPG.xmp"])["XMP-photod:Hidden"] is True
    live = exiftool(sidecars["IMG_0009.HEIC.xmp"])
    assert (True, True) == (live["XMP-photod:Trashed"], live["XMP-photod:Live"])
    # The sidecar sits beside its original: the original keeps its bytes.
    assert (sidecars["IMG_0001.JPG.xmp"].parent / "IMG_0001.JPG").read_bytes() == phone.files[
        "/DCIM/100APPLE/IMG_0001.JPG"
    ]

    # The Live Photo's still and movie are one asset: its album holds both.
    from photod.albums import album_assets

    kyoto = album_assets(rig.catalog, "Kyoto")
    assert kyoto is not None and 3 == len(kyoto)  # IMG_0001, and IMG_0009's still and movie
    assert album_assets(rig.catalog, "Trips/2024/Kyoto") == kyoto
    assert None is album_assets(rig.catalog, "Nowhere")

    # The photo only iCloud has: named and counted, and the phone never all safe.
    [icloud] = named(events, "device_originals_in_icloud")
    assert (1, True) == (icloud["count"], icloud["grew"])
    [(uuid, path, _)] = rig.catalog.in_icloud_only(UDID)
    assert (lib[3].uuid, "/DCIM/100APPLE/IMG_0777.HEIC") == (uuid, path)
    from photod import phonestatus
    from photod.models import PolicyRule

    record = rig.record()
    assert record is not None
    infos = {"lib": rig.fleet.targets["lib"].info}
    report = phonestatus.device_report(rig.catalog, record, PolicyRule(1, 1, 0), infos)
    assert [lib[3].uuid] == [p["uuid"] for p in report["in_icloud"]]
    assert [lib[4].uuid] == [p["uuid"] for p in report["not_listed"]]
    # Everything else is protected, yet the photos photod does not have bound "safe":
    # the iCloud-only one (2023) and the unlisted one, older (2022).
    assert [] == report["not_protected"]
    oldest = datetime(2022, 5, 6, 7, 8, 9, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert oldest.isoformat(timespec="seconds") == report["safe_before"]
    text = phonestatus.render_device(report)
    assert (
        "1 photos in this phone's library are not backed up: their originals are only in iCloud"
        in text
    )
    assert "not where photod reads the phone" in text
    assert "is protected: all" not in text


def test_sidecars_for_a_full_drive_are_said_once_and_written_once_there_is_room(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The drive fills up after a phone's import, its sidecars not written yet: each
    catch-up (every 30 s) said a `sidecar_failed` for each of them, then
    `sidecars_waiting`, each with the bytes it lacked then, for as long as the drive
    stayed full. It is one `sidecars_waiting`; once there is room they are written."""
    with tmpfs(tmp_path / "lib", "size=8m") as lib:
        rig = make_rig(reserve="1k")  # (a drive of 8 MB)
        phone, _, _ = library_phone(tmp_path)
        plug_and_import(rig, phone, events, 1)
        filler = lib / "filler.bin"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            while True:  # to the last page
                f.write(b"\0" * 4096)
                f.flush()
        keeper = LibraryKeeper(rig.catalog, threading.Event())
        target = rig.fleet.targets["lib"].target
        for _ in range(3):  # three catch-ups
            keeper.keep("lib", target)
        [waiting] = named(events, "sidecars_waiting")
        assert "full" in waiting["reason"]
        assert [] == named(events, "sidecar_failed")
        filler.unlink()
        keeper.keep("lib", target)
        assert 3 == len(list(lib.rglob("*.xmp")))
        rig.close()


def test_an_unchanged_phone_costs_one_copy_and_a_change_rewrites_only_its_sidecar(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    rig = make_rig()
    phone, db, lib = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    target = rig.fleet.targets["lib"].target
    keeper.sync("lib", target)
    sidecar = next(rig.lib.rglob("2B1E0F6C.JPG.xmp"))  # the iPad's photo
    original = sidecar.with_name("2B1E0F6C.JPG")
    before = (original.stat().st_ino, original.read_bytes())

    phone.reset_counters()
    plug_and_import(rig, phone, events, 2)
    assert named(events, "device_library_unchanged")
    assert 1 == len(named(events, "device_library_read"))  # not read again
    assert {p for p in phone.opened if not p.startswith("/PhotoData")} == set()  # no photo read
    assert 0 == keeper.sync("lib", target)
    # The iCloud-only count is said at every import; it notifies only when it grew.
    from photod.alerts import message_for

    said = named(events, "device_originals_in_icloud")
    assert [(1, True), (1, False)] == [(e["count"], e["grew"]) for e in said]
    assert message_for(said[0]) is not None and message_for(said[1]) is None

    # On the phone: starred, captioned and put in an album after the import.
    photoslib.update(
        db, lib[1].uuid, favorite=True, caption="the cat", add_to_album=("Trips", "2024", "Kyoto")
    )
    refresh(phone, db)
    phone.reset_counters()
    plug_and_import(rig, phone, events, 3)
    assert 2 == len(named(events, "device_library_read"))
    assert {p for p in phone.opened if not p.startswith("/PhotoData")} == set()
    assert 1 == keeper.sync("lib", target)  # only the one whose facts changed
    now = exiftool(sidecar)
    assert (5, "the cat") == (now["XMP-xmp:Rating"], now["XMP-dc:Description"])
    assert "Albums|Trips|2024|Kyoto" in now["XMP-lr:HierarchicalSubject"]
    assert before == (original.stat().st_ino, original.read_bytes())  # the original: untouched


@pytest.mark.parametrize("damage", ["garbage", "truncated", "unknown"])
def test_a_database_photod_cannot_read_is_one_event_and_every_file_is_imported(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path, damage: str
) -> None:
    rig = make_rig()
    phone, db, _ = library_phone(tmp_path)
    if damage == "garbage":
        photoslib.garbage(db)
        Path(f"{db}-wal").unlink()
    elif damage == "truncated":
        photoslib.truncate(db)
    else:
        Path(f"{db}-wal").unlink()
        Path(f"{db}-shm").unlink()
        db.unlink()
        photoslib.unknown_schema(db)
    for part in librarycopy.PARTS:
        phone.files.pop(part, None)
        local = tmp_path / "media" / part.lstrip("/")
        if local.exists():
            phone.files[part] = local.read_bytes()
    plug_and_import(rig, phone, events, 1)
    [bad] = named(events, "device_library_unreadable")
    assert bad["reason"] and "\n" not in bad["reason"]
    assert not named(events, "device_library_read")
    dcim = {p: b for p, b in phone.files.items() if p not in librarycopy.PARTS}
    assert {hashlib.sha256(b).hexdigest() for b in dcim.values()} == rig.on_target()
    assert [] == list(rig.lib.rglob("*.xmp"))
    # Every file is protected, but what the library would have said (photos only in
    # iCloud, deleted there too when deleted on the phone) is not known: nothing on the
    # phone is called safe to delete, and status says why.
    from photod import phonestatus
    from photod.models import PolicyRule

    record = rig.record()
    assert record is not None
    infos = {"lib": rig.fleet.targets["lib"].info}
    report = phonestatus.device_report(rig.catalog, record, PolicyRule(1, 1, 0), infos)
    assert ([], phonestatus.NOTHING_SAFE) == (report["not_protected"], report["safe_before"])
    assert bad["reason"] == report["library_unread"]
    assert "its Photos library could not be read" in phonestatus.render_device(report)


def test_a_rebuilt_catalog_takes_the_library_back_from_the_targets_index(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    rig = make_rig()
    phone, _, lib = library_phone(tmp_path, "15")
    plug_and_import(rig, phone, events, 1)
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    target = rig.fleet.targets["lib"].target
    keeper.sync("lib", target)
    index = json.loads((rig.lib / ".photod" / "library" / f"{UDID}.json").read_text())
    assert {a["uuid"] for a in index["assets"]} == {p.uuid for p in lib}
    assert ["Family", "Trips/2024/Kyoto"] == sorted("/".join(a["path"]) for a in index["albums"])

    fresh = Catalog(tmp_path / "fresh.sqlite")
    try:
        assert 1 == take_indexes(fresh, [("lib", target)])
        from photod.albums import album_assets

        assert album_assets(fresh, "Kyoto") == album_assets(rig.catalog, "Kyoto")
        assert [lib[3].uuid] == [u for u, _, _ in fresh.in_icloud_only(UDID)]
    finally:
        fresh.close()


def test_one_photo_in_two_libraries_gets_one_sidecar_written_once(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The same bytes in two phones' libraries (an iPhone's photo in the iPad's iCloud
    folder) with different facts: one sidecar, from one of them, and a second catch-up
    writes nothing (it does not flip between the two)."""
    rig = make_rig()
    phone, _, _ = library_phone(tmp_path / "a")
    plug_and_import(rig, phone, events, 1)
    ipad, db, lib = library_phone(tmp_path / "b", udid="00008027-000A1B2C3D4E5F61")
    photoslib.update(db, lib[0].uuid, caption="the iPad's caption")
    refresh(ipad, db)
    ipad.files = {**ipad.files, **{p: b for p, b in phone.files.items() if p.startswith("/DCIM")}}
    plug_and_import(rig, ipad, events, 2)
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    target = rig.fleet.targets["lib"].target
    assert 3 == keeper.sync("lib", target)
    assert 0 == keeper.sync("lib", target)
    assert 0 == keeper.sync("lib", target)


def test_a_title_two_albums_share_asks_for_the_full_name(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    from photod.albums import album_assets
    from photod.errors import PhotodError

    rig = make_rig()
    phone, _, _ = library_phone(tmp_path, more_albums=True)
    plug_and_import(rig, phone, events, 1)
    with pytest.raises(PhotodError, match=r"several albums are titled .Kyoto.*Trips/2019/Kyoto"):
        album_assets(rig.catalog, "Kyoto")
    assert album_assets(rig.catalog, "Trips/2019/Kyoto")


def test_an_index_from_a_newer_photod_is_read_and_a_damaged_one_is_said(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A fact this photod does not know (a newer one wrote the index) is left out; an
    index whose facts are not facts is one library_index_unreadable, and the rest of
    the catch-up goes on."""
    rig = make_rig()
    phone, _, _ = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    target = rig.fleet.targets["lib"].target
    LibraryKeeper(rig.catalog, threading.Event()).sync("lib", target)
    index = rig.lib / ".photod" / "library" / f"{UDID}.json"
    doc = json.loads(index.read_text())
    for a in doc["assets"]:
        a["facts"]["mood"] = "happy"  # from the future
    index.write_text(json.dumps(doc))
    (rig.lib / ".photod" / "library" / "00008027-000A1B2C3D4E5F61.json").write_text(
        json.dumps(
            {
                **doc,
                "udid": "00008027-000A1B2C3D4E5F61",
                "assets": [{**doc["assets"][0], "facts": "not facts"}],
            }
        )
    )
    fresh = Catalog(tmp_path / "fresh.sqlite")
    try:
        assert 1 == take_indexes(fresh, [("lib", target)])
        assert [UDID] == fresh.libraries()
        LibraryKeeper(fresh, threading.Event()).sync("lib", target)  # no TypeError
    finally:
        fresh.close()
    assert named(events, "library_index_unreadable")


def test_a_hostile_or_damaged_index_on_a_shared_target_is_one_event_each_never_a_crash(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """Another computer's folder on a shared target holds indexes of odd shapes (JSON
    that is not an object, a uuid that is an object, an album's path a number or its
    folders numbers, its photos not a list, a photo or an album twice, a photo without
    its sidecar digest, a UDID that climbs folders): each is one
    library_index_unreadable, the good index is taken, and `photod albums` and the next
    catch-up run on the rebuilt catalog."""
    from photod.albums import albums
    from photod.models import PolicyRule

    rig, target, doc, other = _indexed_phone(make_rig, tmp_path, events)
    bad: dict[str, Any] = {
        "not-an-object": [doc],
        "uuid-an-object": {**doc, "assets": [{**doc["assets"][0], "uuid": {"x": 1}}]},
        "path-a-number": {**doc, "albums": [{**doc["albums"][0], "path": 7}]},
        "folders-numbers": {**doc, "albums": [{**doc["albums"][0], "path": [1, 2]}]},
        "photos-not-a-list": {**doc, "albums": [{**doc["albums"][0], "assets": 3}]},
        "sha-a-list": {**doc, "files": [{**doc["files"][0], "sha256": ["a"]}]},
        "no-sidecar": {**doc, "assets": [{**doc["assets"][0], "sidecar": None}]},
        "uuid-twice": {**doc, "assets": [doc["assets"][0], doc["assets"][0]]},
        "album-twice": {**doc, "albums": [doc["albums"][0], doc["albums"][0]]},
        "climbs": {**doc, "udid": "../../../escaped"},
    }
    for n, (stem, d) in enumerate(bad.items()):
        udid = f"00008027-000A1B2C3D4E5F{n:02d}"
        body = {**d, "udid": udid} if isinstance(d, dict) and stem != "climbs" else d
        (other / f"{udid}.json").write_text(json.dumps(body, ensure_ascii=False))
    fresh = Catalog(tmp_path / "fresh.sqlite")
    try:
        assert 1 == take_indexes(fresh, [("lib", target)])
        assert [UDID] == fresh.libraries()
        assert albums(fresh, PolicyRule(0, 0, 0), {})
        LibraryKeeper(fresh, threading.Event()).sync("lib", target, "fresh.0123456789ab")
    finally:
        fresh.close()
    assert len(bad) == len(named(events, "library_index_unreadable"))
    assert not list(rig.lib.rglob("escaped*"))


def test_the_dashboard_shows_each_phone_month_by_month_and_its_albums(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """The dashboard's Phones page: `status --device`'s answer, the phone's photos month
    by month marked safe or not, the originals only in iCloud; the Library page lists
    the phone's albums and shows an album's photos; a photo the phone hides gets the
    placeholder, not its thumbnail."""
    from photod.catalog import IGNORED
    from photod.dashboard import data
    from photod.models import PolicyRule

    rig = make_rig()
    phone, _, lib = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    infos = {"lib": rig.fleet.targets["lib"].info}
    [shown] = data.phones(rig.catalog, PolicyRule(1, 1, 0), infos)
    assert "Anna's iPhone" == shown["name"]
    assert "only in iCloud" in shown["text"]
    assert [lib[3].uuid] == [p["uuid"] for p in shown["in_icloud"]]
    months = {m["month"]: (m["safe"], m["not"]) for m in shown["months"]}
    assert 4 == shown["protected"] and [] == shown["not_protected"]  # all on the target
    # ... yet only what was taken before the photos photod does not have is "safe to
    # delete", as status says it (deleting by date in Photos would take those too).
    dated = [f.taken_at for f, _, problem, _ in rig.catalog.device_files(UDID)
             if not problem.startswith(IGNORED)]  # fmt: skip
    safe = sum(1 for when in dated if when < shown["safe_before"])
    assert (safe, 4 - safe) == tuple(map(sum, zip(*months.values(), strict=True)))
    assert 0 == safe  # (the photos only in iCloud and not listed are the oldest)
    # Under a policy the one target cannot meet, nothing on the phone is safe.
    [strict] = data.phones(rig.catalog, PolicyRule(2, 1, 0), infos)
    assert 0 == sum(m["safe"] for m in strict["months"])
    assert 4 == sum(m["not"] for m in strict["months"])

    found = data.library(rig.catalog, PolicyRule(1, 1, 0), infos, "", "Trips/2024/Kyoto")
    assert {"Trips/2024/Kyoto", "Family"} <= {a["name"] for a in found["albums"]}
    assert 3 == len(found["assets"])  # IMG_0001, and IMG_0009's still and movie
    hidden = hashlib.sha256(phone.files["/PhotoData/CPLAssets/group12/2B1E0F6C.JPG"]).hexdigest()
    shown_one = hashlib.sha256(phone.files["/DCIM/100APPLE/IMG_0001.JPG"]).hexdigest()
    assert (True, False) == (data.hidden(rig.catalog, hidden), data.hidden(rig.catalog, shown_one))


def test_two_photos_or_albums_sharing_one_uuid_neither_stop_the_import_nor_lose_the_rest(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A library with two assets of one UUID and two albums without one (a damaged
    or half-synced database: Core Data enforces no uniqueness) is still read and kept:
    the import finishes, every album is listed, and the first photo of the UUID gets
    its sidecar.  Before, the catalog refused the rows (UNIQUE constraint) and the
    phone's import ended in an error at every plug-in."""
    rig = make_rig()
    phone, db, lib = library_phone(tmp_path)
    photoslib.sql(
        db,
        f"UPDATE ZASSET SET ZUUID = '{lib[0].uuid}' WHERE ZUUID = '{lib[2].uuid}'",
        "UPDATE ZGENERICALBUM SET ZUUID = NULL WHERE ZKIND = 2",
    )
    refresh(phone, db)
    plug_and_import(rig, phone, events, 1)
    assert not named(events, "device_library_unreadable")
    [read] = named(events, "device_library_read")
    assert (4, 2) == (read["assets"], read["albums"])
    record = rig.record()
    assert record is not None and record.last_import["library_unread"] == ""
    from photod.albums import albums
    from photod.models import PolicyRule

    listed = albums(rig.catalog, PolicyRule(0, 0, 0), {})
    assert ["Family", "Trips/2024/Kyoto"] == sorted(a.name for a in listed)
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    keeper.sync("lib", rig.fleet.targets["lib"].target)
    first = exiftool(next(rig.lib.rglob("IMG_0001.JPG.xmp")))
    assert ("Sunset", lib[0].uuid) == (first["XMP-dc:Title"], first["XMP-photod:Uuid"])


def test_finding_the_sidecars_due_on_a_large_library_takes_a_moment(tmp_path: Path) -> None:
    """Every catch-up asks the catalog which sidecars a target lacks; with 6,000 photos
    on the target and every sidecar written, the answer (none) comes in well under two
    seconds, and grows with the library, not its square.  Before, each photo's check
    that no original is named like its sidecar scanned all of the target's copies: 8 s
    here for 5,000 photos, 160 s for 20,000, at every catch-up, the catalog held all along."""
    from photod.catalog import LibraryRows
    from photod.library import LibraryAsset, facts_json
    from photod.models import Kind, Probe, VerifyMethod

    count = 6000
    catalog = Catalog(tmp_path / "catalog.db")
    info = Probe(Kind.PHOTO, "jpeg", datetime(2024, 1, 1), "exif", True)
    assets, files = [], []
    for i in range(count):
        sha, relpath = hashlib.sha256(b"%d" % i).hexdigest(), f"2024/01/IMG_{i:05d}.JPG"
        catalog.add_asset(sha, 1, relpath, info, "phones", relpath)
        catalog.add_replica(sha, "lib", relpath, 1, VerifyMethod.READBACK)
        photo = LibraryAsset(uuid=f"U{i}", directory="DCIM/100APPLE", filename=f"IMG_{i:05d}.JPG")
        assets.append((photo.uuid, photo.path, True, facts_json(photo), "digest"))
        files.append((photo.path, photo.uuid, sha))
    catalog.save_library(UDID, LibraryRows("digest", "schema", assets, files, []))
    due = catalog.sidecars_due("lib")
    assert count == len(due)
    for sha, relpath, *_ in due:
        catalog.sidecar_written(sha, "lib", relpath, "digest")
    started = time.monotonic()
    assert [] == catalog.sidecars_due("lib")
    assert time.monotonic() - started < 2.0


DARKTABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/" '
    b'x:xmptk="XMP Core 4.4.0-Exiv2">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#">\n  <rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/"'
    b' darktable:history_end="7"/>\n </rdf:RDF>\n</x:xmpmeta>\n'
)


def test_a_sidecar_photod_did_not_write_is_kept_when_the_photos_facts_change(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A file at the sidecar's name that photod did not write (darktable's, made when
    the person opened the backup in it: ``IMG_0001.JPG.xmp`` holds their edits) is left
    as it is, and still left when the photo is starred on the phone afterwards.  Before,
    the first round said so and left it, and the next change of facts replaced it with
    photod's sidecar: the person's edit history was gone."""
    rig = make_rig()
    phone, db, lib = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    keeper = LibraryKeeper(rig.catalog, threading.Event())
    target = rig.fleet.targets["lib"].target
    theirs = next(rig.lib.rglob("IMG_0001.JPG")).with_name("IMG_0001.JPG.xmp")
    theirs.write_bytes(DARKTABLE)
    keeper.sync("lib", target)
    assert 1 == len(named(events, "sidecar_name_taken"))
    assert DARKTABLE == theirs.read_bytes()

    photoslib.update(db, lib[0].uuid, favorite=False, caption="changed on the phone")
    refresh(phone, db)
    plug_and_import(rig, phone, events, 2)
    keeper.sync("lib", target)
    assert DARKTABLE == theirs.read_bytes()
    assert 2 == len(named(events, "sidecar_name_taken"))


def test_status_shows_a_photo_dated_at_the_calendars_edge_in_any_time_zone(
    make_rig: Callable[..., PhoneRig],
    events: Events,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A photo only in iCloud whose library date is 0001-01-01 00:00 UTC (an app wrote
    a zeroed date into its EXIF) is listed by `photod status --device` on a computer
    west of Greenwich, at the phone's own clock time.  Before, turning it into local
    time fell before year 1: OverflowError, and status could not be shown at all."""
    rig = make_rig()
    files = photos(tmp_path, 1)
    lib = [
        photoslib.Photo("IMG_0001.JPG"),
        photoslib.Photo("IMG_0002.HEIC", local=False, captured=datetime(1, 1, 1, tzinfo=UTC)),
    ]
    db = photoslib.build(tmp_path / "media", "18", lib)
    for part in librarycopy.PARTS:
        files[part] = (tmp_path / "media" / part.lstrip("/")).read_bytes()
    phone = MemPhone(UDID, files, name="Anna's iPhone")
    plug_and_import(rig, phone, events, 1)
    assert db.exists() and not named(events, "device_library_unreadable")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        from photod import phonestatus
        from photod.models import PolicyRule

        record = rig.record()
        assert record is not None
        infos = {"lib": rig.fleet.targets["lib"].info}
        report = phonestatus.device_report(rig.catalog, record, PolicyRule(1, 1, 0), infos)
        [missing] = report["in_icloud"]
        assert ("IMG_0002.HEIC", "0001-01-01T00:00:00") == (missing["name"], missing["taken_at"])
        assert "IMG_0002.HEIC: only in iCloud" in phonestatus.render_device(report)
    finally:
        monkeypatch.undo()
        time.tzset()


def _imported_and_reported(
    rig: PhoneRig,
    events: Events,
    tmp_path: Path,
    files: dict[str, bytes],
    lib: list[photoslib.Photo],
    copies: int,
) -> dict[str, Any]:
    """`photod status --device`'s report (as JSON) of a phone holding ``files`` and the
    library ``lib``, plugged in and imported, under a policy of ``copies`` copies."""
    from photod import phonestatus
    from photod.models import PolicyRule

    photoslib.build(tmp_path / "media", "18", lib)
    for part in librarycopy.PARTS:
        files[part] = (tmp_path / "media" / part.lstrip("/")).read_bytes()
    plug_and_import(rig, MemPhone(UDID, files, name="Anna's iPhone"), events, 1)
    record = rig.record()
    assert record is not None
    infos = {"lib": rig.fleet.targets["lib"].info}
    return phonestatus.device_report(rig.catalog, record, PolicyRule(copies, 1, 0), infos)


def test_safe_to_delete_never_takes_in_a_photo_taken_west_of_the_computer(
    make_rig: Callable[..., PhoneRig],
    events: Events,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A photo only in iCloud taken at 00:30 on 11 September in Hawaii (UTC-10), Photos
    showing it at that time, and a computer at home in Kiribati (UTC+14): `photod
    status --device` said "everything taken before 2026-09-12 00:30 is safe to
    delete", its own time in Kiribati, and the person deleted the photo dated the
    11th (from iCloud too).  Now the line is never after the photo's own clock time."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        rig = make_rig()
        files = photos(tmp_path, 1)
        hawaii = timezone(timedelta(hours=-10))
        lib = [
            photoslib.Photo("IMG_0001.JPG"),
            photoslib.Photo(
                "IMG_0002.HEIC", local=False, captured=datetime(2026, 9, 11, 0, 30, tzinfo=hawaii)
            ),
        ]
        report = _imported_and_reported(rig, events, tmp_path, files, lib, copies=1)
        [missing] = report["in_icloud"]
        from photod import phonestatus

        assert "2026-09-11T00:30:00" == missing["taken_at"] == report["safe_before"]
        text = phonestatus.render_device(report)
        assert "Everything taken before 2026-09-11 00:30:00 is safe to delete" in text
    finally:
        monkeypatch.undo()
        time.tzset()


def test_safe_to_delete_dates_a_screenshot_taken_west_of_the_computer_by_its_library(
    make_rig: Callable[..., PhoneRig],
    events: Events,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A screenshot (a PNG: no date of its own) taken at 00:30 on 11 September in
    Hawaii, imported but short of the policy, on a computer in Kiribati (UTC+14):
    `photod status --device` dated it by the phone's file time in Kiribati (as a video
    by its header's UTC time in Kiribati), so "everything taken before" took in the
    unprotected screenshot Photos shows on the 11th.  Its library's date, at the
    phone's clock, bounds it now."""
    from PIL import Image

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        rig = make_rig()
        files = photos(tmp_path, 1)
        shot = tmp_path / "shot.png"
        Image.new("RGB", (8, 8), (1, 2, 3)).save(shot)
        files["/DCIM/100APPLE/IMG_0002.PNG"] = shot.read_bytes()
        hawaii = timezone(timedelta(hours=-10))
        lib = [
            photoslib.Photo("IMG_0001.JPG"),
            photoslib.Photo("IMG_0002.PNG", captured=datetime(2026, 9, 11, 0, 30, tzinfo=hawaii)),
        ]
        report = _imported_and_reported(rig, events, tmp_path, files, lib, copies=2)
        taken = {p["path"]: p["taken_at"] for p in report["not_protected"]}
        assert "2026-09-11T00:30:00" == taken["/DCIM/100APPLE/IMG_0002.PNG"]
        assert report["safe_before"] <= "2026-09-11T00:30:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def _report_and_peak(
    catalog: Catalog, rule: Any, infos: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The report of the catalog's one phone, and the most memory making it held."""
    import tracemalloc

    from photod import phonestatus

    [record] = catalog.devices()
    tracemalloc.start()
    try:
        report = phonestatus.device_report(catalog, record, rule, infos)
        return report, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_phone_whose_every_file_is_protected_is_counted_without_holding_them(
    tmp_path: Path,
) -> None:
    """`photod status --device` and the phones page of a phone of 100,000 files, all
    of them protected: each held a row per file (30 MB) only to find none not
    protected.  Counted as they are read, what they hold stays small, and the report
    is the same: every file protected, all safe to delete; one file short of the
    policy is still named, and the phone no longer all safe."""
    import sqlite3

    from bench.scale import fill_phone
    from photod import phonestatus
    from photod.models import PolicyRule, TargetInfo

    n = 100_000
    db = tmp_path / "catalog.sqlite"
    shas = fill_phone(db, UDID, n, ["t7"])
    rule, infos = PolicyRule(1, 1, 0), {"t7": TargetInfo("t7", "external", False)}
    catalog = Catalog(db)
    try:
        report, peak = _report_and_peak(catalog, rule, infos)
        assert (n, n, [], None) == (report["on_phone"], report["protected"],
                                    report["not_protected"], report["safe_before"])  # fmt: skip
        assert f"all {n} files are safe to delete from the phone" in phonestatus.render_device(
            report
        )
        assert peak < 3 * 1024**2, f"{peak / 1024**2:.0f} MB held"
        with sqlite3.connect(db) as c:  # one photo's copy is not verified any more
            c.execute("UPDATE assets SET held='' WHERE sha256=?", (shas[5],))
        c.close()
        [record] = catalog.devices()
        report = phonestatus.device_report(catalog, record, rule, infos)
    finally:
        catalog.close()
    assert (n, n - 1) == (report["on_phone"], report["protected"])
    assert ["/DCIM/100APPLE/IMG_0000005.JPG"] == [p["path"] for p in report["not_protected"]]
    assert "2010-06-01T10:00:00" == report["safe_before"]


def test_a_phone_with_a_file_not_protected_is_judged_without_holding_every_file(
    tmp_path: Path,
) -> None:
    """`photod status --device` and the phones page of a phone of 100,000 files whose
    library photod has read, one Live Photo's movie short of the policy: the report held
    a row per file, the whole library with each photo's facts and an index of every
    still (147 MB; 293 MB for 200,000) to name two files.  Only the movie and the files
    that may share its item are held now, and the report is the same: the movie and its
    still (deleting the still deletes the movie) not safe, everything before them safe."""
    import sqlite3

    from bench.scale import fill_phone
    from photod import phonestatus
    from photod.catalog import LibraryRows
    from photod.library import LibraryAsset, facts_json
    from photod.models import PolicyRule, TargetInfo

    n = 100_000
    db = tmp_path / "catalog.sqlite"
    shas = fill_phone(db, UDID, n, ["t7"])
    still, movie = "/DCIM/100APPLE/IMG_0000005.JPG", "/DCIM/100APPLE/IMG_0000005.MOV"
    with sqlite3.connect(db) as c:  # IMG_0000006 is IMG_0000005's movie, not verified
        c.execute("UPDATE device_files SET path=? WHERE path='/DCIM/100APPLE/IMG_0000006.JPG'",
                  (movie,))  # fmt: skip
        c.execute("UPDATE assets SET held='' WHERE sha256=?", (shas[6],))
    c.close()
    catalog = Catalog(db)
    assets, files = [], []
    for i, sha in enumerate(shas):
        photo = LibraryAsset(uuid=f"U{i}", directory=f"DCIM/{100 + i // 1000}APPLE",
                             filename=f"IMG_{i:07d}.JPG", live=i == 5,
                             captured=datetime(2005 + i % 15, 1 + i % 12, 1, 1, tzinfo=UTC))  # fmt: skip
        if i != 6:
            assets.append((photo.uuid, photo.path, True, facts_json(photo), "digest"))
        files.append((photo.path if i != 6 else movie, "U5" if i == 6 else photo.uuid, sha))
    catalog.save_library(UDID, LibraryRows("digest", "schema", assets, files, []))
    del assets, files
    rule, infos = PolicyRule(1, 1, 0), {"t7": TargetInfo("t7", "external", False)}
    try:
        report, peak = _report_and_peak(catalog, rule, infos)
    finally:
        catalog.close()
    assert (n, n - 2) == (report["on_phone"], report["protected"])
    # (dated by the library's 01:00, earlier than the phone's listing of the movie)
    assert [(still, "2010-06-01T01:00:00", "deleting it deletes IMG_0000005.MOV with it, which "
             "is not protected"), (movie, "2010-06-01T01:00:00", "needs 1 more copy, 1 more kind of media")] == [
        (p["path"], p["taken_at"], p["why"]) for p in report["not_protected"]]  # fmt: skip
    assert "2010-06-01T01:00:00" == report["safe_before"]
    text = phonestatus.render_device(report)
    assert "Not yet    2" in text and "Everything taken before 2010-06-01 " in text, text
    assert peak < 3 * 1024**2, f"{peak / 1024**2:.0f} MB held"


def test_the_full_names_a_shared_title_is_answered_with_can_be_typed_back(
    tmp_path: Path,
) -> None:
    """Two albums titled "AC/DC" in two folders: `restore --album AC/DC` answers with
    their full names as `photod albums` lists them (``Concerts/AC\\/DC``), and each,
    typed back, is that album (they were shown with each "\\" doubled, and typed so
    named no album)."""
    from photod.albums import album_assets
    from photod.catalog import LibraryRows
    from photod.errors import PhotodError

    catalog = Catalog(tmp_path / "c.sqlite")
    try:
        files = [("a.jpg", "U1", "1" * 64), ("b.jpg", "U2", "2" * 64)]
        albums = [
            ("A1", '["Concerts","AC/DC"]', False, '["U1"]'),
            ("A2", '["Favourites","AC/DC"]', False, '["U2"]'),
        ]
        catalog.save_library(UDID, LibraryRows("digest", "schema", [], files, albums))
        with pytest.raises(PhotodError, match="several albums are titled 'AC/DC'") as err:
            album_assets(catalog, "AC/DC")
        named_so = str(err.value).partition(": ")[2].partition(";")[0].split(", ")
        assert ["'Concerts/AC\\/DC'", "'Favourites/AC\\/DC'"] == named_so
        assert [frozenset({"1" * 64}), frozenset({"2" * 64})] == [
            album_assets(catalog, n.strip("'")) for n in named_so
        ]
    finally:
        catalog.close()


def test_a_phone_another_computer_indexed_without_the_dash_is_listed_once(
    make_rig: Callable[..., PhoneRig], events: Events, tmp_path: Path
) -> None:
    """A phone imported here (usbmuxd gave its UDID with the dash) and on the family's
    other computer, whose usbmuxd dropped the dash: once a rebuild takes that computer's
    index too, `photod status` lists the phone once and `status --device` answers for
    it.  It was listed twice (once as `not seen`), and `status --device`, by its name
    or by its UDID, only said that two phones were called that."""
    from photod import phonestatus
    from photod.models import PolicyRule

    rig, target, doc, other = _indexed_phone(make_rig, tmp_path, events)
    bare = UDID.replace("-", "")
    (other / f"{bare}.json").write_text(json.dumps({**doc, "udid": bare}))
    assert 1 == take_indexes(rig.catalog, [("lib", target)])  # (as a rebuild takes it)

    infos = {"lib": rig.fleet.targets["lib"].info}
    report = {
        "devices": [
            phonestatus.device_report(rig.catalog, d, PolicyRule(1, 1, 0), infos)
            for d in phonestatus.known_phones(rig.catalog)
        ]
    }
    assert [UDID] == [d["udid"] for d in report["devices"]]
    for asked in (report["devices"][0]["name"], UDID, bare):
        found, why = phonestatus.find_device(report, asked)
        assert found is not None and UDID == found["udid"], why


def _indexed_phone(
    make_rig: Callable[..., PhoneRig], tmp_path: Path, events: Events
) -> tuple[PhoneRig, Any, dict[str, Any], Path]:
    """A phone imported, its library index written to the target ``lib``: the rig, that
    target, the index's JSON, and the (made) library folder of another installation."""
    rig = make_rig()
    phone, _, _ = library_phone(tmp_path)
    plug_and_import(rig, phone, events, 1)
    target = rig.fleet.targets["lib"].target
    LibraryKeeper(rig.catalog, threading.Event()).sync("lib", target)
    doc = json.loads((rig.lib / ".photod" / "library" / f"{UDID}.json").read_text())
    other = rig.lib / ".photod" / "installations" / "attic.0123456789ab" / "library"
    other.mkdir(parents=True)
    return rig, target, doc, other
