"""The XMP sidecar kept beside an original on every backup target.

This module owns one thing: turning what the phone's Photos library knows of one photo
(a :class:`~photod.library.LibraryAsset`) into the bytes of a complete XMP packet.  The
Photos database stays on the phone; the sidecar is how those facts survive beside each
copy, readable without photod.  So it speaks the vocabularies the tools people restore
into already read (exiftool, digiKam, Lightroom, darktable), and only photod's own facts
go into photod's namespace:

- ``dc:title``, ``dc:description`` (language alternatives), ``dc:subject`` (keywords);
- ``xmp:Rating`` 5 for a favourite (absent otherwise: no rating, not a rating of 0);
- ``lr:hierarchicalSubject``: each album as ``Albums|Folder|Album``, and each keyword as
  a plain entry.  ``|`` separates levels there, so a ``|`` inside a title or keyword
  becomes ``/`` in this one property (``dc:subject`` keeps the keyword as it is);
- ``Iptc4xmpExt:PersonInImage``: the named people;
- ``exif:DateTimeOriginal``, ``photoshop:DateCreated``, ``xmp:CreateDate``: the capture
  time to the second with the offset it was taken at, ``+00:00`` never ``Z``;
- ``exif:GPSLatitude``/``exif:GPSLongitude`` (``DD,MM.mmmmmmN``) and ``GPSVersionID``;
- ``photod:*``: uuid, original name, device, hidden, trashed, live, burst, screenshot,
  screen recording, edited, iCloud-only.

The bytes are a pure function of the facts (no clock, no tool version), so a caller can
compare them with the sidecar already on a target and skip the rewrite.  Text from the
library is escaped, and the characters XML 1.0 cannot carry at all are dropped; every
other character is kept as it is (no normalization).  Standard library only, no I/O.
The caller names the file: the original's full name plus :data:`SUFFIX`
(``IMG_0001.HEIC.xmp``, as darktable and digiKam do), so a Live Photo's still and movie
never share one sidecar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

from photod.library import LibraryAsset

SUFFIX = ".xmp"

# An XMP namespace URI is a name that is never fetched.  ".invalid" is reserved (RFC 2606,
# RFC 6761): it can never resolve, nor come to belong to someone else.  Never change it:
# readers key on it.  A change of meaning gets a new version in the path instead.
NAMESPACE = "https://photod.invalid/ns/1.0/"

_NAMESPACES = (
    ("Iptc4xmpExt", "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"),
    ("dc", "http://purl.org/dc/elements/1.1/"),
    ("exif", "http://ns.adobe.com/exif/1.0/"),
    ("lr", "http://ns.adobe.com/lightroom/1.0/"),
    ("photod", NAMESPACE),
    ("photoshop", "http://ns.adobe.com/photoshop/1.0/"),
    ("xmp", "http://ns.adobe.com/xap/1.0/"),
)
# How every packet begins: what tells photod's sidecar from another tool's at its name.
HEAD = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="photod">'
)
ALBUMS = "Albums"  # the root of the album paths in lr:hierarchicalSubject

# Everything outside XML 1.0's Char production: C0 controls but tab, LF and CR;
# surrogates (a lone one cannot even be encoded as UTF-8); U+FFFE and U+FFFF.  Named as
# they are, not as the complement of what is allowed: that class took 5 ms to compile,
# at every daemon start, before its first scan.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A parser turns a literal CR into LF, so CR goes as a character reference to survive.
_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#xD;"}
)


def sidecar(asset: LibraryAsset, device: str = "") -> bytes:
    """The XMP packet for ``asset``, as UTF-8; ``device`` names the phone it came from.

    The same facts always give the same bytes.  Empty text, an empty list and a missing
    time leave their property out; so does a position that is None, not finite or out of
    range (Photos writes -180, -180 for "no location").  Raises nothing for any text.
    """
    lines: list[str] = []
    lines += _alt("dc:title", asset.title)
    lines += _alt("dc:description", asset.caption)
    lines += _bag("dc:subject", asset.keywords)
    if asset.favorite:
        lines.append(_simple("xmp:Rating", "5"))
    albums = ["|".join(_levels((ALBUMS, *album))) for album in asset.albums]
    lines += _bag("lr:hierarchicalSubject", [*albums, *_levels(asset.keywords)])
    lines += _bag("Iptc4xmpExt:PersonInImage", asset.people)
    if asset.captured is not None:
        when = _date(asset.captured)
        for name in ("exif:DateTimeOriginal", "photoshop:DateCreated", "xmp:CreateDate"):
            lines.append(_simple(name, when))
    lines += _gps(asset.latitude, asset.longitude)
    lines += _photod(asset, device)
    spaces = "".join(f'\n    xmlns:{prefix}="{uri}"' for prefix, uri in _NAMESPACES)
    packet = (
        HEAD + "\n"
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about=""{spaces}>\n'
        + "".join(f"   {line}\n" for line in lines)
        + "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def _clean(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot carry."""
    return _FORBIDDEN.sub("", value)


