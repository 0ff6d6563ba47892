"""Layout and naming: where a file lands on a target, and that no name escapes it."""

from __future__ import annotations

import unicodedata
from datetime import datetime

import pytest

from photod.errors import UnsafeName
from photod.media import (
    DEFAULT_IGNORE,
    DEFAULT_LAYOUT,
    check_key,
    companion_key,
    is_ignored,
    kind_from_name,
    layout_key,
    safe_name,
    suffixed,
)
from photod.models import Kind

WHEN = datetime(2024, 3, 9, 23, 59, 58)


def test_default_layout_is_year_day_name() -> None:
    """The default layout is {year}/{year}-{month}-{day}/{original name}."""
    assert "2024/2024-03-09/IMG_0001.HEIC" == layout_key(
        DEFAULT_LAYOUT, "IMG_0001.HEIC", WHEN, Kind.PHOTO, "inbox"
    )


def test_custom_layout_fields() -> None:
    """Every template field renders."""
    key = layout_key(
        "{source}/{kind}/{year}{month}{day}-{hour}{minute}{second}-{stem}.{ext}",
        "a.jpg",
        WHEN,
        Kind.PHOTO,
        "phone",
    )
    assert "phone/photo/20240309-235958-a.jpg" == key


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("/abs/olute.jpg", "_abs_olute.jpg"),
        ("nul\x00byte.jpg", "nul_byte.jpg"),
        ("tab\tnew\nline.jpg", "tab_new_line.jpg"),
        ("back\\slash.jpg", "back_slash.jpg"),
        ("..", "_"),
        (unicodedata.normalize("NFD", "Café.jpg"), "Café.jpg"),
        ("bad\udcffbyte.jpg", "bad\ufffdbyte.jpg"),
        ('12:30 "best?" <1|2>*.jpg', "12_30 _best__ _1_2__.jpg"),
        ("trailing dot.", "trailing dot"),
        ("CON.jpg", "CON_.jpg"),
        ("lpt1", "lpt1_"),
        ("Aux.tar.gz", "Aux_.tar.gz"),
        ("COM0.jpg", "COM0.jpg"),
        ("CONSOLE.jpg", "CONSOLE.jpg"),
        ("space dot .", "space dot _"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    """Hostile names become safe, NFC, single-component names, deterministically."""
    assert expected == safe_name(name)
    check_key(safe_name(name))


def test_overlong_name_is_cut_keeping_extension() -> None:
    """A 300-byte name is cut under the filesystem limit and keeps its extension."""
    name = "é" * 150 + ".HEIC"
    out = safe_name(name)
    assert out.endswith(".HEIC")
    assert len(out.encode()) <= 200
    assert out == safe_name(name)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/x",
        "a/../b",
        "a//b",
        "./a",
        "a/\x00",
        "a\\b",
        unicodedata.normalize("NFD", "é.jpg"),
        "x" * 256,
    ],
)
def test_check_key_refuses(key: str) -> None:
    """Keys that could leave the target root, or differ by normalisation, are refused."""
    with pytest.raises(UnsafeName):
        check_key(key)


def test_suffix_is_deterministic_and_keeps_extension() -> None:
    """A second, different file with the same name gets the start of its own hash."""
    assert "2024/2024-03-09/IMG_0001~abcdef12.HEIC" == suffixed(
        "2024/2024-03-09/IMG_0001.HEIC", "abcdef12" + "0" * 56
    )


def test_companion_follows_the_still() -> None:
    """A Live Photo movie and an AAE sidecar take the still's folder and stem, suffix included."""
    assert "2024/2024-03-09/IMG_0001~abcdef12.MOV" == companion_key(
        "2024/2024-03-09/IMG_0001~abcdef12.HEIC", "IMG_0001.MOV"
    )
    assert "2024/2024-03-09/IMG_0001.AAE" == companion_key(
        "2024/2024-03-09/IMG_0001.HEIC", "IMG_0001.AAE"
    )


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("a.jpg.part", True),
        ("x.TMP", True),
        ("f.crdownload", True),
        ("f.download", True),
        ("~$doc.jpg", True),
        ("._IMG_1.JPG", True),
        (".DS_Store", True),
        (".IMG_1.HEIC.icloud", True),
        ("IMG_2.MOV.!sync", True),
        ("IMG_3.MP4.!qB", True),
        (".goutputstream-4XK2Q1", True),
        (".dropbox.cache/x/IMG.jpg", True),
        ("sub/.Trashes/IMG.jpg", True),
        ("IMG_0001.HEIC", False),
        ("2024/holiday/IMG_0001.JPG", False),
        ("partial.jpg", False),
    ],
)
def test_default_ignore(path: str, ignored: bool) -> None:
    """Temporary, partial and placeholder files and sync-client caches are skipped."""
    assert ignored == is_ignored(path, DEFAULT_IGNORE)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.JPG", Kind.PHOTO),
        ("a.heic", Kind.PHOTO),
        ("a.Mov", Kind.VIDEO),
        ("a.mp4", Kind.VIDEO),
        ("a.DNG", Kind.RAW),
        ("a.cr3", Kind.RAW),
        ("a.AAE", Kind.SIDECAR),
        ("a.xmp", Kind.SIDECAR),
        ("a.txt", None),
        ("noext", None),
    ],
)
def test_kind_from_extension_any_case(name: str, kind: Kind | None) -> None:
    """Photo, video, RAW and sidecar types are recognised by extension in any case."""
    assert kind == kind_from_name(name)


