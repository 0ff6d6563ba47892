"""The XMP sidecar, read back by the real exiftool: every fact lands under the tag other
tools read, hostile text survives exactly, and the bytes depend on the facts alone."""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from photod import xmp
from photod.library import LibraryAsset

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
DC = "{http://purl.org/dc/elements/1.1/}"
PHOTOD = "{" + xmp.NAMESPACE + "}"
PLUS2 = timezone(timedelta(hours=2))

FULL = LibraryAsset(
    uuid="9F1C2A3B-0000-4C5D-8E7F-ABCDEF012345",
    directory="DCIM/100APPLE",
    filename="IMG_0001.HEIC",
    original_name="IMG_0001.HEIC",
    favorite=True,
    hidden=True,
    trashed=True,
    title="Colosseum at dusk",
    caption="Our first evening in Rome.\nTired, happy.",
    keywords=("travel", "architecture"),
    people=("Anna Rossi", "Ben"),
    albums=(("Trips", "2024", "Rome"), ("Favourites of Ben",)),
    captured=datetime(2024, 5, 1, 12, 0, 0, tzinfo=PLUS2),
    latitude=41.890251,
    longitude=12.492373,
    live=True,
    burst="BURST-77",
    screenshot=True,
    screen_recording=True,
    edited=True,
    local=False,
)
BARE = LibraryAsset(uuid="", directory="", filename="")

# Hostile text: XML metacharacters, a CDATA end, the packet's own end marker, controls
# (forbidden ones and the three allowed), emoji, right-to-left, decomposed accents, CR.
NASTY = 'a & b < c > d " e \' f ]]> g <?xpacket end="w"?> h <!-- i --> &amp; &#x41;'
FORBIDDEN = "\x00\x01\x08\x0b\x0c\x1b\x1f\ufffe\uffff\ud800\udfff"
KEPT = "tab\there\nline\r\ncr\remoji 👨‍👩‍👧 🇮🇹 עברית العربية e\u0301 \u0085\u00a0 \ufdd0 \U0010fffd"
HOSTILE = LibraryAsset(
    uuid="uuid <&>",
    directory="DCIM",
    filename="x.jpg",
    original_name="name\x00 & <b>",
    title=NASTY + FORBIDDEN + KEPT,
    caption=FORBIDDEN + KEPT + NASTY,
    keywords=("a|b", "<kw> & 'q'", "]]>", "emoji 🦄" + FORBIDDEN, "\x07"),
    people=("O'Brien & <Sons>", "Zoë|Piped", "\u202eevil"),
    albums=(("Folder|One", "Album <1> & ]]>"),),
    burst='b"urst',
)


def clean(text: str) -> str:
    """What survives: the text without the characters XML 1.0 forbids."""
    for c in FORBIDDEN:
        text = text.replace(c, "")
    return text


EXIFTOOL = "/usr/bin/exiftool"  # where Debian's libimage-exiftool-perl puts it


def exiftool() -> str:
    """The real exiftool; missing, the test fails (a sidecar nobody checked proves nothing)."""
    found = shutil.which("exiftool") or EXIFTOOL
    if not Path(found).is_file():
        pytest.fail("exiftool not found: apt-get install libimage-exiftool-perl")
    return found


