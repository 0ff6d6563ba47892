"""Nobody gets in (issue 16): each attack, run by a second, unprivileged user the test
creates, against a real `photod run` started as root.  After each, nothing private
reached any target or any folder outside, and photod kept working."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Photod, sha256, target_files, wait_for, write_config
from tests.integration.conftest import Setup, backed_up_twice
from tests.integration.test_control import deep_daemon
from tests.servers import need

pytestmark = pytest.mark.integration

JPEG = (SAMPLES / "jpg_Canon_40D.jpg").read_bytes() if SAMPLES.is_dir() else b""
PYTHON = "/usr/bin/python3"  # Debian's python3, which every user may run


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def run(self, *cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
            **kw,
        )  # type: ignore[call-overload]

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Python code run as this user, by the system's Python (the test's own may be
        in a folder only root can enter)."""
        return self.run(PYTHON, "-c", code)


@pytest.fixture
def intruder() -> Iterator[User]:
    """A second, unprivileged local user, made for the test and removed after it."""
    if os.geteuid() != 0:
        pytest.fail("the security tests run as root and create a user (as CI does)")
    if shutil.which("useradd") is None:
        pytest.fail("useradd not found: apt-get install passwd")
    if not os.access(PYTHON, os.X_OK):
        pytest.fail(f"{PYTHON} not found: apt-get install python3")
    name = f"pdx{os.getpid() % 100000}"
    subprocess.run(["userdel", name], capture_output=True)
    made = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        capture_output=True,
        text=True,
    )
    assert 0 == made.returncode, made.stderr
    pw = pwd.getpwnam(name)
    try:
        yield User(name, pw.pw_uid, pw.pw_gid)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder others can reach (pytest's own tmp is root's only): what a family
    shares lives here, photod's private parts stay in tmp_path."""
    top = Path(f"/tmp/photod-shared-{tmp_path.name}")
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(mode=0o755)
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def photo(n: int) -> bytes:
    return JPEG + b"photo" + n.to_bytes(8, "big")


def private_files(tmp_path: Path) -> dict[str, str]:
    """Files only root may read, photos among them: name -> sha256."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secret.jpg").write_bytes(photo(9001))
    (private / "notes.xmp").write_bytes(b"<x:xmpmeta>root's notes</x:xmpmeta>")
    (private / "deep").mkdir()
    (private / "deep" / "IMG_0001.JPG").write_bytes(photo(9002))
    for p in private.rglob("*"):
        p.chmod(0o600 if p.is_file() else 0o700)
    return {p.name: sha256(p) for p in private.rglob("*") if p.is_file()}


def daemon_on(setup: Setup, inbox: Path, extra: str = "", daemon: str = "") -> Photod:
    """photod as root on the shared inbox, with a library and a second target."""
    lib, ext = setup.home / "lib", setup.home / "ext"
    config = write_config(
        setup.home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(inbox)}],
        [
            {"name": "lib", "type": "local", "path": str(lib)},
            {"name": "ext", "type": "local", "path": str(ext), "create": True},
        ],
        {"copies": 2, "media": 1, "offsite": 0},
        f'\n[daemon]\nstate_dir = "{setup.home}/state"\nlog_dir = "{setup.home}/log"\n'
        f'retry_interval = "1s"\nretry_max = "2s"\n{daemon}\n[ingest]\nsettle = "0.5s"\n{extra}',
    )
    return setup.factory(config)


def everything_on_targets(setup: Setup) -> set[str]:
    return {h for root in ("lib", "ext") for h in target_files(setup.home / root).values()}


def test_a_watch_folder_is_no_way_to_read_other_files(
    setup: Setup, intruder: User, shared: Path, tmp_path: Path
) -> None:
    """As a user who can write to the watch folder: a folder swapped for a link to a
    root-only folder, links to a root-only file and folder at every depth, a hard link
    to a root-only file, a FIFO and a socket where photos were.  Each is refused with
    one `file_skipped`; no private byte reaches a target; the intruder's own photos are
    backed up and photod keeps working."""
    secrets = private_files(tmp_path)
    private = tmp_path / "private"
    inbox = shared / "inbox"
    inbox.mkdir()
    os.chown(inbox, intruder.uid, intruder.gid)  # the intruder's own synced folder
    (shared / "camera.jpg").write_bytes(JPEG)
    (shared / "camera.jpg").chmod(0o644)
    p = daemon_on(setup, inbox).start()
    attack = intruder.python(f"""
