"""Before photod writes anything anywhere: is the catalog a faithful cache of the targets?

``settle`` runs when the daemon starts (and again if SQLite reports damage while it
runs, or a target arrives with a newer snapshot of this installation than the
catalog).  It finds one of these, and acts on it (README, "When the catalog is wrong"):

======================================  ==============================================
what photod finds                        what it does
======================================  ==============================================
no catalog, and no records of this       a new installation: a new catalog
installation anywhere
the catalog is sound, and no target      goes on; each target's list is caught up with
holds a newer snapshot of it             the catalog when the target comes
missing or empty while this              rebuilds it from the reachable target with the
installation has records (the state      newest good snapshot (local targets first)
dir says so, or a target holds them)
damaged (SQLite cannot open it, or       the same; the damaged file is kept as .bak
finds it unsound)
older than the targets (a target, or     the same, from the newer snapshot; the old
the state dir, knows a newer snapshot)   catalog is kept as .bak
any of these, and no reachable target    holds: writes nothing anywhere, says what it
holds this installation's records        found and the fix (event, status, notification),
                                         and looks again every few seconds
a new state dir, and a target holds      holds: `catalog rebuild` if this computer is
records of an installation of this name  that one, else another [daemon] instance name
======================================  ==============================================

Remote targets are looked at only when something is wrong (a sound catalog does not
wait for the network); a remote with a newer snapshot is caught when it comes
(``Replicator._tidy``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from photod import failpoints, instance, precheck, snapshot
from photod.catalog import CATALOG_NAME, Catalog, no_catalog, unwritable
from photod.config import Config
from photod.errors import CatalogDamaged, PhotodError, TargetUnavailable
from photod.fleet import TargetState
from photod.logs import log
from photod.targets.base import Identity
from photod.targets.records import Installation, Seen, installations, snapshots_in


@dataclass(frozen=True)
class Verdict:
    """What ``settle`` decided.  ``me`` is set when the daemon may go on."""

    action: str  # "go" or "hold"
    found: str = ""  # what was wrong, in words ('' when nothing was)
    keeps: str = ""  # what photod keeps meanwhile
    fix: str = ""  # the command that fixes it
    me: Installation | None = None
    relist: bool = False  # compare each target's list with the catalog in full
    # The check begun early was not done when the daemon was ready, or the catalog is
    # too large to check within START_BUDGET: the check goes on in the background, and
    # no target is written to until it has passed (``deep_check``).
    unchecked: bool = False
    tried: str = ""  # the target a rebuild was tried from, in vain ('' for none)


@dataclass
class _Holder:
    """What one reachable target holds of this installation."""

    name: str
    remote: bool
    mine: Seen | None = None
    newest: int = 0  # generation of its newest snapshot
    same_name: list[Seen] = field(default_factory=list)


def _look(
    name: str, state: TargetState, me: Installation | None, wanted_name: str, known: Identity | None
) -> _Holder | None:
    """What a reachable target holds of this installation (None: not reachable)."""
    try:
        if state.paused():
            return None
        state.target.check(known, prepare=False)
        seen = installations(state.target)
    except TargetUnavailable:
        return None
    holder = _Holder(name, state.queued)
    for s in seen:
        if me is not None and s.is_(me):
            holder.mine = s
            snaps = snapshots_in(state.target, s.folder)
            holder.newest = snaps[0].generation if snaps else 0
        elif s.name == wanted_name:
            holder.same_name.append(s)
    return holder


def newer_elsewhere(
    cfg: Config, targets: dict[str, TargetState], catalog: Catalog
) -> instance.CatalogProblem | None:
    """None unless a reachable target holds a newer snapshot of this installation than
    ``catalog`` (one put back from a backup with its ``installation.json``, which the
    state dir alone cannot tell): then what is wrong, and the fix.  For commands that
    only read."""
    known = instance.load(cfg.state_dir)
    if known is None:
        return None
    for name, state in targets.items():
        record = catalog.target(name)
        ident = Identity(record.target_id, record.root, record.mount_rel) if record else None
        holder = _look(name, state, known.installation, cfg.instance, ident)
        if holder is not None and holder.newest > catalog.generation:
            found = (f"the catalog {cfg.state_dir / CATALOG_NAME} is older than the snapshot "
                     f"on {name!r} (generation {catalog.generation}, there {holder.newest})")  # fmt: skip
            other = known.installation.name
            if other == cfg.instance:
                return instance.CatalogProblem(f"{found}: it lost changes")
            # Another computer's records, taken by `catalog rebuild --instance` into a
            # state dir of their own (README): that computer writes on.
            return instance.CatalogProblem(
                f"{found}: {other!r} has written since this catalog was rebuilt from its records",
                f"rebuild it again: `photod catalog rebuild --from {name} --instance {other} "
                "--force` (with this config), then restore again",
            )
    return None


START_BUDGET = 0.5  # seconds of SQLite's page check at start; the rest in the background


def _catalog_state(db: Path, budget: float | None) -> tuple[str, int, int]:
    """('' or why the catalog cannot be used, assets, generation); 'absent' when none,
    'unchecked' when it is sound as far as the ``budget`` let SQLite look.  The check
    begun early (``precheck``) is not waited for under a budget: one not done yet goes
    on beside the first scan (``deep_check`` takes its answer), as a large catalog's."""
    # (before this process opens it: that writes)
    early = precheck.taken(db, None if budget is None else 0.0)
    if no_catalog(db):
        return "absent", 0, 0
    try:
        catalog = Catalog(db)
    except CatalogDamaged as exc:
        return f"damaged: {exc.detail}", 0, 0
    try:
        # (A large catalog's check outlasts the budget; a test arms this failpoint to
        # take that path with a small one.)
        spent = early is False or (budget is not None and failpoints.armed("catalog_budget_spent"))
        why = None if spent else "" if early else catalog.sound(budget=budget)
        if why:
            return f"damaged: SQLite finds it unsound ({why})", 0, 0
        assets, _ = catalog.counts()
        return "" if why == "" else "unchecked", assets, catalog.generation
    except CatalogDamaged as exc:
        return f"damaged: {exc.detail}", 0, 0
    finally:
        catalog.close()


