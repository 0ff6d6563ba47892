"""Reading a copy of the phone's Photos.sqlite: every fact a person set on the phone comes
back, for each iOS generation's names, including what is only in the -wal; decoys are
not taken; anything else is LibraryUnreadable with a reason."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from photod import xmp
from photod.errors import LibraryUnreadable
from photod.library import Album
from photod.phonelibrary import TEXT_MAX, read_library
from tests import photoslib
from tests.photoslib import GENERATIONS, Photo, album_uuid, build, members

ROME, CATS, OLD = ("Trips", "2024", "Rome"), ("Cats",), ("Trips", "Old")
GONE, EMPTY = ("Gone", "Inside"), ("Empty",)
TRASHED = [OLD, ("Gone",)]  # an album in the trash, and a folder (with its album)


def zone(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


def library() -> tuple[list[Photo], list[tuple[tuple[str, ...], list[str]]]]:
    """One photo or more for every fact, and albums in folders, in an order of their own."""
    day = datetime(2024, 5, 17, 18, 30, 5, tzinfo=zone(2))
    photos = [
        Photo("IMG_0001.HEIC", original_name="IMG_0001.HEIC", favorite=True, title="Trevi",
              caption="Coins in the fountain", keywords=("rome", "fountain", "rome"),
              people=("Ann Lee", "Bo Chen", "Ann Lee"), unnamed_faces=2, captured=day,
              latitude=41.9009, longitude=12.4833, edited=True),
        Photo("IMG_0002.MOV", video=True, hidden=True, captured=day.astimezone(zone(-7)),
              directory="DCIM/101APPLE"),
        Photo("IMG_0003.HEIC", trashed=True, live=True, captured=day.astimezone(zone(5.5))),
        Photo("IMG_0004.JPG", burst="8E1C-BURST", captured=day),
        Photo("IMG_0005.JPG", burst="8E1C-BURST", captured=day + timedelta(seconds=0.1)),
        Photo("IMG_0006.PNG", screenshot=True, captured=day),
        Photo("RPReplay_Final1715962205.MP4", video=True, screen_recording=True, captured=day),
        Photo("IMG_0008.HEIC", local=False, people=("Cy Twombly",), captured=day),
        Photo("IMG_0009.HEIC", captured=day, offset_stored=False),
        Photo("IMG_0010.HEIC", original_name="DSC_1234.NEF"),  # no date at all
    ]  # fmt: skip
    u = [p.uuid for p in photos]
    albums = [
        (ROME, [u[2], u[0], u[3]]),  # not the assets' order: the album's own
        (CATS, [u[1], u[0]]),
        (OLD, [u[4]]),
        (GONE, [u[5]]),
        (EMPTY, []),
    ]
    return photos, albums


def expected_albums(albums: list[tuple[tuple[str, ...], list[str]]]) -> list[Album]:
    trashed = {OLD, GONE}  # GONE's folder is in the trash
    found = [Album(album_uuid(p), p[-1], p, tuple(u), p in trashed) for p, u in albums]
    return sorted(found, key=lambda a: (a.path, a.uuid))


def hashes(db: Path) -> dict[str, str]:
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(db.parent.glob("Photos.sqlite*"))
    }


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_every_fact_set_on_the_phone_reads_back(tmp_path: Path, generation: str) -> None:
    """Favourites, hidden, Recently Deleted, titles, captions, keywords, named people,
    bursts, Live Photos, screenshots, screen recordings, edits, iCloud-only originals,
    time zones, no location, and albums with their folders and order: all as the phone
    has them, for each generation's table names."""
    photos, albums = library()
    db = build(tmp_path, generation, photos, albums, trashed=TRASHED,
               display_only={"Cy Twombly"})  # fmt: skip

    lib = read_library(db)

    places = members(albums, TRASHED)
    assert {p.uuid: p.expected(places.get(p.uuid, ())) for p in photos} == {
        a.uuid: a for a in lib.assets
    }
    # datetimes compare as instants: the offset each was taken at is checked on its own
    offsets = [(p.uuid, p.expected().captured) for p in photos]
    assert [(u, c and c.utcoffset()) for u, c in offsets] == [
        (a.uuid, a.captured and a.captured.utcoffset()) for a in lib.assets
    ]
    assert expected_albums(albums) == list(lib.albums)
    g = GENERATIONS[generation]
    assert (
        f"{g.asset_table}, albums {g.album_join}, keywords Z_1KEYWORDS, "
        f"faces ZDETECTEDFACE.{g.face[0]}/{g.face[1]}, edits {g.edits}"
    ) == lib.schema