import os, socket
inbox = {str(inbox)!r}; private = {str(private)!r}
jpeg = open({str(shared / "camera.jpg")!r}, "rb").read()
os.chdir(inbox)
os.mkdir("d")
open("d/IMG_090000.JPG", "wb").write(jpeg + b"mine")
open("d/notes.xmp", "wb").write(b"<x:xmpmeta>mine</x:xmpmeta>")
os.rename("d", "d.old")
os.symlink(private, "d")                                   # the folder swapped for a link
os.symlink(private + "/secret.jpg", "a.jpg")               # a file link at the top
os.makedirs("x/z")
os.symlink(private, "x/y")                                 # a folder link at depth 2
os.symlink(private + "/deep/IMG_0001.JPG", "x/z/IMG_0001.JPG")  # a file link at depth 3
os.mkfifo("fifo.jpg")                                      # a FIFO where a photo was
s = socket.socket(socket.AF_UNIX); s.bind("sock.jpg")      # and a socket
open("ok.jpg", "wb").write(jpeg + b"also mine")
""")
    assert 0 == attack.returncode, attack.stderr
    # Hard links to files only root may read (protected_hardlinks keeps the intruder from
    # making them here; root makes them, as a system without that protection would let
    # the intruder): in the intruder's folder, and in a family folder of root's that
    # everyone may write to, where only those others can have put it.
    os.link(private / "secret.jpg", inbox / "h.jpg")
    family = inbox / "family"
    family.mkdir()
    family.chmod(0o1777)
    os.link(private / "deep" / "IMG_0001.JPG", family / "h2.jpg")
    p.wait_protected(3, timeout=60)  # the two photos and the intruder's sidecar
    skipped = {e["path"]: e["reason"] for e in p.wait_event("file_skipped", count=7, timeout=30)}
    want = {"a.jpg", "x/z/IMG_0001.JPG", "fifo.jpg", "sock.jpg", "h.jpg", "family/h2.jpg"}
    assert want <= set(skipped), skipped
    assert "symbolic link" in skipped["a.jpg"] and "symbolic link" in skipped["x/z/IMG_0001.JPG"]
    assert "not a regular file" in skipped["fifo.jpg"]
    assert "may not read it" in skipped["h.jpg"] and "may not read it" in skipped["family/h2.jpg"]
    assert not set(secrets.values()) & everything_on_targets(setup)
    assert not [
        e for e in p.events("asset_ingested") if "notes" in e["path"] and "d/" == e["path"][:2]
    ]
    r = p.cli("backup", "--now")
    assert 0 == r.returncode, r.stderr
    assert 0 == p.stop()
    assert not set(secrets.values()) & everything_on_targets(setup)


def test_a_file_swapped_between_two_reads_is_what_was_opened(
    setup: Setup, intruder: User, shared: Path, tmp_path: Path
) -> None:
    """The intruder's photo is opened; while photod holds it (a slow disk, by a
    failpoint), the file is renamed away and a link to a root-only photo put in its
    place: what is stored is the photo that was opened, under its own hash; the link
    is then refused; nothing private reaches a target."""
    secrets = private_files(tmp_path)
    inbox = shared / "inbox"
    inbox.mkdir()
    os.chown(inbox, intruder.uid, intruder.gid)
    p = daemon_on(setup, inbox)
    p.env["PHOTOD_FAILPOINTS"] = "ingest_storing=1:sleep:3"
    p.start()
    mine = photo(1)
    r = intruder.python(f"open({str(inbox / 'a.jpg')!r}, 'wb').write({mine!r})")
    assert 0 == r.returncode, r.stderr
    time.sleep(1.5)  # opened, probed, held at the failpoint
    r = intruder.python(f"""
import os
os.rename({str(inbox / "a.jpg")!r}, {str(inbox / "a.old")!r})
os.symlink({str(tmp_path / "private" / "secret.jpg")!r}, {str(inbox / "a.jpg")!r})
""")
    assert 0 == r.returncode, r.stderr
    [ingested] = p.wait_event("asset_ingested", timeout=30)
    assert sha256_bytes(mine) == ingested["asset"]
    p.wait_protected(1, timeout=30)
    p.cli("backup", "--now")
    p.wait_event("file_skipped", path="a.jpg", timeout=30)
    assert 0 == p.stop()
    on = everything_on_targets(setup)
    assert sha256_bytes(mine) in on and not set(secrets.values()) & on


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_control_socket_outlives_a_flood(setup: Setup, intruder: User) -> None:
    """Another user (its process count capped, as a real limit would be) cannot even
    connect: the socket is its owner's.  A thousand idle connections from its owner
    (a runaway script) are held by a few threads and a queue, never a thread each; once
    they close, `photod pause` answers within a second and the daemon stays healthy."""
    p = daemon_on(setup, setup.inbox).start()
    sock_path = Path(p.env["XDG_RUNTIME_DIR"]) / "photod" / "control.sock"
    wait_for(sock_path.exists, 10, "the control socket")
    r = intruder.run(
        "prlimit",
        "--nproc=20",
        "--",
        PYTHON,
        "-c",
        f"""
import socket, sys
refused = 0
for _ in range(1000):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect({str(sock_path)!r})
    except OSError:
        refused += 1
    s.close()
print(refused)
""",
    )
    assert "1000" == r.stdout.strip(), r.stdout + r.stderr
    flood = []
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(str(sock_path))
        except BlockingIOError:
            pass  # in the backlog: still one more connection waiting
        except OSError:
            s.close()
            continue
        flood.append(s)
    time.sleep(2)
    for s in flood:
        s.close()
    # And six that, answered, keep sending a byte now and then: each is cut off after
    # a second, so four of them cannot hold every worker.
    # (15 s each: without the cut-off, `pause` would wait some 13 s for a worker)
    trickles = [threading.Thread(target=trickle, args=(sock_path, 15.0)) for _ in range(6)]
    for t in trickles:
        t.start()
    time.sleep(1.5)
    started = time.monotonic()
    r = p.cli("pause")
    took = time.monotonic() - started
    assert 0 == r.returncode, r.stdout + r.stderr
    # (a CLI process's start included, on a machine that may be loaded)
    assert took < 6.0, f"pause answered in {took:.1f} s"
    assert 0 == p.cli("resume").returncode
    status = p.status()
    assert status["daemon"]["live"]["ok"]
    for t in trickles:
        t.join()
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()


def trickle(path: Path, seconds: float) -> None:
    """A request, then a byte every 0.3 s for ``seconds`` (or until cut off)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b'{"cmd": "status"}\n')
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                s.send(b" ")
            except OSError:
                return
            time.sleep(0.3)


