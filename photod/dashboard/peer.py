"""Who is at the other end of a loopback TCP connection: the local user whose socket it
is, as the kernel says (Linux).  The dashboard binds a session to that user (``auth``).

The kernel is asked for that one socket, by its addresses and ports, over netlink's
sock_diag (what `ss` uses): the answer costs the same however many sockets the machine
has.  Where netlink is refused (a sandbox), its whole table in ``/proc/net/tcp`` is
read instead: there every question pays for every connection on the machine, closed
ones waiting out their time too (the kernel writes 16,000 sockets' lines in 40 ms, and
any local user may open that many), so ``owner_of`` reads it off the event loop, one
read answering every question asked before it began (``_Reads``: the owner's cookie,
stolen by another user's server on 127.0.0.1, sent forty times at once costs one read,
not forty), and the dashboard asks only for a request that brings a good signature
(``app.Guard``).
Both name the socket's owner the same way (``sock_i_uid``), and neither answers for a
socket no process holds any more (``_held``).  No answer is no one's: a session bound
to a user is refused from such a connection (``auth.Keys.session``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import struct
import weakref
from collections.abc import Iterator

from photod import failpoints
from photod.logs import log

NETLINK_SOCK_DIAG = 4  # (linux/netlink.h)
SOCK_DIAG_BY_FAMILY = 20  # (linux/sock_diag.h)
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_ASK = struct.Struct("=BBBBI")  # inet_diag_req_v2: family, protocol, ext, pad, states
_ID = struct.Struct(">HH16s16s")  # inet_diag_sockid: ports and addresses (network order)
_ID_REST = struct.Struct("=III")  # ... its interface, and its cookie: none (any socket)
_ANSWER = struct.Struct("=BBBB")  # inet_diag_msg: family, state, timer, retransmits
_AFTER_ID = struct.Struct("=IIIII")  # ... then expires, rqueue, wqueue, uid, inode
_NO_COOKIE = 0xFFFFFFFF
_LOOPBACK = 1  # the loopback's interface index (LOOPBACK_IFINDEX, linux/netdevice.h)
_said: list[str] = []  # why the kernel's table is read here, once said

Address = tuple[str, int]


class NotAsked(Exception):
    """Netlink is refused here (or answered what is not understood)."""


async def owner_of(client: Address, server: Address) -> int | None:
    """The uid owning the socket at ``client`` connected to ``server``; None where the
    kernel has no such socket held by a process, or no way to say (not Linux).  Its
    whole table (where netlink is refused) is read on a thread: no page waits for it."""
    try:
        return by_netlink(client, server)
    except NotAsked as exc:
        if not _said:
            _said.append(str(exc))
            log.info("dashboard_peer_table", reason=str(exc), detail="the kernel's whole "
                     "table of sockets is read at each signed request: slower with many "
                     "connections on this computer")  # fmt: skip
        return await by_shared_table(client, server)
    except (ValueError, struct.error):  # (not an address and port: no one's)
        return None


async def by_shared_table(client: Address, server: Address) -> int | None:
    """``by_table`` from the event loop, the table read on a thread, shared (``_Reads``)."""
    loop = asyncio.get_running_loop()
    reads = _reads.get(loop) or _reads.setdefault(loop, _Reads())
    return by_table(client, server, await reads.tables())


Tables = list[tuple[str, str]]


class _Reads:
    """The kernel's tables read on a thread, one read at a time, each for every question
    asked before it began (so it sees their sockets): however many questions come in,
    at most one read runs and one waits.  One an event loop (``_reads``)."""

    def __init__(self) -> None:
        self.next: asyncio.Future[Tables] | None = None  # what the questions asked now wait for
        self.reader: asyncio.Task[None] | None = None

    async def tables(self) -> Tables:
        loop = asyncio.get_running_loop()
        if self.next is None:
            self.next = loop.create_future()
        if self.reader is None or self.reader.done():
            self.reader = loop.create_task(self._read())
        return await asyncio.shield(self.next)  # (a request gone does not cancel the read)

    async def _read(self) -> None:
        while (wanted := self.next) is not None:
            self.next = None  # asked from now on: the next read's
            try:
                wanted.set_result(await asyncio.to_thread(lambda: list(_tables())))
            except asyncio.CancelledError:  # (the loop closing)
                wanted.cancel()
                raise
            except Exception as exc:  # (a bug: every question waiting fails with it)
                wanted.set_exception(exc)
        self.reader = None  # (nothing here holds the loop: its entry in ``_reads`` goes with it)


_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reads] = weakref.WeakKeyDictionary()


def answerable(server: Address) -> bool:
    """Whether the kernel names the owners of sockets here: it finds the server's own
    listening socket (by netlink, or in its table).  Where it does, a connection it
    names no one for is not given a session: one bound to no one would let in any user
    who stole its cookie.  Where it does not (not Linux, a sandbox), every one is."""
    try:
        with _netlink() as ask:
            if _listening(ask, _forms(server[0], server[0]), server[1]):
                return True
    except NotAsked:
        pass
    except (ValueError, struct.error):
        return False
    return _listed(server[1])


def by_netlink(client: Address, server: Address) -> int | None:
    """Asked of the kernel for that one socket (NotAsked where netlink is refused)."""
    with _netlink() as ask:
        forms = _forms(client[0], server[0])
        for family, here, there in forms:
            found, uid = _ask(ask, family, _ID.pack(client[1], server[1], here, there))
            if found:
                return uid
        # Not found: so the kernel says too when it has no sock_diag for TCP (a module
        # it could not load): then the server's listening socket is not found either.
        if _listening(ask, forms, server[1]):
            return None
    raise NotAsked("sock_diag finds not even the listening socket")


def _netlink() -> socket.socket:
    try:
        failpoints.hit("peer_netlink")  # (tests: a sandbox that refuses netlink)
        ask = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:  # (no AF_NETLINK: not Linux)
        raise NotAsked(str(exc)) from exc
    ask.settimeout(1.0)
    return ask


def _listening(ask: socket.socket, forms: list[tuple[int, bytes, bytes]], port: int) -> bool:
    """Whether the kernel finds the server's listening socket at ``port``."""
    for family, _, there in forms:
        answer = _send(ask, family, _ID.pack(port, 0, there, bytes(16)))
        if len(answer) >= _HEADER.size and _HEADER.unpack_from(answer)[1] == SOCK_DIAG_BY_FAMILY:
            return True
    return False