def test_the_facts_read_as_a_person_sees_them(tmp_path: Path) -> None:
    """Spelled out once (iOS 18): what a person would look for in the import."""
    photos, albums = library()
    db = build(tmp_path, "18", photos, albums, trashed=TRASHED, display_only={"Cy Twombly"})

    a = {x.filename: x for x in read_library(db).assets}

    trevi = a["IMG_0001.HEIC"]
    assert ("Trevi", "Coins in the fountain") == (trevi.title, trevi.caption)
    assert (("fountain", "rome"), ("Ann Lee", "Bo Chen")) == (trevi.keywords, trevi.people)
    assert ((CATS, ROME), True, True) == (trevi.albums, trevi.favorite, trevi.edited)
    assert "2024-05-17T18:30:05+02:00" == trevi.captured.isoformat()  # type: ignore[union-attr]
    assert (41.9009, 12.4833) == (trevi.latitude, trevi.longitude)
    assert (None, None) == (a["IMG_0002.MOV"].latitude, a["IMG_0002.MOV"].longitude)
    assert "2024-05-17T09:30:05-07:00" == a["IMG_0002.MOV"].captured.isoformat()  # type: ignore[union-attr]
    assert "2024-05-17T22:00:05+05:30" == a["IMG_0003.HEIC"].captured.isoformat()  # type: ignore[union-attr]
    assert "2024-05-17T16:30:05+00:00" == a["IMG_0009.HEIC"].captured.isoformat()  # type: ignore[union-attr]
    assert None is a["IMG_0010.HEIC"].captured
    assert (True, True) == (a["IMG_0002.MOV"].video, a["IMG_0002.MOV"].hidden)
    assert (True, True) == (a["IMG_0003.HEIC"].trashed, a["IMG_0003.HEIC"].live)
    assert ["8E1C-BURST"] * 2 == [a["IMG_0004.JPG"].burst, a["IMG_0005.JPG"].burst]
    assert a["IMG_0006.PNG"].screenshot and a["RPReplay_Final1715962205.MP4"].screen_recording
    assert (False, ("Cy Twombly",)) == (a["IMG_0008.HEIC"].local, a["IMG_0008.HEIC"].people)
    assert [True] * 9 == [x.local for n, x in sorted(a.items()) if n != "IMG_0008.HEIC"]
    assert "DSC_1234.NEF" == a["IMG_0010.HEIC"].original_name
    assert () == a["IMG_0005.JPG"].albums  # its album is in the trash
    assert "/DCIM/101APPLE/IMG_0002.MOV" == a["IMG_0002.MOV"].path


def test_each_column_that_says_live_or_screenshot_is_read_on_its_own(tmp_path: Path) -> None:
    """A Live Photo is one by ZKINDSUBTYPE 2 or by ZPLAYBACKSTYLE 3; a screenshot by
    ZKINDSUBTYPE 10 or (iOS 18) ZISDETECTEDSCREENSHOT; a plain photo is neither."""
    photos = [
        Photo("A.HEIC", live=True, subtype=0),  # playback style only
        Photo("B.HEIC", live=True, playback=1),  # subtype only
        Photo("C.PNG", screenshot=True, subtype=0),  # detected screenshot only
        Photo("D.HEIC"),
    ]
    lib = read_library(build(tmp_path, "18", photos))

    assert [(True, False), (True, False), (False, True), (False, False)] == [
        (a.live, a.screenshot) for a in lib.assets
    ]


def test_rows_committed_only_in_the_wal_are_read(tmp_path: Path) -> None:
    """The phone commits into Photos.sqlite-wal: its last photos, and their places in an
    album, are read; the main file alone (what a copy without the -wal gives) misses them."""
    photos, albums = library()
    db = build(tmp_path / "phone", "17.6", photos, albums, wal_only=2, trashed=TRASHED)
    alone = tmp_path / "alone" / "Photos.sqlite"
    alone.parent.mkdir()
    shutil.copyfile(db, alone)
    newest = {photos[-1].uuid, photos[-2].uuid}

    with_wal = read_library(db)
    main_only = read_library(alone)

    assert newest <= {a.uuid for a in with_wal.assets}
    assert set() == newest & {a.uuid for a in main_only.assets}
    assert 10 == len(with_wal.assets) and 8 == len(main_only.assets)
    assert {p: u for p, u in albums} == {a.path: list(a.assets) for a in with_wal.albums}