def test_a_wide_umask_and_another_users_lock_change_nothing(
    setup: Setup, intruder: User, shared: Path
) -> None:
    """Started with umask 022, photod's state, log and runtime folders are 700 and
    their files 600; what an earlier start left open is tightened once, with an event.
    Another user holding a shared lock on an old, open lock file does not keep photod
    from starting, and status says it runs."""
    state, logs = shared / "state", shared / "log"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "photod.lock").write_text("stopped\n")
    (state / "photod.lock").chmod(0o644)  # as an old photod with umask 022 left it
    holder = subprocess.Popen(
        ["flock", "-s", str(state / "photod.lock"), "-c", "sleep 60"],
        user=intruder.uid,
        group=intruder.gid,
        extra_groups=[],
    )
    try:
        time.sleep(0.5)
        config = write_config(
            setup.home / "photod.toml",
            [{"name": "inbox", "type": "folder", "path": str(setup.inbox)}],
            [{"name": "lib", "type": "local", "path": str(setup.home / "lib")}],
            {"copies": 1, "media": 1, "offsite": 0},
            f'\n[daemon]\nstate_dir = "{state}"\nlog_dir = "{logs}"\n[ingest]\nsettle = "0.5s"\n',
        )
        p = setup.factory(config)
        p.log_dir = logs
        p.prefix = ["sh", "-c", 'umask 022 && exec "$@"', "sh"]
        p.start()
        (setup.inbox / "a.jpg").write_bytes(photo(7))
        p.wait_protected(1, timeout=30)
        [tightened] = p.events("permissions_tightened")
        assert str(state) in tightened["paths"]
        status = p.status()
        assert status["daemon"]["running"]
        for top in (state, logs, Path(p.env["XDG_RUNTIME_DIR"]) / "photod"):
            for f in [top, *top.rglob("*")]:
                mode = stat.S_IMODE(f.lstat().st_mode)
                assert not mode & 0o077, f"{f} is {mode:o}"
        peek = intruder.run("cat", str(state / "catalog.sqlite"))
        assert 0 != peek.returncode
        [copy] = [f for f in (setup.home / "lib").rglob("*.jpg")]
        assert (0o600, 0o700) == (
            stat.S_IMODE(copy.stat().st_mode),
            stat.S_IMODE(copy.parent.stat().st_mode),
        ), "a copy on a target is as private as the state"
        assert 0 == p.stop()
    finally:
        holder.kill()
        holder.wait()


def test_a_link_another_user_planted_for_the_log_is_never_written_through(
    setup: Setup, intruder: User
) -> None:
    """Another user's link where photod's log goes (planted in a log folder left open
    to them), to a file of photod's user (their ~/.bashrc): photod refuses to start,
    says why, and writes nothing into the file; the same for a state folder replaced
    by their link.  And `photod doctor`, started with umask 000, makes the folders it
    creates private (open folders are how such a link gets planted)."""
    victim = setup.home / "bashrc"
    victim.write_text("echo hello\n")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    logs = setup.home / "log"
    logs.mkdir()
    planted = logs / "photod.jsonl"
    planted.symlink_to(victim)
    os.lchown(planted, intruder.uid, intruder.gid)
    r = p.cli("run", "--once")
    assert 78 == r.returncode and "belongs to another user" in r.stderr, r.stdout + r.stderr
    assert "echo hello\n" == victim.read_text()  # (78: the units do not restart it)
    doctor = p.cli("doctor")
    assert 1 == doctor.returncode and "belongs to another user" in doctor.stdout, doctor.stdout
    shutil.rmtree(setup.home / "state", ignore_errors=True)  # (doctor makes what is missing)
    planted.unlink()
    theirs = setup.home / "theirs"
    theirs.mkdir()
    os.chown(theirs, intruder.uid, intruder.gid)
    (setup.home / "state").symlink_to(theirs, target_is_directory=True)
    os.lchown(setup.home / "state", intruder.uid, intruder.gid)
    r = p.cli("run", "--once")
    assert 0 != r.returncode and "another user" in r.stderr, r.stdout + r.stderr
    assert [] == list(theirs.iterdir())
    (setup.home / "state").unlink()
    shutil.rmtree(logs)
    fresh = subprocess.run(["sh", "-c", 'umask 000 && exec "$@"', "sh", *p.cli_command(), "doctor"],
                           env=p.env, capture_output=True, text=True)  # fmt: skip
    assert "Traceback" not in fresh.stdout + fresh.stderr
    for made in (setup.home / "state", logs):
        assert 0o700 == stat.S_IMODE(made.stat().st_mode), made


