"""What a target says about itself, kept per photod installation, and only ever growing.

Under ``.photod/`` on every target::

    target.json                             the target's id: written once, by whoever came first
    RECOVERY.md                             how to get every photo back with stock tools
                                            (written once, or by a photod of newer steps:
                                            ``plan_format``; it covers every installation)
    installations/<name>.<id12>/            one folder per photod installation (a computer)
        installation.json                   who it is
        writer.json                         the computer that wrote here last (``twins.py``)
        sums/<random>.sha256                its checksum list, in immutable segments
        index/<random>.age                  the same on an encrypted target, sealed with age
        snapshots/<generation>-<assets>.sqlite.gz   its catalog, the last few generations
        RECOVERY.md                         its own recovery plan
        library/<UDID>.json                 its view of each phone's library (``sidecars.py``)
    objects/<ab>/<38 hex>                   (encrypted targets) each object's index line, sealed

An installation writes only in its own folder, and the shared files only when they are
missing (the recovery document also when its steps are older): nothing one computer
writes replaces or deletes another's.  Its list grows by
one new segment per batch of verified copies; compaction merges its own segments into
one and drops an entry only when its file is provably gone.  A segment is written
whole (atomically) and never changed, so a crash leaves whole segments or none.

The catalog is a cache of these records: a lost, damaged or old catalog is rebuilt from
them (``snapshot.py``), and before an upload the other installations' entries say
whether the bytes are on the target already (``Records.others``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO, NamedTuple

from photod import __version__
from photod.errors import PhotodError, TargetUnavailable, Undecryptable
from photod.models import ManifestEntry
from photod.targets.base import Target

INSTALLATIONS = "installations"
EARLY_INDEX = "index"  # an encrypted target's index before installations (early_index)
# The one catalog snapshot a photod before installations kept on a target (sealed on an
# encrypted one): a rebuild takes it where no installation keeps records.
EARLY_SNAPSHOT = "catalog.sqlite.gz"
INFO = "installation.json"
PLAN = "RECOVERY.md"
# The format of the recovery document at a target's top (``PLAN``): raised whenever its
# steps change, so that a document an earlier photod left there is brought up to date
# (it is written once, and replaced only by one of a higher format: ``plan_format``).
PLAN_FORMAT = 13
PLAN_MARK = "<!-- photod recovery document, format {} -->"
SNAPSHOTS = "snapshots"
SNAPSHOT_SUFFIX = ".sqlite.gz"
KEEP_SNAPSHOTS = 5  # newest generations kept per installation on each target
FLUSH_EVERY = 1000  # entries; fewer are written by flush() (the daemon calls it often)
# <generation>-<photos>-<UTC day and time>.sqlite.gz
SNAPSHOT_NAME = re.compile(r"^(\d{10})-(\d{10})(?:-(\d{8})T\d{6}Z)?\.sqlite\.gz$")
KEEP_DAYS = 7  # and the newest snapshot of each of the last days that have one


class Installation(NamedTuple):
    """One photod installation: a computer's photod, by a random id and a name."""

    id: str  # 32 hex digits
    name: str  # [daemon] instance, the host name by default

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def folder(self) -> str:
        return f"{INSTALLATIONS}/{self.name}.{self.short}"


class Seen(NamedTuple):
    """An installation found on a target, by its folder."""

    folder: str  # installations/<name>.<id12>
    name: str
    short: str  # the id's first 12 hex digits

    def is_(self, me: Installation) -> bool:
        return self.short == me.short


class SnapshotName(NamedTuple):
    generation: int
    assets: int
    name: str  # the meta name, relative to .photod/
    day: str = ""  # YYYYMMDD (UTC) it was written


def mtime_text(ns: int | None) -> str:
    """Nanoseconds since the epoch as seconds for ``touch -d @S`` ('' if unknown): the
    form rclone keeps an S3 object's file time in, too (its ``mtime`` metadata)."""
    if ns is None:
        return ""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"{sign}{ns // 10**9}.{ns % 10**9:09d}"


def mtime_from_text(text: str) -> int | None:
    """``mtime_text`` read back; also a shorter fraction or none (another tool's)."""
    m = re.fullmatch(r"(-?)(\d{1,12})(?:\.(\d{1,9}))?", text.strip())
    if m is None:
        return None
    ns = int(m.group(2)) * 10**9 + int((m.group(3) or "").ljust(9, "0"))
    return -ns if m.group(1) else ns