def settle(
    cfg: Config,
    targets: dict[str, TargetState],
    stop: threading.Event | None = None,
    thorough: bool = False,
    quiet: tuple[str, str] = ("", ""),
    failed: Verdict | None = None,
) -> Verdict:
    """Decide whether the catalog can be acted on; rebuild it where that is safe.
    ``thorough``: look at remote targets even when the catalog looks right (a target
    said it holds a newer snapshot); ``quiet``: (what was found, the target) of a
    rebuild that failed at the last look, tried again without saying so again;
    ``failed``: the verdict of a rebuild that failed, not to be tried again yet (each
    try may download a snapshot of the whole catalog and read every file's name)."""
    stop = stop or threading.Event()
    db = cfg.state_dir / CATALOG_NAME
    # Before anything reads it: a catalog photod may read but not write passes every
    # check, and then fails the first write (a rebuild would not help either).
    if (readonly := unwritable(db, asker=False)) is not None:  # (the daemon's own)
        return _hold(readonly.found, "nothing is written anywhere; the catalog is kept as it is",
                     readonly.fix)  # fmt: skip
    done = snapshot.finish_interrupted(db)
    if done:
        log.info("catalog_rebuild_finished", detail=done)
    known = instance.load(cfg.state_dir)
    # (installation.json lost beside a catalog that carries its id: that id, not a new one)
    me = known.installation if known else snapshot.identity(cfg.state_dir, db, cfg.instance)
    # Checked again because of damage or a newer snapshot: every page, however long.
    why, assets, generation = _catalog_state(db, None if thorough else START_BUDGET)
    unchecked = why == "unchecked"
    why = "" if unchecked else why
    remembered = _remembered_targets(db) if not why else {}

    def look(remote: bool) -> list[_Holder]:
        out = []
        for name, state in targets.items():
            if state.queued == remote:
                found = _look(name, state, me, cfg.instance, remembered.get(name))
                if found is not None:
                    out.append(found)
        return out

    holders = look(remote=False) + (look(remote=True) if thorough else [])
    problem = ""
    if why.startswith("damaged"):
        problem = f"the catalog {db} is {why}"
    elif why == "absent" and known is not None:
        holders += look(remote=True)
        if known.assets or any(h.mine for h in holders):
            problem = f"the catalog {db} is missing"
    elif not why and known is not None and assets == 0 and known.assets > 0:
        problem = f"the catalog {db} is empty, but its last snapshot held {known.assets} photos"
    elif not why and known is not None and generation < known.generation:
        problem = (f"the catalog {db} is older than its last snapshot (generation "
                   f"{generation}, snapshot {known.generation}): it lost its last changes")  # fmt: skip
    elif not why:
        newer = [h for h in holders if h.newest > generation]
        if newer:
            problem = (f"the catalog {db} is older than the snapshot on {newer[0].name!r} "
                       f"(generation {generation}, there {newer[0].newest}): it lost changes")  # fmt: skip
    if not problem and why == "absent" and me is None:
        holders += look(remote=True)
        if any(h.same_name for h in holders):
            h = next(h for h in holders if h.same_name)
            return _hold(
                f"target {h.name!r} holds the records of an installation named "
                f"{cfg.instance!r}, and this state dir is new",
                "nothing is written anywhere until this is settled",
                f"if this computer is that installation: `photod catalog rebuild --from "
                f"{h.name}`; if it is another computer: give it its own name in "
                "[daemon] instance",
            )
    if not problem:
        if known is None:
            me = _start_identity(cfg, db, me)
        assert me is not None
        return Verdict("go", me=me, unchecked=unchecked)
    # Something is wrong: rebuild from the best reachable target that holds records.
    if not thorough and why != "absent":
        holders += look(remote=True)
    sources = sorted((h for h in holders if h.mine), key=lambda h: (-h.newest, h.remote))
    keeps = (f"the catalog file is kept as it is ({db})" if why != "absent"
             else "the photos on the targets are untouched")  # fmt: skip
    if not sources:
        fix = (
            "plug in or connect a target that holds this computer's records (photod then "
            "rebuilds the catalog by itself), or `photod catalog rebuild --from TARGET "
            "--force` (a full re-scan of one target)"
        )
        return _hold(problem, keeps, fix)
    source = sources[0].name
    if failed is not None and (problem, source) == (failed.found, failed.tried):
        return failed  # (tried again once its wait is over: the daemon's)
    if (problem, source) != quiet:  # (a look every few seconds while it fails)
        log.warning("catalog_rebuilding", found=problem, target=source,
                    detail="nothing is written to any target until the catalog is rebuilt")  # fmt: skip
    try:
        result, aside = snapshot.rebuild_catalog(
            cfg.state_dir, db, source, targets, True, None, cfg.instance, stop
        )
    except (PhotodError, OSError) as exc:
        return Verdict("hold", problem, keeps, f"the rebuild from {source!r} failed ({exc}); "
                       f"`photod catalog rebuild --from {source} --force`", tried=source)  # fmt: skip
    log.error(
        "catalog_recovered",
        found=problem,
        target=source,
        snapshot=result.from_snapshot or None,
        assets=result.assets,
        adopted=result.adopted,
        kept=str(aside) if aside else None,
        detail="the catalog was rebuilt from the target's records; nothing on any target "
        "was changed",
    )
    loaded = instance.load(cfg.state_dir)
    assert loaded is not None
    return Verdict("go", problem, me=loaded.installation, relist=True)