def _text(value: str) -> str:
    """``value`` as XML character data: forbidden characters dropped, the rest escaped."""
    return _clean(value).translate(_ESCAPES)


def _simple(name: str, value: str) -> str:
    return f"<{name}>{_text(value)}</{name}>"


def _alt(name: str, value: str) -> list[str]:
    """A language alternative with only the default language, or nothing for no text."""
    if not _clean(value):
        return []
    item = f'<rdf:li xml:lang="x-default">{_text(value)}</rdf:li>'
    return [f"<{name}><rdf:Alt>{item}</rdf:Alt></{name}>"]


def _bag(name: str, values: Iterable[str]) -> list[str]:
    """An unordered set: sorted and without repeats (so the order the database gave
    them in cannot change the bytes), empty entries left out; nothing for no entries."""
    items = sorted({clean for value in values if (clean := _clean(value))})
    if not items:
        return []
    inner = "".join(f"<rdf:li>{item.translate(_ESCAPES)}</rdf:li>" for item in items)
    return [f"<{name}><rdf:Bag>{inner}</rdf:Bag></{name}>"]


def _levels(names: Iterable[str]) -> list[str]:
    """Names made fit to be levels of a ``|`` path: a ``|`` in one becomes ``/``, and a
    level that is empty (or only forbidden characters) is left out."""
    return [level.replace("|", "/") for name in names if (level := _clean(name))]


def _date(captured: datetime) -> str:
    """``2024-05-01T12:00:00+02:00``: to the second, with the offset, never ``Z``.

    XMP offsets are whole minutes; an offset with seconds (a zone's old local mean time)
    is floored to the minute and the clock time moved with it, so the instant holds.  A
    naive time is written without an offset: XMP allows it, and no offset is known.
    One that flooring would take before year 1 is written in UTC.
    """
    offset = captured.utcoffset()
    zone = ""
    if offset is not None:
        minutes = offset // timedelta(minutes=1)
        if offset != timedelta(minutes=minutes):
            try:
                captured = captured.astimezone(timezone(timedelta(minutes=minutes)))
            except OverflowError:  # floored, it falls before year 1: the instant in UTC
                captured, minutes = captured.astimezone(UTC), 0
        hours, rest = divmod(abs(minutes), 60)
        zone = f"{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"
    c = captured  # the fields by hand: strftime("%Y") drops the zeros of years before 1000
    return (
        f"{c.year:04d}-{c.month:02d}-{c.day:02d}T{c.hour:02d}:{c.minute:02d}:{c.second:02d}{zone}"
    )


def _coordinate(value: float, limit: float, hemispheres: str) -> str | None:
    """``DD,MM.mmmmmmH`` (XMP's GPSCoordinate), or None when ``value`` is no position.

    Minutes to a millionth are under 2 mm on the ground; the rounding is done on whole
    millionths of a minute, so no float formatting can carry a minute into 60.
    """
    if not math.isfinite(value) or abs(value) > limit:
        return None
    millionths = round(abs(value) * 60_000_000)
    degrees, rest = divmod(millionths, 60_000_000)
    minutes, fraction = divmod(rest, 1_000_000)
    hemisphere = hemispheres[1] if value < 0 and millionths else hemispheres[0]
    return f"{degrees},{minutes:02d}.{fraction:06d}{hemisphere}"


def _gps(latitude: float | None, longitude: float | None) -> list[str]:
    """Both coordinates and the version of the GPS tags they follow, or nothing."""
    if latitude is None or longitude is None:
        return []
    lat, lon = _coordinate(latitude, 90, "NS"), _coordinate(longitude, 180, "EW")
    if lat is None or lon is None:
        return []
    return [
        _simple("exif:GPSLatitude", lat),
        _simple("exif:GPSLongitude", lon),
        _simple("exif:GPSVersionID", "2.2.0.0"),
    ]


def _photod(asset: LibraryAsset, device: str) -> list[str]:
    """photod's own facts.  Text is left out when empty; every flag is written, "True"
    or "False" (XMP's Boolean), so a reader never has to guess what absence means."""
    texts = (
        ("uuid", asset.uuid),
        ("originalName", asset.original_name),
        ("device", device),
        ("burst", asset.burst),
    )
    flags = (
        ("hidden", asset.hidden),
        ("trashed", asset.trashed),
        ("live", asset.live),
        ("screenshot", asset.screenshot),
        ("screenRecording", asset.screen_recording),
        ("edited", asset.edited),
        ("iCloudOnly", not asset.local),
    )
    lines = [_simple(f"photod:{name}", value) for name, value in texts if _clean(value)]
    lines += [_simple(f"photod:{name}", str(value)) for name, value in flags]
    return lines
