"""Keeping the catalog and the targets' own records in step (``targets/records.py``).

The targets are the truth and the catalog is a cache of them.  When a target comes
(at start, or a drive plugged in):

- ``catch_up``: segments of this installation's list that the catalog never saw (it
  lost its last commits, or came from an older snapshot).  Each entry it lacks is read
  from the target, hashed and recorded: nothing on a target is forgotten for good.
- ``relist``: verified copies the catalog has and the list lacks (photod died before
  the list was flushed) are appended.  The list never shrinks to the catalog's view.
- ``read_others``: what other installations list on a shared target, so that the same
  bytes are stored there once (``shared_copy``).

And while it runs, ``flush`` writes the buffered entries as one new segment, and merges
the segments when there are many (``compact``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from photod import failpoints
from photod.catalog import Catalog
from photod.errors import PhotodError, Stopping, TargetUnavailable, Undecryptable, UnsafeName
from photod.logs import log
from photod.media import check_key
from photod.models import Kind, ManifestEntry
from photod.targets.base import (
    CHUNK,
    Identity,
    Target,
    TargetReadOnly,
    hash_object,
    holds,
    kept_time,
    unread,
)
from photod.targets.records import Records

TIER = 10  # segments of the same order of size (entries: 1-9, 10-99, ...) merged into one
OTHER_BYTES = "its bytes do not match its list entry"  # (``adopt_object``'s reason)
LEFT_ALONE = "left alone"  # (the end of its reason for a file that is not photod's)


def adopt_object(
    catalog: Catalog,
    name: str,
    target: Target,
    key: str,
    listed: ManifestEntry | None,
    source: str,
    owner: str = "",
    also: Sequence[ManifestEntry] = (),
) -> str:
    """Read one object, hash and probe it, and record it as a verified replica; '' on
    success, else why not (for good: not there, other bytes).  Nothing is recorded that
    was not read and hashed first.  Raises TargetUnavailable when the target failed on
    the way (the adoption is to be tried again, not given up).  ``also``: the list's
    other lines naming the key (a clone of this computer, writing under its id, listed
    its photo there too): the object is whichever one's bytes it holds."""
    import tempfile  # here: its random numbers cost ``status``, which never adopts, 2 ms

    if re.search(r"[\x00-\x1f\x7f]", key):  # (a newline would forge a line in the lists;
        # a name in another Unicode form, NFD from a Mac's disk, is still a photo's)
        return f"not a name photod writes (it contains a control character): {LEFT_ALONE}"
    if not key.isascii() and not _utf8(key):  # (a Latin-1 name an old client wrote)
        return f"not a name photod writes (not UTF-8): {LEFT_ALONE}"
    try:  # (a backslash, an empty or '.' part: one no restore would write back)
        check_key(unicodedata.normalize("NFC", key))
    except UnsafeName as exc:
        return f"not a name photod writes (it {exc.why}): {LEFT_ALONE}"
    with tempfile.NamedTemporaryFile(prefix="photod-adopt-", suffix=Path(key).suffix) as out:
        h = hashlib.sha256()
        mtime: float | None = None
        try:
            with target.open(key) as src:
                # A plain copy keeps its source's mtime (a local file as its own, an S3
                # object as its metadata): the capture time of a photo without EXIF, as
                # at ingest.  An encrypted copy's is in its list entry, below.
                if not target.encrypted and (kept := kept_time(src)) is not None:
                    mtime = kept / 1e9
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            return "listed but not on the target"
        except Undecryptable as exc:  # its bytes, not the link: refused for good
            return str(exc)
        except OSError as exc:
            raise TargetUnavailable(name, f"reading {key}: {exc}") from exc
        out.flush()
        sha, size = h.hexdigest(), out.tell()
        if listed is not None and listed.sha256 != sha:
            listed = next((e for e in also if e.sha256 == sha), listed)
            if listed.sha256 != sha:
                return f"{OTHER_BYTES} (expected {listed.sha256[:12]})"
        if mtime is None and listed is not None and listed.mtime_ns is not None:
            mtime = listed.mtime_ns / 1e9
        from photod.probe import probe_file  # Pillow: only when a file is adopted

        info = probe_file(out.name, Path(key).name, mtime or 0.0, "off")
    kind, fmt, captured = Kind.SIDECAR, "unknown", ""
    if info is not None:
        kind, fmt = info.kind, info.format
        if info.capture_source != "mtime" or mtime is not None:
            captured = info.captured_at.isoformat()
    if listed is not None and listed.captured_at:
        captured = listed.captured_at
    entry = ManifestEntry(sha, key, size, captured)
    # Another photo of this name may be in the catalog already (a cloned disk's
    # computer took one of the same name under this installation's id): this one is
    # still a photo of the library, named beside it as an ingest would have named it.
    catalog.adopt(entry, name, kind, fmt, source, owner)
    return ""