def read(path: Path, *tags: str) -> dict[str, Any]:
    """exiftool's view of one file (``tags``, or all): numbers as numbers, groups named,
    its validation, warnings and errors included."""
    checks = ["-validate", "-warning", "-error"]  # -validate alone prints only itself
    result = subprocess.run(
        [
            exiftool(),
            "-j",
            "-n",
            "-G1",
            "-struct",
            "-a",
            *checks,
            *(tags or ["-all:all"]),
            str(path),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    [found] = json.loads(result.stdout)
    return {k: v for k, v in found.items() if not k.startswith(("System:", "File:"))}


def write(tmp_path: Path, asset: LibraryAsset, device: str = "") -> Path:
    """The sidecar, named as it is kept beside the original."""
    path = tmp_path / f"{asset.filename or 'bare'}{xmp.SUFFIX}"
    path.write_bytes(xmp.sidecar(asset, device))
    return path


def listed(value: Any) -> list[Any]:
    """exiftool prints a one-entry list as its entry."""
    return value if isinstance(value, list) else [value]


def assert_clean(tags: dict[str, Any]) -> None:
    """exiftool found nothing wrong: no warning, no error, validation "0 0 0"."""
    problems = {k: v for k, v in tags.items() if k.endswith((":Warning", ":Error"))}
    assert {} == problems
    assert "0 0 0" == tags["ExifTool:Validate"]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return read(write(tmp_path_factory.mktemp("full"), FULL, device="Anna's iPhone"))


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("XMP-dc:Title", "Colosseum at dusk"),
        ("XMP-dc:Description", "Our first evening in Rome.\nTired, happy."),
        ("XMP-dc:Subject", ["architecture", "travel"]),
        ("XMP-xmp:Rating", 5),
        (
            "XMP-lr:HierarchicalSubject",
            ["Albums|Favourites of Ben", "Albums|Trips|2024|Rome", "architecture", "travel"],
        ),
        ("XMP-iptcExt:PersonInImage", ["Anna Rossi", "Ben"]),
        ("XMP-exif:DateTimeOriginal", "2024:05:01 12:00:00+02:00"),
        ("XMP-photoshop:DateCreated", "2024:05:01 12:00:00+02:00"),
        ("XMP-xmp:CreateDate", "2024:05:01 12:00:00+02:00"),
        ("XMP-exif:GPSVersionID", "2.2.0.0"),
        ("XMP-photod:Uuid", "9F1C2A3B-0000-4C5D-8E7F-ABCDEF012345"),
        ("XMP-photod:OriginalName", "IMG_0001.HEIC"),
        ("XMP-photod:Device", "Anna's iPhone"),
        ("XMP-photod:Burst", "BURST-77"),
        ("XMP-photod:Hidden", True),
        ("XMP-photod:Trashed", True),
        ("XMP-photod:Live", True),
        ("XMP-photod:Screenshot", True),
        ("XMP-photod:ScreenRecording", True),
        ("XMP-photod:Edited", True),
        ("XMP-photod:ICloudOnly", True),
    ],
)
def test_every_fact_reads_back_under_its_standard_tag(
    full: dict[str, Any], tag: str, expected: Any
) -> None:
    """exiftool reads each fact of a fully described photo back, under the tag digiKam,
    Lightroom and darktable look for (lists in the sorted order of a Bag)."""
    actual = full.get(tag)
    assert expected == (listed(actual) if isinstance(expected, list) else actual)


def test_the_full_sidecar_is_valid_and_its_position_exact(full: dict[str, Any]) -> None:
    """The full sidecar passes exiftool's validation, and its position reads back to a
    millionth of a degree."""
    assert_clean(full)
    assert math.isclose(41.890251, full["XMP-exif:GPSLatitude"], abs_tol=1e-6)
    assert math.isclose(12.492373, full["XMP-exif:GPSLongitude"], abs_tol=1e-6)


def test_flags_that_are_off_read_as_false_and_no_favourite_has_no_rating(
    tmp_path: Path,
) -> None:
    """A plain local photo says so (False, not silence) and carries no rating at all."""
    asset = LibraryAsset(uuid="U", directory="DCIM", filename="a.jpg")
    tags = read(write(tmp_path, asset))
    flags = ["Hidden", "Trashed", "Live", "Screenshot", "ScreenRecording", "Edited", "ICloudOnly"]
    assert {f: False for f in flags} == {f: tags.get(f"XMP-photod:{f}") for f in flags}
    assert "XMP-xmp:Rating" not in tags
    assert "XMP-photod:Burst" not in tags


def test_photod_namespace_is_shown_by_xmp_all(tmp_path: Path) -> None:
    """`exiftool -XMP:all` lists photod's own facts though exiftool has never heard of
    the namespace."""
    tags = read(write(tmp_path, FULL, device="phone"), "-XMP:all")
    assert "phone" == tags["XMP-photod:Device"]
    assert FULL.uuid == tags["XMP-photod:Uuid"]


