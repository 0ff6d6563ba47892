"""The catalog outlives the computer: snapshots on every target, and a rebuild.

After each batch of work the daemon writes a consistent copy of the catalog (SQLite's
online backup, checked, gzipped; sealed with age on an encrypted target) into this
installation's folder on every target, as one more generation
(``snapshots/<generation>-<assets>.sqlite.gz``), and its recovery plan beside it.  A
snapshot never stands in for a larger one: a catalog with fewer assets than the
target's newest snapshot writes none (something is wrong with it), and only the oldest
of more than ``KEEP_SNAPSHOTS`` generations are removed.

``photod catalog rebuild --from TARGET`` (and the daemon, when its catalog is lost,
damaged or older than the targets) takes the newest snapshot that opens and is sound,
then reconciles it with the target: copies it lists that are gone are marked missing,
the installation's list adds what came after the snapshot, and any file on the target
that no list names (a power cut before the list was written) is read, hashed and
adopted.  Anything adopted from the target was read and hashed first.

The new catalog is built beside the old one (``.rebuilding``), made durable, renamed
``.rebuilt``, and only then swapped in, the old one kept as ``.bak`` (the last one only):
a rebuild killed at any moment leaves the old catalog in place or a finished one to swap
in at the next start (``finish_interrupted``), never a half-built one to act on.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from photod import catalogbak, failpoints, instance
from photod.catalog import Catalog, check_file, no_catalog
from photod.durable import fsync_dir
from photod.errors import ObjectArchived, PhotodError, Stopping, TargetUnavailable, Undecryptable
from photod.fleet import TargetState
from photod.ledgers import LEFT_ALONE, OTHER_BYTES, adopt_retried
from photod.logs import log
from photod.media import kind_from_name
from photod.models import Kind, ManifestEntry
from photod.sidecars import take_indexes
from photod.snapshotfile import packed, unpack
from photod.targets.base import Identity, Target, TargetReadOnly
from photod.targets.records import (
    EARLY_SNAPSHOT,
    INFO,
    PLAN,
    Installation,
    Ledger,
    Seen,
    SnapshotName,
    early_index,
    installations,
    pick,
    plan_format,
    snapshots_in,
)

SNAPSHOT_EVERY = 30.0  # seconds: at most this often while work keeps coming
REBUILDING = ".rebuilding"  # being built: never opened by anything else
REBUILT = ".rebuilt"  # finished and durable: swapped in at the next chance
UNREAD_IN_A_ROW = 5  # files in a row a rebuild cannot read: the target is failing, not them


def write_all(
    catalog: Catalog,
    targets: dict[str, TargetState],
    scratch: Path,
    plan: str,
    shared_plan: dict[str, str],
    config: str = "",
    failed: set[str] | None = None,
) -> list[str]:
    """Put a new snapshot generation and the recovery plan on every available target
    (and the shared recovery document where there is none); returns the targets written.
    ``failed``: gets the targets that did not answer (tried again later)."""
    failed = set() if failed is None else failed
    ready = {n: s for n, s in targets.items() if s.available and s.records is not None}
    assets, _ = catalog.counts()
    if not ready or not assets:
        return []  # an empty catalog has nothing to keep, and never covers a full one
    started = time.monotonic()
    newest: dict[str, SnapshotName | None] = {}
    for name, state in ready.items():
        assert state.records is not None
        try:
            newest[name] = next(iter(state.records.snapshots()), None)
        except TargetUnavailable as exc:
            log.warning("snapshot_failed", target=name, reason=exc.reason)
            failed.add(name)
    gen = catalog.next_generation(max((s.generation for s in newest.values() if s), default=0))
    with packed(catalog, scratch) as (gz, counted):
        written = _put_all(ready, newest, gen, counted, gz, plan, shared_plan, config, failed)
        size = gz.stat().st_size
    if written:
        me = instance.Known(ready[written[0]].records.me, gen, counted)  # type: ignore[union-attr]
        instance.save(catalog.path.parent, me)
    log.info("catalog_snapshot_written", targets=written, generation=gen, assets=counted,
             bytes=size, duration=round(time.monotonic() - started, 3))  # fmt: skip
    return written


def _put_all(
    ready: dict[str, TargetState], newest: dict[str, SnapshotName | None], gen: int,
    counted: int, gz: Path, plan: str, shared_plan: dict[str, str], config: str,
    failed: set[str],
) -> list[str]:  # fmt: skip
    """The snapshot ``gz`` and the recovery plan on each target; the targets written
    (those that did not answer into ``failed``)."""
    written = []
    for name, top in newest.items():
        records = ready[name].records
        assert records is not None
        if top is not None and top.assets > counted:
            log.error("snapshot_refused", target=name, assets=counted, target_assets=top.assets,
                      reason="the target holds a snapshot of more photos than this catalog "
                      "knows; the catalog is not written over it")  # fmt: skip
            continue
        try:
            with open(gz, "rb") as src:
                records.put_snapshot(gen, counted, src)
            records.put_plan(plan)
            if config:  # the config without its secrets, for a restore (recovery.py)
                records.put_config(config)
            records.prune_snapshots()
            put_shared_plan(records.target, shared_plan.get(name, "").encode())
        except TargetUnavailable as exc:
            log.warning("snapshot_failed", target=name, reason=exc.reason)
            failed.add(name)
            continue
        written.append(name)
    return written


def put_shared_plan(target: Target, text: bytes) -> None:
    """The target's own recovery document, written once (every computer that backs up
    there writes the same), and replaced only by one of a higher format (``plan_format``):
    an earlier photod's steps, fixed since, would stay there for good, to be followed."""
    if not target.create_meta(PLAN, text) and text:
        old = target.get_meta(PLAN)
        if old is not None and plan_format(old) < plan_format(text):
            target.put_meta(PLAN, text)