def test_the_commands_that_write_the_log_never_write_through_another_users_link(
    setup: Setup, intruder: User
) -> None:
    """`photod verify`, `photod drill` and `photod catalog rebuild` write their events
    to the daemon's log: another user's link planted there (to photod's user's
    ~/.bashrc) stops them as it stops `photod run` (exit 78, nothing written through),
    and so does a state folder replaced by their link."""
    p = backed_up_twice(setup, SAMPLES)[0]
    victim = setup.home / "bashrc"
    victim.write_text("echo hello\n")
    logs = setup.home / "log"
    shutil.rmtree(logs)
    logs.mkdir()
    planted = logs / "photod.jsonl"
    planted.symlink_to(victim)
    os.lchown(planted, intruder.uid, intruder.gid)
    commands = (["verify"], ["drill"], ["catalog", "rebuild", "--from", "lib", "--force"])
    for command in commands:
        r = p.cli(*command)
        assert 78 == r.returncode and "belongs to another user" in r.stderr, (
            command,
            r.stdout + r.stderr,
        )
        assert "echo hello\n" == victim.read_text(), command
    planted.unlink()
    state, theirs = setup.home / "state", setup.home / "theirs"
    state.rename(setup.home / "mine")
    theirs.mkdir()
    os.chown(theirs, intruder.uid, intruder.gid)
    state.symlink_to(theirs, target_is_directory=True)
    os.lchown(state, intruder.uid, intruder.gid)
    for command in commands:
        r = p.cli(*command)
        assert 78 == r.returncode and "another user" in r.stderr, (command, r.stdout + r.stderr)
        assert [] == list(theirs.iterdir()), command


def test_a_config_that_holds_a_secret_must_be_private(setup: Setup) -> None:
    """An inline rclone secret (or a webhook's token) in a config others may read: run,
    config check and doctor refuse it in one line with the `chmod 600` that fixes it;
    an S3 endpoint over plain http off this computer is a warning."""
    config = write_config(
        setup.home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(setup.inbox)}],
        [
            {
                "name": "box",
                "type": "rclone",
                "remote": "box:photos",
                "rclone_config": {"type": "sftp", "host": "nas.lan", "pass": "hunter2"},
            },
            {"name": "b2", "type": "s3", "bucket": "photos", "endpoint": "http://nas.lan:9000"},
        ],
        {"copies": 2, "media": 1, "offsite": 1},
        f'\n[daemon]\nstate_dir = "{setup.home}/state"\nlog_dir = "{setup.home}/log"\n',
    )
    config.chmod(0o644)
    p = setup.factory(config)
    for args in (["run", "--once"], ["config", "check"]):
        r = p.cli(*args)
        assert 78 == r.returncode, r.stdout + r.stderr
        assert (
            f"targets[0].rclone_config.pass: the config holds a secret and is readable by others "
            f"(mode 644); allowed: only its owner, run `chmod 600 {config}`" in r.stderr
        )
    doctor = p.cli("doctor")
    assert 1 == doctor.returncode
    assert re.search(r"^FAIL  secrets: .*chmod 600", doctor.stdout, re.M), doctor.stdout
    config.chmod(0o600)
    r = p.cli("config", "check")
    assert 0 == r.returncode, r.stderr
    assert "warning:" in r.stderr and "http://nas.lan:9000 is plain http" in r.stderr
    assert "WARN  config:" in p.cli("doctor").stdout


def test_restore_writes_nothing_through_a_link_planted_in_dest(
    setup: Setup, intruder: User, shared: Path
) -> None:
    """DEST is a shared folder where the intruder put a link (DEST/2008 -> a folder of
    theirs): the photos of that folder fail with the reason, nothing is written where
    the link points; a temporary a killed restore left is removed by the next one."""
    make = [photo(i) for i in range(3)]
    for i, data in enumerate(make):
        (setup.inbox / f"IMG_{i}.JPG").write_bytes(data)
    p = daemon_on(setup, setup.inbox)
    assert 0 == p.cli("run", "--once").returncode
    dest, elsewhere = shared / "dest", shared / "elsewhere"
    dest.mkdir(mode=0o1777)
    dest.chmod(0o1777)
    elsewhere.mkdir()
    os.chown(elsewhere, intruder.uid, intruder.gid)  # a folder of the intruder's
    r = intruder.python(f"import os; os.symlink({str(elsewhere)!r}, {str(dest / '2008')!r})")
    assert 0 == r.returncode, r.stderr
    r = p.cli("restore", str(dest))
    assert 1 == r.returncode
    assert 3 == r.stdout.count("symbolic link"), r.stdout
    assert [] == list(elsewhere.iterdir())
    (dest / "2008").unlink()
    [day] = [d.name for d in (setup.home / "lib" / "2008").iterdir()]
    (dest / "2008" / day).mkdir(parents=True)
    stale = dest / "2008" / day / ".photod-restore-0123456789ab.tmp"  # beside a final name
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout
    assert not stale.exists()
    assert sorted(sha256_bytes(d) for d in make) == sorted(target_files(dest).values())
    umask = os.umask(0)
    os.umask(umask)
    restored = [f for f in dest.rglob("*") if f.is_file()]
    assert {0o666 & ~umask} == {stat.S_IMODE(f.stat().st_mode) for f in restored}, (
        "what is restored is the caller's, with the caller's umask (not photod's 077)"
    )