@pytest.mark.parametrize(
    ("latitude", "longitude", "raw"),
    [
        (41.890251, 12.492373, ("41,53.415060N", "12,29.542380E")),
        (-33.8688, -70.6693, ("33,52.128000S", "70,40.158000W")),
        (-33.8688, 151.2093, ("33,52.128000S", "151,12.558000E")),
        (0.0, -0.0, ("0,00.000000N", "0,00.000000E")),
        (89.99999999999, -179.999999999, ("90,00.000000N", "180,00.000000W")),
        (-90.0, 180.0, ("90,00.000000S", "180,00.000000E")),
        (1e-9, -1e-9, ("0,00.000000N", "0,00.000000E")),
        (51.4999999999, -0.1166666666, ("51,30.000000N", "0,07.000000W")),
    ],
)
def test_position_reads_back_as_signed_decimals(
    tmp_path: Path, latitude: float, longitude: float, raw: tuple[str, str]
) -> None:
    """North and east are positive, south and west negative, within 1e-6 degree, and the
    sidecar writes XMP's DD,MM.mmmmmmH form (a minute rounded up never reads 60)."""
    asset = LibraryAsset(
        uuid="U", directory="D", filename="g.jpg", latitude=latitude, longitude=longitude
    )
    path = write(tmp_path, asset)
    tags = read(path)
    assert_clean(tags)
    assert math.isclose(latitude, tags["XMP-exif:GPSLatitude"], abs_tol=1e-6)
    assert math.isclose(longitude, tags["XMP-exif:GPSLongitude"], abs_tol=1e-6)
    assert "2.2.0.0" == tags["XMP-exif:GPSVersionID"]
    text = path.read_text("utf-8")
    assert [raw] == re.findall("<exif:GPSLatitude>(.*)</.*\n.*<exif:GPSLongitude>(.*)</", text)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [
        (None, None),
        (41.9, None),
        (None, 12.5),
        (-180.0, -180.0),  # Photos' "no location"
        (math.nan, 12.5),
        (41.9, math.inf),
        (90.5, 0.0),
    ],
)
def test_no_position_writes_no_gps(
    tmp_path: Path, latitude: float | None, longitude: float | None
) -> None:
    """Without a real position there are no GPS tags at all (not a point at 0, 0)."""
    asset = LibraryAsset(
        uuid="U", directory="D", filename="n.jpg", latitude=latitude, longitude=longitude
    )
    tags = read(write(tmp_path, asset))
    assert_clean(tags)
    assert [] == [t for t in tags if "GPS" in t]


@pytest.mark.parametrize(
    ("captured", "written", "shown"),
    [
        (datetime(2024, 5, 1, 12, 0, 0, tzinfo=PLUS2), "2024-05-01T12:00:00+02:00", None),
        (datetime(2024, 5, 1, 12, tzinfo=UTC), "2024-05-01T12:00:00+00:00", None),
        (
            datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(-timedelta(hours=3.5))),
            "2023-12-31T23:59:59-03:30",
            None,
        ),
        (
            datetime(1900, 1, 1, 12, 0, 0, tzinfo=timezone(timedelta(minutes=9, seconds=21))),
            "1900-01-01T11:59:39+00:09",
            None,
        ),
        (datetime(2024, 5, 1, 12, 0, 0), "2024-05-01T12:00:00", "2024:05:01 12:00:00"),
    ],
    ids=["plus2", "utc", "minus-3h30-microseconds", "lmt-seconds-offset", "naive"],
)
def test_capture_time_keeps_its_offset(
    tmp_path: Path, captured: datetime, written: str, shown: str | None
) -> None:
    """The three date tags hold the capture time to the second with its offset (+00:00,
    never Z; an offset with seconds floored to the minute, the instant kept); exiftool
    reads them back the same."""
    asset = LibraryAsset(uuid="U", directory="D", filename="t.jpg", captured=captured)
    path = write(tmp_path, asset)
    text = path.read_text("utf-8")
    assert 3 == text.count(f">{written}<")
    assert "Z<" not in text
    tags = read(path)
    assert_clean(tags)
    shown = shown or written.replace("-", ":", 2).replace("T", " ")
    dates = ["XMP-exif:DateTimeOriginal", "XMP-photoshop:DateCreated", "XMP-xmp:CreateDate"]
    assert [shown] * 3 == [tags.get(t) for t in dates]
    if captured.tzinfo is not None:
        assert captured.replace(microsecond=0) == datetime.fromisoformat(written)


