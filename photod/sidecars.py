"""The phones' libraries on the targets: each original's XMP sidecar beside it, and
each phone's library index.

A sidecar is metadata, not an original: it follows the facts (a photo starred or put
in an album after its import is rewritten; an unchanged one is never written again:
the catalog keeps the digest each target holds), and it goes to a target only beside
an original that target holds verified, so a remote target gets it with its catch-up.
The index (``.photod/installations/<name>.<id12>/library/UDID.json``, sealed on an
encrypted target) is what a ``catalog rebuild`` takes the library back from: albums in
their order, and which files (by SHA-256) each asset is.  Each installation writes its
own, in its own folder: two computers of a family that import one phone (or one whose
view of it is older, writing last) never replace each other's.  A rebuild takes the
view read from the phone last (by the phone's clock, ``changed_at``; by the computers'
``read_at`` when a view does not say), among every installation's and the one
``.photod/library/UDID.json`` that each also writes for an earlier photod (which reads only
it: there the last writer wins, as it always did).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from typing import Any

from photod import xmp
from photod.catalog import PHONE_NAME, SIDECAR_TAKEN, Catalog, LibraryRows, now_iso
from photod.errors import TargetFull, TargetUnavailable, Undecryptable
from photod.library import asset_from_json
from photod.logs import log
from photod.targets.base import Target
from photod.targets.records import INSTALLATIONS

INDEX = "library"  # the folder under .photod/
FAILURES = 10  # sidecars that failed in one round before the target counts as gone
FORMAT = 1


def _own(target: Target, key: str, data: bytes) -> bool:
    """Replace the file at ``key`` with ``data`` if photod wrote it (a sidecar from
    before a catalog rebuild, which forgot it); True when it did.  Another tool's (a
    darktable or digiKam sidecar, the person's edits in it) is never replaced, however
    often the photo's facts change."""
    there = target.get_beside(key)
    if there is None or not there.startswith(xmp.HEAD.encode()):
        return False
    return target.put_beside(key, data, replace=True)


def index_name(udid: str, folder: str = "") -> str:
    """The index of one phone in an installation's ``folder`` on the target; without
    one, where an earlier photod kept it, one file for every installation."""
    return f"{folder}/{INDEX}/{udid}.json" if folder else f"{INDEX}/{udid}.json"