def _ask(ask: socket.socket, family: int, sockid: bytes) -> tuple[bool, int | None]:
    return _answer(_send(ask, family, sockid), sockid)


def _send(ask: socket.socket, family: int, sockid: bytes) -> bytes:
    body = _ASK.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    # The loopback's interface (1, in every namespace): it matches a socket bound to no
    # device and one bound to lo (SO_BINDTODEVICE, which any user may set once); asked
    # for interface 0, the kernel never finds the latter.
    body += _ID_REST.pack(_LOOPBACK, _NO_COOKIE, _NO_COOKIE)
    head = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    try:
        ask.sendto(head + body, (0, 0))
        answer = ask.recv(8192)
    except OSError as exc:
        raise NotAsked(str(exc)) from exc
    return answer


def _answer(answer: bytes, sockid: bytes) -> tuple[bool, int | None]:
    """Whether the kernel's answer to a question about ``sockid`` found that socket,
    and its owner (``_held``)."""
    if len(answer) < _HEADER.size:
        raise NotAsked("a short answer")
    _, kind, _, _, _ = _HEADER.unpack_from(answer)
    if kind == NLMSG_ERROR and len(answer) >= _HEADER.size + 4:
        code = -struct.unpack_from("=i", answer, _HEADER.size)[0]
        if code == errno.ENOENT:
            return False, None
        raise NotAsked(os.strerror(code))
    at = _HEADER.size + _ANSWER.size
    if kind != SOCK_DIAG_BY_FAMILY or len(answer) < at + _ID.size + _ID_REST.size + 20:
        raise NotAsked(f"an answer of kind {kind}")
    if answer[at : at + _ID.size] != sockid:  # (never another socket's owner)
        return False, None
    *_, uid, inode = _AFTER_ID.unpack_from(answer, at + _ID.size + _ID_REST.size)
    return True, _held(uid, inode)