def test_a_link_inside_a_target_is_said_once_and_waits(setup: Setup, tmp_path: Path) -> None:
    """A folder inside a target is a link (lib/2008 -> elsewhere): nothing is written
    through it; one `target_unavailable` names the folder (not the target's root), and
    it is not said again at every probe; status shows it; once the link is a folder
    again, the copies complete."""
    lib, elsewhere = setup.home / "lib", tmp_path / "elsewhere"
    lib.mkdir()
    elsewhere.mkdir()
    (lib / "2008").symlink_to(elsewhere)
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    p.start()
    (setup.inbox / "a.jpg").write_bytes(photo(1))
    [down] = p.wait_event("target_unavailable", target="lib", timeout=30)
    assert f"{lib / '2008'} is a symbolic link" in down["reason"]
    time.sleep(12)  # more than two probes
    assert 1 == len(p.events("target_unavailable"))
    lib_status = next(t for t in p.status()["targets"] if t["name"] == "lib")
    assert (False, True) == (lib_status["available"], "2008" in lib_status["reason"])
    assert [] == list(elsewhere.iterdir())
    (lib / "2008").unlink()
    (lib / "2008").mkdir()
    p.wait_protected(1, timeout=30)
    assert 0 == p.stop()
    assert [] == list(elsewhere.iterdir())


def test_a_link_where_a_copy_was_is_moved_aside_never_read(
    setup: Setup, tmp_path: Path, samples: Path
) -> None:
    """Someone who can write to the drive swaps a copy for a link to a private file:
    `photod verify` reads nothing through it, calls the copy corrupt, moves the link
    itself aside and writes the copy again; the private file is untouched and no
    target ever holds it."""
    secrets = private_files(tmp_path)
    p, lib, _ext, originals = backed_up_twice(setup, samples)
    key = sorted(originals)[0]
    (lib / key).unlink()
    (lib / key).symlink_to(tmp_path / "private" / "secret.jpg")
    r = p.cli("verify", "--all")
    assert 0 == r.returncode, r.stdout + r.stderr
    [bad] = p.events("replica_corrupt")
    assert (key, "lib") == (bad["path"], bad["target"])
    assert not (lib / key).is_symlink() and originals[key] == sha256(lib / key)
    [aside] = [q for q in (lib / ".photod" / "quarantine").rglob("*") if q.is_symlink()]
    assert (tmp_path / "private" / "secret.jpg") == aside.readlink()
    assert secrets["secret.jpg"] == sha256(tmp_path / "private" / "secret.jpg")
    assert not set(secrets.values()) & everything_on_targets(setup)


def test_the_kernel_names_another_users_connection_as_theirs(intruder: User) -> None:
    """A connection another user opened to photod's port is named as that user's,
    asked of the kernel for its one socket and read from its whole table alike: the
    dashboard binds each session to the user at the other end."""
    import asyncio
    import socket

    from photod.dashboard.peer import by_netlink, by_table, owner_of

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        held = subprocess.Popen(
            [PYTHON, "-c", f"import socket, sys\ns = socket.create_connection(('127.0.0.1', "
             f"{port}))\nsys.stdin.read()"], stdin=subprocess.PIPE,
            user=intruder.uid, group=intruder.gid, extra_groups=[])  # fmt: skip
        try:
            server.settimeout(30)
            conn, addr = server.accept()
            with conn:
                here = conn.getsockname()
                assert intruder.uid == by_netlink(addr, here) == by_table(addr, here)
                assert intruder.uid == asyncio.run(owner_of(addr, here)) != os.geteuid()
        finally:
            assert held.stdin is not None
            held.stdin.close()
            held.wait(timeout=30)


@pytest.mark.parametrize("kernel", ["netlink", "table"])
def test_another_user_cannot_get_into_the_dashboard(
    setup: Setup, intruder: User, samples: Path, kernel: str
) -> None:
    """Another local user reaches the dashboard's loopback port but not the secret:
    every page, thumbnail and endpoint says 401 to it, a made-up cookie or login token
    too, and a restore it asks for is refused (nothing is written).  Even the owner's
    own session cookie (a browser sends it to every port of 127.0.0.1: another user's
    server there receives it) is refused from that user's connection, one bound to the
    loopback device too.  The same where netlink is refused (a sandbox: the kernel's
    whole table of sockets is read instead)."""
    p = daemon_on(setup, setup.inbox, extra='[dashboard]\nlisten = "127.0.0.1:0"\n')
    if kernel == "table":
        p.env["PHOTOD_FAILPOINTS"] = "peer_netlink=eio"
    p.start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_event("dashboard_started")
    url = json.loads((setup.home / "state" / "dashboard.json").read_text())["url"]
    secret = setup.home / "state" / "dashboard.secret"
    assert 0o600 == secret.stat().st_mode & 0o777
    sha = hashlib.sha256((samples / "jpg_Canon_40D.jpg").read_bytes()).hexdigest()
    link = urllib.parse.urlsplit(p.cli("dashboard", "--no-browser").stdout.split()[0])
    conn = http.client.HTTPConnection(link.hostname, link.port, timeout=10)
    # Nothing signed, nothing asked of the kernel (where that is a read of its whole
    # table, a stranger's requests would each cost one).
    for path, cookie in [("/", f"photod_session=9999999999.{'a' * 32}.{'b' * 64}"),
                         (f"/thumb/{sha}", ""), ("/login?t=1.2.3", "")]:  # fmt: skip
        conn.request("GET", path, headers={"Cookie": cookie})
        refused = conn.getresponse()
        refused.read()
        assert 401 == refused.status, path
    assert [] == p.events("dashboard_peer_table")
    conn.request("GET", f"{link.path}?{link.query}")
    answer = conn.getresponse()
    answer.read()
    stolen = answer.getheader("set-cookie", "").split(";")[0]
    conn.request("GET", "/", headers={"Cookie": stolen})  # the owner's own: in
    assert 200 == conn.getresponse().status
    conn.close()
    r = intruder.python(f"""
import urllib.request, urllib.error
out = []
try:
    open({str(secret)!r}).read()
    out.append("secret read")
except OSError:
    out.append("secret refused")
def code(path, data=None, headers={{}}):
    req = urllib.request.Request({url!r} + path, data=data, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
for path in ["/", "/unsafe", "/phones", "/library", "/events", "/thumb/{sha}",
             "/asset/{sha}", "/api/changes", "/static/app.js", "/restore/1"]:
    out.append(code(path))
out.append(code("/", headers={{"Cookie": "photod_session=9999999999.{"a" * 32}.{"b" * 64}"}}))
out.append(code("/login?t=9999999999.{"a" * 32}.{"b" * 64}"))
out.append(code("/restore", data=b"dest=/tmp/stolen&assets={sha}"))
out.append(code("/", headers={{"Cookie": {stolen!r}}}))
out.append(code("/library", headers={{"Cookie": {stolen!r}}}))
# ... from a socket bound to the loopback device (SO_BINDTODEVICE, any user may): the
# kernel's lookup for the default device finds no such socket, which is no one's
import http.client, socket
bound = socket.socket()
bound.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
bound.settimeout(10)
host, port = {url!r}.split("//")[1].split("/")[0].rsplit(":", 1)
bound.connect((host, int(port)))
conn = http.client.HTTPConnection(host, int(port))
conn.sock = bound
for path in ["/", "/thumb/{sha}"]:
    conn.request("GET", path, headers={{"Cookie": {stolen!r}}})
    answer = conn.getresponse()
    answer.read()
    out.append(answer.status)
print(out)
""")
    assert 0 == r.returncode, r.stderr
    assert "['secret refused', " + ", ".join(["401"] * 17) + "]" == r.stdout.strip()
    assert not Path("/tmp/stolen").exists()
    assert (kernel == "table") == bool(p.events("dashboard_peer_table"))