def test_reading_leaves_the_copy_as_it_was(tmp_path: Path) -> None:
    """After reading, the -wal is still there and neither it nor the main file changed a
    byte (read-only: no checkpoint, no deletion), and a second read sees the same."""
    photos, albums = library()
    db = build(tmp_path, "18", photos, albums, wal_only=3)
    before = hashes(db)
    assert 0 < (db.parent / "Photos.sqlite-wal").stat().st_size

    first = read_library(db)
    second = read_library(db)

    after = hashes(db)
    assert (before["Photos.sqlite"], before["Photos.sqlite-wal"]) == (
        after["Photos.sqlite"],
        after["Photos.sqlite-wal"],
    )
    assert first == second


def test_a_missing_shm_is_rebuilt_from_the_wal(tmp_path: Path) -> None:
    """Without the -shm (not copied), the -wal's rows are still read."""
    photos, albums = library()
    db = build(tmp_path, "18", photos, albums, wal_only=2)
    (db.parent / "Photos.sqlite-shm").unlink()

    assert 10 == len(read_library(db).assets)


def test_decoy_joins_are_not_taken(tmp_path: Path) -> None:
    """The library holds tables named like an album join that a careless reader would
    take first (memories, suggestions, a stale album-shaped one with wrong members); the
    albums read are the real ones."""
    photos, albums = library()
    db = build(tmp_path, "18", photos, albums, trashed=TRASHED)
    conn = sqlite3.connect(db)
    like = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'Z_%ASSETS'")
    ]
    conn.close()
    assert "Z_30ASSETS" != like[0] and "Z_30ASSETS" != sorted(like)[0]
    assert "Z_3MEMORIESBEINGCURATEDASSETS" in like

    lib = read_library(db)

    assert expected_albums(albums) == list(lib.albums)
    assert "albums Z_30ASSETS," in lib.schema


def test_the_album_join_is_found_by_its_shape_when_the_entity_is_not_named(
    tmp_path: Path,
) -> None:
    """With no 'Album' in Z_PRIMARYKEY, the one table shaped like an album join (albums,
    assets and their order) is taken, not a decoy, and the log says so."""
    photos, albums = library()
    db = build(tmp_path, "15", photos, albums, trashed=TRASHED, omit={"entity:Album"})

    lib = read_library(db)

    assert expected_albums(albums) == list(lib.albums)
    assert "albums Z_27ASSETS (found by its shape)," in lib.schema


def test_without_the_album_join_the_library_is_unreadable(tmp_path: Path) -> None:
    """The decoys are not a fallback: without the real join the reason names the entity."""
    photos, albums = library()
    db = build(tmp_path, "18", photos, albums, omit={"Z_30ASSETS"})

    with pytest.raises(LibraryUnreadable) as caught:
        read_library(db)

    assert "no album join table for entity 30 (Album)" == caught.value.reason


def test_missing_optional_tables_and_columns_read_as_absent_facts(tmp_path: Path) -> None:
    """An older or unmigrated library without faces, keywords, captions, resources, burst
    or subtype columns still reads: those facts are empty, the others are all there."""
    photos, albums = library()
    omit = {"ZDETECTEDFACE", "Z_1KEYWORDS", "ZASSETDESCRIPTION", "ZINTERNALRESOURCE",
            "ZASSET.ZAVALANCHEUUID", "ZASSET.ZKINDSUBTYPE", "ZASSET.ZISDETECTEDSCREENSHOT",
            "ZADDITIONALASSETATTRIBUTES.ZTIMEZONEOFFSET", "ZGENERICALBUM.ZTRASHEDSTATE"}  # fmt: skip
    db = build(tmp_path, "18", photos, albums, omit=omit)

    lib = read_library(db)

    a = {x.filename: x for x in lib.assets}
    assert [((), (), "", "", True)] * 10 == [
        (x.keywords, x.people, x.caption, x.burst, x.local) for x in lib.assets
    ]
    assert ("Trevi", True, True) == (a["IMG_0001.HEIC"].title, a["IMG_0001.HEIC"].favorite,
                                     a["IMG_0001.HEIC"].edited)  # fmt: skip
    assert a["IMG_0003.HEIC"].live  # ZPLAYBACKSTYLE still says so
    assert (
        not a["IMG_0006.PNG"].screenshot and not a["RPReplay_Final1715962205.MP4"].screen_recording
    )
    assert timedelta(0) == a["IMG_0001.HEIC"].captured.utcoffset()  # type: ignore[union-attr]
    assert {ROME, CATS, OLD, GONE, EMPTY} == {x.path for x in lib.albums}
    assert not any(x.trashed for x in lib.albums)
    assert lib.schema.endswith("keywords none, faces none, edits ZADJUSTMENTSSTATE")


