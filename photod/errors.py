"""Every error photod raises on purpose.

    PhotodError                 exit 1
    ├── ConfigError             exit 78 (EX_CONFIG): the config file is missing keys or wrong
    ├── AlreadyRunning          exit 75 (EX_TEMPFAIL): another daemon holds the state dir
    ├── UnsafeName              a source name that could escape a target root
    ├── SourceChanged           the file changed while it was being read
    ├── ChecksumMismatch        bytes read back do not match the expected SHA-256
    ├── Undecryptable           an encrypted object fails age's authentication (also an
    │                           OSError, so readers that try the next copy do so)
    ├── NotAFile                what is at a target's key is no file to read (a folder, a
    │                           link, a FIFO): no copy of anything (also an OSError)
    ├── KeyExists               a target already has a file at that key (never overwritten)
    ├── Stopping                the daemon is shutting down; work in flight was rolled back
    ├── CatalogDamaged          exit 65 (EX_DATAERR): the catalog file is not a sound database
    ├── CatalogUntrusted        exit 65: the catalog disagrees with the targets (missing,
    │                           older, another computer's); photod does not act on it
    ├── CatalogUnwritable       exit 65: photod may not write the catalog's files (a mode,
    │                           `chattr +i`, a read-only mount); it acts on nothing until it can
    ├── DaemonFailed            exit 70 (EX_SOFTWARE): `photod run` stopped on a bug of its own
    ├── StateDirFull            transient: no room left in the state dir for the catalog
    ├── LibraryUnreadable       exit 65: a copy of the phone's Photos database makes no sense
    └── TargetUnavailable       transient: the target is missing, foreign, read-only, offline
        ├── FolderRefused       a folder inside the target photod will not or may not write
        │   │                   through: the target waits, said once, until it is fixed
        │   ├── LinkInTarget    a folder inside it is a link: it waits for a real folder
        │   └── FolderUnwritable  a folder inside it its user may not write (another's)
        ├── SameDrive           the place found is another target's drive: one drive, one copy
        ├── ClockSkewed         the server refuses this computer's clock: set it right
        └── TargetFull          transient: no space left; carries the bytes needed

Only ``cli.main()`` turns these into exit codes; the daemon catches them at job
boundaries, logs an event and goes on.  ``TargetUnavailable`` is the one class that
tells jobs "retry later with backoff".  The command line's other codes (0 all well,
1 the answer is no, 3 no daemon, 64 usage, 73 cannot create a file, 130 interrupted)
are named in ``cliparser``; README's "Exit codes" table has every code, one meaning
each, the same in every command.
"""

from __future__ import annotations

import os


class PhotodError(Exception):
    """Root of photod's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(PhotodError):
    """The config cannot be used; ``problems`` holds one line per problem."""

    exit_code = 78

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class NotRunning(PhotodError):
    """A command that needs the running daemon found none."""

    exit_code = 3


class AlreadyRunning(PhotodError):
    exit_code = 75

    def __init__(self, state_dir: str, pid: str) -> None:
        self.state_dir = state_dir
        self.pid = pid
        super().__init__(
            f"photod is already running (pid {pid or 'unknown'}) on state dir {state_dir}; "
            "stop it first, or give this instance its own [daemon] state_dir"
        )


class UnsafeName(PhotodError):
    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"unsafe name {name!r}: {why}")


class SourceChanged(PhotodError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} changed while it was being read; it is taken again once stable")


class StillArriving(PhotodError):
    """A watch-folder file that looks cut short (its container or image data ends early)
    and was written a moment ago: its writer is most likely still at it, pausing between
    chunks longer than ``settle``.  Taken once whole, or as it is once it stays so."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} looks cut short and was just written: taken once whole")


class Unloadable(PhotodError):
    """A module photod loads at its first use (Pillow, at the first photo) cannot be
    loaded: a broken install.  The file's failure says so, no trace; it is tried again."""


class LeadPending(PhotodError):
    """A Live Photo's movie or a sidecar whose still is on its way in (being taken,
    settling, or not reached yet by a scan), or not there yet (``lead`` empty: it came
    a moment ago, before its still): it waits for the still's key, which it is named
    after."""

    def __init__(self, path: str, lead: str = "") -> None:
        self.path, self.lead = path, lead
        super().__init__(f"{path} waits for {lead or 'its still'}, whose name it follows")


class ChecksumMismatch(PhotodError):
    def __init__(self, where: str, expected: str, actual: str) -> None:
        self.where = where
        self.expected = expected
        self.actual = actual
        super().__init__(f"{where}: read back SHA-256 {actual[:12]}…, expected {expected[:12]}…")


class BytesNotHashed(ChecksumMismatch):
    """An upload that carries the Content-MD5 taken with the photo's SHA-256, in one
    read, was given other bytes (the server's check of that MD5 refused them, and their
    own MD5 is another; or more came): the file was rewritten in place since it was read."""

    def __init__(self, where: str, expected: str) -> None:
        PhotodError.__init__(self, f"{where}: not the bytes hashed as {expected[:12]}… "
                             "(the server's Content-MD5 check): the file changed since "
                             "it was read")  # fmt: skip
        self.where, self.expected, self.actual = where, expected, ""