# -- the rebuild ------------------------------------------------------------------------


@dataclass
class Rebuilt:
    from_snapshot: str  # the snapshot's name ('' for none)
    generation: int  # the newest generation on the target (a damaged one included)
    installation: Installation  # who this computer is now
    taken: Seen | None  # whose records were taken
    assets: int
    adopted: int  # read from the target beyond the snapshot (or all, without one)
    missing: int  # in the snapshot, not on the target any more
    skipped: list[str]  # keys that could not be adopted, with why
    lost: int = 0  # of them, photos (damaged, listed and gone, unreadable) in no catalog now


def rebuild(
    db_path: Path,
    name: str,
    state: TargetState,
    me: Installation | None,
    wanted: str | None = None,
    stop: threading.Event | None = None,
    ident: Identity | None = None,
    new_name: str = "photod",
    take_over: bool = False,
) -> Rebuilt:
    """Build a new catalog from one target (checked by the caller, ``ident`` its
    identity) at ``db_path.rebuilt``; ``swap_in`` puts it in place.  ``wanted``: the
    installation whose records to take (default: this one).  Everything the new catalog
    holds is written before it is renamed ``.rebuilt``: it is never opened to write
    again, so no WAL of it can be left behind.  ``Rebuilt.installation`` is who this
    computer is afterwards: the installation taken, else ``me``, else a new one.  Taking
    another installation's records while this computer is one of its own (by id) needs
    ``take_over``."""
    stop = stop or threading.Event()
    target = state.target
    tmp = db_path.with_name(db_path.name + REBUILDING)
    _remove(tmp)
    seen = installations(target)
    chosen = pick(seen, me, wanted) if seen else None
    if chosen is not None and me is not None and not chosen.is_(me) and not take_over:
        raise PhotodError(
            f"this computer is the installation {me.folder}; --instance {wanted} would make it "
            f"{chosen.folder} instead, its own records left behind, and if that one still "
            "runs somewhere both would write as one. To get its photos back without becoming "
            "it, use a copy of this config with a `[daemon] state_dir` of its own: `catalog "
            f"rebuild --from {name} --instance {wanted}` there, then `restore`. To take over "
            "from one that will not run again, add --take-over"
        )
    if not seen and wanted is not None and me is not None:
        raise PhotodError(f"{name!r} holds no installation's records; drop --instance")
    # (no installation keeps records: the target of a photod before them, whose one
    # snapshot holds what its files cannot say, such as a photo's file time)
    snap = _newest_good(target, chosen, tmp) if chosen else _good(target, EARLY_SNAPSHOT, tmp)
    # The new catalog counts from the newest generation there, good or not: its next
    # snapshot supersedes them all, and none of them is taken for newer knowledge.
    top = (
        max((s.generation for s in snapshots_in(target, chosen.folder)), default=0) if chosen else 0
    )
    catalog = Catalog(tmp)  # an older snapshot's schema is brought up to date
    skipped: list[str] = []
    adopted = missing = 0
    # The SHA-256 ('' unknown) of each file not taken that may be a photo: damaged, listed
    # and gone (its list's entries are each tried), unreadable.
    failed: list[str] = []
    displaced: dict[str, str] = {}  # sha -> the key a list gave it, which holds another photo
    try:
        own: dict[str, list[ManifestEntry]] = {}  # (a clone's line may name a key too)
        others: set[str] = set()
        for s in seen:
            try:
                entries = list(Ledger(target, s.folder).entries())
            except Undecryptable:
                continue  # sealed to another identity
            target.learn(entries)
            if chosen is not None and s.folder == chosen.folder:
                for e in entries:
                    own.setdefault(e.key, []).append(e)
            else:
                others.update(e.key for e in entries)
        # A target an older photod wrote before installations kept records: its photos
        # are named only in its early index (they were "0 assets" without it).
        early = early_index(target)
        target.learn(early)
        if chosen is None:
            for e in early:  # (an older photod's lines: any may be the file's)
                own.setdefault(e.key, []).append(e)
        known = {e.key: e for e in catalog.verified_on(name)}
        target.learn(known.values())
        present = {key for key, _ in target.listing()}
        # An encrypted target where nothing opens (no snapshot, list or object's own
        # line): the identity is not the key these were sealed to.  Said, not taken for
        # an empty target ("0 photos", then "nothing backed up yet" everywhere).
        sealed = getattr(target, "foreign", ())  # (CryptTarget: objects not for this key)
        if target.encrypted and not present and not known and sealed:
            raise PhotodError(
                f"nothing on {name!r} opens with this identity ({len(sealed)} objects there "
                "are sealed to another key): put back the identity file they were made with "
                "(`[encryption] identity`); a new key from `photod keygen` opens none of them"
            )
        for key, e in known.items():
            if key not in present:  # in the snapshot, gone from the target since
                catalog.replica_bad(e.sha256, name, "missing", "rebuild")
                missing += 1
        todo = [(k, lines) for k, lines in sorted(own.items()) if k not in known]
        # Files no list names, and no snapshot: a power cut before the list was written.
        # (A phone library's sidecar, KEY.xmp beside an original, is not an original.)
        unlisted = present - set(known) - set(own) - others
        todo += [(k, []) for k in sorted(unlisted) if not _library_sidecar(k, present)]
        unread = 0  # objects in a row the target would not give
        for key, lines in todo:
            if stop.is_set():
                raise Stopping
            try:
                why = adopt_retried(catalog, name, target, key, lines, ident)
                unread = 0
            except TargetUnavailable as exc:
                # One object the target will not give twice (archived, a bad sector)
                # while it answers is skipped, said.  The target gone, or several in a
                # row (every read failing while its marker still reads), stops the
                # rebuild (the old catalog stays): never an outage taken for its files.
                # (archived objects come in runs, a year at a time: each is said)
                unread += not isinstance(exc, ObjectArchived)
                if unread >= UNREAD_IN_A_ROW:
                    raise PhotodError(
                        f"{name!r} failed during the rebuild: {unread} files in a row could "
                        f"not be read ({exc.reason})"
                    ) from exc
                why = f"could not be read: {exc.reason}"
            if why:
                _skipped(skipped, name, key, why)
                if not why.endswith(LEFT_ALONE):  # (other bytes: which photo's is not known)
                    failed += [e.sha256 for e in lines if OTHER_BYTES not in why] or [""]
            else:
                adopted += 1
                if len(lines) > 1:  # (the lines it is not)
                    displaced.update((e.sha256, key) for e in lines)
        # The phones' libraries the snapshot lacks, or holds older, from the indexes.
        take_indexes(catalog, [(name, target)])
        # Taking an installation's records makes this computer that installation (a new
        # laptop in place of the old one).
        who = _identity(target, chosen) or me or instance.new(new_name)
        catalog.set_meta("installation", who.short)
        if ident is not None:
            catalog.save_target(name, ident.target_id, ident.root, ident.mount_rel)
        if top > catalog.generation:
            catalog.next_generation(top - 1)
        assets, _ = catalog.counts()
        # (a photo listed twice, a crash's repeated lines, is one photo)
        gone = set(failed) - {""}
        lost = failed.count("") + sum(catalog.asset(sha) is None for sha in gone)
        for sha, key in displaced.items():  # another line's photo, under no other name
            if sha not in gone and catalog.asset(sha) is None:
                _skipped(skipped, name, key, f"its list names {sha[:12]} too, found nowhere")
                lost += 1
        failpoints.hit("catalog_rebuilding")  # a kill here leaves a half-built catalog
    finally:
        catalog.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    for ext in ("-wal", "-shm"):  # closed cleanly: checkpointed into the file
        Path(f"{tmp}{ext}").unlink(missing_ok=True)
    os.replace(tmp, db_path.with_name(db_path.name + REBUILT))
    fsync_dir(db_path.parent)
    return Rebuilt(snap, top, who, chosen, assets, adopted, missing, skipped, lost)