def test_null_location_and_odd_text_are_read_not_refused(tmp_path: Path) -> None:
    """A NULL location is no location, like -180.0; a title that is not UTF-8 reads with
    a replacement character instead of losing the library; a folder loop ends."""
    db = build(tmp_path, "18", [Photo("A.HEIC", latitude=1.5, longitude=2.5)], [(ROME, [])])
    photoslib.sql(db, "UPDATE ZASSET SET ZLATITUDE = NULL")
    photoslib.sql(db, "UPDATE ZADDITIONALASSETATTRIBUTES SET ZTITLE = CAST(x'ff4f4b' AS TEXT)")
    photoslib.sql(db, "UPDATE ZGENERICALBUM SET ZPARENTFOLDER = "
                      "(SELECT Z_PK FROM ZGENERICALBUM WHERE ZTITLE = '2024') WHERE ZTITLE = 'Trips'")  # fmt: skip

    lib = read_library(db)

    assert (None, None, "\ufffdOK") == (lib.assets[0].latitude, lib.assets[0].longitude,
                                        lib.assets[0].title)  # fmt: skip
    assert ("Rome",) == tuple(a.title for a in lib.albums)


def test_a_virtual_table_of_a_module_this_sqlite_lacks_is_passed_by(tmp_path: Path) -> None:
    """A table made by a module only the phone has (say, a search index) does not stop
    the read: only real tables are looked into."""
    db = build(tmp_path, "18", [Photo("A.HEIC", favorite=True)])
    photoslib.sql(db, "PRAGMA writable_schema = ON",
                  "INSERT INTO sqlite_master VALUES ('table', 'ZSEARCHINDEX', 'ZSEARCHINDEX', "
                  "0, 'CREATE VIRTUAL TABLE ZSEARCHINDEX USING phonesearch(a)')")  # fmt: skip

    [asset] = read_library(db).assets

    assert asset.favorite


def test_a_change_on_the_phone_shows_in_the_next_read(tmp_path: Path) -> None:
    """The phone favourites a photo, captions it and puts it in an album, into the -wal
    (the main file unchanged): the next read of a fresh copy has it all."""
    photos, albums = library()
    db = build(tmp_path, "17.6", photos, albums)
    main = hashlib.sha256(db.read_bytes()).hexdigest()
    uuid = photos[9].uuid

    photoslib.update(db, uuid, favorite=True, caption="Dad's camera", add_to_album=ROME)

    assert main == hashlib.sha256(db.read_bytes()).hexdigest()
    lib = read_library(db)
    [asset] = [a for a in lib.assets if a.uuid == uuid]
    assert (True, "Dad's camera", (ROME,)) == (asset.favorite, asset.caption, asset.albums)
    [rome] = [a for a in lib.albums if a.path == ROME]
    assert (photos[2].uuid, photos[0].uuid, photos[3].uuid, uuid) == rome.assets


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: photoslib.garbage(p), "not a SQLite database (another kind of file, or encrypted)"),
        (lambda p: p.write_bytes(b"") and p, "empty file (0 bytes), not a Photos database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00\x10\x00") and p, "truncated: 18 bytes, shorter than a SQLite header"),
        (lambda p: photoslib.unknown_schema(p), "no asset table (ZASSET or ZGENERICASSET)"),
        (lambda p: p, "no such file"),
    ],
    ids=["garbage", "empty", "header-only", "unknown-schema", "missing"],
)  # fmt: skip
def test_a_file_that_is_not_a_library_says_why(tmp_path: Path, make: object, reason: str) -> None:
    """Each gives LibraryUnreadable, never another exception, with a one-line reason."""
    db = tmp_path / "Photos.sqlite"
    make(db)  # type: ignore[operator]

    with pytest.raises(LibraryUnreadable) as caught:
        read_library(db)

    assert reason == caught.value.reason
    assert "\n" not in str(caught.value) and str(db) in str(caught.value)


