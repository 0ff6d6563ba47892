"""photod's own folders are private, whatever the umask of whoever started it.

The state dir holds the catalog (every file's name, place and hash), the pairing records
of phones and rclone's settings; the log dir says what happened to every photo.  photod
sets its umask to 077 before it writes anything, and tightens what an earlier start (a
wider umask) left: folders 700, files 600.  Copies on targets follow the same umask
(photos are private; a folder's default ACL widens it where the owner wants).  What
`photod restore` writes into DEST is the caller's, made with the caller's umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from photod.errors import ConfigError

UMASK = 0o077
# A copy's mode before the umask: a target's copy, and a phone's staged file (which a
# target on the same disk may take by a link: it must be what a written copy is).
COPY_MODE = 0o644
_caller: int | None = None  # the umask photod was started with
# Open an entry to change its mode, never through a link, never waiting on a FIFO.
_ENTRY = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


def go_private() -> None:
    """Set the umask to 077, remembering the caller's (once: a second call keeps it)."""
    global _caller
    old = os.umask(UMASK)
    if _caller is None:
        _caller = old


def caller_umask() -> int:
    """The umask photod was started with (the current one before ``go_private``)."""
    if _caller is not None:
        return _caller
    now = os.umask(UMASK)
    os.umask(now)
    return now


def not_ours(path: Path) -> str:
    """'' when photod may write at ``path`` (missing, or its own user's, or root's);
    else why not.  A folder or file another user owns, or a link of theirs in its place
    (in a folder left open to them), would lead photod's writes into their hands, or
    into a file of photod's user they chose (its log appended to a ``~/.bashrc``)."""
    trusted = (os.geteuid(), 0)
    try:
        st = os.lstat(path)
        if st.st_uid not in trusted:
            return f"it belongs to another user (uid {st.st_uid})"
        if stat.S_ISLNK(st.st_mode) and (to := os.stat(path)).st_uid not in trusted:
            return f"it is a link to what another user owns (uid {to.st_uid})"
    except OSError:
        return ""  # not there (yet), or a dangling link: what writes there says why
    return ""


def refuse_theirs(state_dir: Path, log_dir: Path, log_file: Path) -> None:
    """ConfigError (exit 78: the units do not restart it) when photod may not write at
    one of these (``not_ours``): checked by everything that writes the state or the
    log, the daemon and the commands that write its log alike."""
    for where in (state_dir, log_dir, log_file):
        if why := not_ours(where):
            raise ConfigError([f"{where}: {why}; photod writes nothing there: remove it, or "
                               "set [daemon] state_dir and log_dir to folders of your own"])  # fmt: skip


def tighten(folders: list[Path]) -> list[str]:
    """Take every bit from the group and others on these folders and all they hold;
    returns the paths changed.

    A folder left open may hold what another user put there meanwhile, so every change
    goes through a descriptor (``fwalk`` never follows a link, each entry is opened with
    O_NOFOLLOW and changed with ``fchmod``), and only what photod's own user owns is
    touched or entered: another user's entries are theirs, and a link swapped in at any
    moment leads nowhere."""
    me = os.geteuid()
    changed: list[str] = []
    for top in folders:
        try:
            _tighten_tree(top, me, changed)
        except OSError:
            continue  # not there (yet), or gone meanwhile: the start goes on
    return changed


def _tighten_tree(top: Path, me: int, changed: list[str]) -> None:
    # The configured folder itself may be a link its owner made (state on another
    # disk): that one is followed, once, before the walk.
    for where, dirs, files, dirfd in os.fwalk(os.path.realpath(top), follow_symlinks=False):
        if _tighten_fd(dirfd, me):
            changed.append(where)
        if os.fstat(dirfd).st_uid != me:
            dirs.clear()  # another user's folder: neither changed nor entered
            continue
        for name in files:
            if _tighten_entry(dirfd, name, me):
                changed.append(os.path.join(where, name))


def _tighten_entry(dirfd: int, name: str, me: int) -> bool:
    try:
        fd = os.open(name, _ENTRY, dir_fd=dirfd)
    except OSError:
        return False  # a link (ELOOP), a socket (ENXIO), or gone meanwhile: left alone
    try:
        return _tighten_fd(fd, me)
    finally:
        os.close(fd)


def _tighten_fd(fd: int, me: int) -> bool:
    try:
        st = os.fstat(fd)
        if st.st_uid != me or not st.st_mode & 0o077:
            return False
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077)
    except OSError:
        return False
    return True
