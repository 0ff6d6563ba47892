"""The targets as configured, and which of them may be written now.

``build_targets`` makes each target's storage (local, S3, rclone, sealed by age where
asked) with its live state (``TargetState``): what the daemon, the commands and
`photod status` share; the storage libraries (boto3, pyrage) load only for a target
that uses them.  ``Fleet`` keeps their availability: checks, the pause before a failed
remote is asked again, the tidy when a target comes back, its list kept in step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from photod import failpoints, ledgers, twins
from photod.catalog import Catalog
from photod.clock import SYSTEM, Clock
from photod.errors import (
    ConfigError,
    FolderRefused,
    LinkInTarget,
    PhotodError,
    SameDrive,
    TargetUnavailable,
    Undecryptable,
    kind_of,
)
from photod.logs import log
from photod.models import TargetInfo
from photod.network import metered_now
from photod.targets.base import Identity, Target, Writer
from photod.targets.local import LocalTarget
from photod.targets.localwrite import open_to
from photod.targets.make import make_target
from photod.targets.records import Installation, Records
from photod.targetspec import RemoteSpec, TargetsSettings
from photod.throttle import LimitedWriter, TokenBucket, on_battery_now, paused

REMOTE_PROBE = 60.0  # seconds between checks of a remote target that answers

if TYPE_CHECKING:
    from photod.config import Config
    from photod.targets.cryptkeys import Keys


def keys_for(settings: TargetsSettings) -> Keys | None:
    """The age keys the encrypted targets are made with (None: none is encrypted).
    Raises PhotodError, naming the file, when it cannot be read or holds no age
    identity (a reload asks first: a daemon must not stop on a key a reload named)."""
    if not (any(t.encrypt for t in settings.targets) and settings.identity is not None):
        return None
    from photod.targets.cryptkeys import Keys

    try:
        return Keys(settings.identity, list(settings.recipients))
    except (OSError, UnicodeDecodeError) as exc:
        raise PhotodError(f"cannot read the age identity {settings.identity}: {exc}") from exc


def check_secrets_and_keys(cfg: Config) -> None:
    """A reload's check of the secret files, the age identity tried as the daemon will
    use it (`config check` and `photod reload` ask the same): a ConfigError naming
    ``encryption.identity`` when it holds no key (at a start, build_targets stops photod
    with the same reason)."""
    from photod import config as configmod

    configmod.check_secrets(cfg)
    try:
        keys_for(cfg.targets_settings())
    except PhotodError as exc:
        raise ConfigError([f"{cfg.path}: encryption.identity: {exc}"]) from exc


def build_targets(
    settings: TargetsSettings, stop: threading.Event | None = None, me: Installation | None = None
) -> dict[str, TargetState]:
    """Every configured target; with ``me`` (the daemon, and the commands that write),
    each with this installation's records on it."""
    keys = keys_for(settings)
    stop = stop or threading.Event()
    owner = me.short if me else ""
    states = {}
    for t in settings.targets:
        target = make_target(settings.state_dir, t, keys, owner, stop)
        remote = t if isinstance(t, RemoteSpec) else None
        states[t.name] = TargetState(
            target,
            t.info(),
            records=Records(target, me) if me else None,
            queued=remote is not None,
            transfers=remote.transfers if remote else 1,
            bucket=TokenBucket(t.bandwidth_limit, stop) if t.bandwidth_limit else None,
            window=t.window,
            on_battery=t.on_battery,
            on_metered=remote.on_metered if remote else True,  # local targets copy always
            egress_budget=remote.egress_budget if remote else None,
        )
    return states