def test_a_truncated_copy_says_so(tmp_path: Path) -> None:
    """A copy cut short (an interrupted transfer) is damaged or truncated, with sizes."""
    photos, albums = photoslib.sample(2000, 20)
    db = photoslib.truncate(build(tmp_path, "18", photos, albums))

    with pytest.raises(LibraryUnreadable) as caught:
        read_library(db)

    assert caught.value.reason.startswith("damaged or truncated: ")
    assert "bytes of the" in caught.value.reason


def test_a_library_without_core_data_keys_says_so(tmp_path: Path) -> None:
    """Assets but no Z_PRIMARYKEY: not a Core Data store photod can read."""
    db = build(tmp_path, "18", [Photo("A.HEIC")], omit={"Z_PRIMARYKEY"})

    with pytest.raises(LibraryUnreadable, match="no Z_PRIMARYKEY table"):
        read_library(db)


def test_twenty_thousand_photos_and_five_hundred_albums_read_whole(tmp_path: Path) -> None:
    """A big library reads whole and correct.  (How fast is measured where a loaded
    machine cannot fail it: `bench/iphone.py --library 20000`, in bench/RESULTS.md.)"""
    photos, albums = photoslib.sample(20_000, 500)
    db = build(tmp_path, "18", photos, albums, wal_only=500)

    lib = read_library(db)

    places = members(albums)
    assert {p.uuid: p.expected(places.get(p.uuid, ())) for p in photos} == {
        a.uuid: a for a in lib.assets
    }
    assert 500 == len(lib.albums)


def test_captured_is_utc_when_the_phone_knows_no_offset(tmp_path: Path) -> None:
    """An offset the phone did not store (or an impossible one) leaves the instant in UTC."""
    taken = datetime(2020, 1, 1, 12, tzinfo=UTC)
    db = build(tmp_path, "15", [Photo("A.HEIC", captured=taken)])
    photoslib.sql(db, "UPDATE ZADDITIONALASSETATTRIBUTES SET ZTIMEZONEOFFSET = 999999")

    [asset] = read_library(db).assets

    assert "2020-01-01T12:00:00+00:00" == asset.captured.isoformat()  # type: ignore[union-attr]