def test_a_watch_folder_and_a_phone_pair_files_by_one_rule() -> None:
    """What a movie or sidecar belongs with is one rule (media.lead_of): the same names
    give the same answers in a folder and in a phone's listing."""
    from photod import phoneplan
    from photod.media import lead_of, still_index

    names = ["IMG_0001.HEIC", "img_0001.mov", "IMG_0001.AAE", "IMG_0002.MOV",
             "IMG_0003.JPG", "IMG_0003.DNG", "IMG_0003.xmp", "IMG_0004.HEIC",
             "IMG_0004.HEIC.xmp", "IMG_0005.JPG.xmp"]  # fmt: skip
    expected = {
        "IMG_0001.HEIC": None,  # a still leads itself
        "img_0001.mov": "IMG_0001.HEIC",  # any case
        "IMG_0001.AAE": "IMG_0001.HEIC",
        "IMG_0002.MOV": None,  # a plain video
        "IMG_0003.JPG": None,
        "IMG_0003.DNG": None,
        "IMG_0003.xmp": "IMG_0003.DNG",  # two stills: the first in name order
        "IMG_0004.HEIC": None,
        "IMG_0004.HEIC.xmp": "IMG_0004.HEIC",  # as Photos' and osxphotos' exports name it
        "IMG_0005.JPG.xmp": None,  # its photo is not there
    }
    folder = {name: lead_of(name, still_index(names)) for name in names}
    index = phoneplan.stills(f"/DCIM/100APPLE/{n}" for n in names)
    phone = {n: phoneplan.lead(f"/DCIM/100APPLE/{n}", index) for n in names}
    assert expected == folder
    assert {n: (f"/DCIM/100APPLE/{v}" if v else None) for n, v in expected.items()} == phone


@pytest.mark.parametrize(
    ("name", "live", "waits"),
    [
        ("IMG_0001.AAE", False, True),  # an edit: only ever a photo's
        ("img_0001.aae", False, True),
        ("IMG_0001.MOV", True, True),  # a Live Photo's movie (Apple's content identifier)
        ("IMG_0001.MOV", False, False),  # a video of its own: never held
        ("MVI_0001.MP4", False, False),
        ("IMG_0001.HEIC.xmp", False, True),  # named after a photo
        ("IMG_0001.CR2.XMP", False, True),
        ("IMG_0001.xmp", False, False),  # a plain name: a preset, a note
        ("notes.xmp", False, False),
        ("MVI_0001.THM", False, False),  # a camera video's thumbnail, not a still's
    ],
)
def test_what_waits_for_a_still_that_is_not_there_yet(name: str, live: bool, waits: bool) -> None:
    """A file that belongs with a still (an .AAE, an .XMP named after a photo, a Live
    Photo's movie) is worth a moment's wait for it; a video of its own is not."""
    from photod.media import waits_for_still

    assert waits == waits_for_still(name, live)


def test_a_phones_files_belong_to_their_library_asset_by_identity() -> None:
    """With the phone's library read, a photo's files are one asset by its UUID: the
    original the database names, its movie and .AAE, the IMG_E edit and IMG_O
    adjustments of its number, and its renders under Mutations, whatever their case;
    a file of no asset is left to the name rules."""
    from photod import phoneplan
    from photod.library import LibraryAsset

    assets = [
        LibraryAsset("U1", "DCIM/100APPLE", "IMG_0001.HEIC", live=True),
        LibraryAsset("U2", "DCIM/101APPLE", "IMG_0001.JPG"),
    ]
    paths = [
        "/DCIM/100APPLE/IMG_0001.HEIC",
        "/DCIM/100APPLE/img_0001.mov",
        "/DCIM/100APPLE/IMG_0001.AAE",
        "/DCIM/100APPLE/IMG_E0001.JPG",
        "/DCIM/100APPLE/IMG_O0001.AAE",
        "/PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.heic",
        "/DCIM/101APPLE/IMG_0001.JPG",
        "/DCIM/101APPLE/IMG_0002.JPG",
    ]
    owner = phoneplan.by_identity(assets, paths, {})
    assert {p: "U1" for p in paths[:6]} | {"/DCIM/101APPLE/IMG_0001.JPG": "U2"} == owner


def test_a_live_photos_movie_is_its_stills_by_the_identifier_it_carries() -> None:
    """A Live Photo's movie whose name says nothing of its still (an import, a shared
    or restored library) is the still's asset by the content identifier it carries,
    the media group the library gives the still; it wins over a misleading name, and
    a movie naming no group the library knows is left to the names."""
    from photod import phoneplan
    from photod.library import LibraryAsset

    assets = [
        LibraryAsset("U1", "DCIM/100APPLE", "IMG_0001.HEIC", live=True, media_group="G1"),
        LibraryAsset("U2", "DCIM/100APPLE", "IMG_0002.HEIC", live=True, media_group="G2"),
    ]
    paths = ["/DCIM/100APPLE/IMG_0001.HEIC", "/DCIM/100APPLE/IMG_0002.HEIC",
             "/DCIM/103APPLE/CLIP_7731.MOV", "/DCIM/100APPLE/IMG_0002.MOV",
             "/DCIM/100APPLE/IMG_0001.MOV"]  # fmt: skip
    groups = {"/DCIM/103APPLE/CLIP_7731.MOV": "G1", "/DCIM/100APPLE/IMG_0002.MOV": "G1",
              "/DCIM/100APPLE/IMG_0001.MOV": "NOT-IN-THE-LIBRARY"}  # fmt: skip
    owner = phoneplan.by_identity(assets, paths, groups)
    assert {"/DCIM/103APPLE/CLIP_7731.MOV": "U1", "/DCIM/100APPLE/IMG_0002.MOV": "U1",
            "/DCIM/100APPLE/IMG_0001.MOV": "U1"} == {p: owner[p] for p in groups}  # fmt: skip
