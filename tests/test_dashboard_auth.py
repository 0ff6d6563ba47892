"""The dashboard's tokens: a login link works once and for two minutes, a session
cookie only as signed and until it ends, and the secret only from a private file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from photod.dashboard.auth import (
    LOGIN_TTL,
    SECRET_NAME,
    SPENT_NAME,
    Keys,
    ensure_secret,
    login_token,
    read_secret,
)


def test_a_login_link_works_once_and_not_after_two_minutes(tmp_path: Path) -> None:
    keys = Keys(ensure_secret(tmp_path))
    token = login_token(keys.key)
    cookie = keys.take_login(token, 1000)
    assert cookie is not None and keys.session(cookie, 1000) is not None
    assert keys.take_login(token, 1000) is None  # spent
    old = login_token(keys.key, now=time.time() - LOGIN_TTL - 1)
    assert keys.take_login(old, 1000) is None  # expired
    other = Keys(os.urandom(32))
    assert other.take_login(login_token(keys.key), 1000) is None  # made with another secret
    assert keys.take_login("9999999999.\u00e9.\u00e9", 1000) is None  # not a token: no crash


def test_a_login_link_works_once_even_when_the_dashboard_restarts(tmp_path: Path) -> None:
    """A link used, then the dashboard restarted within the link's two minutes (a
    reload that changes it, a restart of photod): the link stays spent.  The record is
    read only from a private file of this user's, never through a link."""
    key = ensure_secret(tmp_path)
    spent = tmp_path / SPENT_NAME
    token = login_token(key)
    assert Keys(key, spent).take_login(token, 1000) is not None
    assert 0o600 == spent.stat().st_mode & 0o777
    assert Keys(key, spent).take_login(token, 1000) is None  # the restarted server
    fresh = login_token(key)
    assert Keys(key, spent).take_login(fresh, 1000) is not None  # another link still works
    kept = spent.read_text()
    assert 2 == len(kept.splitlines())
    third = Keys(key, spent)  # restarted again: both links are still spent
    assert third.take_login(token, 1000) is None and third.take_login(fresh, 1000) is None
    assert third.take_login(login_token(key), 1000) is not None
    assert Keys(key, spent).take_login(token, 1000) is None  # and after one more restart
    assert not list(tmp_path.glob(".dashboard.spent*"))  # no temporary left beside it
    kept = spent.read_text()
    # A record that is not this user's private file is not trusted, nor followed.
    spent.chmod(0o644)
    assert Keys(key, spent).take_login(token, 1000) is not None
    spent.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(kept)
    elsewhere.chmod(0o600)
    spent.symlink_to(elsewhere)
    keys = Keys(key, spent)
    assert keys.take_login(fresh, 1000) is not None
    assert keys.take_login(fresh, 1000) is None  # spent in memory all the same
    assert kept == elsewhere.read_text() and not spent.is_symlink()  # the link replaced


def test_a_session_is_what_was_signed_and_ends(tmp_path: Path) -> None:
    keys = Keys(ensure_secret(tmp_path))
    cookie = keys.take_login(login_token(keys.key), 1000)
    assert cookie is not None
    until, sid, mac = cookie.split(".")
    assert keys.session(f"{int(until) + 1}.{sid}.{mac}", 1000) is None  # made to last longer
    assert keys.session(f"{until}.{'0' * 32}-1000.{mac}", 1000) is None  # another session's id
    assert keys.session(f"{int(time.time()) - 1}.{sid}.{mac}", 1000) is None
    assert keys.session("", 1000) is None and keys.session("a.b", 1000) is None
    assert keys.session(f"{until}.{sid}.{mac[:-1]}\u00e9", 1000) is None  # no crash
    # The cookie another user's server received, brought by that user: refused.
    assert keys.session(cookie, 1001) is None
    sid_ok = keys.session(cookie, 1000)
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


def test_the_user_at_the_other_end_of_a_connection_is_known() -> None:
    """The kernel names the local user who opened a connection (the session is bound to
    that user), asked for that one socket and read from its whole table alike: over
    IPv4, IPv6, and IPv4 to a server listening on both; a socket not there is no one."""
    import asyncio
    import socket

    from photod.dashboard.peer import by_netlink, by_table, owner_of

    servers = [socket.create_server(("127.0.0.1", 0)), socket.create_server(("::1", 0),
               family=socket.AF_INET6), socket.create_server(("::", 0),
               family=socket.AF_INET6, dualstack_ipv6=True)]  # fmt: skip
    held = list(servers)
    try:
        for server, to in zip(servers, ["127.0.0.1", "::1", "127.0.0.1"], strict=True):
            held.append(socket.create_connection((to, server.getsockname()[1])))
            conn, addr = server.accept()
            held.append(conn)
            client, here = addr[:2], conn.getsockname()[:2]
            assert os.geteuid() == by_netlink(client, here) == by_table(client, here), addr
            assert os.geteuid() == asyncio.run(owner_of(client, here))
            assert None is by_netlink((client[0], 1), here) is by_table((client[0], 1), here)
    finally:
        for s in held:
            s.close()