def sidecar_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LibraryKeeper:
    """Writes what the catalog knows of the phones' libraries to one target at a time
    (called by the catch-up, for each available target)."""

    def __init__(self, catalog: Catalog, stop: threading.Event) -> None:
        self.catalog = catalog
        self.stop = stop
        self._waiting: dict[str, str] = {}  # target -> why its sidecars wait, as said

    def keep(self, name: str, target: Target, folder: str = "") -> None:
        """``sync``, at each catch-up: a target that cannot take them now is said once
        while it stays so (``sidecars_waiting``), not at every catch-up (a full drive
        was eleven warnings every 30 s, each with the bytes it lacked then)."""
        try:
            self.sync(name, target, folder)
        except TargetUnavailable as exc:
            why = "full" if isinstance(exc, TargetFull) else exc.reason
            if self._waiting.get(name) != why:
                log.warning("sidecars_waiting", target=name, reason=str(exc))
            self._waiting[name] = why
        else:
            self._waiting.pop(name, None)

    def sync(self, name: str, target: Target, folder: str = "") -> int:
        """Bring ``target``'s sidecars and indexes (in this installation's ``folder``
        there) up to date; the sidecars written.
        One sidecar that cannot be written (its folder gone from the target) is said
        and passed over; a target that stops answering stops the round (raises
        TargetUnavailable), and the rest waits for the next."""
        written = failed = 0
        for asset, relpath, facts, digest, device, before in self.catalog.sidecars_due(name):
            if self.stop.is_set():
                break
            key = relpath + xmp.SUFFIX
            try:
                data = xmp.sidecar(asset_from_json(facts), device)
                if not target.put_beside(key, data, replace=before) and not _own(target, key, data):
                    log.warning("sidecar_name_taken", target=name, path=key,
                                reason="a file photod did not write is there; left as it is")  # fmt: skip
                    digest = SIDECAR_TAKEN  # not asked again until the facts change
            except (ValueError, KeyError, TypeError) as exc:  # facts the catalog garbled
                log.warning("sidecar_failed", target=name, path=key, reason=f"facts: {exc}")
                continue
            except TargetFull:
                raise  # the drive is full: no other sidecar fits either
            except TargetUnavailable as exc:
                failed += 1
                log.warning("sidecar_failed", target=name, path=key, reason=exc.reason)
                if failed >= FAILURES:
                    raise
                continue
            self.catalog.sidecar_written(asset, name, relpath, digest)
            written += 1
        if written:
            log.info("sidecars_written", target=name, count=written)
        for udid in self.catalog.libraries():
            self._index(name, target, index_name(udid, folder), udid)
            if folder:  # and where an earlier photod reads it (its last writer's, as ever)
                self._index(name, target, index_name(udid), udid)
        return written

    def _index(self, name: str, target: Target, key: str, udid: str) -> None:
        version = self.catalog.library_version(udid)
        mark = f"library_index:{name}:{key}"  # (a new place is written once, whatever was)
        if version is None or self.catalog.meta(mark) == version:
            return  # the index there is current: nothing read, nothing written
        rows = self.catalog.library(udid)
        if rows is None:
            return
        device = self.catalog.phone_names().get(udid, "")
        target.put_private(key, index_bytes(udid, device, rows))
        self.catalog.set_meta(mark, version)