def _skipped(skipped: list[str], name: str, key: str, why: str) -> None:
    """Say a file the rebuild did not take, by name (not UTF-8: as `ls -b` shows it)."""
    shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    skipped.append(f"{shown}: {why}")
    log.warning("rebuild_skipped", target=name, path=key, reason=why)


def _identity(target: Target, seen: Seen | None) -> Installation | None:
    """The installation whose records were taken, with the full id its own
    ``installation.json`` gives (the folder's short id when that is unreadable)."""
    if seen is None:
        return None
    full = seen.short
    with contextlib.suppress(OSError, PhotodError, ValueError, KeyError, TypeError):
        raw = target.get_meta(f"{seen.folder}/{INFO}")
        got = str(json.loads(raw or b"{}")["id"])
        if got.startswith(seen.short):
            full = got
    return Installation(full.ljust(32, "0"), seen.name)


def _newest_good(target: Target, chosen: Seen, dest: Path) -> str:
    """Write the newest snapshot of ``chosen`` that opens and is sound to ``dest``;
    its name, or '' when none is good (a damaged one is skipped and said)."""
    for snap in snapshots_in(target, chosen.folder):
        if _good(target, snap.name, dest):
            return snap.name
    return ""


def _good(target: Target, name: str, dest: Path) -> str:
    """Write snapshot ``name`` to ``dest`` when it is there, opens and is sound: its
    name, else '' (a damaged or foreign one said)."""
    try:
        unpack(target, name, dest)  # (a chunk at a time: it may be larger than memory)
    except FileNotFoundError:
        return ""
    except Undecryptable:
        log.warning("snapshot_unreadable", snapshot=name,
                    reason="sealed to another key than this identity")  # fmt: skip
        return ""
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile: OSError
        log.warning("snapshot_damaged", snapshot=name, reason=str(exc))
        return ""
    why = "it is empty" if dest.stat().st_size == 0 else check_file(dest)[0]
    if not why:
        return name
    if dest.stat().st_size:
        log.warning("snapshot_damaged", snapshot=name, reason=why)
    _remove(dest)
    return ""