def test_questions_asked_at_once_of_the_kernels_table_each_get_their_own_answer() -> None:
    """Where the kernel's whole table is read (netlink refused), the questions asked at
    once share reads, and each still gets the owner of its own connection: one made
    while a read is under way is found by the next (never answered from a read that
    began before it existed, which would name no one and refuse the owner)."""
    import asyncio
    import socket

    from photod.dashboard.peer import by_shared_table

    async def ask(server: socket.socket) -> list[int | None]:
        port, held = server.getsockname()[1], []
        try:
            pairs = []
            for _ in range(20):
                held.append(socket.create_connection(("127.0.0.1", port)))
                conn, addr = server.accept()
                held.append(conn)
                pairs.append((addr, conn.getsockname()))
            first = [asyncio.ensure_future(by_shared_table(c, s)) for c, s in pairs]
            await asyncio.sleep(0.05)  # (the first read under way, or done)
            held.append(socket.create_connection(("127.0.0.1", port)))
            conn, addr = server.accept()
            held.append(conn)
            late = await by_shared_table(addr, conn.getsockname())
            return [*await asyncio.gather(*first), late]
        finally:
            for s in held:
                s.close()

    with socket.create_server(("127.0.0.1", 0)) as server:
        assert [os.geteuid()] * 21 == asyncio.run(ask(server))
    # Two event loops at once (each reads for its own questions: none waits for ever on
    # the other's, or is answered from its thread)
    from concurrent.futures import ThreadPoolExecutor

    with (socket.create_server(("127.0.0.1", 0)) as one,
          socket.create_server(("127.0.0.1", 0)) as two, ThreadPoolExecutor(2) as pool):  # fmt: skip
        both = [pool.submit(asyncio.run, ask(s)) for s in (one, two)]
        assert [[os.geteuid()] * 21] * 2 == [f.result(timeout=30) for f in both]


def test_a_connection_whose_other_end_no_program_holds_is_no_ones() -> None:
    """A client that closed its end after sending (its socket left to the kernel to
    finish, which says uid 0 for it) is nobody's: never root's, whose cookie it may
    have stolen, and never the user's who opened it."""
    import socket

    from photod.dashboard.peer import by_netlink, by_table

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, addr = server.accept()
        with conn:
            assert os.geteuid() == by_netlink(addr, server.getsockname())
            client.close()  # (the server's end stays open: the client's waits for it)
            deadline = time.monotonic() + 5
            while by_netlink(addr, server.getsockname()) is not None:
                assert time.monotonic() < deadline, "the closed end still named its user"
                time.sleep(0.05)
            assert None is by_table(addr, server.getsockname())
            keys = Keys(b"k" * 32)
            mine = keys.take_login(login_token(keys.key), os.geteuid())
            assert keys.session(mine, None) is None, "no one's connection, with a cookie"


def test_the_kernel_says_whether_it_can_name_owners_here() -> None:
    """The dashboard's own listening socket is found, where the kernel can name the
    owners of sockets (a login it names no one for then makes no session); a port no
    socket listens at is not (a system that cannot say gives unbound sessions)."""
    import socket

    from photod.dashboard.peer import answerable

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert answerable(("127.0.0.1", port))
    assert not answerable(("127.0.0.1", port))


def test_a_connection_from_a_socket_bound_to_lo_is_known() -> None:
    """A socket bound to the loopback device (SO_BINDTODEVICE: any user may, once) is
    found by the kernel's exact lookup too: it is its owner's, never no one's."""
    import socket

    from photod.dashboard.peer import by_netlink, by_table

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        client.connect(server.getsockname())
        conn, addr = server.accept()
        with conn, client:
            here = conn.getsockname()
            assert os.geteuid() == by_netlink(addr, here) == by_table(addr, here)


@pytest.mark.timeout(10)
def test_a_pipe_for_a_record_blocks_nothing_and_a_record_not_written_is_said(
    tmp_path: Path,
) -> None:
    """A named pipe where the secret or the spent links' record should be (nobody
    writes to it) does not hang the dashboard's start; a record that cannot be written
    (here, its folder is gone) still lets the person in, and is said once."""
    import json

    from photod import logs

    key = ensure_secret(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / SPENT_NAME).symlink_to(tmp_path / "pipe")
    assert Keys(key, tmp_path / "pipe").take_login(login_token(key), 1000) is not None
    os.unlink(tmp_path / SECRET_NAME)
    os.mkfifo(tmp_path / SECRET_NAME)
    assert read_secret(tmp_path) is None
    logs.setup(tmp_path / "log", console=False)
    try:
        keys = Keys(key, tmp_path / "gone" / SPENT_NAME)
        token = login_token(key)
        assert keys.take_login(token, 1000) is not None
        assert keys.take_login(token, 1000) is None  # spent, in memory
        assert keys.take_login(login_token(key), 1000) is not None
    finally:
        logs.shutdown()
    said = [
        json.loads(line) for line in (tmp_path / "log" / "photod.jsonl").read_text().splitlines()
    ]
    assert ["dashboard_login_unsaved"] == [e["event"] for e in said if e["level"] == "warning"]