def adopt_retried(
    catalog: Catalog, name: str, target: Target, key: str, lines: list[ManifestEntry],
    ident: Identity | None,
) -> str:  # fmt: skip
    """A rebuild's ``adopt_object`` (as the list's last line naming ``key`` says, or any
    other), tried once more after the target proved it still answers (a throttle, a
    dropped connection); TargetUnavailable when it is gone, or when the object fails
    twice."""
    listed, also = (lines[-1], lines[:-1]) if lines else (None, [])
    try:
        return adopt_object(catalog, name, target, key, listed, f"rebuild:{name}", also=also)
    except TargetUnavailable as exc:
        try:
            target.check(ident, prepare=False)
        except TargetReadOnly:
            pass  # (it answers: read-only is all a rebuild needs)
        except TargetUnavailable:
            raise PhotodError(f"{name!r} failed during the rebuild: {exc.reason}") from exc
    return adopt_object(catalog, name, target, key, listed, f"rebuild:{name}", also=also)


def _utf8(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def catch_up(
    catalog: Catalog,
    name: str,
    records: Records,
    stop: threading.Event,
    lock: threading.Lock | None = None,
) -> int:
    """Adopt what this installation's list on the target holds and the catalog does not
    know (read, hashed, recorded); returns how many copies were recovered.  A line whose
    name holds another photo that this list names there too (a clone's, which took the
    name: ``listed_by_a_clone``) is this installation's stale line: it goes from the list
    (under ``lock``), and its segment counts as read only once it has gone."""
    on_target = set(records.ledger.segments())
    known = catalog.own_segments(name)
    if known - on_target:  # compacted into a segment read below (a crash before the
        # catalog knew), or lost: the target put back from an old copy of itself, whose
        # copies made since are gone too.  Every copy is looked for there (``relist``).
        catalog.segments_gone(name, sorted(known - on_target))
        catalog.set_meta(f"unlisted:{name}", "1")
    recovered, stale = 0, set()
    for segment in sorted(on_target - known):
        try:
            entries = records.ledger.read(segment)
        except Undecryptable as exc:
            if exc.foreign:  # (another identity's, or the key replaced: the target waits)
                raise
            catalog.set_meta(f"unlisted:{name}", "1")  # (its copies relisted; known: said once)
            catalog.segment_written(name, segment, 0)
            log.warning("list_damaged", target=name, segment=segment, error=str(exc))
            continue
        stale_here = False
        for e in entries:  # a TargetUnavailable leaves the segment unread: tried again
            if stop.is_set():
                raise Stopping
            if catalog.replica_exists(e.sha256, name):
                continue
            why = adopt_object(catalog, name, records.target, e.key, e, f"target:{name}")
            try:
                clones = why.startswith(OTHER_BYTES) and _a_clones(catalog, name, records, e)
            except Undecryptable as exc:  # read again, its bytes do not open: a damaged
                clones, why = False, f"{why}; read again, {exc}"  # read, not a clone's photo
            if clones:
                why = "its name holds another photo, which this installation's list names "
                why += "there too (a clone's, on this installation's id): this line goes"
                stale.add((e.sha256, e.key))
                stale_here = True
            if why:
                log.warning("replica_not_recovered", asset=e.sha256, target=name, path=e.key,
                            reason=why)  # fmt: skip
                continue
            recovered += 1
            log.info("replica_recovered", asset=e.sha256, target=name, path=e.key,
                     detail="listed on the target, unknown to the catalog: read, hashed, "
                     "recorded")  # fmt: skip
        if not stale_here:  # (else read again, should the line's removal fail)
            catalog.segment_written(name, segment, len(entries))
    if stale:
        with lock or contextlib.nullcontext():
            flush(catalog, name, records)
            compact(catalog, name, records, stale=frozenset(stale))
    return recovered


def _a_clones(catalog: Catalog, name: str, records: Records, e: ManifestEntry) -> bool:
    """Whether the file at a line's name, read again, is another photo this list names
    there (read twice: a read damaged on its way takes no line off the list).  Raises
    Undecryptable when, read again, the bytes of an encrypted target's file do not open
    (damaged: the line stays; the link is not at fault)."""
    try:
        actual = hash_object(records.target, e.key)
    except FileNotFoundError:
        return False
    except Undecryptable:  # (an OSError too: not the target's unavailability)
        raise
    except OSError as exc:
        raise TargetUnavailable(name, f"reading {e.key}: {exc}") from exc
    return actual != e.sha256 and listed_by_a_clone(catalog, name, records, e.key, e.sha256, actual)


def relist(catalog: Catalog, name: str, records: Records) -> int:
    """Append to the list the verified copies it lacks, each found there at its size;
    returns how many.  One not there (the catalog rebuilt from a snapshot another computer
    wrote under this one's id: a cloned disk) is marked missing and copied again, never
    listed; so is one whose name the list gives to other bytes (the clone's photo of that
    name and size, which a scrub would otherwise take for a corrupt copy of ours)."""
    missing = _unlisted(catalog, name, records, _listed(records)[0])
    if missing:
        records.ledger.append(missing)
        flush(catalog, name, records)
        log.info("list_completed", target=name, entries=len(missing))
    return len(missing)


def mend(catalog: Catalog, name: str, records: Records, lock: threading.Lock) -> int:
    """This installation's segments that no longer open put right, at a scrub: the copies
    the others lack go into a new one, then they are deleted (a crash between leaves lines
    twice, never once less).  How many; a failure is said, and tried at the next scrub."""
    try:
        with lock:
            return _mend(catalog, name, records)
    except Stopping:
        raise
    except (OSError, PhotodError) as exc:
        log.warning("list_unmended", target=name, error=str(exc))
        return 0


def _mend(catalog: Catalog, name: str, records: Records) -> int:
    listed, damaged, kept = _listed(records)
    if kept:
        log.warning("list_unmended", target=name, error=f"{len(kept)} segments sealed to another "
                    "identity: is [encryption] identity the key this computer wrote with?")  # fmt: skip
    if not damaged:
        return 0
    records.ledger.append(_unlisted(catalog, name, records, listed))
    done = records.ledger.flush()  # (no merge here: it would read the damaged ones)
    if done is not None:
        catalog.segment_written(name, done[0], len(done[1]))
    for segment in damaged:
        records.target.delete_meta(segment)
    catalog.segment_written(name, "", 0, replaces=tuple(damaged))
    log.warning("list_mended", target=name, segments=len(damaged),
                entries=len(done[1]) if done else 0)  # fmt: skip
    return len(damaged)


def _listed(records: Records) -> tuple[set[Line], list[str], list[str]]:
    """(SHA-256, key) of each entry of this installation's list (written or buffered), its
    segments that do not open (``mend``), and those kept: sealed to another key, they are
    damaged (a byte flipped in a header reads so) only when another of them opens."""
    listed = {(e.sha256, e.key) for e in records.ledger.buffered()}
    damaged, foreign = list[str](), list[str]()
    for segment in (segments := records.ledger.segments()):
        try:
            listed.update((e.sha256, e.key) for e in records.ledger.read(segment))
        except Undecryptable as exc:
            (foreign if exc.foreign else damaged).append(segment)
    opened = len(foreign) + len(damaged) < len(segments)
    return listed, damaged + foreign if opened else damaged, [] if opened else foreign


def _unlisted(
    catalog: Catalog, name: str, records: Records, listed: set[Line]
) -> list[ManifestEntry]:
    """The verified copies not ``listed`` found at their size (``relist``)."""
    taken = {key for _, key in listed}
    missing = []
    for e in catalog.verified_on(name):
        if (e.sha256, e.key) in listed:
            continue
        failpoints.hit("relist_copy")  # (a test unplugs the drive here)
        if e.key in taken:
            left = catalog.replica_bad(e.sha256, name, "missing", "relist")
            log.error("replica_missing", asset=e.sha256, target=name, path=e.key,
                      method="relist", good_copies_left=left, detail="in the catalog, but "
                      "the target's list gives its name to another photo's bytes")  # fmt: skip
            continue
        if records.target.size(e.key) == e.size:
            # An encrypted target's line keeps the photo's file time (the only date of a
            # photo without EXIF, for a rebuild and the recovery without photod).
            missing.append(
                e._replace(mtime_ns=catalog.file_time(e.sha256)) if records.target.encrypted else e
            )
            continue
        left = catalog.replica_bad(e.sha256, name, "missing", "relist")
        log.error("replica_missing", asset=e.sha256, target=name, path=e.key, method="relist",
                  good_copies_left=left, detail="in the catalog, neither listed nor there")  # fmt: skip
    return missing


def read_others(catalog: Catalog, name: str, records: Records) -> int:
    """Bring the catalog's copy of the other installations' lists up to date (only
    segments not read before are read); returns how many entries were read."""
    seen = catalog.shared_segments(name)
    present: dict[str, str] = {}
    for other in records.others():
        for segment in records.ledger_of(other).segments():
            present[segment] = other.folder
    gone = [s for s in seen if s not in present]
    if gone:
        catalog.shared_gone(name, gone)
    read = 0
    for segment, folder in sorted(present.items()):
        if segment in seen:
            continue
        try:
            entries = records.ledger_of_folder(folder).read(segment)
        except Undecryptable:
            entries = []  # sealed to another identity: nothing this one can share
        catalog.shared_gone(name, [segment])  # rows of a read cut short before
        catalog.shared_read(name, folder, segment, entries)
        records.target.learn(entries)
        read += len(entries)
    return read


A_CLONE = "a clone"  # what ``whose_at`` answers for a clone of this computer


def whose_at(
    catalog: Catalog, name: str, records: Records | None, key: str, sha256: str, actual: str = ""
) -> str:
    """Who lists another photo at our copy's name ``key`` ('' for none), asked before a
    file there that is not ``sha256`` is called a bad copy of ours: another
    installation (its file took the name: our line goes from our list by its key), or
    ``A_CLONE``, a clone of this computer writing under its id in the same list (only
    our line goes).  ``actual``: the bytes found there, when known; unknown (a wrong
    size alone), any other photo listed there counts."""
    other = catalog.listed_by_other(name, key, actual or sha256, but=not actual)
    if other:
        return other
    if records is not None and listed_by_a_clone(catalog, name, records, key, sha256, actual):
        return A_CLONE
    return ""


def listed_by_a_clone(
    catalog: Catalog, name: str, records: Records, key: str, sha256: str, actual: str = ""
) -> bool:
    """Whether this installation's list names ``key`` with other bytes (``actual``, when
    known): another computer writing under this id (a cloned disk) put its photo there,
    and lists it; that file is not a bad copy of ours.  A line the catalog read already
    (a catch-up at the target's coming: the photo is the catalog's, its copy at that
    name), or one in a segment it never saw."""
    if catalog.copy_of_another_at(name, key, sha256, actual):
        return True
    unknown = set(records.ledger.segments()) - catalog.own_segments(name)
    return any(
        e.key == key and e.sha256 != sha256 and (not actual or e.sha256 == actual)
        for s in sorted(unknown)
        for e in records.ledger.read(s)
    )


Found = tuple[str, str]  # (key, installation) of another installation's copy
Line = tuple[str, str]  # (SHA-256, key) of an entry of a list


def shared_copy(
    catalog: Catalog,
    name: str,
    target: Target,
    sha256: str,
    disproved: set[Found] | None = None,
) -> Found | None:
    """(key, installation) of another installation's copy of these bytes on the target,
    proved by reading it back; None when there is none, or none matches (or all are
    gone).  Every other installation's entry is tried, by installation then key, until
    one proves: only the first was tried, so one computer's copy gone or rotten had the
    photo stored a second time beside a third's good one, and one that could not be
    read held it back while the third's would have proved it.  One that cannot be read
    now raises (``unread``) only when none proves: the copy is tried again later (taken
    for none, the photo was stored a second time on the shared target).  A target that
    does not answer at all raises at once (each read of the others would wait on it).
    ``disproved``: the copies the caller already read in this try and found other bytes
    at (or gone): not downloaded again, and those found so here are added to it (a
    catch-up's, asked before its upload, passed on to its commit)."""
    unreadable: PhotodError | None = None
    # One object is read once, however many computers list it (each that adopted it
    # does): a rotten copy was downloaded once for each.
    read = {key for key, _ in disproved or ()}
    for found in catalog.shared_copies(name, sha256):
        if found[0] in read:
            continue
        read.add(found[0])
        try:
            if proves(target, found, sha256):
                return found
        except (Stopping, TargetUnavailable):
            raise
        except PhotodError as exc:
            unreadable = unreadable or exc  # (said as the first one unread)
            continue
        if disproved is not None:
            disproved.add(found)
    if unreadable is not None:
        raise unreadable
    return None


def proves(target: Target, found: Found, sha256: str) -> bool:
    """Whether another installation's copy ``found`` (key, installation) is these bytes,
    read back whole; raises ``unread`` when it cannot be read now (``shared_copy``)."""
    try:
        return holds(target, found[0], sha256)
    except FileNotFoundError:
        return False
    except Stopping:
        raise
    except (OSError, PhotodError) as exc:
        raise unread(target, found[0], "another computer's copy", exc) from exc


def flush(catalog: Catalog, name: str, records: Records) -> None:
    """Write the buffered entries as one segment, and merge segments of about the same
    size once there are TIER of them (each entry is rewritten a few times over the
    list's life, and a list of a million entries stays a few dozen segments)."""
    done = records.ledger.flush()
    if done is None:
        return
    catalog.segment_written(name, done[0], len(done[1]))
    tiers: dict[int, list[str]] = {}
    for segment, entries in catalog.own_segment_sizes(name).items():
        tiers.setdefault(len(str(max(entries, 1))), []).append(segment)
    for segments in tiers.values():
        if len(segments) >= TIER:
            merge(catalog, name, records, sorted(segments))


def merge(catalog: Catalog, name: str, records: Records, segments: list[str]) -> None:
    merged = records.ledger.compact(segments)
    if merged is not None:
        catalog.segment_written(name, merged[0], len(merged[1]), replaces=tuple(segments))


def compact(
    catalog: Catalog,
    name: str,
    records: Records,
    drop: frozenset[str] = frozenset(),
    stale: frozenset[tuple[str, str]] = frozenset(),
) -> None:
    """Merge this installation's segments on the target into one; ``drop``: keys whose
    files are provably gone from the target; ``stale``: (SHA-256, key) of lines whose
    key holds another photo, listed there too (``listed_by_a_clone``)."""
    segments = records.ledger.segments()
    if len(segments) < 2 and not drop and not stale:
        return
    done = records.ledger.compact(segments, drop, stale)
    catalog.segment_written(
        name, done[0] if done else "", len(done[1]) if done else 0, replaces=tuple(segments)
    )
    log.info("list_compacted", target=name, segments=len(segments), entries=len(done[1])
             if done else 0, dropped=sorted(drop | {k for _, k in stale}))  # fmt: skip


def drop_stale(
    catalog: Catalog, name: str, records: Records, lock: threading.Lock, sha256: str, key: str
) -> None:
    """Take this installation's line for a copy whose name a clone's file holds off the
    list (the file stays); a target gone meanwhile keeps the line (no harm but a line
    that fails ``sha256sum -c``: the target's own unavailability is said where it is
    next used)."""
    try:
        with lock:
            flush(catalog, name, records)
            compact(catalog, name, records, stale=frozenset({(sha256, key)}))
    except PhotodError:
        return
