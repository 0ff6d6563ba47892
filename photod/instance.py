"""Who this photod installation is, kept in the state dir beside the catalog.

``installation.json`` holds a random id (made once), the name (``[daemon] instance``,
the host name by default), and what the catalog was when its last snapshot went to the
targets (its generation and asset count).  It outlives the catalog: with it, a missing,
empty or older catalog is told from a new installation, even while every target is
unplugged.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import NamedTuple

from photod.catalog import CATALOG_NAME, Catalog, no_catalog
from photod.durable import write_atomic
from photod.errors import CatalogDamaged
from photod.targets.records import Installation

FILE = "installation.json"
_WRITING = threading.Lock()  # (a snapshot and a target's look, read-modify-write)


class Known(NamedTuple):
    """What the state dir says of this installation."""

    installation: Installation
    generation: int  # of the last snapshot written to a target
    assets: int  # in that snapshot


def load(state_dir: Path) -> Known | None:
    try:
        data = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
        inst = Installation(str(data["id"]), str(data["name"]))
        return Known(inst, int(data.get("generation", 0)), int(data.get("assets", 0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: treated as missing; the targets still know the name


def _raw(state_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(state_dir: Path, data: dict[str, object]) -> None:
    write_atomic(state_dir / FILE, json.dumps(data, indent=1).encode())


def _twin(data: dict[str, object]) -> dict[str, str] | None:
    found = data.get("twin")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def save(state_dir: Path, known: Known) -> None:
    """Write atomically, readable by the owner only (the id is not secret, the rest
    of the state dir is private); what else the file holds (``Computer``) is kept."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with _WRITING:
        _save(state_dir, known)


def _save(state_dir: Path, known: Known) -> None:
    data = _raw(state_dir)
    if data.get("id") != known.installation.id:  # a new installation, or one taken over
        # from a computer that will not run again: whoever wrote its folders last on
        # the targets came before this one (``twins.py``).
        data = {"here": data.get("here", ""), "was": ANY, "written": []}
    data.update(id=known.installation.id, name=known.installation.name,
                generation=known.generation, assets=known.assets)  # fmt: skip
    _write(state_dir, data)


# -- the computer the state dir is on (``twins.py``) -----------------------------------


ANY = "*"  # ``Computer.was`` of an installation taken: any computer came before


class Computer(NamedTuple):
    """Which computer this state dir is on, as the file knows it."""

    here: str  # this computer and state dir, as a short hash ('' before photod knew)
    was: str  # the one the state dir was copied from, when it was ('' if never; ANY)
    written: list[str]  # targets this one has said it writes, since the copy
    twin: dict[str, str]  # another computer found writing as this installation


def fingerprint(state_dir: Path) -> str:
    """This computer (its machine id, a Raspberry Pi's serial) and this state dir (its
    inode): a state dir copied to another disk or computer (Migration Assistant, an SD
    card copied, a restore) has another, and so has a copy of the same disk elsewhere
    unless both keep the same inode and machine id (a byte-for-byte image)."""
    import hashlib

    parts = [str(state_dir.stat().st_ino)]
    for path in ("/etc/machine-id", "/proc/cpuinfo"):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        parts += [ln for ln in text.splitlines() if path.endswith("id") or ln.startswith("Serial")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def computer(state_dir: Path) -> Computer:
    """This computer, as the file says; a state dir found copied is noted first (the
    computer it came from kept as ``was``)."""
    here = fingerprint(state_dir)
    with _WRITING:
        data = _raw(state_dir)
        stored = str(data.get("here", ""))
        if stored != here and "id" in data:  # (written once the installation is)
            data.update(here=here, was=stored or data.get("was", ""), written=[])
            _write(state_dir, data)
    written = data.get("written")
    return Computer(here, str(data.get("was", "")),
                    [str(w) for w in written] if isinstance(written, list) else [],
                    _twin(data) or {})  # fmt: skip


def twin(state_dir: Path) -> dict[str, str] | None:
    """Another computer found writing as this installation (``twins.py``), or None."""
    return _twin(_raw(state_dir))


def wrote(state_dir: Path, target: str) -> None:
    """This computer has written as the installation's last writer on ``target``."""
    with _WRITING:
        data = _raw(state_dir)
        written = data.get("written")
        written = written if isinstance(written, list) else []
        if target not in written:
            data["written"] = [*written, target]
            _write(state_dir, data)


def note(state_dir: Path, **fields: object) -> None:
    """Set fields of the file (None removes one)."""
    with _WRITING:
        data = _raw(state_dir)
        for key, value in fields.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        _write(state_dir, data)


def new(name: str) -> Installation:
    import uuid  # loads platform: only where an installation is made

    return Installation(uuid.uuid4().hex, name)


# -- the catalog, as far as the state dir alone can tell --------------------------------

FIX = (
    "start photod with a target that holds this computer's records within reach: it "
    "rebuilds the catalog from there by itself; or run `photod catalog rebuild --from "
    "TARGET --force`"
)


class CatalogProblem(NamedTuple):
    found: str
    fix: str = FIX
    damaged: str = ""  # what SQLite said, when the file itself is damaged


def check_catalog(state_dir: Path, thorough: bool = False) -> CatalogProblem | None:
    """Why the catalog in the state dir cannot be trusted, from the state dir alone
    (the daemon also asks the targets): missing, empty or older than its last snapshot,
    or damaged.  ``thorough``: SQLite's quick_check of every page (seconds on a large
    catalog; `photod doctor`), else only what opening and a count find."""
    db = state_dir / CATALOG_NAME
    known = load(state_dir)
    if no_catalog(db):  # (never opened: SQLite would make a new, empty one in a 0-byte file)
        if db.exists():
            return CatalogProblem(f"the catalog {db} is a file of 0 bytes (cut by a disk's "
                                  "repair?)")  # fmt: skip
        if known is not None and (known.assets or known.generation):
            return CatalogProblem(f"the catalog {db} is missing")
        return None
    try:
        catalog = Catalog(db)
    except CatalogDamaged as exc:
        return CatalogProblem(f"the catalog {db} is damaged ({exc.detail})", damaged=exc.detail)
    try:
        why = catalog.sound() if thorough else ""
        if why:
            return CatalogProblem(f"the catalog {db} is damaged ({why})", damaged=why)
        if known is not None and known.assets and catalog.empty():
            return CatalogProblem(
                f"the catalog {db} is empty, but its last snapshot held {known.assets} photos"
            )
        if known is not None and catalog.generation < known.generation:
            return CatalogProblem(
                f"the catalog {db} is older than its last snapshot (generation "
                f"{catalog.generation}, snapshot {known.generation})"
            )
    except CatalogDamaged as exc:
        return CatalogProblem(f"the catalog {db} is damaged ({exc.detail})", damaged=exc.detail)
    finally:
        catalog.close()
    return None
