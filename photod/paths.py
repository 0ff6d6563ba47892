"""Where photod's own files are, as every command finds them without loading the part
that uses them: the config file, the state dir, the control socket of a state dir; and
how a path in the config is read (``~`` and relative to the config's folder)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from photod.errors import ConfigError, PhotodError, StateDirBarred

APP = "photod"
SOCKET_NAME = "control.sock"
FALLBACK = "photod-"  # the control socket's folder in the temporary folder begins so
CATALOG_NAME = "catalog.sqlite"  # in the state dir


def socket_path(runtime_dir: Path, state_dir: Path) -> Path:
    """The socket for the daemon of this state dir.  A Unix socket path holds at most
    107 bytes: a deeper runtime dir gets a short private folder in the temporary folder
    instead, or in /tmp when that is deep too (the daemon did not start)."""
    path = runtime_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= 100:
        return path
    import tempfile  # only for a deep runtime dir: most commands never need it

    tag = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"{FALLBACK}{os.getuid()}-{tag}" / SOCKET_NAME
    return path if len(os.fsencode(path)) <= 100 else Path("/tmp", *path.parts[-2:])


def default_state_dir() -> Path:
    """The state dir of a config that names none."""
    # platformdirs is imported where a default folder is asked for: its few ms are
    # spared to `photod status` on a config that names its folders.
    import platformdirs

    return systemd_dir("STATE_DIRECTORY") or Path(platformdirs.user_state_dir(APP))


def systemd_dir(variable: str) -> Path | None:
    value = os.environ.get(variable, "").split(":")[0]
    return Path(value) if value else None


def default_config_path() -> Path:
    env = os.environ.get("PHOTOD_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    user = Path(platformdirs.user_config_dir(APP)) / "photod.toml"
    system = Path("/etc/photod/photod.toml")
    return system if not user.exists() and system.exists() else user


def resolve(path: Path, base: Path, key: str = "") -> Path:
    if "\0" in str(path):  # (no system call takes it: each raised ValueError, a crash)
        raise ConfigError([f"{key}: is {str(path)!r}; allowed: a path without a NUL character"])
    try:
        path = path.expanduser()
    except RuntimeError:  # '~nobody/photos': no such user, no home to expand to
        user = str(path).partition("/")[0]
        raise ConfigError(
            [f"{key}: is {str(path)!r}, whose {user!r} names no user of this computer; "
             "allowed: an absolute path, '~/…', or a path relative to the config"]
        ) from None  # fmt: skip
    path = path if path.is_absolute() else (base / path)
    if not is_text(path):
        raise ConfigError([f"{key}: {not_text(path)}"])
    return path


def is_text(path: Path) -> bool:
    """Whether the path is UTF-8 text, as the catalog, the logs and every message keep
    a path: a name in another encoding (byte 0xff) is not."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True


def not_text(path: Path) -> str:
    """Why a path that is no UTF-8 text is refused, the path shown with its bytes."""
    shown = os.fsencode(path).decode(errors="backslashreplace")
    return (f"is '{shown}', whose name holds bytes that are not UTF-8 (a folder named in "
            "another encoding); allowed: a path in UTF-8 (rename the folder, `convmv` can)")  # fmt: skip


# `state_dir = "…"` or `= '…'` on its own line (escapes are left to the TOML parser).
_STATE_DIR = re.compile(r"""state_dir[ \t]*=[ \t]*(?:"([^"\\]*)"|'([^']*)')[ \t]*(?:#.*)?""")


def state_dir_hint(text: str, base: Path) -> Path | None:
    """Where a config's state dir most likely is, read without a TOML parser (whose
    import is a tenth of `photod status`): a `state_dir` line in the `[daemon]` table,
    else the default.  Only a hint, for finding what was kept of a file there: that is
    found by a key of the file's exact bytes, which only a full check of those bytes
    wrote, in the folder that check gave; a wrong hint costs a full check, never a
    wrong answer."""
    table, named = "", None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            table = line.partition("#")[0].strip()
        elif table == "[daemon]" and (m := _STATE_DIR.fullmatch(line)):
            named = m.group(1) if m.group(1) is not None else m.group(2)
    return unchecked_state_dir({"daemon": {"state_dir": named}}, base)


def unchecked_state_dir(data: dict[str, Any], base: Path) -> Path | None:
    """The state dir a config names, read from its keys before they are checked (where
    the kept checks of a file are: only a file that passed has one there); None when
    it names none that can be."""
    daemon = data.get("daemon")
    named = daemon.get("state_dir") if isinstance(daemon, dict) else None
    try:
        return resolve(Path(named), base) if isinstance(named, str) else default_state_dir()
    except (RuntimeError, ConfigError):  # '~nobody/state': no cache, checked without one
        return None


