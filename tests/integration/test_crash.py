"""Crash consistency.  A real `photod run` is killed with SIGKILL (a power cut, as far as
the process can tell: no handler runs, nothing is flushed) at 50 random moments while
it ingests and copies 500 files, photos and a few large videos, and restarted each
time; and at each exact moment between the steps of a copy (failpoints).

After every kill nothing partial is visible under a final name on any target; at the
end every file is on every target exactly once, verified, no temporary is left, the
checksum lists pass `sha256sum -c` and list every file, the catalog passes `PRAGMA integrity_check` and agrees
with the targets, and no copy was written twice.  ``PHOTOD_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Photod, sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("PHOTOD_CRASH_SEED", "20261201"))
JPEG = (SAMPLES / "jpg_Canon_40D.jpg").read_bytes() if SAMPLES.is_dir() else b""


def add_photo(inbox: Path, n: int, rng: random.Random) -> Path:
    """A unique photo of 0.5-3 MB, as phones make them: a real JPEG padded after its
    data."""
    path = inbox / f"roll{n % 7}" / f"IMG_{n:04d}.JPG"
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = rng.randbytes(rng.randint(500_000, 3_000_000))
    path.write_bytes(JPEG + pad + n.to_bytes(4, "big"))
    return path


def add_video(inbox: Path, n: int, mb: int) -> Path:
    path = inbox / "videos" / f"MOV_{n:04d}.MOV"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
        f.write((8 + mb * (1 << 20)).to_bytes(4, "big") + b"mdat")  # (whole: not waited for)
        for i in range(mb):
            f.write(block[:-8] + (n * 1000 + i).to_bytes(8, "big"))
    return path


def spawn(p: Photod, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`photod run`, not waited for: a kill may land during start-up too."""
    if getattr(p, "out", None) is not None:
        p.out.close()
    p.out = open(p.output, "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "photod", "--config", str(p.config), "run"]
    p.proc = subprocess.Popen(cmd, env={**p.env, **(env or {})}, stdout=p.out, stderr=p.out)
    return p.proc


class Visible:
    """What a person sees on the targets: every file under a final name must be one of
    the originals, whole.  Hashes are cached by (size, mtime, inode)."""

    def __init__(self, roots: list[Path], originals: dict[str, str]) -> None:
        self.roots = roots
        self.originals = originals
        self.seen: dict[tuple[str, int, int, int], str] = {}

    def check(self) -> None:
        good = set(self.originals.values())
        for root in self.roots:
            for path in root.rglob("*"):
                rel = path.relative_to(root).as_posix()
                if not path.is_file() or rel.startswith(".photod/") or "/.photod-" in f"/{rel}":
                    continue
                st = path.stat()
                key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
                if key not in self.seen:
                    self.seen[key] = sha256(path)
                assert self.seen[key] in good, f"{path} is not a whole original"


def assert_consistent(p: Photod, roots: list[Path], originals: dict[str, str]) -> None:
    """Every original on every target exactly once, verified, and the catalog agrees."""
    want = sorted(originals.values())
    db = sqlite3.connect(p.home / "state" / "catalog.sqlite")
    try:
        assert [("ok",)] == db.execute("PRAGMA integrity_check").fetchall()
        assert len(want) == db.execute("SELECT count(*) FROM assets").fetchone()[0]
        assert [] == db.execute("SELECT * FROM temp_files").fetchall()
        for root in roots:
            held = target_files(root)
            assert want == sorted(held.values()), f"{root}: each original exactly once"
            assert_target_holds(root, held)  # no temporaries; sha256sum -c passes
            assert [] == [q.name for q in root.rglob(".photod-*")]  # not in .photod/ either
            rows = db.execute(
                "SELECT relpath, asset FROM replicas WHERE target=? AND state='verified'",
                (root.name,),
            ).fetchall()
            assert held == dict(rows), f"{root}: the catalog agrees with the target"
    finally:
        db.close()
    # No copy was written twice: a copy that landed is never made again (a restart
    # adopts a published copy the catalog had not recorded yet).
    writes = collections.Counter(
        (e["asset"], e["target"])
        for e in p.events("replica_written")
        if e.get("method") != "existing"
    )
    assert [] == [k for k, n in writes.items() if n > 1]


def targets(setup: Setup) -> tuple[list[Path], Photod]:
    roots = [setup.home / "lib", setup.home / "ext"]
    roots[1].mkdir()  # (photod makes no drive's folder on the system disk)
    p = setup.photod(
        [{"name": "lib", "path": str(roots[0])},
         {"name": "ext", "path": str(roots[1]), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    )  # fmt: skip
    return roots, p


@pytest.mark.campaign
def test_killed_at_50_random_moments_loses_nothing_and_copies_nothing_twice(
    setup: Setup,
) -> None:
    """50 lives of a daemon, each ended by SIGKILL at a random moment (during start-up,
    a scan, a copy, a read-back, a catalog write); 10 new photos arrive before each life
    and a 40 MB video before every tenth, so that most kills land in the middle of work."""
    rng = random.Random(SEED)
    roots, p = targets(setup)
    visible = Visible(roots, {})
    n = 0
    kills = []
    cut = 0  # lives whose kill left a copy half written
    for life in range(50):
        for _ in range(10):
            n += 1
            visible.originals[str(add_photo(setup.inbox, n, rng))] = ""
        if life % 10 == 4:
            visible.originals[str(add_video(setup.inbox, life, 40))] = ""
        for path, h in list(visible.originals.items()):
            visible.originals[path] = h or sha256(Path(path))
        started = len(p.events("daemon_started"))
        written = len(p.events("replica_written"))
        proc = spawn(p)
        if life % 3 == 0:  # during start-up: the lock, the catalog, the targets' tidy
            delay = rng.uniform(0.05, 1.2)
        elif life % 3 == 1:  # while it scans and settles what arrived
            p.wait_event("daemon_started", count=started + 1)
            delay = rng.uniform(0.0, 0.5)
        else:  # while it copies: within moments of this life's first copy
            p.wait_event("replica_written", count=written + 1)
            delay = rng.uniform(0.0, 0.25)
        time.sleep(delay)
        assert proc.poll() is None, f"photod died by itself:\n{p.output.read_text()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(round(delay, 2))
        visible.check()
        cut += any(any(r.rglob(".photod-*.tmp")) for r in roots)
    assert 50 == len(kills)

    p.start()
    p.wait_protected(len(visible.originals), timeout=180)
    assert 0 == p.stop()
    originals = {Path(k).name: v for k, v in visible.originals.items()}
    assert_consistent(p, roots, originals)
    assert 505 == len(originals)
    assert cut >= 5, f"only {cut} of 50 kills landed mid-copy (seed {SEED})"


# Each step of a copy, and what the next start has to do about a kill right after it.
STEPS = [
    ("replica_opened", "a temporary exists, not yet in the catalog's list to clean"),
    ("replica_synced", "the copy is durable and read back, not yet published"),
    ("replica_published", "published under its final name, not yet in the catalog"),
    ("replica_recorded", "in the catalog, not yet in the target's list"),
    ("meta_written", "a list segment or snapshot is half written (its temporary written)"),
]


@pytest.mark.parametrize(("failpoint", "moment"), STEPS, ids=[s[0] for s in STEPS])
def test_a_kill_between_two_steps_of_a_copy_is_repaired_at_the_next_start(
    setup: Setup, failpoint: str, moment: str
) -> None:
    """SIGKILL at the third time a copy reaches this step; the next start cleans up and
    completes, and the invariants hold as after the random campaign."""
    rng = random.Random(SEED)
    roots, p = targets(setup)
    if failpoint == "meta_written":
        # Once the targets are set up (one file backed up), the next metadata write is
        # a list segment or a snapshot: the kill lands in the middle of it.
        first = add_photo(setup.inbox, 0, rng)
        p.start()
        p.wait_protected(1)
        assert 0 == p.stop()
        hit = "1:kill"
    else:
        first = None
        hit = "3:kill"
    paths = [add_photo(setup.inbox, i, rng) for i in range(1, 13)]
    proc = spawn(p, {"PHOTOD_FAILPOINTS": f"{failpoint}={hit}"})
    wait_for(lambda: proc.poll() is not None, 60, f"the kill at {failpoint} ({moment})")
    assert -signal.SIGKILL == proc.returncode
    Visible(roots, {str(q): sha256(q) for q in paths + ([first] if first else [])}).check()
    p.start()
    p.wait_protected(len(paths) + (1 if first else 0), timeout=60)
    assert 0 == p.stop()
    originals = {q.name: sha256(q) for q in paths + ([first] if first else [])}
    assert_consistent(p, roots, originals)


def test_what_a_kill_mid_snapshot_or_mid_drill_leaves_goes_at_the_next_start(
    setup: Setup,
) -> None:
    """Killed while it made a catalog snapshot (a full copy of the catalog in the state
    dir) or while a drill restored photos there: what it left stayed for ever.  The next
    photod to take the state dir (the daemon, or a command in the foreground) removes it
    (`scratch_removed`); one that finds the state dir taken (a photod runs) removes
    nothing of the running one's work."""
    from tests.integration.test_truth import make_photos

    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    make_photos(setup.inbox, 3, size=2_500_000)  # (a drill restores each in 1 MiB pieces)
    state = setup.home / "state"

    def scratch() -> list[str]:
        return sorted(f.name.rpartition("-")[0] for f in state.glob("photod-*-*") if f.is_dir())

    def killed(failpoint: str, *args: str) -> None:
        r = subprocess.run([*p.cli_command(), *args], capture_output=True, timeout=120,
                           env={**p.env, "PHOTOD_FAILPOINTS": failpoint})  # fmt: skip
        assert -signal.SIGKILL == r.returncode, r.stderr

    killed("snapshot_copied=kill", "run", "--once")
    assert ["photod-snapshot"] == scratch()
    assert [] != list(state.glob("photod-snapshot-*/catalog.sqlite"))
    killed("restore_chunk=2:kill", "drill")  # (a command in the foreground holds the lock too)
    assert ["photod-drill"] == scratch()
    p.start()
    assert [] == scratch()
    swept = [
        (e["paths"][0].rpartition("-")[0], e["bytes"] > 0) for e in p.events("scratch_removed")
    ]
    assert [("photod-snapshot", True), ("photod-drill", True)] == swept
    (state / "photod-drill-inflight").mkdir()  # the running photod's, as far as anyone knows
    assert 75 == p.cli("run", "--once").returncode  # (the state dir is taken)
    assert ["photod-drill"] == scratch()
    assert 0 == p.stop()


def rcds(home: Path) -> list[int]:
    """pids of every `rclone rcd` of a photod whose state is under `home` (its rclone.conf
    is there): other tests' photods, on other workers, start rcds of their own."""
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "rcd" in cmd and any(a.startswith(f"{home}/") for a in cmd):
            out.append(proc.pid)
    return out


def test_killed_mid_upload_leaves_no_rclone_behind_and_completes(setup: Setup) -> None:
    """An offsite target behind rclone (a local remote here, driven through `rclone
    rcd`): photod is killed five times in the middle of uploads.  Each next start stops
    the rcd the killed one left running, the uploads complete, each file is on the
    remote exactly once with nothing left in its temporary folder, and once photod
    stops no rclone process is left."""
    rng = random.Random(SEED)
    lib, remote = setup.home / "lib", setup.home / "offsite"
    remote.mkdir()
    before = set(rcds(setup.home))
    extra = (
        f'\n[[targets]]\nname = "cloud"\ntype = "rclone"\nremote = "dir:{remote}"\n'
        'rclone_config = { type = "local" }\ntransfers = 2\nmedia = "cloud"\noffsite = true\n'
    )
    p = setup.photod([{"name": "lib", "path": str(lib)}],
                     policy={"copies": 2, "media": 2, "offsite": 1}, extra=extra)  # fmt: skip
    # [[targets]] after [daemon] and [ingest] would belong to them: move it up.
    text = p.config.read_text()
    p.config.write_text(text.replace(extra, "").replace("\n[daemon]", extra + "\n[daemon]", 1))
    paths: list[Path] = []
    for life in range(5):  # new photos (and once a video) each time: uploads to cut
        paths += [add_photo(setup.inbox, life * 100 + i, rng) for i in range(10)]
        if life == 2:
            paths.append(add_video(setup.inbox, 1, 40))
        uploaded = sum(e.get("target") == "cloud" for e in p.events("replica_written"))
        proc = spawn(p)
        p.wait_event("replica_written", count=uploaded + 1, target="cloud", timeout=60)
        assert 1 == len(set(rcds(setup.home)) - before), "the killed photod's rcd was not stopped"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    p.start()
    p.wait_protected(len(paths), timeout=120)
    assert 0 == p.stop()
    wait_for(lambda: not set(rcds(setup.home)) - before, 10, "no rclone rcd left")
    held = target_files(remote)
    assert sorted(sha256(q) for q in paths) == sorted(held.values())
    assert [] == [q for q in (remote / ".photod" / "tmp").rglob("*") if q.is_file()]