def deep_check(db: Path, stop: threading.Event) -> str | None:
    """SQLite's check of every page of the catalog, on a connection of its own (the
    daemon runs meanwhile, writing to no target): '' when sound, else what it found (a
    catalog that cannot be read to the end is not sound either); None when stopped."""
    try:
        catalog = Catalog(db)
    except PhotodError as exc:
        return f"it cannot be opened: {exc}"
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if stop.is_set():
                catalog.interrupt()
                return

    threading.Thread(target=watch, name="catalog-check-stop", daemon=True).start()
    try:
        failpoints.hit("catalog_checking")
        if precheck.finish(db, stop):  # the check begun before the daemon loaded, if sound
            return ""
        return catalog.sound() if not stop.is_set() else None
    except PhotodError as exc:  # an I/O error on the way
        return f"it cannot be read to the end: {exc}"
    finally:
        done.set()
        catalog.close()


def _hold(found: str, keeps: str, fix: str) -> Verdict:
    return Verdict("hold", found, keeps, fix)


def _remembered_targets(db: Path) -> dict[str, Identity]:
    """Where the catalog last saw each target (a drive mounted elsewhere is found)."""
    catalog = Catalog(db)
    try:
        out = {}
        for name in catalog.target_names():
            record = catalog.target(name)
            if record is not None:
                out[name] = Identity(record.target_id, record.root, record.mount_rel)
        return out
    finally:
        catalog.close()


def opened(cfg: Config, me: Installation) -> Catalog:
    """The catalog to act on, carrying this installation's id (read when
    ``installation.json`` is lost: a rebuild then knows which computer this is)."""
    catalog = Catalog(cfg.state_dir / CATALOG_NAME)
    try:
        if catalog.meta("installation") != me.short:
            catalog.set_meta("installation", me.short)
    except BaseException:
        catalog.close()
        raise
    return catalog


def _start_identity(cfg: Config, db: Path, me: Installation | None) -> Installation:
    """This installation's identity, saved in the state dir: the one the catalog
    carries, or a new one (the first start, or a catalog written by a photod from before
    installations had ids)."""
    me = me or instance.new(cfg.instance)
    generation = assets = 0
    if db.exists():
        catalog = Catalog(db)
        try:
            catalog.set_meta("installation", me.short)
            generation = catalog.generation
            assets, _ = catalog.counts()
        finally:
            catalog.close()
    instance.save(cfg.state_dir, instance.Known(me, generation, assets))
    return me