def test_hostile_text_reads_back_exactly(tmp_path: Path) -> None:
    """Metacharacters, a CDATA end, the packet's end marker, controls, emoji, RTL and NFD
    in every text field come back from exiftool exactly, minus the characters XML cannot
    hold; exiftool reports nothing wrong; a "|" in a name never adds a level."""
    tags = read(write(tmp_path, HOSTILE, device="dev\x1b <&>"))
    assert_clean(tags)
    actual = {
        "title": tags.get("XMP-dc:Title"),
        "caption": tags.get("XMP-dc:Description"),
        "keywords": sorted(listed(tags.get("XMP-dc:Subject"))),
        "people": sorted(listed(tags.get("XMP-iptcExt:PersonInImage"))),
        "hierarchy": sorted(listed(tags.get("XMP-lr:HierarchicalSubject"))),
        "uuid": tags.get("XMP-photod:Uuid"),
        "original": tags.get("XMP-photod:OriginalName"),
        "device": tags.get("XMP-photod:Device"),
        "burst": tags.get("XMP-photod:Burst"),
    }
    expected = {
        "title": NASTY + KEPT,
        "caption": KEPT + NASTY,
        "keywords": sorted(["a|b", "<kw> & 'q'", "]]>", "emoji 🦄"]),
        "people": sorted(["O'Brien & <Sons>", "Zoë|Piped", "\u202eevil"]),
        "hierarchy": sorted(
            ["Albums|Folder/One|Album <1> & ]]>", "a/b", "<kw> & 'q'", "]]>", "emoji 🦄"]
        ),
        "uuid": "uuid <&>",
        "original": "name & <b>",
        "device": "dev <&>",
        "burst": 'b"urst',
    }
    assert expected == actual


def test_hostile_text_leaves_one_well_formed_packet(tmp_path: Path) -> None:
    """Python's XML parser reads the hostile sidecar and finds the same text; the packet
    has exactly one end marker, its own, at the very end."""
    data = xmp.sidecar(HOSTILE)
    assert data.startswith('<?xpacket begin="\ufeff"'.encode())
    assert data.endswith(b'<?xpacket end="w"?>')
    assert 1 == data.count(b"<?xpacket end")
    assert -1 == data.find(b"]]>")
    root = ET.fromstring(data)
    [description] = root.iter(f"{RDF}Description")
    title = description.find(f"{DC}title/{RDF}Alt/{RDF}li")
    assert title is not None
    assert clean(HOSTILE.title) == title.text
    people = [li.text for li in description.iterfind(f"{{*}}PersonInImage/{RDF}Bag/{RDF}li")]
    assert sorted(clean(p) for p in HOSTILE.people) == people


def test_a_photo_with_no_facts_gives_a_valid_packet(tmp_path: Path) -> None:
    """A record with nothing in it still gives a packet exiftool validates and Python
    parses: no empty titles, lists, dates or position, only photod's flags."""
    path = write(tmp_path, BARE)
    tags = read(path)
    assert_clean(tags)
    others = [t for t in tags if t.startswith("XMP-") and not t.startswith("XMP-photod:")]
    assert ["XMP-x:XMPToolkit"] == others
    root = ET.fromstring(path.read_bytes())
    [description] = root.iter(f"{RDF}Description")
    names = [child.tag.removeprefix(PHOTOD) for child in description]
    assert [
        "hidden",
        "trashed",
        "live",
        "screenshot",
        "screenRecording",
        "edited",
        "iCloudOnly",
    ] == names