def _remove(path: Path) -> None:
    for ext in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{ext}").unlink(missing_ok=True)


def swap_in(db_path: Path) -> Path | None:
    """Put a finished rebuild in place; the old catalog (with its WAL) is kept as
    ``.bak``, and the ``.bak`` of every earlier rebuild then goes (a full copy of the
    catalog each: two computers as one rebuilt at every start, and the state dir grew
    by a catalog each time).  Safe to run again after a kill at any step: the name it
    keeps the old one under comes from the finished rebuild, so a WAL never parts from
    its file, and no WAL of the old catalog is ever left beside the new one."""
    rebuilt = db_path.with_name(db_path.name + REBUILT)
    aside = catalogbak.aside(db_path, rebuilt)  # (unique: to the nanosecond)
    if db_path.exists():  # (not a run again after a kill: a name taken is an older one's)
        _remove(aside)
    kept = None
    for ext in ("", "-wal", "-shm"):
        old = Path(f"{db_path}{ext}")
        if old.exists():
            os.replace(old, Path(f"{aside}{ext}"))
            kept = aside
    os.replace(rebuilt, db_path)
    fsync_dir(db_path.parent)
    if kept is not None:  # (only once the new catalog is in place: a kill keeps both)
        catalogbak.drop_older(db_path, aside)
    return kept if kept is not None and kept.exists() else None


