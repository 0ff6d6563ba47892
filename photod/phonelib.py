"""One phone's library at each import: copy its database, read it when it changed, and
keep what it says in the catalog (from where ``sidecars`` takes it to the targets).

The files are photod's first job and never wait on this: a database photod cannot copy,
read or understand is one ``device_library_unreadable`` event with the reason, and the
import of the files goes on exactly as without it.  An unchanged database (the same
digest as at the last plug-in) is not read again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from photod import phoneplan, xmp
from photod.catalog import LibraryRows
from photod.errors import LibraryUnreadable
from photod.library import PhoneLibrary, facts_json
from photod.librarycopy import copy_library
from photod.logs import log
from photod.phonelibrary import read_library
from photod.phonerecords import CatalogLane
from photod.sources.phone import PhoneLink

COPY_FOLDER = "library-copy"  # under the phone's staging folder: no phone path starts so


class PhoneLibraryStep:
    def __init__(self, lane: CatalogLane) -> None:
        self.db = lane.call
        self.catalog = lane.catalog

    async def read(self, link: PhoneLink, staging: Path, on_phone: Iterable[str]) -> str:
        """Copy and read the phone's library (``staging``: this phone's staging folder;
        ``on_phone``: the paths of its listing); '' once it is read (or the phone has
        none), else why it could not be.  Never raises for the library's own trouble;
        the phone's (unplugged, stalled) goes up to the session."""
        started = time.monotonic()
        folder = staging / COPY_FOLDER
        try:
            copy = await copy_library(link, folder)
            copied = time.monotonic() - started
            if copy is None:
                log.info("device_library_absent", device=link.name, udid=link.udid)
                return ""
            if await self.db(self.catalog.library_digest, link.udid) == copy.digest:
                log.info("device_library_unchanged", device=link.name, udid=link.udid,
                         duration=round(time.monotonic() - started, 3))  # fmt: skip
                return ""
            stop = threading.Event()  # a read cut short (unplugged, stopping) ends
            try:
                library = await asyncio.to_thread(read_library, copy.db, stop)
            finally:
                stop.set()
        except LibraryUnreadable as exc:
            log.warning("device_library_unreadable", device=link.name, udid=link.udid,
                        reason=exc.reason)  # fmt: skip
            return exc.reason
        except OSError as exc:  # this computer's side: the state dir full, say
            why = f"cannot copy it into {folder}: {exc.strerror or exc}"
            log.warning("device_library_unreadable", device=link.name, udid=link.udid, reason=why)
            return why
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        paths = list(on_phone)
        groups = await self.db(self.catalog.media_groups, link.udid)
        rows = await asyncio.to_thread(library_rows, library, paths, link.name, copy.digest, groups)
        rows = rows._replace(changed_at=copy.changed_at)  # (the phone's clock orders reads)
        await self.db(self.catalog.save_library, link.udid, rows)
        log.info(
            "device_library_read",
            device=link.name,
            udid=link.udid,
            assets=len(library.assets),
            albums=len(library.albums),
            not_on_phone=sum(1 for a in library.assets if not a.local),
            schema=library.schema,
            bytes=copy.size,
            copy_duration=round(copied, 3),
            duration=round(time.monotonic() - started, 3),
        )
        return ""

    async def count_icloud(self, link: PhoneLink) -> None:
        """After the files: the photos whose original only iCloud has, one event with
        their count (``grew``: more than at the last import, which notifies)."""
        if await self.db(self.catalog.library_digest, link.udid) is None:
            return
        missing = await self.db(self.catalog.in_icloud_only, link.udid)
        mark = f"in_icloud:{link.udid}"
        before = int(await self.db(self.catalog.meta, mark) or 0)
        await self.db(self.catalog.set_meta, mark, str(len(missing)))
        if missing:
            log.warning("device_originals_in_icloud", device=link.name, udid=link.udid,
                        count=len(missing), grew=len(missing) > before)  # fmt: skip


def library_rows(
    library: PhoneLibrary,
    on_phone: list[str],
    device: str,
    digest: str,
    groups: Mapping[str, str] | None = None,
) -> LibraryRows:
    """The catalog's rows for a library: each asset's facts and sidecar digest, and
    which asset each file on the phone is (its original, and what goes with it;
    ``groups``: the media group each movie's content names, path -> group)."""
    # The database and the listing may spell a path in another case: the listing's
    # spelling is the one the catalog joins on.
    listed = {p.lower(): p for p in on_phone}
    assets = []
    for a in library.assets:
        data = xmp.sidecar(a, device)
        path = listed.get(a.path.lower(), a.path)
        assets.append((a.uuid, path, a.local, facts_json(a), hashlib.sha256(data).hexdigest()))
    owner = phoneplan.by_identity(library.assets, on_phone, groups or {})
    files: dict[str, tuple[str, str, str | None]] = {p: (p, u, None) for p, u in owner.items()}
    for uuid, path, *_ in assets:  # an original not listed (only in iCloud) is its own
        files.setdefault(path, (path, uuid, None))
    albums = [
        (al.uuid, json.dumps(list(al.path), ensure_ascii=False), al.trashed,
         json.dumps(list(al.assets)))
        for al in library.albums
    ]  # fmt: skip
    return LibraryRows(digest, library.schema, assets, list(files.values()), albums)