def test_a_login_from_a_connection_no_one_holds_makes_no_session_and_spends_no_link(
    setup: Setup,
) -> None:
    """A login link sent on a connection whose end was closed before photod looked (so
    the kernel names no one for it): no session is made (one bound to no one would let
    in any user who stole its cookie) and the link stays good, for the owner's next
    try.  It made such a session, and spent the link."""
    p = daemon_on(setup, setup.inbox, extra='[dashboard]\nlisten = "127.0.0.1:0"\n').start()
    p.wait_event("dashboard_started")
    spared = []
    for _ in range(5):  # (photod may look before the close: then the link is spent, rightly)
        link = urllib.parse.urlsplit(p.cli("dashboard", "--no-browser").stdout.split()[0])
        with socket.create_connection((link.hostname, link.port)) as gone:
            gone.sendall(f"GET {link.path}?{link.query} HTTP/1.1\r\nHost: {link.netloc}\r\n"
                         "\r\n".encode())  # fmt: skip
        time.sleep(0.5)
        conn = http.client.HTTPConnection(link.hostname, link.port, timeout=10)
        conn.request("GET", f"{link.path}?{link.query}")
        answer = conn.getresponse()
        answer.read()
        conn.close()
        spared.append(answer.status)
    assert 303 in spared, spared  # the owner's own try, after: signed in
    assert 0 == p.stop()


def test_a_restore_another_user_asks_goes_only_into_their_own_folder(
    setup: Setup, intruder: User, samples: Path, shared: Path
) -> None:
    """photod runs as root; another local user signed in to its dashboard (with a login
    link the owner gave them) asks for restores.  Into a link in their own folder that
    leads to a folder of root's, or into a new folder beneath that link: refused, and
    nothing is written there (the folder is judged by the descriptor the restore writes
    through, not by the link's own owner), nor into a folder of root's inside their
    own.  Into their own folder: the photo, whole, and theirs (its folders too), so
    that they can move or delete it."""
    p = daemon_on(setup, setup.inbox, extra='[dashboard]\nlisten = "127.0.0.1:0"\n').start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    p.wait_event("dashboard_started")
    url = json.loads((setup.home / "state" / "dashboard.json").read_text())["url"]
    sha = hashlib.sha256((samples / "jpg_Canon_40D.jpg").read_bytes()).hexdigest()
    home = shared / "bob"
    home.mkdir()
    os.chown(home, intruder.uid, intruder.gid)
    roots = setup.home / "roots"  # root's (pytest's tmp is root's alone)
    roots.mkdir(mode=0o700)
    (home / "photos").symlink_to(roots)
    os.lchown(home / "photos", intruder.uid, intruder.gid)
    # Their folder, holding one of root's (where they could not write themselves).
    (home / "mixed" / "2008").mkdir(parents=True)
    os.chown(home / "mixed", intruder.uid, intruder.gid)
    link = urllib.parse.urlsplit(p.cli("dashboard", "--no-browser").stdout.split()[0])
    r = intruder.python(f"""
import http.client, json, time, urllib.parse
conn = http.client.HTTPConnection({link.hostname!r}, {link.port}, timeout=10)
def ask(method, path, body=None, headers={{}}):
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    return answer, answer.read()
answer, _ = ask("GET", {f"{link.path}?{link.query}"!r})
cookie = {{"Cookie": answer.getheader("set-cookie").split(";")[0]}}
page = ask("GET", "/library", headers=cookie)[1].decode()
csrf = page.split('name="csrf" content="')[1].split('"')[0]
out = []
for dest in ({str(home / "photos")!r}, {str(home / "photos" / "new")!r}, {str(home / "real")!r},
             {str(home / "mixed")!r}):
    form = urllib.parse.urlencode({{"dest": dest, "assets": {sha!r}}})
    answer, body = ask("POST", "/restore", form, {{**cookie, "X-CSRF-Token": csrf,
        "Origin": {url!r}, "Content-Type": "application/x-www-form-urlencoded"}})
    job = json.loads(body)
    while answer.status == 200 and job["state"] == "running":
        time.sleep(0.1)
        job = json.loads(ask("GET", "/restore/" + str(job["id"]), headers=cookie)[1])
    out.append((answer.status, job.get("state"), job.get("restored"),
                job.get("message") or str(job.get("failed"))))
print(json.dumps(out))
""")
    assert 0 == r.returncode, r.stderr
    into_link, beneath_link, own, mixed = json.loads(r.stdout)
    for asked in (into_link, beneath_link):
        assert asked[1] != "done" and "is not a folder of yours" in (asked[3] or ""), asked
    assert [] == list(roots.iterdir()), "nothing is written into root's folder"
    assert mixed[1] == "failed" and "another user's folder" in mixed[3], mixed
    assert [] == list((home / "mixed" / "2008").iterdir())
    assert [200, "done", 1] == own[:3], own
    [restored] = [f for f in (home / "real").rglob("*") if f.is_file()]
    assert sha == hashlib.sha256(restored.read_bytes()).hexdigest()
    for made in (restored, *[d for d in (home / "real").rglob("*") if d.is_dir()], home / "real"):
        st = made.stat()
        assert (intruder.uid, intruder.gid) == (st.st_uid, st.st_gid), made
    assert 0 == p.stop()


