"""Shared fixtures: sample photos copied into tmp_path, config files, and a real
``photod run`` process to drive from integration tests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import S3Server, SSHServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault campaigns first, then the other tests of a real `photod run`, then the
    rest: the suite is spread over workers (pytest-xdist), and a campaign of minutes
    handed out last would run alone at the end."""
    items.sort(key=lambda item: (item.get_closest_marker("campaign") is None,
                                 item.get_closest_marker("integration") is None))  # fmt: skip


@pytest.fixture(autouse=True)
def _events_set_up_afresh() -> Iterator[None]:
    """A test that sets up photod's event log in its own process (as `photod run`
    does) must not change where a later test's events go: structlog caches a logger
    at its first event after `logs.setup`, with that set-up's processors, and the
    `capture_logs` of every later test on the same worker then saw nothing (27 tests
    failed after one that set the log up and logged)."""
    yield
    if "structlog" not in sys.modules:
        return
    import logging

    import structlog

    from photod import logs

    logs._Events._logger = None  # the next event takes the configuration as it is then
    if structlog.get_config()["cache_logger_on_first_use"]:  # left set up by the test
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        structlog.reset_defaults()


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
if not SAMPLES.is_dir():  # the project may be checked out elsewhere: look beside it too
    SAMPLES = Path(os.environ.get("PHOTOD_SAMPLES", "../shared/samples")).resolve()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (``rclone serve s3``) on 127.0.0.1, shared by the session;
    tests that stop it start it again."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A real OpenSSH sshd on 127.0.0.1 with throwaway keys, serving SFTP."""
    server = SSHServer(tmp_path_factory.mktemp("ssh"))
    server.start()
    yield server
    server.stop()


def damage_catalog(db_path: Path, table: str) -> bytes:
    """Flip 300 bytes of a table's first leaf page, as bit rot or a bad sector would:
    its cell pointers and the rows at its end, so that the damage is to the page's
    structure, which SQLite's own checks see (bytes flipped inside a row's text only
    would be another, undetectable kind of rot); returns the damaged file's bytes."""
    import sqlite3

    db = sqlite3.connect(db_path)
    size = db.execute("PRAGMA page_size").fetchone()[0]
    page = db.execute("SELECT pageno FROM dbstat WHERE name=? AND pagetype='leaf'"
                      " ORDER BY pageno LIMIT 1", (table,)).fetchone()[0]  # fmt: skip
    db.close()
    data = bytearray(db_path.read_bytes())
    head = (page - 1) * size + 8  # the cell pointer array, after a leaf's 8-byte header
    data[head : head + 16] = bytes(b ^ 0xA5 for b in data[head : head + 16])
    start = page * size - 334  # a page's rows fill it from its end
    data[start : start + 284] = bytes(b ^ 0xA5 for b in data[start : start + 284])
    db_path.write_bytes(bytes(data))
    return bytes(data)


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where`` (made if missing) with ``options`` ("size=4m"),
    unmounted after.  Needs root, as CI is."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"mount -t tmpfs failed ({mounted.stderr.strip()}): this test needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@contextlib.contextmanager
def no_room_for_a_file(where: Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """A real tmpfs at ``where`` (made if missing) whose few inodes are all taken, once
    the folders ``keep`` are made, by files in the folder it yields: no new file or
    folder fits there until that folder is removed.  Needs root, as CI is."""
    with tmpfs(where, "size=1m,nr_inodes=32"):
        for folder in keep:
            (where / folder).mkdir(parents=True)
        fillers = where / "fillers"
        fillers.mkdir()
        with contextlib.suppress(OSError):
            for i in range(1000):  # every file it has room for
                (fillers / str(i)).touch()
        yield fillers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """The real sample photos, copied (read-only originals stay untouched)."""
    if not SAMPLES.is_dir():
        pytest.fail(f"sample photos not found at {SAMPLES}; set PHOTOD_SAMPLES to shared/samples")
    out = tmp_path / "samples"
    out.mkdir()
    for p in SAMPLES.iterdir():
        if p.suffix.lower() in (".jpg", ".heic", ".heif"):
            shutil.copyfile(p, out / p.name)
            (out / p.name).chmod(0o644)
    return out


def write_config(
    path: Path,
    sources: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    policy: dict[str, int] | None = None,
    extra: str = "",
) -> Path:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        # JSON strings are TOML basic strings, as long as nothing outside the BMP is
        # escaped as a surrogate pair: keep non-ASCII as it is.
        if isinstance(v, list):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, dict):  # an inline table
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v), ensure_ascii=False)

    lines = []
    policy = policy or {"copies": len(targets), "media": 1, "offsite": 0}
    lines.append("[policy]")
    lines += [f"{k} = {v}" for k, v in policy.items()]
    for section, items in (("sources", sources), ("targets", targets)):
        for item in items:
            lines.append(f"\n[[{section}]]")
            lines += [f"{k} = {value(v)}" for k, v in item.items()]
    # Any free port for the dashboard: two daemons of one test never race for 8737.
    if "[dashboard]" not in extra:
        extra += '\n[dashboard]\nlisten = "127.0.0.1:0"\n'
    path.write_text("\n".join(lines) + "\n" + extra)
    path.chmod(0o600)  # as photod writes its own default config: it may hold a secret
    return path