def test_text_of_only_forbidden_characters_counts_as_none(tmp_path: Path) -> None:
    """A title, keyword or person that is nothing but control characters leaves no empty
    tag behind."""
    asset = BARE._replace(
        title="\x00", caption="\x01\x02", keywords=("\x03",), people=("\x04",), uuid="\x05"
    )
    assert xmp.sidecar(BARE) == xmp.sidecar(asset)


def test_same_facts_give_the_same_bytes() -> None:
    """Two equal records (built apart, lists in another order) give identical bytes, so
    photod can compare before it rewrites a sidecar."""
    shuffled = FULL._replace(
        keywords=tuple(reversed(FULL.keywords)),
        people=tuple(reversed(FULL.people)),
        albums=tuple(reversed(FULL.albums)),
    )
    copy = FULL._replace()
    assert xmp.sidecar(FULL, "d") == xmp.sidecar(copy, "d") == xmp.sidecar(shuffled, "d")


@pytest.mark.parametrize(
    "change",
    [
        {"uuid": "other"},
        {"original_name": "IMG_0002.HEIC"},
        {"favorite": False},
        {"hidden": False},
        {"trashed": False},
        {"title": "Colosseum at night"},
        {"caption": "Our first evening in Rome."},
        {"keywords": ("travel",)},
        {"people": ("Anna Rossi",)},
        {"albums": (("Trips", "2024", "Roma"), ("Favourites of Ben",))},
        {"captured": datetime(2024, 5, 1, 12, 0, 1, tzinfo=PLUS2)},
        {"captured": datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=3)))},
        {"latitude": 41.890252},
        {"longitude": -12.492373},
        {"live": False},
        {"burst": ""},
        {"screenshot": False},
        {"screen_recording": False},
        {"edited": False},
        {"local": True},
    ],
    ids=lambda change: next(iter(change)),
)
def test_one_changed_fact_changes_the_bytes(change: dict[str, Any]) -> None:
    """Every fact the sidecar carries reaches its bytes: change one and they differ."""
    assert xmp.sidecar(FULL, "d") != xmp.sidecar(FULL._replace(**change), "d")


def test_the_device_reaches_the_bytes() -> None:
    """The phone the photo came from is a fact too."""
    assert xmp.sidecar(FULL, "Anna's iPhone") != xmp.sidecar(FULL, "Ben's iPhone")


def test_a_missing_exiftool_fails_the_tests_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without exiftool the tests fail, never skip, and the message names the package."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys.modules[__name__], "EXIFTOOL", "/nonexistent/exiftool")
    with pytest.raises(pytest.fail.Exception, match="apt-get install libimage-exiftool-perl"):
        exiftool()


def test_the_module_uses_the_standard_library_only() -> None:
    """xmp imports nothing outside the standard library but the record it writes."""
    tree = ast.parse(Path(xmp.__file__).read_text("utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert {"photod.library"} == foreign


def test_a_capture_time_in_the_calendars_first_hour_is_written_not_raised(tmp_path: Path) -> None:
    """A damaged library's capture time in the first hour of year 1 with an offset of
    seconds (-00:59:59, which the phone's reader accepts) gives a sidecar: flooring the
    offset to -01:00 would fall before the calendar, so it is written in UTC, the
    instant kept, and exiftool reads it.  Before, the sidecar raised OverflowError, and
    since every sidecar is made as the library is read, every import of that phone
    ended in an error."""
    captured = datetime(1, 1, 1, 0, 0, 0, 500000, tzinfo=timezone(-timedelta(seconds=3599)))
    asset = LibraryAsset(uuid="U", directory="D", filename="t.jpg", captured=captured)
    path = write(tmp_path, asset)
    assert 3 == path.read_text("utf-8").count(">0001-01-01T00:59:59+00:00<")
    tags = read(path)
    assert_clean(tags)
    assert "0001:01:01 00:59:59+00:00" == tags.get("XMP-exif:DateTimeOriginal")
