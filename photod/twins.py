"""Two computers writing as one installation: one's state dir copied onto the other
(Migration Assistant while the old Mac still runs, a Raspberry Pi's SD card copied for a
second Pi).  Both keep the same id, so both write the same folder on every target, and
each start of one finds the other's newer snapshot and rebuilds its catalog from it.

Each installation's folder on a target names the computer that last wrote there
(``writer.json``: a hash of the computer and its state dir, ``instance.fingerprint``,
and its host name).  When a target comes, a writer that is neither this computer nor,
before this one wrote there, the computer its state dir was copied from, is another
computer running as this installation: one ``installation_cloned`` event, and
``photod status`` says it and what to do until a look finds this computer the last
writer again.  Nothing else changes: both go on backing up, and nothing either wrote is
replaced or deleted by the other.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

from photod import instance
from photod.library import printable
from photod.logs import log
from photod.targets.records import Records

WRITER = "writer.json"
MOST = 1 << 16  # a longer writer.json is no computer's: a writer unknown

FIX = (
    "if the other computer will not run photod again (the computer this one replaced), "
    "stop photod there and this ends; if both are to go on, on the copy: stop photod, "
    "give it its own [daemon] instance name and move its state dir away, then start "
    "it: it becomes an installation of its own, and finds its photos on the targets "
    "without copying them again"
)


def check(records: Records, name: str, state_dir: Path) -> None:
    """Who last wrote this installation's folder on the target ``name``; then this
    computer is written as its last writer."""
    import socket  # here: `photod status` never looks

    try:
        me = instance.computer(state_dir)
    except OSError:  # (a full state dir: nothing to compare with, and nothing is lost)
        return
    raw = records.target.get_meta(f"{records.folder}/{WRITER}")
    try:  # (anyone writing the target may put anything there: a writer unknown)
        last = json.loads(raw) if raw and len(raw) <= MOST else {}
        other, host = str(last.get("here", ""))[:64], str(last.get("host", "?"))[:255]
        host = printable(host)  # (printed by `photod status`: no escape reaches a terminal)
    except (ValueError, AttributeError, RecursionError):  # (JSON nested too deep)
        other, host = "", "?"
    # (the last write of the computer this state dir came from, before this one's)
    before = me.was in (other, instance.ANY) and name not in me.written
    if other and other != me.here and not before:
        if not me.twin:  # (said once: until a look finds this computer the last writer)
            found = (f"target {name!r} was last written as this installation by another "
                     f"computer ({host}): this state dir was copied to it or from it")  # fmt: skip
            log.error("installation_cloned", target=name, host=host, found=found, fix=FIX,
                      detail="both go on backing up; each start of one rebuilds its catalog "
                      "from the other's snapshot")  # fmt: skip
            _note(state_dir, twin={"target": name, "host": host, "found": found, "fix": FIX})
    elif me.twin.get("target") == name:
        _note(state_dir, twin=None)
    if other != me.here:  # (already this computer's: no write at every start)
        when = datetime.now(UTC).isoformat(timespec="seconds")
        writer = {"here": me.here, "host": socket.gethostname(), "at": when}
        records.target.put_meta(f"{records.folder}/{WRITER}", json.dumps(writer).encode())
    if name not in me.written:
        with contextlib.suppress(OSError):
            instance.wrote(state_dir, name)


def _note(state_dir: Path, **fields: object) -> None:
    with contextlib.suppress(OSError):  # (a full state dir: said at the next look)
        instance.note(state_dir, **fields)