class Photod:
    """A real ``photod run`` process on a temporary config, HOME and state."""

    def __init__(self, home: Path, config: Path) -> None:
        self.home = home
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "PYTHONUNBUFFERED": "1",
            # No NetworkManager of this computer's: a laptop on a hotspot must not hold
            # the tests' uploads back (a test of the metered rule sets its own bus).
            "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={home}/no-system-bus",
        }
        self.env.pop("PHOTOD_CONFIG", None)
        self.env.pop("NOTIFY_SOCKET", None)
        (home / "run").mkdir(mode=0o700, exist_ok=True)  # as systemd makes /run/user/UID
        self.output = home / "photod.out"
        self.log_dir = home / "log"
        # Run the daemon under another program (a private mount namespace, say); it
        # must exec photod in the end, so that the pid is photod's.
        self.prefix: list[str] = []

    @property
    def log_file(self) -> Path:
        return self.log_dir / "photod.jsonl"

    def cli_command(self) -> list[str]:
        return [sys.executable, "-m", "photod", "--config", str(self.config)]

    def cli(self, *args: str, config: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            sys.executable,
            "-m",
            "photod",
            *(["--config", str(self.config)] if config else []),
            *args,
        ]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)

    def start(self, *args: str, config: bool = True, wait: bool = True) -> Photod:
        """Start the daemon; ``wait``: until it logs `daemon_started` (a daemon that
        holds, not acting on its catalog, never does)."""
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "photod",
            *(["--config", str(self.config)] if config else []),
            "run",
            *args,
        ]
        started = len(self.events("daemon_started"))  # earlier runs logged theirs
        if getattr(self, "out", None) is not None:
            self.out.close()
        self.out = open(self.output, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.out, stderr=subprocess.STDOUT)
        if wait:
            self.wait_event("daemon_started", count=started + 1, timeout=30)
        return self

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        out = []
        for line in self.log_file.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if name is None or e.get("event") == name:
                out.append(e)
        return out

    def wait_event(
        self, name: str, count: int = 1, timeout: float = 30, **match: Any
    ) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]]:
            return [e for e in self.events(name) if all(e.get(k) == v for k, v in match.items())]

        wait_for(
            lambda: len(found()) >= count or self._died(), timeout, f"{count} x {name} {match}"
        )
        if self._died():
            raise AssertionError(f"photod exited early:\n{self.output.read_text()[-3000:]}")
        return found()

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def status(self) -> dict[str, Any]:
        r = self.cli("status", "--json")
        assert r.returncode in (0, 1), r.stderr  # 1: not everything is protected (yet)
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def wait_protected(self, assets: int, timeout: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def ok() -> bool:
            nonlocal last
            last = self.status()
            return bool(last["assets"] == assets and last["policy"]["compliant"] == assets)

        wait_for(ok, timeout, f"{assets} assets protected", lambda: json.dumps(last))
        return last

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
        return rc


def wait_for(
    pred: Callable[[], Any], timeout: float, what: str, detail: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {detail()}" if detail else "")
    )


@pytest.fixture
def photod_factory(tmp_path: Path) -> Iterator[Callable[[Path], Photod]]:
    started: list[Photod] = []

    def make(config: Path) -> Photod:
        p = Photod(tmp_path, config)
        started.append(p)
        return p

    yield make
    for p in started:  # never leak a daemon, nor its output file (a test that failed)
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
        if getattr(p, "out", None) is not None:
            p.out.close()


def target_files(root: Path) -> dict[str, str]:
    """relpath -> sha256 of every published file on a local target (not .photod/)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".photod/"):
            out[rel] = sha256(p)
    return out


def make_mov(
    path: Path,
    when: Any,
    payload: bytes = b"\x00" * 4096,
    brand: bytes = b"qt  ",
    content_id: str = "",
) -> Path:
    """A minimal QuickTime file: ftyp, mdat, moov/mvhd with a creation time; with a
    ``content_id``, the Live Photo movie's ``com.apple.quicktime.content.identifier``
    in ``moov/meta`` (hdlr ``mdta``, keys, ilst) as the iPhone writes it."""
    import struct
    from datetime import UTC, datetime

    seconds = int((when - datetime(1904, 1, 1, tzinfo=UTC)).total_seconds())
    mvhd_body = (
        struct.pack(">B3sIIII", 0, b"\0\0\0", seconds, seconds, 600, 600)
        + struct.pack(">IH", 0x10000, 0x100)
        + b"\0" * 10
        + b"\0" * 36
        + b"\0" * 24
        + struct.pack(">I", 2)
    )
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body

    def box(typ: bytes, body: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(body), typ) + body

    meta = b""
    if content_id:
        key = b"com.apple.quicktime.content.identifier"
        hdlr = box(b"hdlr", b"\0" * 8 + b"mdta" + b"\0" * 13)
        keys = box(b"keys", struct.pack(">II", 0, 1) + box(b"mdta", key))
        data = box(b"data", struct.pack(">II", 1, 0) + content_id.encode())
        meta = box(b"meta", hdlr + keys + box(b"ilst", box(struct.pack(">I", 1), data)))
    moov = box(b"moov", mvhd + meta)
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", brand, 0, brand)
    mdat = struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
    path.write_bytes(ftyp + mdat + moov)
    return path


def stops_in_systemds_time(p: Photod, group: bool = False) -> None:
    """SIGTERM (``group``: to every process of its group, which it leads): the daemon
    ends cleanly, well within systemd's 30 s."""
    assert p.proc is not None
    asked = time.monotonic()
    if group:
        os.killpg(p.proc.pid, signal.SIGTERM)
    else:
        p.proc.send_signal(signal.SIGTERM)
    rc = p.proc.wait(60)
    took = time.monotonic() - asked
    assert (0, True) == (rc, took < 15), took