class TargetState:
    """A configured target and what the daemon currently knows about it.

    A plain class, not a dataclass: `photod status` loads this module, and the
    ``dataclasses`` machinery (its import and the code it generates per class) was a
    tenth of that command's start."""

    def __init__(
        self,
        target: Target,
        info: TargetInfo,
        records: Records | None = None,  # this installation's records on it (the daemon's)
        *,
        available: bool = False,
        queued: bool = False,
        transfers: int = 1,
        bucket: TokenBucket | None = None,  # bandwidth_limit
        window: tuple[int, int] | None = None,
        on_battery: bool = True,
        on_metered: bool = True,  # False: uploads wait while the connection is metered
        egress_budget: int | None = None,  # bytes a month the scrub may read back (remote)
    ) -> None:
        self.target = target
        self.info = info
        self.records = records
        self.available = available
        self.reason = "not checked yet"
        self.kind = self.reason  # what ``reason`` is said by: said again when it changes
        self.full = False
        self.lock = threading.Lock()  # the list's compaction
        # Remote targets are "queued": a new file is not written to them while it is
        # ingested (a slow upload would hold up the local copies); the catch-up uploads
        # it from a verified local copy, ``transfers`` files at a time.
        self.queued = queued
        self.transfers = transfers
        self.bucket = bucket
        self.window = window
        self.on_battery = on_battery
        self.on_metered = on_metered
        self.egress_budget = egress_budget
        # A remote that failed is asked again after a growing pause, not every probe.
        self.backoff = 0.0
        self.next_probe = 0.0
        self.since = SYSTEM.boottime()  # when ``available`` last changed (a clock set: no move)
        self.seen_saved = 0.0  # monotonic time the catalog last heard it answer
        self.others_read = 0.0  # monotonic time the other installations' lists were read
        # A folder inside it photod will not or may not write (a link, another user's):
        # its check passes, so it waits until a look at that folder finds it fixed.
        self.refused: FolderRefused | None = None

    def paused(self) -> str:
        """Why writes wait now ("" when they may run).  The battery and the connection
        are read only for a target whose rule needs them: this runs at every probe."""
        battery = None if self.on_battery else on_battery_now()
        metered = False if self.on_metered else metered_now()
        return paused(self.window, self.on_battery, datetime.now(), battery,
                      self.on_metered, metered)  # fmt: skip

    def open_writer(self, key: str) -> Writer:
        writer = self.target.open_writer(key)
        if self.bucket is None:
            return writer
        inner: object = writer  # an upload in parts is paced as each part is sent (S3)
        while inner is not None:
            if hasattr(inner, "paced"):
                inner.paced = self.bucket.take
                return writer
            inner = getattr(inner, "inner", None)
        return LimitedWriter(writer, self.bucket)


def refuse_twin(
    name: str,
    ident: Identity,
    known: Identity | None,
    catalog: Catalog | None,
    states: dict[str, TargetState],
) -> None:
    """One drive is one copy: raise SameDrive when the place ``name``'s check found is
    another configured target's.  Another local target's folder, holding that target's
    id or one it has not recorded yet, is where a drive looked for by its id turned up
    on a copy of it.  The same id elsewhere is a copy of that target's drive (cloned to
    make a second backup drive) or the same folder reached twice (a bind mount): the
    target that knew the id first keeps it (of two that both knew it, the one
    configured first).  A drive of its own at another's path (two drives plugged in the
    other way round) holds another id, and is not refused."""
    order = list(states)
    for other, state in states.items():
        if other == name:
            continue
        record = catalog.target(other) if catalog is not None else None
        same_id = record is not None and ident.target_id == record.target_id != ""
        local = getattr(state.target, "inner", state.target)  # (an encrypted one's folder)
        roots = {str(local.configured), record.root if record else ""} - {""} if isinstance(
            local, LocalTarget
        ) else set()  # fmt: skip
        if ident.root in roots and (record is None or same_id):
            why = (f"is target {other!r}'s folder: a copy of this target's drive found there "
                   "is not another copy")  # fmt: skip
        elif not same_id or (known is not None and order.index(other) > order.index(name)):
            continue  # another drive; or both knew the id: it stays with the one first
        elif any(_same_folder(ident.root, r) for r in roots):
            why = (f"is the same folder as target {other!r}'s, reached twice (a bind mount): "
                   "one folder is one copy; give each target a drive of its own")  # fmt: skip
        else:
            why = (f"holds target {other!r}'s id (.photod/target.json): it is a copy of that "
                   "drive, and a copy of a drive is not a copy of its own; to make it a "
                   f"target of its own, move {Path(ident.root, '.photod', 'target.json')} away")  # fmt: skip
        raise SameDrive(name, f"{ident.root} {why}")


