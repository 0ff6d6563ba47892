"""The scrub's other half: re-reading the watch folders' own files.

The backed-up copies are proved by ``verify.Scrubber``; this re-reads the originals in
the watch folders, oldest check first, within the run's share.  Bytes that changed
under an unchanged size and mtime are ``source_corrupt`` (bit rot in the library), and
never replace good copies.  ``catchup.source_holds`` answers the heal's last question: is a
source file still holding an asset no target holds?
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from photod import policy
from photod.catalog import Catalog, stamp_seconds
from photod.config import FolderSource, ScheduleConfig
from photod.hashing import hash_source
from photod.logs import log


@dataclass
class SourceTally:
    """What one run did in the watch folders."""

    checked: int = 0
    corrupt: int = 0


class SourceScrub:
    def __init__(
        self,
        schedule: ScheduleConfig,
        folders: list[FolderSource],
        catalog: Catalog,
        interval: float,
        stop: threading.Event,
    ) -> None:
        """``schedule``: the scrub's cycle; ``folders``: the watch folders re-read;
        ``interval``: seconds between scheduled runs (each reads its share)."""
        self.schedule = schedule
        self.folders = folders
        self.catalog = catalog
        self.interval = interval
        self.stop = stop

    def run(self, everything: bool) -> SourceTally:
        """Re-read each watch folder's share of files (``everything``: all of them)."""
        tally = SourceTally()
        for source in self.folders:
            total = self.catalog.source_bytes(source.name)
            share = (
                total
                if everything
                else policy.scrub_share(total, self.schedule.scrub_cycle, self.interval)
            )
            done = 0
            for rel, size, mtime_ns, asset, read_at in self.catalog.sources_by_age(
                source.name, 100_000
            ):
                if done >= share or self.stop.is_set():
                    break
                try:
                    actual, st, st2 = hash_source(source.path, rel)
                except OSError:  # gone, unreadable, or a link now: the scan says so
                    continue
                if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                    continue  # changed: the reconcile scan takes it again
                if (st2.st_size, st2.st_mtime_ns) != (size, mtime_ns):
                    continue  # written while we read: not rot
                done += size
                tally.checked += 1
                corrupt = actual != asset
                if corrupt and _edited_since(st, read_at):
                    self.catalog.source_edited(source.name, rel)
                    log.warning("source_edited", source=source.name, path=rel, asset=asset,
                                found=actual, detail="its bytes changed with its size and "
                                "mtime kept, after its details changed (an editor that keeps "
                                "file times; or damage after a chmod): the next scan takes it "
                                "as a new version and the copies keep the one before; if you "
                                "did not edit it, restore that one from them")  # fmt: skip
                    continue
                self.catalog.source_checked(source.name, rel, corrupt)
                if corrupt:
                    tally.corrupt += 1
                    log.error(
                        "source_corrupt",
                        source=source.name,
                        path=rel,
                        asset=asset,
                        found=actual,
                        detail="the bytes changed but the size and mtime did not (bit rot?); "
                        "the backed-up copies are kept, restore this file from them",
                    )
        return tally


def _edited_since(st: os.stat_result, read_at: str | None) -> bool:
    """The file's inode changed (its ctime moved, which no program can set back) after
    photod last read its bytes and found them right: a program changed it, even if it
    put its mtime back.  Bit rot changes bytes without the kernel knowing."""
    if read_at is None:
        return False
    return st.st_ctime > stamp_seconds(read_at) + 1  # (read_at is to the second)