def test_a_config_another_user_can_change_is_refused(
    setup: Setup, intruder: User, shared: Path
) -> None:
    """The config decides what photod reads and where it copies it: one that another
    user owns (the file swapped for a link to theirs) or that every user may write is
    refused in one line by `run`, `config check` and `reload`, and a SIGHUP keeps the
    daemon on the config it runs (`config_invalid`, never `daemon_reloaded`)."""
    p = daemon_on(setup, setup.inbox).start()
    theirs = shared / "photod.toml"
    theirs.write_text(p.config.read_text().replace('retry_max = "2s"', 'retry_max = "9s"'))
    os.chown(theirs, intruder.uid, intruder.gid)
    theirs.chmod(0o644)
    mine = p.config.read_text()
    p.config.unlink()
    p.config.symlink_to(theirs)
    want = (
        f"{p.config}: links to {theirs}, a file of user {intruder.name}, who could make photod "
        "copy your photos anywhere; allowed: a config of your own (or root's) that only "
        "its owner may change"
    )
    for args in (["config", "check"], ["reload"], ["run", "--once"]):
        r = p.cli(*args)
        assert (78, [want]) == (r.returncode, r.stderr.splitlines()), args
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    [invalid] = p.wait_event("config_invalid")
    assert [want] == invalid["problems"]
    assert [] == p.events("daemon_reloaded")
    assert p.proc.poll() is None  # type: ignore[union-attr]

    p.config.unlink()
    p.config.write_text(mine)
    p.config.chmod(0o666)
    r = p.cli("config", "check")
    assert 78 == r.returncode
    assert [f"{p.config}: every user may change it (mode 666); allowed: a config of your "
            f"own (or root's) that only its owner may change, run `chmod 600 {p.config}`"
            ] == r.stderr.splitlines()  # fmt: skip
    p.config.chmod(0o600)
    assert 0 == p.cli("config", "check").returncode
    assert 0 == p.stop()