def identity(state_dir: Path, db_path: Path, name: str) -> Installation | None:
    """This installation, from the state dir; if its ``installation.json`` was lost,
    from the id the catalog carries (never a new id for a catalog that has one)."""
    known = instance.load(state_dir)
    if known is not None:
        return known.installation
    if no_catalog(db_path):
        return None
    try:
        catalog = Catalog(db_path)
        try:
            short = catalog.meta("installation")
        finally:
            catalog.close()
    except PhotodError:
        return None
    return Installation(short.ljust(32, "0"), name) if short else None


def finish_interrupted(db_path: Path) -> str:
    """A rebuild killed earlier: a finished one is swapped in, a half-built one removed.
    Returns what was done ('' for nothing)."""
    for ext in ("-wal", "-shm"):  # never opened to write once finished; a stray is not its
        Path(f"{db_path}{REBUILT}{ext}").unlink(missing_ok=True)
    if db_path.with_name(db_path.name + REBUILT).exists():
        aside = swap_in(db_path)
        return f"a finished rebuild was put in place (the old catalog kept as {aside})"
    tmp = db_path.with_name(db_path.name + REBUILDING)
    if any(Path(f"{tmp}{e}").exists() for e in ("", "-wal", "-shm", "-journal")):
        _remove(tmp)
        return "a rebuild cut short was removed (the catalog it was to replace is kept)"
    return ""


def rebuild_catalog(
    state_dir: Path,
    catalog_path: Path,
    name: str,
    targets: dict[str, TargetState],
    force: bool,
    wanted: str | None,
    instance_name: str,
    stop: threading.Event | None = None,
    take_over: bool = False,
) -> tuple[Rebuilt, Path | None]:
    """``photod catalog rebuild --from NAME`` (and the daemon's own rebuild): check the
    target (nothing is written to it), rebuild beside the old catalog, swap it in.
    Returns what was rebuilt and where the old catalog went.  ``wanted`` naming another
    installation than this computer's own is refused unless ``take_over``."""
    if name not in targets:
        raise PhotodError(f"no target named {name!r}; configured: {', '.join(targets)}")
    finish_interrupted(catalog_path)
    if catalog_path.exists() and not force:
        raise PhotodError(
            f"a catalog exists at {catalog_path}; add --force to rebuild anyway (the old "
            "one is kept beside it as .bak)"
        )
    state = targets[name]
    try:
        ident = state.target.check(None, prepare=False)  # reads the marker, writes nothing
    except TargetReadOnly as exc:  # (a failing drive mounted read-only: read all the same)
        ident = exc.identity
    except TargetUnavailable as exc:
        raise PhotodError(f"target {name!r} is unavailable: {exc.reason}") from exc
    if not ident.target_id:
        raise PhotodError(f"{name!r} has no .photod/target.json: photod never wrote there")
    me = identity(state_dir, catalog_path, instance_name)
    # Without an id (a new computer) the installation of this name is taken.
    wanted = wanted or (None if me else instance_name)
    result = rebuild(catalog_path, name, state, me, wanted, stop, ident, instance_name, take_over)
    # Who this computer is, before the new catalog is in place: a kill in between
    # leaves both saying the same (the next start puts the new catalog in place).
    instance.save(state_dir, instance.Known(result.installation, result.generation,
                                            result.assets))  # fmt: skip
    aside = swap_in(catalog_path)
    log.info("catalog_rebuilt", target=name, snapshot=result.from_snapshot or None,
             installation=result.installation.folder, assets=result.assets,
             adopted=result.adopted, missing=result.missing, skipped=len(result.skipped),
             lost=result.lost, old_catalog=str(aside) if aside else None)  # fmt: skip
    return result, aside


def _library_sidecar(key: str, present: set[str]) -> bool:
    """``KEY.xmp`` beside the original ``KEY``: what ``sidecars`` writes for a phone's
    library (a watch folder's own sidecar is named after the still's stem instead)."""
    original = key[: -len(".xmp")]
    return (
        key.lower().endswith(".xmp")
        and original in present
        and kind_from_name(original) not in (None, Kind.SIDECAR)
    )