def _held(uid: int, inode: int) -> int | None:
    """The owner of a socket a process holds (an inode); None for one no process holds
    any more (closed, waiting out its time, or left to finish its close): the kernel
    says uid 0 for some of those, which is no one's connection, least of all root's."""
    return uid if inode else None


def _forms(client: str, server: str) -> list[tuple[int, bytes, bytes]]:
    """The families and packed addresses the client's socket may have: an IPv4 one's
    socket is IPv4, or IPv6 when it connected to a dual-stack one (``::ffff:a.b.c.d``)."""
    c, s = ipaddress.ip_address(client), ipaddress.ip_address(server)
    c4 = c.ipv4_mapped if isinstance(c, ipaddress.IPv6Address) else c
    s4 = s.ipv4_mapped if isinstance(s, ipaddress.IPv6Address) else s
    forms: list[tuple[int, bytes, bytes]] = []
    if c4 is not None and s4 is not None:
        forms.append((socket.AF_INET, c4.packed.ljust(16, b"\0"), s4.packed.ljust(16, b"\0")))
    c6 = ipaddress.IPv6Address(f"::ffff:{c}") if c.version == 4 else c
    s6 = ipaddress.IPv6Address(f"::ffff:{s}") if s.version == 4 else s
    forms.append((socket.AF_INET6, c6.packed, s6.packed))
    return forms


def by_table(client: Address, server: Address, tables: Tables | None = None) -> int | None:
    """Read from the kernel's whole table (where netlink is refused): ``tables`` as read
    for this question (``_Reads``), else read now."""
    try:
        client, server = _unmapped(client), _unmapped(server)  # (an IPv4 socket's, in tcp)
    except ValueError:
        return None
    for table, text in _tables() if tables is None else tables:
        here = f"{_hex(client[0], table)}:{client[1]:04X}"
        there = f"{_hex(server[0], table)}:{server[1]:04X}"
        # Found in the text by its two addresses (no other column has their form), not
        # line by line: with 16,000 sockets 0.5 s a question, now the kernel's 0.1 s.
        at = text.find(f" {here} {there} ") + 1
        if at > 0:
            fields = text[at : text.find("\n", at)].split()
            if len(fields) > 8:
                return _held(int(fields[6]), int(fields[8]))
    return None


def _listed(port: int) -> bool:
    """Whether the kernel's table lists a listening socket at ``port`` (state 0A)."""
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for _, f in _rows())


def _rows() -> Iterator[tuple[str, list[str]]]:
    """Each socket in the kernel's tables of TCP sockets (its table, its fields), the
    header lines left out."""
    for table, text in _tables():
        for line in text.splitlines()[1:]:
            if len(fields := line.split()) > 9:
                yield table, fields


def _tables() -> Iterator[tuple[str, str]]:
    """The text of each of the kernel's tables of TCP sockets; none of one that cannot
    be read."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                text = f.read()
        except (OSError, ValueError):
            continue
        yield table, text


def _unmapped(address: Address) -> Address:
    """``::ffff:a.b.c.d`` as ``a.b.c.d``: the socket of an IPv4 client of a dual-stack
    server is an IPv4 one."""
    ip = ipaddress.ip_address(address[0])
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (str(mapped), address[1]) if mapped else address


def _hex(host: str, table: str) -> str:
    """An address as the kernel's table writes it: each 32-bit word in host order."""
    ip = ipaddress.ip_address(host)
    if table.endswith("6") and ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    raw = ip.packed
    return "".join(raw[i : i + 4][::-1].hex().upper() for i in range(0, len(raw), 4))