class Undecryptable(PhotodError, OSError):
    def __init__(self, target: str, detail: str, cause: object = None) -> None:
        """``cause``: age's own error, which tells a key that is not the one the object
        was sealed to (age's "No matching keys found") from damaged bytes."""
        self.detail = detail
        self.foreign = "no matching keys" in str(cause).lower()  # (or its header damaged)
        why = ("sealed to another identity: this key is not one it was sealed to"
               if self.foreign else "the object is damaged")  # fmt: skip
        super().__init__(f"{target}: cannot decrypt: {detail} ({why})")


class NotAFile(PhotodError, OSError):
    """What is at a target's key is no file to read: a folder, a link, a FIFO.  That is
    an answer about the key (it holds no copy of anything), not a read that failed."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        super().__init__(f"{where}: {what}; not a file photod reads")


class KeyExists(PhotodError):
    def __init__(
        self, key: str, other: bool = False, size: int | None = None, same: bool = False
    ) -> None:
        """``other``: the writer read what is there already, and it is not these bytes
        (the caller need not download it again to tell); ``same``: it read it, and it
        is these very bytes; ``size``: the size of what is there, as the writer's look
        before it publishes found it (not asked again)."""
        self.key = key
        self.other = other
        self.size = size
        self.same = same
        super().__init__(f"{key} already exists on the target; it is never overwritten")


class Stopping(PhotodError):
    def __init__(self) -> None:
        super().__init__("photod is stopping; the copy in flight was rolled back")


class CatalogDamaged(PhotodError):
    """SQLite says the catalog file is damaged (a truncated file, flipped bytes)."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, path: object, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"the catalog {path} is damaged ({detail}); photod does not act on it: "
            "`photod catalog rebuild --from TARGET --force` rebuilds it from a target "
            "(the damaged file is kept beside it)"
        )


class CatalogUntrusted(PhotodError):
    """The catalog cannot be trusted as a cache of the targets; ``found`` says why,
    ``fix`` what to run."""

    exit_code = 65

    def __init__(self, found: str, fix: str) -> None:
        self.found = found
        self.fix = fix
        super().__init__(f"{found}; {fix}")


class CatalogUnwritable(PhotodError):
    """photod may not write its catalog: ``files`` names each file it may not write,
    with its mode; ``paths`` are those files.  Nothing is acted on until it can."""

    exit_code = 65

    def __init__(
        self, files: list[str], paths: list[str], detail: str = "", keeper: str = ""
    ) -> None:
        """``keeper``: the user whose state dir it is, when not this one (another
        user's photod: ask as that user, exit 77; a chown would take it from them)."""
        self.files, self.paths, self.detail = files, paths, detail
        self.found = f"the catalog cannot be written: {', '.join(files)}" + (
            f" ({detail})" if detail else ""
        )
        if keeper:
            self.exit_code = 77  # EX_NOPERM, as StateDirBarred
            self.fix = (
                f"it is {keeper}'s photod's (its state dir is {keeper}'s): ask as that user, "
                f"`sudo -u {keeper} photod ...` with the same --config; never chown it to "
                "this user (that photod could not write it then)"
            )
        else:
            theirs = any(", owner uid" in f for f in files)  # (made by root: `sudo photod`)
            chown = f"`sudo chown {os.geteuid()} {' '.join(paths)}`, then " if theirs else ""
            self.fix = chown + (
                f"`chmod u+w {' '.join(paths)}` (SQLite makes the -wal and -shm with the "
                "catalog's mode); if photod's user may write them already, see `lsattr` "
                "(chattr +i) and whether that disk is mounted read-only; a running photod "
                "goes on by itself once it can write them"
            )
        super().__init__(f"{self.found}; {self.fix}")


class StateDirBarred(PhotodError):
    """This user may not look into the state dir: ``at`` (a folder on the way, or the
    state dir itself) is ``owner``'s and does not let it in (``mode``)."""

    exit_code = 77  # EX_NOPERM

    def __init__(self, state_dir: object, at: object, owner: str, mode: int) -> None:
        self.state_dir, self.at, self.owner, self.mode = state_dir, at, owner, mode
        whose = f"{at} is {owner}'s, mode {mode:04o}" if owner else f"at {at}"
        run_as = f": `sudo -u {owner} photod status`" if owner else ""
        super().__init__(
            f"this user may not look into the state dir {state_dir} ({whose}), where the "
            f"catalog photod reports on is; ask as the user photod runs as{run_as} (with "
            "the same --config, if you gave one)"
        )


class DaemonFailed(PhotodError):
    """`photod run` stopped on a bug of its own: its work was stopped as at any stop,
    the trace is in the log (`daemon_failed`), and systemd or launchd start it again."""

    exit_code = 70  # EX_SOFTWARE

    def __init__(self, error: str) -> None:
        super().__init__(f"stopped by an internal error ({error}); the log has its trace "
                         "(`photod logs`); please report it")  # fmt: skip