# -- the two line formats ---------------------------------------------------------------


def plain_lines(entries: Iterable[ManifestEntry]) -> bytes:
    """``sha256sum`` format, so that ``sha256sum -c`` checks the files from the root."""
    return "".join(f"{e.sha256}  {e.key}\n" for e in entries).encode()


def _lines(data: bytes) -> list[str]:
    """Lines split on newlines only (str.splitlines would also split a key on U+2028,
    U+0085... which a file name may hold)."""
    return data.decode("utf-8", "replace").split("\n")


def parse_plain(data: bytes) -> list[ManifestEntry]:
    out = []
    for line in _lines(data):
        sha, sep, key = line.partition("  ")
        if sep and len(sha) == 64 and key:
            out.append(ManifestEntry(sha, key))
    return out


def index_line(obj: str, e: ManifestEntry) -> str:
    """An encrypted target's index line: object, SHA-256, size, capture time, file time
    (seconds, for ``touch -d @``) and the original path, tab-separated."""
    return f"{obj}\t{e.sha256}\t{e.size}\t{e.captured_at}\t{mtime_text(e.mtime_ns)}\t{e.key}\n"


def own_entry(line: bytes, obj: str) -> ManifestEntry | None:
    """What an encrypted object's own index line (``line``, opened) says object ``obj``
    holds (its SHA-256 and size: another photo's told without reading it).  A line that
    names another object says nothing (None)."""
    found = parse_index(line)[:1]
    return found[0] if found and line.split(b"\t", 1)[0] == obj.encode() else None


def parse_index(data: bytes) -> list[ManifestEntry]:
    out = []
    for line in _lines(data):
        parts = line.split("\t")
        if len(parts) == 6:  # object sha size taken mtime key
            sha, size, taken, mtime, key = (
                parts[1],
                parts[2],
                parts[3],
                mtime_from_text(parts[4]),
                parts[5],
            )
        elif len(parts) == 5:  # written before file times were kept
            sha, size, taken, mtime, key = parts[1], parts[2], parts[3], None, parts[4]
        else:
            continue
        if len(sha) == 64 and key and re.fullmatch(r"-?\d+", size):
            out.append(ManifestEntry(sha, key, int(size), taken, mtime))
    return out


def plan_format(text: bytes) -> int:
    """The format of a target's recovery document: its mark's; without one, 1 for a
    photod's that kept records per installation, 0 for an older one's."""
    m = re.search(rb"<!-- photod recovery document, format (\d{1,6}) -->", text)
    if m is not None:
        return int(m.group(1))
    return 1 if b".photod/installations/" in text else 0


def early_index(target: Target) -> list[ManifestEntry]:
    """The index a photod before per-installation records (November 2026) kept on an
    encrypted target: sealed segments at ``.photod/index/<24 hex>`` of five-field lines
    (object, SHA-256, size, capture time, path).  Read, never written: a target no
    newer photod has run on holds its photos' names only there.  Segments sealed to
    another identity are left out."""
    if not target.encrypted:
        return []
    out: list[ManifestEntry] = []
    for segment in target.list_meta(EARLY_INDEX):
        try:
            data = target.get_private(segment)
        except Undecryptable:
            continue
        out.extend(parse_index(data) if data else [])
    return out


# -- one installation's list on one target ------------------------------------------------