def test_a_library_made_to_exhaust_the_computer_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library is the phone's, so untrusted.  One 2 MB caption that every photo
    points to (a few MB of file, gigabytes once read per photo) is read cut at
    TEXT_MAX characters; a read that SQLite spends too long on (joins made slow on
    purpose), or that is stopped (the phone unplugged, photod stopping), ends as one
    LibraryUnreadable, not a thread that runs for hours."""
    import threading

    from photod import phonelibrary

    photos = [Photo(f"IMG_{i:04d}.HEIC", caption="x" if i == 0 else "") for i in range(300)]
    db = build(tmp_path / "bomb", "17", photos)
    photoslib.sql(
        db,
        "UPDATE ZASSETDESCRIPTION SET ZLONGDESCRIPTION = replace(hex(zeroblob(1000000)), '00', 'xy')",
        "UPDATE ZADDITIONALASSETATTRIBUTES SET ZASSETDESCRIPTION = (SELECT MIN(Z_PK) FROM ZASSETDESCRIPTION)",
    )  # fmt: skip
    lib = read_library(db)
    captions = [a.caption for a in lib.assets]
    assert 300 == len(captions) and 300 == captions.count("xy" * (phonelibrary.TEXT_MAX // 2))
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(LibraryUnreadable):
        read_library(db, stopped)
    monkeypatch.setattr(phonelibrary, "READ_MAX", 0.0)
    with pytest.raises(LibraryUnreadable, match="took over 0 s"):
        read_library(db)


@pytest.mark.parametrize("shape", ["captions", "keywords"])
def test_a_small_file_whose_rows_share_long_texts_cannot_fill_the_memory(
    tmp_path: Path, shape: str
) -> None:
    """A few-megabyte Photos.sqlite whose rows share long texts (every read text is cut
    at 4,096 characters): 40,000 photo rows all pointing at one row with a title, a
    file name and a caption that long, or 100 keywords that long joined to each of
    3,000 rows. Read row by row, each took over a gigabyte at every plug-in of the
    phone. A text many rows share is kept once, and a library whose photos' texts add
    up to more than any phone's is refused with its reason as soon as they do, in a
    fraction of that memory (measured in a child process)."""
    import json
    import subprocess
    import sys

    db = build(tmp_path, "17", [Photo("IMG_0001.HEIC", title="t", caption="c", keywords=("k",))])
    big = "x" * 4096
    con = sqlite3.connect(db)
    with con:
        if shape == "captions":
            con.execute("UPDATE ZADDITIONALASSETATTRIBUTES SET ZTITLE=?, ZORIGINALFILENAME=?",
                        (big, big))  # fmt: skip
            con.execute("UPDATE ZASSETDESCRIPTION SET ZLONGDESCRIPTION=?", (big,))
            (shared,) = con.execute("SELECT ZADDITIONALATTRIBUTES FROM ZASSET").fetchone()
            con.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40000) "
                "INSERT INTO ZASSET (ZUUID, ZDIRECTORY, ZFILENAME, ZADDITIONALATTRIBUTES) "
                "SELECT 'U'||i, 'DCIM/100APPLE', 'IMG_'||i||'.HEIC', ? FROM n",
                (shared,),
            )
        else:
            (ent,) = con.execute("SELECT Z_ENT FROM ZKEYWORD").fetchone()
            con.execute("DELETE FROM ZKEYWORD")
            con.execute("DELETE FROM Z_1KEYWORDS")
            con.executemany("INSERT INTO ZKEYWORD (Z_PK, Z_ENT, Z_OPT, ZTITLE) VALUES (?,?,1,?)",
                            [(k, ent, chr(65 + k % 26) * 4000 + str(k)) for k in range(1, 101)])  # fmt: skip
            con.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000) "
                "INSERT INTO Z_1KEYWORDS SELECT n.i, k.Z_PK FROM n, ZKEYWORD AS k"
            )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    child = (
        "import json, sys\n"
        "from photod.errors import LibraryUnreadable\n"
        "from photod.phonelibrary import read_library\n"
        "try:\n    read_library(__import__('pathlib').Path(sys.argv[1])); why = ''\n"
        "except LibraryUnreadable as exc:\n    why = exc.reason\n"
        # (VmHWM: this process's own peak; ru_maxrss keeps the parent's, a test worker's)
        "peak = [int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM')][0]\n"
        "print(json.dumps([why, peak]))"
    )
    out = subprocess.run([sys.executable, "-c", child, str(db)], capture_output=True,
                         text=True, timeout=300, check=True).stdout  # fmt: skip
    why, peak_mb = json.loads(out)
    if shape == "captions":
        assert "texts add up to more than" in why and "no phone's library is made like" in why
    else:  # one photo with 100 long keywords: read
        assert "" == why
    assert peak_mb < 150, f"{peak_mb} MB"


def test_a_nul_inside_a_text_does_not_end_it(tmp_path: Path) -> None:
    """A title, caption, keyword, person's name and album title holding a NUL are read
    whole: the sidecar drops the NUL (XML cannot carry it) and exiftool reads back all
    the rest.  Before, SQLite's substr() ended each text at its NUL: "Rome\\0 at dusk"
    was kept as "Rome", and all of a caption after a NUL was lost."""
    nul, caption = "Rome\x00 at dusk <&>", "first\x00" + "second " * 700
    photo = Photo("IMG_0001.HEIC", title=nul, caption=caption, keywords=(nul,), people=(nul,))
    db = build(tmp_path, "18", [photo], [(("Trips", nul), [photo.uuid])])
    [asset] = read_library(db).assets
    assert (nul, caption[:TEXT_MAX], (nul,), (nul,), (("Trips", nul),)) == (
        asset.title, asset.caption, asset.keywords, asset.people, asset.albums
    )  # fmt: skip
    sidecar = tmp_path / "IMG_0001.HEIC.xmp"
    sidecar.write_bytes(xmp.sidecar(asset))
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl")
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", str(sidecar)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    tags = json.loads(out.stdout)[0]
    seen = "Rome at dusk <&>"
    assert seen == tags["XMP-dc:Title"]
    assert caption[:TEXT_MAX].replace("\x00", "") == tags["XMP-dc:Description"]
    assert ["Albums|Trips|" + seen, seen] == tags["XMP-lr:HierarchicalSubject"]
    assert [seen] == tags["XMP-iptcExt:PersonInImage"]
