"""The dashboard's tokens: a login link works once and for two minutes, a session
cookie only as signed and until it ends, and the secret only from a private file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from photod.dashboard.auth import (
    LOGIN_TTL,
    SECRET_NAME,
    Keys,
    ensure_secret,
    login_token,
    read_secret,
)


def test_a_login_link_works_once_and_not_after_two_minutes(tmp_path: Path) -> None:
    keys = Keys(ensure_secret(tmp_path))
    token = login_token(keys.key)
    cookie = keys.take_login(token)
    assert cookie is not None and keys.session(cookie) is not None
    assert keys.take_login(token) is None  # spent
    old = login_token(keys.key, now=time.time() - LOGIN_TTL - 1)
    assert keys.take_login(old) is None  # expired
    other = Keys(os.urandom(32))
    assert other.take_login(login_token(keys.key)) is None  # made with another secret


def test_a_session_is_what_was_signed_and_ends(tmp_path: Path) -> None:
    keys = Keys(ensure_secret(tmp_path))
    cookie = keys.take_login(login_token(keys.key))
    assert cookie is not None
    until, sid, mac = cookie.split(".")
    assert keys.session(f"{int(until) + 1}.{sid}.{mac}") is None  # made to last longer
    assert keys.session(f"{until}.{'0' * 32}.{mac}") is None  # another session's id
    assert keys.session(f"{int(time.time()) - 1}.{sid}.{mac}") is None
    assert keys.session("") is None and keys.session("a.b") is None
    sid_ok = keys.session(cookie)
    assert sid_ok is not None
    assert keys.csrf_ok(sid_ok, keys.csrf(sid_ok))
    assert not keys.csrf_ok(sid_ok, None) and not keys.csrf_ok("f" * 32, keys.csrf(sid_ok))


def test_the_secret_is_private_and_a_loose_one_is_replaced(tmp_path: Path) -> None:
    first = ensure_secret(tmp_path)
    path = tmp_path / SECRET_NAME
    assert 0o600 == path.stat().st_mode & 0o777 and 32 == len(first)
    assert first == ensure_secret(tmp_path) == read_secret(tmp_path)
    path.chmod(0o644)  # readable by others: no longer a secret
    assert read_secret(tmp_path) is None
    second = ensure_secret(tmp_path)
    assert second != first and 0o600 == path.stat().st_mode & 0o777
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    assert read_secret(tmp_path) is None