def index_bytes(udid: str, device: str, rows: LibraryRows) -> bytes:
    doc = {
        "format": FORMAT,
        "udid": udid,
        "device": device,
        "digest": rows.digest,
        "schema": rows.schema,
        "written_at": now_iso(),
        "read_at": rows.read_at,  # from the phone, by this computer's clock
        "changed_at": rows.changed_at,  # the library's last change, by the phone's clock
        "albums": [
            {"uuid": u, "path": json.loads(p), "trashed": t, "assets": json.loads(a)}
            for u, p, t, a in rows.albums
        ],
        "assets": [
            {"uuid": u, "path": p, "local": loc, "facts": json.loads(f), "sidecar": s}
            for u, p, loc, f, s in rows.assets
        ],
        "files": [{"path": p, "uuid": u, "sha256": a} for p, u, a in rows.files],
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()


def rows_from_index(data: bytes, stem: str = "") -> tuple[str, str, LibraryRows]:
    """(udid, device name, rows) from an index; ValueError when it is not one: one on a
    shared target may be another computer's, damaged or hostile, and what it gives is
    kept, listed and written again, so each field must be what photod writes (an
    index named ``stem``.json holds that phone's UDID: it names the index it is
    written back as)."""
    try:
        doc = json.loads(data)
    except RecursionError as exc:
        raise ValueError("library index nested too deep") from exc
    if not isinstance(doc, dict):
        raise ValueError("library index is not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"library index format {doc.get('format')!r}")
    dumps = json.dumps
    udid = _text(doc["udid"])
    if stem and udid != stem:
        raise ValueError(f"library index {stem}.json holds the UDID {udid!r}")
    for entries, key in (("assets", "uuid"), ("albums", "uuid")):  # (the catalog's keys)
        if len({str(e.get(key)) for e in _objects(doc[entries])}) < len(doc[entries]):
            raise ValueError(f"library index names one of its {entries} twice")
    return (
        udid,
        str(doc.get("device", "")),
        LibraryRows(
            str(doc["digest"]),
            str(doc["schema"]),
            [
                (
                    _text(a["uuid"]),
                    _text(a["path"]),
                    bool(a["local"]),
                    _facts(a["facts"]),
                    _text(a["sidecar"]),
                )
                for a in _objects(doc["assets"])
                if asset_from_json(_facts(a["facts"]))  # raises on facts that are not facts
            ],
            [
                (_text(f["path"]), _text(f["uuid"]), _text(f["sha256"], True))
                for f in _objects(doc["files"])
            ],
            [
                (
                    _text(al["uuid"]),
                    dumps(_texts(al["path"])),
                    bool(al["trashed"]),
                    dumps(_texts(al["assets"])),
                )
                for al in _objects(doc["albums"])
            ],
            str(doc.get("read_at") or doc.get("written_at", "")),  # (an earlier photod's)
            str(doc.get("changed_at") or ""),
        ),
    )


def _text(value: object, none: bool = False) -> str:
    if isinstance(value, str) or (none and value is None):
        return value  # type: ignore[return-value]
    raise ValueError(f"library index holds {value!r} where text belongs")


def _texts(value: object) -> list[str]:
    if isinstance(value, list):
        return [_text(v) for v in value]
    raise ValueError(f"library index holds {value!r} where a list of texts belongs")


def _objects(value: object) -> list[dict[str, Any]]:
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise ValueError("library index holds a list of something else than entries")


def _stem(meta: str) -> str:
    """The UDID an index's name says it holds (``library/UDID.json``)."""
    return meta.rpartition("/")[2].removesuffix(".json")


def _facts(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _index_names(target: Target) -> list[str]:
    """Every index on the target: each installation's, and an earlier photod's."""
    mine = [
        n for n in target.list_meta(INSTALLATIONS)
        if n.count("/") == 3 and n.split("/")[2] == INDEX and n.endswith(".json")
    ]  # fmt: skip
    return target.list_meta(INDEX) + mine


def _later(rows: LibraryRows, changed_at: str, read_at: str) -> bool:
    """Whether ``rows`` were read from the phone after the read that saw its library
    as changed last at ``changed_at`` and was made at ``read_at``: by the phone's own
    clock when both reads give it (the computers' clocks may be a year apart), else
    (an earlier photod's index, or the same state of the library) by the computers'."""
    if rows.changed_at and changed_at and rows.changed_at != changed_at:
        return rows.changed_at > changed_at
    return rows.read_at > read_at


def take_indexes(catalog: Catalog, targets: Iterable[tuple[str, Target]]) -> int:
    """The phones' libraries from the targets' indexes, into a rebuilt catalog; how
    many.  Of the indexes of one phone (one per installation that imported it), the
    one read from the phone last, taken in place of the snapshot's when read after it
    (by this computer after its last snapshot, or by another computer of the family):
    the targets are the truth, and the newest view of the phone's albums is what the
    person wants back, not the one read when the snapshot was taken."""
    newest: dict[str, tuple[str, LibraryRows]] = {}  # udid -> (its name, library)
    for name, target in targets:
        try:
            names = _index_names(target)
        except TargetUnavailable:
            continue
        for meta in names:
            try:
                data = target.get_private(meta)
                if data is None:
                    continue
                udid, device, rows = rows_from_index(data, _stem(meta))
            except (TargetUnavailable, Undecryptable, ValueError, KeyError, TypeError) as exc:
                log.warning("library_index_unreadable", target=name, file=meta, reason=str(exc))
                continue
            best = newest.get(udid)
            if best is None or _later(rows, best[1].changed_at, best[1].read_at):
                newest[udid] = (device, rows)
    taken = 0
    for udid, (device, rows) in newest.items():
        held = catalog.library_read(udid)  # the snapshot's, read by this computer
        if held is not None and not _later(rows, *held):
            continue  # (an index as new as the snapshot's is the same read, or older)
        catalog.save_library(udid, rows)
        if device:  # what `photod albums` calls the phone (its UDID without it)
            catalog.set_meta(PHONE_NAME + udid, device)
        taken += 1
    return taken