class Ledger:
    """An installation's list of what it holds on a target: immutable segments in its
    folder.  ``append`` buffers; ``flush`` writes the buffer as one new segment."""

    def __init__(self, target: Target, folder: str) -> None:
        self.target = target
        self.encrypted = target.encrypted
        self.folder = f"{folder}/{'index' if self.encrypted else 'sums'}"
        self.suffix = ".age" if self.encrypted else ".sha256"
        self._buffer: list[ManifestEntry] = []
        self._lock = threading.Lock()

    def encode(self, entries: list[ManifestEntry]) -> bytes:
        if self.encrypted:
            text = "".join(index_line(self.target.locate(e.key), e) for e in entries)
            return text.encode()
        return plain_lines(entries)

    def decode(self, data: bytes) -> list[ManifestEntry]:
        return parse_index(data) if self.encrypted else parse_plain(data)

    def append(self, entries: Iterable[ManifestEntry]) -> bool:
        """Buffer entries; True when the buffer is full enough to flush now."""
        with self._lock:
            self._buffer.extend(entries)
            return len(self._buffer) >= FLUSH_EVERY

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def buffered(self) -> list[ManifestEntry]:
        """The entries not written yet (``flush``)."""
        with self._lock:
            return list(self._buffer)

    def _write(self, entries: list[ManifestEntry]) -> str:
        import secrets  # here, as socket below: `photod status` never writes a list

        name = f"{self.folder}/{secrets.token_hex(12)}{self.suffix}"
        # put_private: sealed with age on an encrypted target, as it is on a plain one.
        self.target.put_private(name, self.encode(entries))
        return name

    def flush(self) -> tuple[str, list[ManifestEntry]] | None:
        """Write what is buffered as one new segment: (its name, its entries)."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return None
        try:
            return self._write(batch), batch
        except BaseException:
            with self._lock:
                self._buffer[:0] = batch  # kept for the next flush
            raise

    def segments(self) -> list[str]:
        return [n for n in self.target.list_meta(self.folder) if n.endswith(self.suffix)]

    def check_key(self, target: str) -> None:
        """TargetUnavailable when every segment is sealed to another key than this one
        (``[encryption] identity`` replaced): every copy there would be taken for missing
        and sent again, sealed to the wrong key.  Three are tried (read again at each
        check while none opens): one that opens, or is damaged, will do."""
        for segment in (segments := sorted(self.segments(), reverse=True)[:3]):
            try:
                self.read(segment)
                return
            except Undecryptable as exc:
                if not exc.foreign:
                    return  # (mended at a scrub: ``ledgers.mend``)
        if segments:
            raise TargetUnavailable(target, "this computer's list there does not open with its "
                                    "[encryption] identity: was the key replaced? Put back the "
                                    "key these photos were sealed to")  # fmt: skip

    def read(self, segment: str) -> list[ManifestEntry]:
        """One segment's entries ([] if it is gone: another process compacted it)."""
        data = self.target.get_private(segment)
        return [] if data is None else self.decode(data)

    def entries(self) -> Iterator[ManifestEntry]:
        for segment in self.segments():
            yield from self.read(segment)
        with self._lock:
            yield from list(self._buffer)

    def compact(
        self,
        segments: list[str],
        drop: frozenset[str] = frozenset(),
        stale: frozenset[tuple[str, str]] = frozenset(),
    ) -> tuple[str, list[ManifestEntry]] | None:
        """Merge these segments into one new one, then delete them.  Duplicates go;
        an entry goes only when its key is in ``drop`` (its file is provably gone), or
        it is in ``stale`` ((SHA-256, key): the file there is another photo's).  A
        crash between the two steps leaves entries twice, never once less."""
        merged: dict[tuple[str, str], ManifestEntry] = {}
        for segment in segments:
            for e in self.read(segment):
                if e.key not in drop and (e.sha256, e.key) not in stale:
                    merged[(e.sha256, e.key)] = e
        if not merged and not drop and not stale:
            return None
        name = self._write(sorted(merged.values(), key=lambda e: e.key)) if merged else ""
        for segment in segments:
            self.target.delete_meta(segment)
        return (name, list(merged.values())) if name else None


# -- everything one target holds about its installations ----------------------------------