def _same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _refused_still(exc: FolderRefused) -> bool:
    """Whether the folder that made a target wait is still so: a link, or one its user
    may not write to or enter.  A folder removed (or its drive gone) is fixed: the
    target's own check says what there is now."""
    path = str(exc.path)
    if isinstance(exc, LinkInTarget):
        return os.path.islink(path)
    return os.path.lexists(path) and not open_to(path)


class _CheckFailed(TargetUnavailable):
    """A target's check ended in an error no one mapped (a bug, an OSError of its own):
    the target waits, as for any reason.  ``kind`` is what it is said by, its type and
    errno (``kind_of``): its text may name what is new at each try (a temporary's name,
    a connection's address)."""

    def __init__(self, target: str, exc: Exception) -> None:
        super().__init__(target, f"unexpected error: {exc}")
        self.kind = f"unexpected error: {kind_of(exc)}"


class Fleet:
    """The configured targets, and which may be written now: each checked (a remote
    that failed only after a growing pause), tidied when it comes back (a crash's
    temporaries, the catalog and the target's lists brought in step), and its list
    written as copies land."""

    def __init__(
        self,
        catalog: Catalog,
        targets: dict[str, TargetState],
        stop: threading.Event,
        retry_max: float = 3600.0,
        relist: bool = False,
        trusted: bool = True,
        distrust: Callable[[str], None] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        """``trusted``: the catalog is proved sound (else the fleet waits for
        ``trusted.set()``); ``distrust``: told when a target knows more than the
        catalog (a newer snapshot of this installation), so the daemon settles again;
        ``clock``: what the pauses between checks are measured with."""
        self.clock = clock
        self.catalog = catalog
        self.targets = targets
        self.stop = stop
        self.retry_max = retry_max
        # After an unclean stop the lists may lack copies the catalog has: compare them
        # in full when each target first comes (else only when their counts disagree).
        self.relist = relist
        self._relisted: set[str] = set()  # targets compared in full in this process
        self._learned: set[str] = set()  # encrypted targets told the catalog's keys
        # Told when a target knows more than the catalog (a newer snapshot of this
        # installation): the daemon stops and settles the catalog again.
        self.distrust: Callable[[str], None] = distrust or (lambda why: None)
        self.writing: Callable[[], set[str]] = set  # temporaries in flight (``Temporaries``)
        # Set once the catalog is proved sound: until then no target is made available,
        # so nothing is written anywhere (a large catalog is checked in the background).
        self.trusted = threading.Event()
        self._failing = threading.Lock()  # (``fail``: one copy says a target went)
        if trusted:
            self.trusted.set()

    def refresh(self, name: str) -> bool:
        """Check a target now; log when it comes or goes; tidy it when it comes back."""
        state = self.targets[name]
        why = state.paused()
        if why:
            if state.reason != why:
                log.info(
                    "target_paused",
                    target=name,
                    reason=why,
                    pending=self.catalog.pending_count(name),
                )
            self._set(state, False, why)
            return False
        if not self.trusted.is_set():
            self._set(state, False, "waiting for the check of the catalog to finish")
            return False
        if state.refused is not None:
            if _refused_still(state.refused):  # said once; it waits until the folder is fixed
                # (its reason again: a pause's, an upload window's, said meanwhile, ended)
                self._set(state, False, state.refused.reason)
                return False
            state.refused = None
        now = self.clock.monotonic()
        if now < state.next_probe:
            return state.available  # a remote is not asked more often than it needs
        record = self.catalog.target(name)
        known = Identity(record.target_id, record.root, record.mount_rel) if record else None
        try:
            ident = self._check(name, state, known)
        except TargetUnavailable as exc:
            kind = exc.kind if isinstance(exc, _CheckFailed) else exc.reason
            if state.available or state.kind != kind:
                log.warning(
                    "target_unavailable",
                    target=name,
                    reason=exc.reason,
                    pending=self.catalog.pending_count(name),
                )
            self._set(state, False, exc.reason, kind)
            self._back_off(state, longest=REMOTE_PROBE)
            return False
        if (
            state.queued and not state.backoff
        ):  # a reachable remote is asked again in a minute, not every probe
            state.next_probe = now + REMOTE_PROBE
        if record is None or (record.root, record.mount_rel) != (ident.root, ident.mount_rel):
            if record is not None:
                log.info("target_relocated", target=name, old=record.root, new=ident.root)
            self.catalog.save_target(name, ident.target_id, ident.root, ident.mount_rel)
        if not state.available:
            try:
                self._tidy(name, state)
            except TargetUnavailable as exc:  # (its index sealed to another key, say)
                if state.kind != exc.reason:  # said once while it lasts, as a check's
                    log.warning("target_unavailable", target=name, reason=exc.reason,
                                pending=self.catalog.pending_count(name))  # fmt: skip
                self._set(state, False, exc.reason)
                self._back_off(state, longest=REMOTE_PROBE)
                return False
            log.info(
                "target_available",
                target=name,
                root=ident.root,
                pending=self.catalog.pending_count(name),
            )
        elif state.records is not None and now - state.others_read > REMOTE_PROBE:
            self._read_others(name, state)
        self._set(state, True, "")
        if now - state.seen_saved > 3600 or not state.seen_saved:
            self.catalog.target_seen(name)  # hourly: "not connected for N days" needs it
            state.seen_saved = now
        return True

    def _check(self, name: str, state: TargetState, known: Identity | None) -> Identity:
        """The target's check, and that it is no other target's drive.  An error no one
        mapped (a bug, an OSError of its own) makes it unavailable too, said (with its
        trace) once while it repeats: its text may change at every try."""
        try:
            failpoints.hit("target_checking")  # an error no one mapped, for its test
            ident = state.target.check(known)
            refuse_twin(name, ident, known, self.catalog, self.targets)
        except TargetUnavailable:
            raise
        except Exception as exc:  # a bug or an unmapped error: one event, never a crash
            failed = _CheckFailed(name, exc)
            if state.available or state.kind != failed.kind:
                log.exception("target_check_failed", target=name, error=str(exc))
            raise failed from exc
        return ident

    def _tidy(self, name: str, state: TargetState) -> None:
        """When a target comes: remove a crash's temporaries, and bring the catalog and
        the target's records in step, both ways (``ledgers.py``): nothing the target
        lists is forgotten, and nothing is ever taken off its list to agree with the
        catalog."""
        records, live = state.records, self.writing()  # (copies in flight: left alone)
        temps = self.catalog.temps(name)  # (alone: no other computer could upload here)
        live |= self.writing()  # (each before and after: one noted between is in one)
        if (kept := getattr(state.target, "kept", None)) is not None:
            live |= kept.temps()  # (S3 uploads the network cut, to be resumed)
        temps = [t for t in temps if t not in live]
        alone = bool(temps) and records is not None and not records.others()
        for temp in temps:
            state.target.delete_temp(temp, alone)
            self.catalog.drop_temp(name, temp)
        if records is None:
            return
        if not records.find_own_folder():
            records.register()
        newest = next(iter(records.snapshots()), None)
        if newest is not None and newest.generation > self.catalog.generation:
            why = (f"target {name!r} holds a newer snapshot of this installation's catalog "
                   f"(generation {newest.generation}, the catalog {self.catalog.generation})")  # fmt: skip
            self.distrust(why)
            raise TargetUnavailable(name, f"{why}; the catalog is checked before it is used")
        twins.check(records, name, self.catalog.path.parent)  # (another computer as this one?)
        if state.target.encrypted and name not in self._learned:  # names back to keys
            records.ledger.check_key(name)  # (before anything is taken for missing)
            state.target.learn(self.catalog.verified_on(name))
            self._learned.add(name)
        try:
            ledgers.catch_up(self.catalog, name, records, self.stop, state.lock)
        except Undecryptable as exc:
            raise TargetUnavailable(
                name, f"this installation's index there cannot be opened: {exc}; was the "
                "target written with another identity?",
            ) from exc  # fmt: skip
        verified = self.catalog.verified_count(name)
        unlisted = self.catalog.meta(f"unlisted:{name}") is not None
        first = self.relist and name not in self._relisted
        if first or unlisted or verified > self.catalog.own_entries(name):
            with state.lock:
                ledgers.relist(self.catalog, name, records)
            self.catalog.delete_meta(f"unlisted:{name}")
            self._relisted.add(name)
        self._read_others(name, state)

    def _read_others(self, name: str, state: TargetState) -> None:
        """What the other installations sharing the target list (a minute old at most)."""
        assert state.records is not None
        state.others_read = self.clock.monotonic()
        try:
            ledgers.read_others(self.catalog, name, state.records)
        except TargetUnavailable as exc:
            log.warning("records_unreadable", target=name, reason=exc.reason)

    def available(self) -> list[str]:
        return [n for n, s in self.targets.items() if s.available]

    def flush(self) -> None:
        """Write the buffered list entries of every available target."""
        for name, state in self.targets.items():
            if state.records is not None and state.records.ledger.pending():
                if not state.available:
                    self._unlisted(name)
                    continue
                self.flush_target(name)

    def flush_target(self, name: str) -> None:
        """Write one target's buffered list entries; a target that refuses them keeps
        them buffered, and the catalog notes it unlisted (for the next start)."""
        state = self.targets[name]
        assert state.records is not None
        try:
            with state.lock:
                ledgers.flush(self.catalog, name, state.records)
        except TargetUnavailable as exc:
            self._unlisted(name)
            self.fail(name, exc)

    def _unlisted(self, name: str) -> None:
        """Copies wait to be listed on a target that went: the catalog says so, so that
        they are listed the next time it comes, even after a restart."""
        if self.catalog.meta(f"unlisted:{name}") is None:
            self.catalog.set_meta(f"unlisted:{name}", "1")

    def unlisted(self) -> bool:
        """Whether some verified copy waits to be written to its target's list."""
        return any(
            s.records is not None and s.records.ledger.pending() for s in self.targets.values()
        )

    def fail(self, name: str, exc: TargetUnavailable) -> None:
        """A write found the target gone: unavailable now, asked again after a pause."""
        state = self.targets[name]
        if isinstance(exc, FolderRefused):
            state.refused = exc
        with self._failing:  # (copies that fail together, by the same cause: said once)
            went = state.available
            self._set(state, False, exc.reason)
        if went:
            log.warning("target_unavailable", target=name, reason=exc.reason,
                        pending=self.catalog.pending_count(name))  # fmt: skip
        self._back_off(state)

    def _set(self, state: TargetState, available: bool, reason: str, kind: str = "") -> None:
        """``kind``: what the reason is said by (the reason itself unless given)."""
        if state.available != available:
            state.since = self.clock.boottime()
        state.available, state.reason, state.kind = available, reason, kind or reason

    def _back_off(self, state: TargetState, longest: float | None = None) -> None:
        """A remote that failed is asked again after 5 s, 10 s, 20 s ... up to
        retry_max; only a copy that lands resets the pause.  (A server that answers
        checks but sheds uploads, as when throttling, does not flap every probe.)
        ``longest``: a remote that does not answer its check is asked again at least
        this often, however long the pause has grown: when it answers again, its
        uploads start within a minute, not after an hour of backoff."""
        if state.queued:
            state.backoff = min(max(5.0, state.backoff * 2), self.retry_max)
            wait = state.backoff if longest is None else min(state.backoff, longest)
            state.next_probe = self.clock.monotonic() + wait
