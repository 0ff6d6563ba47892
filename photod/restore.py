"""Get the photos back: ``photod restore`` (and each file of a restore drill).

A restored file is written beside its final name, hashed on the way, fsynced, and only
then given its name, never over an existing file: a file already there with the same
bytes is skipped, one with different bytes is left alone and reported.  Each file
comes from the first target that gives the right bytes: local targets before remote
ones, so a restore costs no egress when a drive is at hand.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import os
import stat
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import BinaryIO

from photod import failpoints, private, xmp
from photod.catalog import Catalog
from photod.errors import PhotodError, TargetUnavailable, UnsafeName
from photod.fleet import TargetState
from photod.library import asset_from_json
from photod.logs import log
from photod.media import check_key, is_still, portable, stem_of, suffixed
from photod.models import Asset
from photod.paths import nearest_existing
from photod.restorereport import RestoreReport
from photod.restoretemp import TEMP_PREFIX, place, sweep_one, temporary
from photod.safeopen import LinkRefused, folder_beneath, open_beneath, open_root
from photod.targets.base import CHUNK, Identity, TargetReadOnly, kept_time, sealed_time
from photod.verify import hash_stream

DIFFERENT = "a different file is already there; left untouched"


def select(
    catalog: Catalog,
    since: date | None = None,
    until: date | None = None,
    match: str | None = None,
    among: frozenset[str] | None = None,
) -> Iterator[Asset]:
    """Assets whose capture date is within [since, until], whose path in the
    library matches the glob, and (``among``: an album's, or those chosen on the
    dashboard) that are among these.  A Live Photo's movie and an edit's ``.AAE`` go
    with the still they sit beside (same folder, same stem): by its date, not their own
    (a movie's is UTC, an edit's the day it was made), and chosen with it, so that
    neither a restore by date nor one of the photos a day or month shows leaves them
    out."""
    if match is not None:  # (a name pasted from a Mac's Finder is NFD; photod's are NFC)
        match = unicodedata.normalize("NFC", match)
    # Read as it goes, a thousand at a time: a large library's every asset was held at
    # once (a million photos: about a gigabyte) to find the still beside each movie.
    picked: set[str] = set()  # folder/stem of the stills among ``among``
    for sha256 in sorted(among or ()):
        if (chosen := catalog.asset(sha256)) is not None and is_still(chosen.relpath):
            picked.add(_beside(chosen.relpath))

    @functools.lru_cache(maxsize=64)
    def stills(folder: str) -> dict[str, str]:  # folder/stem -> the still's day
        days: dict[str, str] = {}
        for relpath, captured_at in catalog.folder_days(folder):
            if is_still(relpath):
                days.setdefault(_beside(relpath), captured_at[:10])
        return days

    for asset in catalog.assets():
        beside = "" if is_still(asset.relpath) else _beside(asset.relpath)
        if among is not None and asset.sha256 not in among and beside not in picked:
            continue
        day = ""
        if since or until:
            day = asset.captured_at[:10]
            if beside:
                day = stills(beside.rpartition("/")[0]).get(beside, day)
        if (since or until) and not day:
            continue  # capture time unknown (rebuilt from a store that keeps none)
        if since is not None and day < since.isoformat():
            continue
        if until is not None and day > until.isoformat():
            continue
        if match is not None and not (
            fnmatch.fnmatch(path := unicodedata.normalize("NFC", asset.relpath), match)
            or fnmatch.fnmatch(Path(path).name, match)
        ):
            continue
        yield asset


def _beside(relpath: str) -> str:
    """What a still and the files kept beside it share: their folder and stem."""
    folder, _, name = relpath.rpartition("/")
    return f"{folder}/{stem_of(name)}"


def open_targets(
    catalog: Catalog,
    targets: dict[str, TargetState],
    only: str | None = None,
    away: dict[str, str] | None = None,
) -> dict[str, TargetState]:
    """The targets that answer now (read-only: nothing is written to them), local
    ones first; why each other one does not, into ``away``.  Raises PhotodError when
    ``only`` is unknown or unreachable."""
    if only is not None and only not in targets:
        raise PhotodError(f"no target named {only!r}; configured: {', '.join(targets)}")
    ready: dict[str, TargetState] = {}
    for name, state in sorted(targets.items(), key=lambda kv: kv[1].queued):
        if only is not None and name != only:
            continue
        record = catalog.target(name)
        known = Identity(record.target_id, record.root, record.mount_rel) if record else None
        try:
            state.target.check(known, prepare=False)
        except TargetReadOnly:
            pass  # (a drive mounted read-only: a restore only reads)
        except TargetUnavailable as exc:
            log.warning("target_unavailable", target=name, reason=exc.reason)
            if away is not None:
                away[name] = exc.reason
            if only is not None:
                raise PhotodError(f"target {name!r} is unavailable: {exc.reason}") from exc
            continue
        ready[name] = state
    return ready


class Restorer:
    def __init__(
        self,
        catalog: Catalog,
        targets: dict[str, TargetState],
        stop: threading.Event,
        owner: int | None = None,
    ) -> None:
        """``owner``: the local user a restore is for when photod (root) writes it on
        their behalf (the dashboard): DEST must be their folder, as the descriptor it is
        written through says (not the path: a link in it may lead elsewhere), and what
        is made there is theirs."""
        self.catalog = catalog
        self.owner = owner
        self._chown: tuple[int, int] | None = None  # (uid, gid) for what is made, for owner
        self.targets = targets  # already checked, in the order to try them
        self.stop = stop
        self.on_bytes: Callable[[int], None] = lambda n: None
        self.on_file: Callable[[str], None] = lambda outcome: None  # each file, as it ends
        self._swept: set[str] = set()  # DEST folders cleared of a killed restore's temporaries
        self.away: dict[str, str] = {}  # targets found gone during this run (unplugged), and why
        self._unreached = False  # the last file failed only because its targets went away
        self._gone = ""  # why the target of the last copy tried became unavailable
        self.placed = ""  # where the last file went, relative to DEST (``one``)
        # What is restored is the caller's, with the caller's umask (photod's own is 077).
        self._umask = private.caller_umask()

    def restore(self, assets: Iterable[Asset], dest: Path) -> RestoreReport:
        report = RestoreReport()
        # Everything below DEST is reached from this descriptor, through no link: a
        # link planted in DEST (DEST/2026 -> elsewhere) is refused, never followed.
        dest_fd = self._open_dest(dest)
        try:
            for asset in assets:
                if self.stop.is_set():
                    break
                outcome = self.one(asset, dest_fd)
                self.on_file(outcome)
                if outcome == "restored":
                    report.took(self.placed, asset.size)
                elif outcome == "skipped":
                    report.skipped += 1
                else:  # told by the caller, once, in its own words (`photod restore`)
                    report.missed(asset.relpath, outcome, self._unreached)
        finally:
            os.close(dest_fd)
        report.away = dict(self.away)
        return report

    def one(self, asset: Asset, dest_fd: int) -> str:
        """Restore one asset beneath the folder ``dest_fd``: 'restored', 'skipped', or
        why it failed."""
        try:
            # Never outside DEST.  A name in another Unicode form (NFD: a tree that came
            # through a Mac, taken in by a rebuild) is still a photo's, kept as it is.
            check_key(unicodedata.normalize("NFC", asset.relpath))
            key = asset.relpath
        except UnsafeName as exc:
            return str(exc)
        # A name Windows-family disks refuse or change (NTFS, exFAT, SMB: CON.jpg, a
        # trailing dot or space) comes back changed visibly: ``portable``.
        parent, _, kept = key.rpartition("/")
        name = portable(kept)
        if name != kept and self.catalog.relpath_taken(f"{parent}/{name}" if parent else name):
            name = suffixed(name, asset.sha256)  # (another photo's own name: it keeps it)
        parent = "/".join(portable(p) for p in parent.split("/") if p)
        try:
            mode = 0o777 & ~self._umask
            folder = folder_beneath(dest_fd, parent, True, mode, exact=True, owner=self._chown)
        except LinkRefused as exc:
            return f"{exc.strerror}: nothing is written through it"
        except OSError as exc:
            return f"cannot make its folder: {exc.strerror or exc}"
        try:
            self._sweep(folder, parent)
            self.placed = f"{parent}/{name}" if parent else name
            outcome = self._into(asset, folder, name)
            if outcome == DIFFERENT and (name != kept or _folded(folder, name)):
                # A disk blind to case or to an accent's spelling (exFAT, a Mac's, a
                # Windows share): IMG_0001.JPG answers for img_0001.jpg, another photo of
                # the library; or a name made portable is another file's.  This one goes
                # beside it, named as a target names a second file that wants one name
                # (a run again finds it there).
                name = suffixed(name, asset.sha256)
                self.placed = f"{parent}/{name}" if parent else name
                outcome = self._into(asset, folder, name)
            if outcome in ("restored", "skipped"):
                self._beside(asset, folder, name)
            return outcome
        finally:
            os.close(folder)

    def _beside(self, asset: Asset, folder: int, name: str) -> None:
        """The phone library's sidecar next to a restored photo (``NAME.EXT.xmp``): a
        target's copy, else made from the catalog's facts.  A file already there is
        left as it is, as a photo would be."""
        facts = self.catalog.sidecar_of(asset.sha256)
        if facts is None:
            return
        data = None
        held = {r.target: r.relpath for r in self.catalog.replicas(asset.sha256)}
        for target, state in self.targets.items():
            if target in held:
                with contextlib.suppress(TargetUnavailable, OSError):
                    data = state.target.get_beside(held[target] + xmp.SUFFIX)
                if data:
                    break
        if not data:
            data = xmp.sidecar(asset_from_json(facts[0]), facts[1])
        temp = ""
        try:
            temp, fd = temporary(folder)
            with os.fdopen(fd, "wb") as out:
                self._give(out.fileno())
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            place(folder, temp, name + xmp.SUFFIX)  # (one already there is kept)
        except OSError as exc:
            log.warning("restore_sidecar_failed", path=name + xmp.SUFFIX, error=str(exc))
        finally:
            if temp:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=folder)

    def _open_dest(self, dest: Path) -> int:
        """DEST's descriptor: made with its missing parents beneath the deepest folder
        that exists (``folder_beneath``: a folder swapped for a link meanwhile is
        refused).  For ``owner``, that folder must be theirs."""
        existing = nearest_existing(dest)
        try:
            root = open_root(existing)
        except OSError as exc:  # (a folder this user may not enter: said, no traceback)
            raise _refused(dest, existing, exc) from exc
        try:
            if self.owner is not None:
                st = os.fstat(root)
                if st.st_uid != self.owner:
                    raise PhotodError(f"{dest} is not a folder of yours ({existing} leads to "
                                      "another user's folder): restore into one you own")  # fmt: skip
                self._chown = (self.owner, st.st_gid)
            rel = dest.relative_to(existing).as_posix()
            mode = 0o777 & ~self._umask
            try:
                return folder_beneath(
                    root, "" if rel == "." else rel, True, mode, True, self._chown
                )
            except OSError as exc:
                if self.owner is None:
                    raise _refused(dest, existing, exc) from exc
                raise PhotodError(f"cannot make {dest} a folder of yours: "
                                  f"{exc.strerror or exc} (a drive that keeps no owners?)") from exc  # fmt: skip
        finally:
            os.close(root)

    def _give(self, fd: int) -> None:
        """A file made in DEST: the caller's mode, and the user's own (``owner``)."""
        if self._chown is not None:
            os.fchown(fd, *self._chown)
        os.fchmod(fd, 0o666 & ~self._umask)

    def _into(self, asset: Asset, folder: int, name: str) -> str:
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                return "something other than a file is there (a link?); left untouched"
            if st.st_size == asset.size and _sha_beneath(folder, name) == asset.sha256:
                self.on_bytes(asset.size)
                return "skipped"
            return DIFFERENT
        held = {r.target: r.relpath for r in self.catalog.replicas(asset.sha256)}
        tried: list[str] = []
        gone: set[str] = set()  # the targets this file found unavailable
        for target, state in self.targets.items():
            if target not in held:
                continue
            # (tried again for each file: a remote's moment of network trouble must not
            # leave the rest of a long restore undone; an unplugged drive fails at once)
            self._gone = ""
            why = self._copy(state, held[target], asset, folder, name)
            if why == "":
                return "restored"
            if self._gone:
                self.away[target] = self._gone
                gone.add(target)
            tried.append(f"{target}: {why}")
        self._unreached = bool(tried) and all(t in gone for t in held if t in self.targets)
        if not tried:
            return "no reachable target holds a verified copy"
        return "; ".join(tried)

    def _sweep(self, folder: int, rel: str) -> None:
        """Remove what a killed restore left in a folder (its temporaries), once per
        folder and run.  One still being written (another restore's) is locked by its
        writer; the kernel drops a killed one's lock at once, so a run again straight
        after a kill -9 takes its half-written file away.  Where the disk keeps no
        locks, a temporary still being written is young."""
        if rel in self._swept:
            return
        self._swept.add(rel)
        with contextlib.suppress(OSError):
            for entry in os.listdir(folder):
                if entry.startswith(TEMP_PREFIX) and entry.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        sweep_one(folder, entry)

    def _file_time(self, state: TargetState, src: BinaryIO, asset: Asset, key: str) -> int | None:
        """The time the restored file gets: the copy's own on a plain target (a local
        file keeps the original's; an S3 object its ``mtime`` metadata), else the
        source file's as the catalog recorded it, else, on an encrypted target, its
        index line's (a catalog rebuilt without a snapshot knows no source file)."""
        if not state.target.encrypted and (kept := kept_time(src)) is not None:
            return kept
        # (-1: a source file edited in place, its time forgotten until the next scan)
        times = [m for _, _, _, m in self.catalog.source_paths(asset.sha256) if m != -1]
        if times:
            return min(times)
        return sealed_time(state.target, key)

    def _copy(self, state: TargetState, key: str, asset: Asset, folder: int, name: str) -> str:
        """Copy one replica to ``name`` in ``folder``; '' on success, else why not."""
        try:
            src = state.target.open(key)
        except FileNotFoundError:  # (only the target's side: DEST's is said apart)
            if state.target.encrypted:  # (its objects are named with the identity's key)
                return ("not found under this identity's names: missing on the target, or "
                        "the identity file is not the one it was written with")  # fmt: skip
            return "missing on the target"
        except TargetUnavailable as exc:  # (unplugged: the rest of the run does without it)
            self._gone = exc.reason
            return str(exc)
        except OSError as exc:
            return str(exc)
        temp = ""
        h = hashlib.sha256()
        try:
            try:
                temp, fd = temporary(folder)
            except BaseException:
                src.close()  # (its download: not left open for the collector to end)
                raise
            with src, os.fdopen(fd, "wb") as out:
                self._give(out.fileno())
                mtime = self._file_time(state, src, asset, key)
                while chunk := src.read(CHUNK):
                    failpoints.hit("restore_chunk")  # a slow target, for the tests of a stop
                    if self.stop.is_set():
                        raise OSError("stopped")
                    h.update(chunk)
                    out.write(chunk)
                    self.on_bytes(len(chunk))
                out.flush()
                os.fsync(out.fileno())
                if h.hexdigest() != asset.sha256:
                    return (
                        f"bytes do not match (got {h.hexdigest()[:12]}): this copy is damaged, "
                        "and nothing of it is in DEST; `photod verify` repairs it from a good "
                        "copy on another target, if there is one"
                    )
                failpoints.hit("restore_linking")  # (a slow disk's flush, for the tests)
                placed = place(folder, temp, name)
                if placed and mtime is not None:
                    # The file's own time (a photo without EXIF: its date), given once it
                    # has its name: a temporary with an old time is a killed restore's,
                    # which another restore into DEST sweeps away.
                    os.utime(out.fileno(), ns=(mtime, mtime))
                    os.fsync(out.fileno())
            # Something is there by now: the same bytes (another restore into DEST), or not.
            if placed or _sha_beneath(folder, name) == asset.sha256:
                return ""
            return "a different file appeared there; left untouched"
        except FileNotFoundError as exc:  # in DEST: its temporary, or a folder, went away
            return f"its file in DEST went away as it was written ({exc.strerror})"
        except (OSError, TargetUnavailable) as exc:
            return str(exc)
        finally:
            if temp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=folder)


def _folded(folder: int, name: str) -> bool:
    """Whether the file that answers to ``name`` in ``folder`` is listed under another
    spelling of it (the disk folds case or Unicode normalisation)."""
    try:
        return name not in os.listdir(folder)
    except OSError:
        return False


def _sha_beneath(folder: int, name: str) -> str:
    """The SHA-256 of a file already in DEST ("" when it is not a regular file by the
    time it is opened: a FIFO swapped in must not hang the restore)."""
    with os.fdopen(open_beneath(folder, name, os.O_RDONLY | os.O_NONBLOCK), "rb", 0) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        return hash_stream(f, lambda n: None, threading.Event())


def _refused(dest: Path, existing: Path, exc: OSError) -> PhotodError:
    """DEST cannot be opened or made beneath ``existing`` (a folder this user may not
    enter or write, a link, a read-only disk): one line, never a traceback."""
    return PhotodError(f"cannot restore into {dest}: {exc.strerror or exc} (at {existing}); "
                       "restore into a folder you may write")  # fmt: skip