class Records:
    """One installation's view of one target's records: its own list, snapshots and plan,
    and the other installations' lists (read only)."""

    def __init__(self, target: Target, me: Installation) -> None:
        self.target = target
        self.me = me
        self.folder = me.folder  # the folder the id is found under, once looked up
        self.ledger = Ledger(target, self.folder)

    def find_own_folder(self) -> bool:
        """Take the folder that carries this installation's id (its name may have
        changed since); True when it exists on the target."""
        for seen in installations(self.target):
            if seen.is_(self.me):
                if seen.folder != self.folder:
                    self.folder = seen.folder
                    self.ledger = Ledger(self.target, seen.folder)
                return True
        return False

    def register(self) -> None:
        """Write this installation's ``installation.json`` (its own file)."""
        import socket

        info = {"id": self.me.id, "name": self.me.name, "host": socket.gethostname(),
                "photod": __version__}  # fmt: skip
        self.target.put_meta(f"{self.folder}/{INFO}", json.dumps(info, indent=1).encode())

    def others(self) -> list[Seen]:
        return [s for s in installations(self.target) if not s.is_(self.me)]

    def ledger_of(self, seen: Seen) -> Ledger:
        return self.ledger_of_folder(seen.folder)

    def ledger_of_folder(self, folder: str) -> Ledger:
        return Ledger(self.target, folder)

    # -- snapshots -----------------------------------------------------------------------

    def snapshots(self, folder: str | None = None) -> list[SnapshotName]:
        """An installation's catalog snapshots on the target, newest first."""
        return snapshots_in(self.target, folder or self.folder)

    def put_snapshot(self, generation: int, assets: int, src: BinaryIO) -> str:
        """The snapshot read from ``src`` (streamed: it grows with the library)."""
        when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{self.folder}/{SNAPSHOTS}/{generation:010d}-{assets:010d}-{when}"
        self.target.put_private_file(name + SNAPSHOT_SUFFIX, src)
        return name + SNAPSHOT_SUFFIX

    def prune_snapshots(self) -> list[str]:
        """Keep this installation's newest KEEP_SNAPSHOTS generations, and the newest
        of each of the last KEEP_DAYS days that have one: a catalog gone wrong in a way
        no check sees cannot push every good generation out within minutes."""
        snaps = self.snapshots()
        keep = {s.name for s in snaps[:KEEP_SNAPSHOTS]}
        days: list[str] = []
        for s in snaps:  # newest first
            if s.day and s.day not in days and len(days) < KEEP_DAYS:
                days.append(s.day)
                keep.add(s.name)
        old = [s for s in snaps if s.name not in keep]
        for snap in old:
            self.target.delete_meta(snap.name)
        return [s.name for s in old]

    def put_plan(self, text: str) -> None:
        self.target.put_meta(f"{self.folder}/{PLAN}", text.encode())

    def put_config(self, text: str) -> None:
        """The config without its secrets (``recovery.kept_config``), beside the plan."""
        self.target.put_meta(f"{self.folder}/photod.toml", text.encode())


def installations(target: Target) -> list[Seen]:
    """Every installation that keeps records on the target, from one listing."""
    folders: set[str] = set()
    for name in target.list_meta(INSTALLATIONS):
        parts = name.split("/")
        if len(parts) >= 3:
            folders.add(parts[1])
    out = []
    for folder in sorted(folders):
        name, dot, short = folder.rpartition(".")
        if dot and re.fullmatch(r"[0-9a-f]{12}", short):
            out.append(Seen(f"{INSTALLATIONS}/{folder}", name, short))
    return out


def snapshots_in(target: Target, folder: str) -> list[SnapshotName]:
    out = []
    for name in target.list_meta(f"{folder}/{SNAPSHOTS}"):
        m = SNAPSHOT_NAME.match(name.rpartition("/")[2])
        if m:
            out.append(SnapshotName(int(m.group(1)), int(m.group(2)), name, m.group(3) or ""))
    return sorted(out, reverse=True)


def pick(seen: list[Seen], me: Installation | None, name: str | None) -> Seen:
    """The installation a rebuild takes: by ``name`` (``--instance``), else this one (by
    its id; by its name only on a new computer, ``me`` None).  PhotodError says which
    there are when it is unclear."""
    listed = ", ".join(f"{s.name} ({s.short})" for s in seen) or "none"
    if name is None and me is not None:
        # This installation, by its id only: another computer of the same name (two
        # "raspberrypi") is never taken for it without --instance.
        mine = [s for s in seen if s.is_(me)]
        if mine:
            return mine[0]
        raise PhotodError(
            f"this installation ({me.name} {me.short}) keeps no records here; installations "
            f"found: {listed}; to take another's, name it with --instance NAME"
        )
    wanted = [s for s in seen if name in (s.name, s.short, f"{s.name}.{s.short}")]
    if len(wanted) == 1:
        return wanted[0]
    if not wanted:
        raise PhotodError(
            f"no installation named {name!r} keeps records here; installations found: "
            f"{listed}; choose one with --instance NAME"
        )
    raise PhotodError(
        f"several installations are named {name!r}: {listed}; choose one with "
        "--instance NAME.ID (as listed)"
    )