def test_another_users_folder_for_the_control_socket_in_tmp_is_left_to_them(
    setup: Setup, intruder: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user makes, before photod's first start, the folder in /tmp where a
    daemon whose runtime dir is too deep puts its control socket (its name is known):
    the daemon refuses to start and says why, and their folder stays, untouched (the
    stop that removes the one photod's user left there after a crash never removes
    theirs), and so does what they put in it: their own `control.sock` (photod's stop
    removed it, a file in a folder it had refused)."""
    p, sock = deep_daemon(setup, monkeypatch)
    sock.parent.mkdir(mode=0o777)
    os.chown(sock.parent, intruder.uid, intruder.gid)
    try:
        made = intruder.python(f"open({str(sock)!r}, 'x').write('theirs')")
        assert 0 == made.returncode, made.stderr
        r = p.cli("run")
        assert 0 != r.returncode and "belongs to another user" in r.stderr, r.stdout + r.stderr
        st = sock.parent.lstat()
        assert (True, intruder.uid) == (stat.S_ISDIR(st.st_mode), st.st_uid)
        assert sock.is_file(), "photod's stop removed their control.sock"
        assert (intruder.uid, "theirs") == (sock.lstat().st_uid, sock.read_text())
    finally:
        shutil.rmtree(sock.parent, ignore_errors=True)


def _another_users_photod(
    setup: Setup, intruder: User, state: Path
) -> tuple[Callable[[Path], None], Callable[..., subprocess.CompletedProcess[str]]]:
    """A photod whose state dir ``state`` and logs are another user's (a service user's,
    ``intruder`` here: its photod run once, then its files given to it), on a config
    every user may read (as /etc/photod's): (``theirs``, giving a folder to that user,
    0700; ``photod_as``, a photod command run on that config by root without the
    capabilities that let it ignore modes, so that they bind it as any other user: a
    second user could not load this checkout's photod where it is under /root)."""
    need("setpriv", "apt install util-linux")
    config = write_config(
        setup.home / "system.toml",
        [{"name": "inbox", "type": "folder", "path": str(setup.inbox)}],
        [{"name": "lib", "type": "local", "path": str(setup.home / "lib")}],
        {"copies": 1, "media": 1, "offsite": 0},
        f'\n[daemon]\nstate_dir = "{state}"\nlog_dir = "{setup.home}/syslog"\n',
    )
    (setup.inbox / "a.jpg").write_bytes(JPEG)
    p = setup.factory(config)
    assert 0 == p.cli("run", "--once").returncode
    assert 0 == p.cli("status").returncode

    def theirs(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, intruder.uid, intruder.gid, follow_symlinks=False)
        folder.chmod(0o700)

    theirs(setup.home / "syslog")
    bound = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search", "--"]  # fmt: skip

    def photod_as(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*bound, *p.cli_command(), *command], env=p.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    return theirs, photod_as


def test_a_catalog_shared_with_a_group_is_never_given_to_the_user_who_asks(
    setup: Setup, intruder: User
) -> None:
    """The state dir of another user's photod is shared with a group (0750) and its
    catalog made readable to it: a member asking `photod status` was told to `sudo
    chown` that catalog to themselves (exit 65), which would take it from that photod.
    It is told whose it is and to ask as that user, exit 77, and nothing changes hands."""
    state = setup.home / "srv" / "state"  # (as /var/lib/photod: not in the asker's folder)
    theirs, photod_as = _another_users_photod(setup, intruder, state)
    theirs(state.parent)
    state.parent.chmod(0o755)
    for path in (state, *state.glob("catalog.sqlite*")):
        os.chown(path, intruder.uid, 0)  # (the group: root's, the asker's)
        path.chmod(0o750 if path.is_dir() else 0o640)
    r = photod_as("status")
    assert 77 == r.returncode, r.stdout + r.stderr
    assert "chown" not in r.stderr.replace("never chown", ""), r.stderr
    assert (f"it is {intruder.name}'s photod's (its state dir is {intruder.name}'s): ask as "
            f"that user, `sudo -u {intruder.name} photod ...` with the same --config"
            ) in r.stderr, r.stderr  # fmt: skip
    assert intruder.uid == (state / "catalog.sqlite").stat().st_uid
    # In the asker's own folder (its HOME, where `sudo photod` made the state dir as
    # another user): its own photod's, which a chown mends, and that is what it says.
    os.chown(state.parent, os.geteuid(), 0)
    r = photod_as("status")
    assert 65 == r.returncode and f"`sudo chown {os.geteuid()} " in r.stderr, r.stderr


def test_a_state_dir_reached_by_a_link_names_the_folder_that_keeps_the_user_out(
    setup: Setup, intruder: User
) -> None:
    """The config names a link to a state dir in a folder only its user may enter: the
    line names that folder (it named the link's own folder, one anyone may enter)."""
    closed = setup.home / "closed"
    (closed / "state").mkdir(parents=True)
    link = setup.home / "state-link"
    link.symlink_to(closed / "state")
    theirs, photod_as = _another_users_photod(setup, intruder, link)
    theirs(closed)
    r = photod_as("status")
    assert 77 == r.returncode, r.stdout + r.stderr
    assert f"({closed} is {intruder.name}'s, mode 0700)" in r.stderr, r.stderr


def test_status_by_a_user_who_may_not_enter_the_state_dir_says_whose_it_is(
    setup: Setup, intruder: User
) -> None:
    """Another user's photod (a service user's, on a system-wide config every user may
    read), its state dir in a folder only that user may enter.  A user runs `photod
    status` on that config (as one without a config of their own does): one line says
    which folder keeps them out, whose it is, and to ask as that user (exit 77,
    EX_NOPERM).  It was a traceback (Path.exists raises PermissionError there, it does
    not answer False)."""
    closed = setup.home / "closed"
    state = closed / "state"
    theirs, photod_as = _another_users_photod(setup, intruder, state)
    theirs(closed)
    r = photod_as("status")
    assert "Traceback" not in r.stderr, r.stderr
    assert 77 == r.returncode, r.stdout + r.stderr
    assert [
        f"photod: this user may not look into the state dir {state} ({closed} is "
        f"{intruder.name}'s, mode 0700), where the catalog photod reports on is; ask as the "
        f"user photod runs as: `sudo -u {intruder.name} photod status` (with the same "
        "--config, if you gave one)"
    ] == r.stderr.splitlines()
    # The other commands that read the catalog or the logs say the file in one line too,
    # exit 77 (they were tracebacks).
    for command, file in (
        (["restore", "--target", "lib", str(setup.home / "back")], state / "catalog.sqlite"),
        (["albums"], state / "catalog.sqlite"),
        (["recovery-plan"], state / "catalog.sqlite"),
        (["logs"], setup.home / "syslog" / "photod.jsonl"),
    ):
        r = photod_as(*command)
        assert 77 == r.returncode, (command, r.stderr)
        assert [
            f"photod: permission denied: {file} ({intruder.name}'s: run the command as the "
            "user photod runs as)"
        ] == r.stderr.splitlines(), command