class StateDirFull(PhotodError):
    """Transient: the state dir has no room for the catalog (or a staged file)."""

    def __init__(self, where: object, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(
            f"no room left in the state dir {where} ({detail}); files wait until there is "
            "room, then photod takes them by itself"
        )


def kind_of(exc: BaseException) -> str:
    """What an error is, without what varies from one try to the next: an OSError's
    type and errno, not its text (the file or folder it struck, a temporary named
    afresh at each try); any other error's type and text.  What a retry loop says
    once, and says again when it changes."""
    if isinstance(exc, OSError) and exc.errno:
        return f"{type(exc).__name__}: errno {exc.errno}"
    return f"{type(exc).__name__}: {exc}"


class TargetUnavailable(PhotodError):
    """Transient: the work waits and resumes by itself when the target is back."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"target {target!r} unavailable: {reason}")


class ObjectArchived(TargetUnavailable):
    """One object the server keeps archived (S3's Glacier classes: InvalidObjectState):
    the target answers; that object cannot be read until it is restored there."""


class SameDrive(TargetUnavailable):
    """A target found where another configured target is (a copy of its drive, the same
    folder reached twice): one drive is one copy, so it is not used until it is told
    apart.  Never fixed by waiting."""


class ClockSkewed(TargetUnavailable):
    """The server refuses every request because this computer's clock is too far from
    its own (S3 allows 15 minutes: a signed request is dated).  Tried again with
    backoff like any target away, but only setting the clock mends it."""

    FIX = "set the clock (timedatectl set-ntp true)"

    def __init__(self, target: str, how: str) -> None:
        self.how = how  # "this computer's clock is 20 minutes ahead of the server's"
        super().__init__(target, f"{how}: {self.FIX}")


class FolderRefused(TargetUnavailable):
    """A folder inside a target that photod will not write through, or may not write
    to: the target's own check passes (its root is fine), so the target waits, said
    once, until a look at ``path`` finds it fixed, instead of coming back at each
    probe to fail again at the next copy."""

    def __init__(self, target: str, path: object, reason: str) -> None:
        self.path = path
        super().__init__(target, reason)


class LinkInTarget(FolderRefused):
    """A folder inside a target is a symbolic link: nothing is written through it (it
    could point anywhere), and the target waits until it is a folder again."""

    def __init__(self, target: str, path: object) -> None:
        super().__init__(
            target,
            path,
            f"{path} is a symbolic link: photod reads and writes nothing through a link "
            "(it could point anywhere); replace it by a real folder, or remove it",
        )


class FolderUnwritable(FolderRefused):
    """A folder inside a target that photod's user may not write to or enter (another
    local user made it, or root copied it in): the target waits until it may.
    ``user``: photod's; ``whose``: the folder's owner and mode, as ``ls -ld`` says."""

    def __init__(self, target: str, path: object, user: str, whose: str) -> None:
        super().__init__(
            target,
            path,
            f"{path} is not writable by user {user} ({whose}): give {user} read and "
            "write permission on it (chmod, chown)",
        )


class TargetFull(TargetUnavailable):
    def __init__(self, target: str, needed: int, free: int) -> None:
        self.needed = needed
        self.free = free
        super().__init__(
            target, f"full: {needed} bytes needed, {free} free; free some space or add a drive"
        )


class DeviceProblem(PhotodError):
    """A phone cannot be read right now.  ``state`` is what `photod status` shows,
    ``action`` what the person should do."""

    state = "error"
    action = ""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.action)
        self.detail = detail


class DeviceUntrusted(DeviceProblem):
    state = "untrusted"
    action = "unlock the iPhone and tap Trust"


class DeviceLocked(DeviceProblem):
    state = "locked"
    action = "unlock the iPhone"


class PairingDenied(DeviceProblem):
    state = "pairing_denied"
    action = "Don't Trust was tapped: unplug and plug in again to be asked again"


class DeviceRefused(DeviceProblem):
    """The device answers as no iPhone does (a hostile one's): the rest of this
    plug-in is not read."""

    state = "refused"
    action = "nothing more is read from this device until it is plugged in again"


class DeviceGone(DeviceProblem):
    state = "disconnected"
    action = "plug the iPhone in again"


class DeviceStalled(DeviceProblem):
    state = "stalled"
    action = "the USB link stopped answering; photod retries (try another cable or port)"


class FileUnreadable(DeviceProblem):
    """One file on the phone cannot be read (with iCloud's "Optimize iPhone Storage"
    only a small version is on the phone)."""

    state = "unreadable"
    action = (
        "the original is not on the phone: turn on Settings > Photos > "
        "'Download and Keep Originals', wait for the download, then plug in again"
    )


class LibraryUnreadable(PhotodError):
    """A copy of the phone's ``Photos.sqlite`` cannot be read as a Photos library (not
    SQLite, damaged, a shape photod does not know); ``reason`` says why in one line."""

    exit_code = 65  # EX_DATAERR: the input is not what it should be

    def __init__(self, db: object, reason: str) -> None:
        self.db = db
        self.reason = " ".join(reason.split())  # one line, whatever SQLite said
        super().__init__(f"cannot read the phone's Photos library {db}: {self.reason}")
