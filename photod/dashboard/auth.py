"""Who may see the dashboard: the model Syncthing, Kopia and Duplicati converged on.

- A random secret in a 0600 file of the state dir (``dashboard.secret``): only this
  user can read it, so only this user can make a login link (`photod dashboard`).
- A login link holds a token signed with the secret, good for two minutes and once.
- It is traded for a session cookie (HttpOnly, SameSite=Strict), signed likewise.
- Every request must name the server by the loopback name it listens on (``Host``):
  a page of another site that resolves its own name to 127.0.0.1 (DNS rebinding)
  gets 403.  A request that changes anything must carry the session's CSRF token and,
  when the browser sends one, this server's ``Origin``.
- A browser sends a cookie for 127.0.0.1 to every port there, another user's server
  too: so on Linux a session is bound to the local user whose connection logged in
  (the kernel's socket table says who owns the other end), and a request from any
  other user's connection is refused, cookie or not.
Tokens are HMAC-SHA256 over what they say, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path

from photod.durable import write_atomic
from photod.logs import log

SECRET_NAME = "dashboard.secret"
SPENT_NAME = "dashboard.spent"  # login links used, until they expire: once, across restarts
LOGIN_TTL = 120.0  # seconds a login link is good for
SESSION_TTL = 7 * 86400.0  # seconds a session lasts
COOKIE = "photod_session"


def read_secret(state_dir: Path) -> bytes | None:
    """The secret, if it is there and private to this user; None otherwise."""
    try:
        fd = os.open(
            state_dir / SECRET_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        )
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        data = f.read(256).strip()
    return bytes.fromhex(data.decode()) if len(data) == 64 else None


def ensure_secret(state_dir: Path) -> bytes:
    """The secret, made at the first start (or when the file is gone, unreadable or
    not private: then every earlier session and link stops working)."""
    found = read_secret(state_dir)
    if found is not None:
        return found
    key = secrets.token_bytes(32)
    path = state_dir / SECRET_NAME
    tmp = state_dir / f".{SECRET_NAME}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.hex().encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key


def _read_spent(path: Path | None) -> dict[str, int]:
    """The spent login nonces a private file of this user's keeps; none from any other
    file (a link or another owner's is not read)."""
    if path is None:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return {}
        lines = f.read(1 << 20).decode("ascii", "replace").splitlines()
    spent = {}
    for line in lines:
        expiry, _, nonce = line.partition(" ")
        if expiry.isdigit() and _PART.fullmatch(nonce):
            spent[nonce] = int(expiry)
    return spent


def _sign(key: bytes, *parts: str) -> str:
    return hmac.new(key, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def _same(given: str, wanted: str) -> bool:
    """Constant-time equality of two tokens' parts (anything not ASCII is not one)."""
    return given.isascii() and hmac.compare_digest(given.encode(), wanted.encode())


def login_token(key: bytes, now: float | None = None) -> str:
    """A token for a one-time login link."""
    expiry, nonce = str(int((now or time.time()) + LOGIN_TTL)), secrets.token_hex(16)
    return f"{expiry}.{nonce}.{_sign(key, 'login', expiry, nonce)}"


class Keys:
    """The running server's checks, with the secret it started with.  ``spent``: the
    private file that keeps the login links already used, so that a link works once
    even when the dashboard restarts (a reload, a restart) within its two minutes."""

    def __init__(self, key: bytes, spent: Path | None = None) -> None:
        self.key = key
        self._spent = spent
        self._used = _read_spent(spent)  # login nonces spent, until they expire
        self._unsaved = False  # said once when the record could not be written
        self._lock = threading.Lock()

    def take_login(self, token: str, uid: int | None) -> str | None:
        """A new session's cookie value for a good, unspent login token, bound to the
        local user ``uid`` who brought it (None: not known here); else None."""
        expiry, nonce, mac = _three(token)
        now = time.time()
        if not mac or not _same(mac, _sign(self.key, "login", expiry, nonce)):
            return None
        if not expiry.isdigit() or int(expiry) < now:
            return None
        with self._lock:
            self._used = {n: t for n, t in self._used.items() if t >= now}
            if nonce in self._used:
                return None  # one use only: a link seen in a history or a log is dead
            self._used[nonce] = int(expiry)
            if self._spent is not None:
                try:
                    write_atomic(
                        self._spent, "".join(f"{t} {n}\n" for n, t in self._used.items()).encode()
                    )
                except OSError as exc:  # (a full disk: kept in memory alone, said once)
                    if not self._unsaved:
                        log.warning("dashboard_login_unsaved", path=str(self._spent),
                                    error=str(exc), action="a link used stays spent until photod restarts")  # fmt: skip
                    self._unsaved = True
        until, who = str(int(now + SESSION_TTL)), "x" if uid is None else str(uid)
        sid = f"{secrets.token_hex(16)}-{who}"
        return f"{until}.{sid}.{_sign(self.key, 'session', until, sid)}"

    def session(self, cookie: str | None, uid: int | None) -> str | None:
        """The session id of a good cookie brought by the user it was given to (when
        known at both ends), else None."""
        until, sid, mac = _three(cookie or "")
        if not mac or not _same(mac, _sign(self.key, "session", until, sid)):
            return None
        owner = sid.rpartition("-")[2]
        if owner != "x" and owner != str(uid):
            return None  # another user's connection (or no one's), with this user's cookie
        return sid if until.isdigit() and int(until) >= time.time() else None

    def genuine(self, token: str | None, kind: str) -> bool:
        """Whether ``token`` is a login link's (``kind`` "login") or a session cookie's
        ("session") that this dashboard signed, and not out of date: nothing is asked
        of the kernel for a request without one (see ``app.Guard``)."""
        when, what, mac = _three(token or "")
        if not mac or not _same(mac, _sign(self.key, kind, when, what)):
            return False
        return when.isdigit() and int(when) >= time.time()

    def csrf(self, sid: str) -> str:
        return _sign(self.key, "csrf", sid)[:40]

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return bool(given) and _same(str(given), self.csrf(sid))


_PART = re.compile(r"[0-9a-fx-]{1,80}")


def _three(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3 or not all(_PART.fullmatch(p) for p in parts):
        return ("", "", "")  # not a token: nothing to compare, nor to fail on
    return (parts[0], parts[1], parts[2])