def other_form(path: Path) -> str:
    """When a folder that is not there is there under the same name in another Unicode
    form (a drive or share a Mac wrote: "Müller" with its "ü" as "u" and a combining
    mark, where a config typed on Linux has the one character), what to write in the
    config instead; '' otherwise.  Linux takes the two for different names: the folder
    was said missing while `ls` showed it."""
    import unicodedata  # only for a folder that is missing

    at = Path(path.anchor)
    for part in path.parts[1:]:
        if os.path.lexists(at / part):
            at = at / part
            continue
        if part.isascii():
            return ""  # (ASCII has one form only)
        want = unicodedata.normalize("NFC", part)
        try:
            found = [n for n in os.listdir(at) if unicodedata.normalize("NFC", n) == want]
        except OSError:
            return ""
        if len(found) != 1:
            return ""
        at = at / found[0]
    if at == path:
        return ""
    shown = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\' else
                    f"\\u{ord(ch):04X}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08X}"
                    for ch in str(at))  # fmt: skip
    return (f"its name is on disk in another Unicode form (as a Mac writes names): write "
            f'the path in the config as it is there, "{shown}"')  # fmt: skip


# SQLite opens no database at a path over 504 bytes (its unix VFS's 512, less the
# "-journal" it may add): "unable to open database file", which said nothing of a path.
SQLITE_PATH_MAX = 504
# The deepest databases photod opens under the state dir: the catalog's copy a snapshot
# checks, and a phone's library copy (import/SOURCE/UDID/library-copy/Photos.sqlite).
_SNAPSHOT_COPY = len("/photod-snapshot-12345678/catalog.sqlite")
_PHONE_COPY = len("/import//" + "0" * 40 + "/library-copy/Photos.sqlite")


def state_dir_too_deep(state_dir: Path, phones: list[str]) -> str:
    """Why a state dir is too deep for the databases photod keeps in it ('' when it is
    not): checked at the config's load, not found out at the first snapshot (a
    traceback) or the catalog's open (said as a permission problem)."""
    deepest = max([_SNAPSHOT_COPY, *(_PHONE_COPY + len(n) for n in phones)])
    size = len(os.fsencode(state_dir))
    if size + deepest <= SQLITE_PATH_MAX:
        return ""
    return (f"is {size} bytes long; allowed: at most {SQLITE_PATH_MAX - deepest} (SQLite "
            f"opens no database deeper than {SQLITE_PATH_MAX} bytes, and photod keeps some "
            f"{deepest} bytes below its state dir): a shorter path")  # fmt: skip


def nearest_existing(path: Path) -> Path:
    """``path``, or the nearest of its parents that exists as this user sees it (a
    state dir or a restore's DEST not made yet).  ``os.path.exists``, not
    ``Path.exists``: beneath a folder this user may not search, that raises
    PermissionError (Python 3.11 ignores only ENOENT, ENOTDIR, EBADF, ELOOP) where this
    answers False, and the walk goes on up to the folder that bars the way."""
    while not os.path.exists(path) and path.parent != path:
        path = path.parent
    return path


def barred(state_dir: Path) -> StateDirBarred | None:
    """None when this user may look into ``state_dir`` (or it is not made yet); else
    which folder on the way keeps it out, and whose it is: another user's photod (a
    system-wide config's, run as a service user), whose catalog must not be taken for a
    missing one, nor its PermissionError end in a traceback."""
    try:
        os.stat(os.path.join(state_dir, "."))  # (searching the state dir itself too)
        return None
    except PermissionError:
        pass
    except OSError:  # (not made yet, or not a folder: the command says that itself)
        return None
    # (through a link: the folder that bars the way is on the link's target's way)
    at = nearest_existing(Path(os.path.realpath(state_dir)))
    try:
        st = os.stat(at)
    except OSError:
        return StateDirBarred(state_dir, at, "", 0)
    return StateDirBarred(state_dir, at, user_name(st.st_uid), st.st_mode & 0o7777)


def user_name(uid: int) -> str:
    """A user's name, or its uid where it has none (a file of a user since removed)."""
    import pwd  # only when a message names someone

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def said(exc: PhotodError | PermissionError) -> str:
    """What the CLI says of a failure: a PhotodError's own words; a PermissionError on
    another user's file (where it is, or its nearest folder there: another user's
    photod's catalog, its logs): the file and whose it is, one line (exit 77,
    EX_NOPERM); '' for one on this user's own files (a bug: its traceback is kept)."""
    if not isinstance(exc, PermissionError):
        return str(exc)
    if not exc.filename:
        return ""
    try:
        owner = os.stat(nearest_existing(Path(os.fsdecode(exc.filename)))).st_uid
    except OSError:
        return ""
    if owner == os.geteuid():
        return ""
    return (f"{(exc.strerror or 'permission denied').lower()}: {exc.filename} ({user_name(owner)}'s: "
            "run the command as the user photod runs as)")  # fmt: skip
