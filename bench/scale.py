"""How photod scales: a large catalog, a large tree, one photo's way to safety.

    python bench/scale.py reconcile [--files 100000] [--rounds 3] [--workdir DIR]
    python bench/scale.py status [--assets 250000,500000,1000000] [--workdir DIR]
    python bench/scale.py latency [--photos 100] [--workdir DIR]
    python bench/scale.py check [--assets 1000000] [--workdir DIR]
    python bench/scale.py shared [--entries 1000000] [--workdir DIR]

reconcile  `photod run` starts on a watch folder of --files files that are all in the
           catalog already (unchanged since): the time of its start-up scan (its
           `scan_finished` duration, and spawn to scan end), against
           `rsync -a --dry-run` of the same tree to an identical copy: what a person
           would run to find what is new.  Goal: photod <= 1.0 x rsync.  Also the CPU
           seconds (user + sys) at the scan's end of photod's process and of its scan's
           thread: what a busy machine does not change, where the times move with load.
status     `photod status --json` on synthetic catalogs of N assets x 3 targets (built
           through photod's own schema, then filled in one transaction), against
           `sqlite3 catalog.sqlite "SELECT count(*) ..."` as the floor of any report.
           The first run of each size checks the config in full and keeps the check in
           the state dir; it is printed apart.  Goal: under 0.15 s at 100,000 (issue
           17), under 1 s at 1,000,000, and growing no worse than linearly.
latency    5 MB photos land in the watch folder one by one (written and closed, as a
           camera app or sync client does); from the close to `asset_protected`
           (three local targets, policy 3-2-1 met), at the default settle time.
           Against `rsync -a --fsync` of the same file to three folders (no watching,
           no read-back).  Goal: p50 under 1 s, p99 under 3 s.
check      the catalog check before the daemon acts (``catalog_guard.settle``: SQLite's
           quick_check of every page, the state dir, the records on three local
           targets) on a catalog of N assets x 3 targets, warm and with the page cache
           dropped, against `sqlite3 catalog.sqlite "PRAGMA quick_check"` (SQLite reading
           every page: the floor of any sound check).  Goal: under 1 s added at 1M.
shared     the look for another installation's copy before an upload, with N entries of
           another computer on the target (an indexed query of the catalog), against one
           HEAD request to a loopback S3 server (the least an upload asks to know whether
           the name is free); and the first read of that computer's list.

Prints a report and RESULT lines for `bench/all`; copy them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import photod  # noqa: E402
from bench.floors import walk_time  # noqa: E402
from bench.report import result  # noqa: E402
from photod.catalog import Catalog  # noqa: E402

SAMPLE_JPEG = ROOT.parent / "shared" / "samples" / "jpg_Canon_40D.jpg"


def write_config(home: Path, targets: list[tuple[str, str, bool]], policy: str) -> Path:
    lines = [f"[policy]\n{policy}", '[[sources]]\nname = "inbox"\ntype = "folder"\n'
             f'path = "{home / "inbox"}"']  # fmt: skip
    for name, media, offsite in targets:
        (home / name).mkdir(parents=True, exist_ok=True)  # (no drive's folder is made on /)
        lines.append(f'[[targets]]\nname = "{name}"\ntype = "local"\npath = "{home / name}"\n'
                     f'media = "{media}"\noffsite = {str(offsite).lower()}\ncreate = true')  # fmt: skip
    lines.append(f'[daemon]\nstate_dir = "{home / "state"}"\nlog_dir = "{home / "log"}"\n'
                 'log_max_size = "1GiB"')  # fmt: skip
    path = home / "photod.toml"
    path.write_text("\n\n".join(lines) + "\n")
    return path


def env(home: Path) -> dict[str, str]:
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}


class Log:
    """Follows photod.jsonl from where it last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = None
        self.buf = ""

    def events(self) -> list[dict[str, object]]:
        if self.f is None:
            if not self.path.exists():
                return []
            self.f = open(self.path, encoding="utf-8")  # noqa: SIM115
        self.buf += self.f.read()
        lines, _, self.buf = self.buf.rpartition("\n")
        out = []
        for line in lines.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait(self, name: str, timeout: float = 600, **match: object) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                    return e
            time.sleep(0.01)
        raise SystemExit(f"timed out waiting for {name} {match}")


def fill_catalog(path: Path, rows: list[tuple[str, str, int, int]], targets: list[str]) -> None:
    """Assets (sha, relpath in the folder, size, mtime_ns), each verified on every
    target and seen in the 'inbox' folder, in one transaction through photod's schema."""
    catalog = Catalog(path)  # creates the schema and runs the migrations
    db = catalog._db
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    held = "\0".join(sorted(targets))
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO assets (sha256, size, kind, format, relpath, captured_at, capture_source,"
        " decodable, problem, first_source, first_path, added_at, held)"
        " VALUES (?,?,'photo','jpeg',?,'2020-01-01T00:00:00','exif',1,'','inbox',?,?,?)",
        ((sha, size, f"lib/{rel}", rel, now, held) for sha, rel, size, _ in rows),
    )
    for t in targets:
        db.executemany(
            "INSERT INTO replicas (asset, target, state, relpath, size, verified_at, method,"
            " checked_at, check_method, check_result, listed_at)"
            " VALUES (?,?,'verified',?,?,?,'readback',?,'readback','ok',?)",
            ((sha, t, f"lib/{rel}", size, now, now, now) for sha, rel, size, _ in rows),
        )
    db.executemany(
        "INSERT INTO source_files (source, path, size, mtime_ns, asset, seen_at, checked_at)"
        " VALUES ('inbox',?,?,?,?,?,?)",
        ((rel, size, mtime, sha, now, now) for sha, rel, size, mtime in rows),
    )
    db.execute("COMMIT")
    catalog.close()


def fill_phone(path: Path, udid: str, n: int, targets: list[str]) -> list[str]:
    """A phone ``udid`` of ``n`` photos (``/DCIM/1xxAPPLE/IMG_n.JPG``), each imported
    and verified on every target (``fill_catalog``); returns their SHA-256s, in order."""
    shas = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(n)]
    fill_catalog(path, [(sha, f"{2010 + i % 15}/IMG_{i:07d}.JPG", 1000 + i, 10**18 + i)
                        for i, sha in enumerate(shas)], targets)  # fmt: skip
    catalog = Catalog(path)
    db = catalog._db
    db.execute("BEGIN")
    db.execute("INSERT INTO devices VALUES (?, 'iphone', 'Anna', 'iPhone', '17.5', 'idle', '',"
               " '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z', '{}')", (udid,))  # fmt: skip
    db.executemany("INSERT INTO device_files VALUES (?,?,?,?,?,?,'')",
                   ((udid, f"/DCIM/{100 + i // 1000}APPLE/IMG_{i:07d}.JPG", 1000 + i, 10**18 + i,
                     f"{2005 + i % 15}-{1 + i % 12:02d}-01T10:00:00", sha)
                    for i, sha in enumerate(shas)))  # fmt: skip
    db.execute("COMMIT")
    catalog.close()
    return shas


def fill_target(folder: Path, target: Path) -> None:
    """The copies ``fill_catalog`` says ``target`` holds, there (real copies: a hard link
    to the source is no second copy, and photod would make one while it is timed)."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(folder), str(target / "lib")], check=True)


def reconcile(args: argparse.Namespace, home: Path) -> None:
    inbox = home / "inbox"
    rows = []
    past = time.time() - 86400
    for i in range(args.files):
        rel = f"{2010 + i % 15}/{i // 1000 % 100:02d}/IMG_{i:06d}.JPG"
        path = inbox / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"\xff\xd8\xff" + i.to_bytes(8, "big")
        path.write_bytes(data)
        os.utime(path, (past, past))
        rows.append((hashlib.sha256(data).hexdigest(), rel, len(data), path.stat().st_mtime_ns))
    cfg = write_config(home, [("library", "internal", False)], "copies = 1\nmedia = 1\noffsite = 0")
    fill_catalog(home / "state" / "catalog.sqlite", rows, ["library"])
    fill_target(inbox, home / "library")
    copy = home / "copy"
    subprocess.run(["cp", "-al", str(inbox), str(copy)], check=True)  # identical: nothing new
    e = env(home)
    log = Log(home / "log" / "photod.jsonl")
    scans, walls, rsyncs, walks, cpus, scan_cpus = [], [], [], [], [], []
    for r in range(args.rounds):
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "photod", "--config", str(cfg), "run"],
                                env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        done = log.wait("scan_finished", source="inbox")
        walls.append(time.monotonic() - t0)
        scans.append(float(done["duration"]))  # type: ignore[arg-type]
        cpu, scan_cpu = cpu_seconds(proc.pid)
        cpus.append(cpu)
        scan_cpus.append(scan_cpu)
        assert done["changed"] == 0 and done["files"] == args.files, done
        proc.terminate()
        proc.wait(timeout=60)
        t0 = time.monotonic()
        subprocess.run(["rsync", "-a", "--dry-run", f"{inbox}/", f"{copy}/"], check=True)
        rsyncs.append(time.monotonic() - t0)
        walks.append(walk_time(inbox))  # the floor: one walk that stats every file
        print(f"round {r + 1}: photod scan {scans[-1]:.2f} s (spawn to scan end {walls[-1]:.2f} s)"
              f", rsync -a --dry-run {rsyncs[-1]:.2f} s; CPU to scan end {cpus[-1]:.2f} s, "
              f"of which the scan's thread {scan_cpus[-1]:.2f} s", flush=True)  # fmt: skip
    scan, wall, rs, walk = (statistics.median(x) for x in (scans, walls, rsyncs, walks))
    print(f"median CPU (user + sys) to the scan's end: {statistics.median(cpus):.2f} s, of which "
          f"the scan's thread {statistics.median(scan_cpus):.2f} s")  # fmt: skip
    print(f"floor: find -type f -printf '%s %T@' (one walk, a stat of each file): {walk:.2f} s")
    print(f"median: photod scan {scan:.2f} s, spawn to scan end {wall:.2f} s, rsync {rs:.2f} s; "
          f"photod / rsync {scan / rs:.2f} (scan), {wall / rs:.2f} (with start-up)")  # fmt: skip
    found = "find -printf size, mtime (a walk and a stat of each file)"
    result("scale", f"reconcile {args.files:,} unchanged files (scan)", scan, rs,
           "rsync -a --dry-run", goal="<= 1.0 x", met=scan <= rs, floor=walk,
           floor_tool=found)  # fmt: skip
    result("scale", f"reconcile {args.files:,} unchanged files (with start-up)", wall, rs,
           "rsync -a --dry-run", goal="<= 1.2 x (issue 21)", met=wall <= 1.2 * rs, floor=walk,
           floor_tool=found)  # fmt: skip


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + sys) of a process, and of its busiest thread but the main one
    (at a scan's end: the scan's; the catalog's check in the background uses less)."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    threads = [t.user_time + t.system_time for t in proc.threads() if t.id != pid]
    return times.user + times.system, max(threads, default=0.0)


def status(args: argparse.Namespace, home: Path) -> None:
    targets = [("lib", "internal", False), ("t7", "external", False), ("cloud", "cloud", True)]
    sizes = [int(n) for n in args.assets.split(",")]
    e = env(home)
    per = []
    for n in sizes:
        work = home / f"n{n}"
        work.mkdir()
        (work / "inbox").mkdir()
        cfg = write_config(work, targets, "copies = 3\nmedia = 2\noffsite = 1")
        for name, _, _ in targets:
            (work / name).mkdir()
        t0 = time.monotonic()
        rows = [(hashlib.sha256(i.to_bytes(8, "big")).hexdigest(), f"{i // 1000}/IMG_{i}.JPG",
                 2_000_000 + i % 1_000_000, 0) for i in range(n)]  # fmt: skip
        fill_catalog(work / "state" / "catalog.sqlite", rows, [t[0] for t in targets])
        built = time.monotonic() - t0
        times, floors, bare = [], [], []
        for _ in range(args.rounds):
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-c", "pass"], env=e, check=True)
            bare.append(time.monotonic() - t0)
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "photod", "--config", str(cfg), "status",
                                "--json"], env=e, capture_output=True, text=True, check=True)  # fmt: skip
            times.append(time.monotonic() - t0)
            report = json.loads(r.stdout)
            assert report["assets"] == n and report["policy"]["compliant"] == n, report["policy"]
            t0 = time.monotonic()
            subprocess.run(["sqlite3", str(work / "state" / "catalog.sqlite"),
                            "SELECT count(*), sum(size) FROM assets"], check=True,
                           capture_output=True)  # fmt: skip
            floors.append(time.monotonic() - t0)
        t, floor = statistics.median(times), statistics.median(floors)
        start = statistics.median(bare)
        per.append((n, t))
        print(f"{n:>9,} assets x 3 targets: photod status --json {t:.3f} s, python3 -c pass "
              f"{start:.3f} s, sqlite3 count {floor:.3f} s (medians of {args.rounds}; catalog "
              f"built in {built:.0f} s)", flush=True)  # fmt: skip
        # The first status of a state dir validates the config in full and keeps the
        # result (``configcache``); the rounds after it use that, and so does the median.
        print(f"{'':>9}   first run (config checked in full): {times[0]:.3f} s", flush=True)
        result("scale", f"photod status, {n:,} assets x 3 targets", t, floor,
               "sqlite3 SELECT count(*), sum(size)", goal="< 0.15 s at 100,000",
               met=t < 0.15 if n == 100_000 else None)  # fmt: skip
        shutil.rmtree(work)
    if len(per) > 1:
        (n0, t0_), (n1, t1) = per[0], per[-1]
        growth = (t1 / t0_) / (n1 / n0)
        print(f"growth from {n0:,} to {n1:,}: time x{t1 / t0_:.2f} for assets x{n1 / n0:.0f} "
              f"({growth:.2f} of linear)")  # fmt: skip


def latency(args: argparse.Namespace, home: Path) -> None:
    targets = [("lib", "internal", False), ("t7", "external", False), ("nas", "nas", True)]
    cfg = write_config(home, targets, "copies = 3\nmedia = 2\noffsite = 1")
    (home / "inbox").mkdir()
    for name, _, _ in targets:
        (home / name).mkdir()
    e = env(home)
    log = Log(home / "log" / "photod.jsonl")
    proc = subprocess.Popen([sys.executable, "-m", "photod", "--config", str(cfg), "run"], env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    log.wait("daemon_started")
    time.sleep(2)
    jpeg = SAMPLE_JPEG.read_bytes()
    ours, theirs = [], []
    rsync_dirs = [home / f"rsync-{n}" for n, _, _ in targets]
    try:
        for i in range(args.photos):
            data = jpeg + os.urandom(5 * 1024 * 1024 - len(jpeg) - 8) + i.to_bytes(8, "big")
            sha = hashlib.sha256(data).hexdigest()
            path = home / "inbox" / f"IMG_{i:04d}.JPG"
            with open(path, "wb") as f:
                f.write(data)
            landed = time.time()  # closed: the file is complete
            event = log.wait("asset_protected", timeout=60, asset=sha)
            ts = datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()
            ours.append(ts - landed)
            t0 = time.monotonic()
            for d in rsync_dirs:
                subprocess.run(["rsync", "-a", "--fsync", str(path), f"{d}/"], check=True)
            theirs.append(time.monotonic() - t0)
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    ours.sort()
    theirs.sort()

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

    p50, p99 = pct(ours, 50), pct(ours, 99)
    r50, r99 = pct(theirs, 50), pct(theirs, 99)
    print(f"{args.photos} photos of 5 MB, landing -> policy met on 3 local targets:")
    print(f"  photod (settle, hash, 3 copies, fsync, read-back, catalog): p50 {p50:.3f} s, "
          f"p99 {p99:.3f} s, max {ours[-1]:.3f} s")  # fmt: skip
    print(f"  rsync -a --fsync to 3 folders (copy only):                 p50 {r50:.3f} s, "
          f"p99 {r99:.3f} s")  # fmt: skip
    result("scale", "5 MB photo: landing -> policy met, p50", p50, r50,
           "rsync -a --fsync x3", goal="< 1 s", met=p50 < 1)  # fmt: skip
    result("scale", "5 MB photo: landing -> policy met, p99", p99, r99,
           "rsync -a --fsync x3", goal="< 3 s", met=p99 < 3)  # fmt: skip


def drop_caches() -> bool:
    """Empty the page cache (root only); False when it cannot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def check(args: argparse.Namespace, home: Path) -> None:
    from photod import catalog_guard, config
    from photod.fleet import build_targets
    from photod.targets.records import Records

    n = int(args.assets.split(",")[-1])
    targets = [("lib", "internal", False), ("t7", "external", False), ("nas", "nas", False)]
    cfg_path = write_config(home, targets, "copies = 3\nmedia = 2\noffsite = 0")
    (home / "inbox").mkdir()
    t0 = time.monotonic()
    rows = [(hashlib.sha256(i.to_bytes(8, "big")).hexdigest(), f"{i // 1000}/IMG_{i}.JPG",
             2_000_000 + i % 1_000_000, 0) for i in range(n)]  # fmt: skip
    db = home / "state" / "catalog.sqlite"
    fill_catalog(db, rows, [t[0] for t in targets])
    print(f"catalog of {n:,} assets x 3 targets built in {time.monotonic() - t0:.0f} s "
          f"({db.stat().st_size / 1e9:.2f} GB)", flush=True)  # fmt: skip
    cfg = config.load(cfg_path)
    states = build_targets(cfg.targets_settings())
    first = catalog_guard.settle(cfg, states)  # a new installation: its identity is made
    assert first.action == "go", first
    assert first.me is not None
    for name, _, _ in targets:  # each target holds this installation's records, as in use
        states[name].target.check(None)
        Records(states[name].target, first.me).register()
    rounds: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for cold in ("warm", "cold"):
            if cold == "cold" and not drop_caches():
                continue
            t0 = time.monotonic()
            verdict = catalog_guard.settle(cfg, states)
            rounds.setdefault(f"start-{cold}", []).append(time.monotonic() - t0)
            assert verdict.action == "go" and not verdict.found, verdict
            t0 = time.monotonic()
            if verdict.unchecked:  # the rest of the page check, before the first write
                assert "" == catalog_guard.deep_check(db, threading.Event())
            rounds.setdefault(f"background-{cold}", []).append(time.monotonic() - t0)
            if cold == "cold":
                drop_caches()
            t0 = time.monotonic()
            subprocess.run(["sqlite3", str(db), "PRAGMA quick_check"], check=True,
                           capture_output=True)  # fmt: skip
            rounds.setdefault(f"floor-{cold}", []).append(time.monotonic() - t0)
    for state in states.values():
        state.target.close()
    for cold in ("warm", "cold"):
        if f"start-{cold}" not in rounds:
            continue
        start, rest, floor = (statistics.median(rounds[f"{k}-{cold}"])
                              for k in ("start", "background", "floor"))  # fmt: skip
        print(
            f"{cold} cache: added to the start {start:.2f} s, then in the background before "
            f"the first write {rest:.2f} s; sqlite3 quick_check {floor:.2f} s",
            flush=True,
        )
        result("scale", f"start-up catalog check, {n:,} assets x 3 targets ({cold} cache)",
               start, floor, "sqlite3 PRAGMA quick_check", goal="< 1 s added at 1,000,000",
               met=start < 1.0 if n >= 1_000_000 else None)  # fmt: skip
        result("scale", f"catalog check before the first write, {n:,} assets ({cold} cache)",
               start + rest, floor, "sqlite3 PRAGMA quick_check")  # fmt: skip


def shared(args: argparse.Namespace, home: Path) -> None:
    import random

    from photod import ledgers
    from photod.models import ManifestEntry
    from photod.targets.local import LocalTarget
    from photod.targets.records import Installation, Ledger, Records
    from photod.targets.s3 import S3Target
    from tests.servers import S3Server

    n = args.entries
    catalog = Catalog(home / "state" / "catalog.sqlite")
    nas = LocalTarget("nas", home / "nas", creates_root=True)
    nas.check(None)
    other = Installation("cd" * 16, "desktop")
    shas = [hashlib.sha256(i.to_bytes(8, "big")).hexdigest() for i in range(n)]
    ledger = Ledger(nas, other.folder)
    ledger.append(ManifestEntry(s, f"{i // 1000}/IMG_{i}.JPG") for i, s in enumerate(shas))
    ledger.flush()
    me = Records(nas, Installation("ab" * 16, "laptop"))
    t0 = time.monotonic()
    read = ledgers.read_others(catalog, "nas", me)
    first_read = time.monotonic() - t0
    assert read == n
    t0 = time.monotonic()
    ledgers.read_others(catalog, "nas", me)
    again = time.monotonic() - t0
    rng = random.Random(1)
    probes = [rng.choice(shas) for _ in range(5000)] + [
        hashlib.sha256(b"new" + i.to_bytes(4, "big")).hexdigest() for i in range(5000)
    ]
    t0 = time.monotonic()
    hits = sum(bool(catalog.shared_copies("nas", s)) for s in probes)
    lookup = (time.monotonic() - t0) / len(probes)
    assert hits == 5000
    server = S3Server(home / "s3" / "data")
    server.start()
    try:
        s3 = S3Target("s3", "photos", "bench", server.endpoint,
                      credentials_file=server.credentials(home / "creds"))  # fmt: skip
        heads = []
        for i in range(200):
            t0 = time.monotonic()
            s3.object_size(f"2024/IMG_{i}.JPG")
            heads.append(time.monotonic() - t0)
        s3.close()
    finally:
        server.stop()
    head = statistics.median(heads)
    print(f"{n:,} entries of another installation: first read {first_read:.2f} s, "
          f"later looks {again * 1000:.1f} ms; lookup before an upload {lookup * 1e6:.1f} us, "
          f"one S3 HEAD on loopback {head * 1000:.2f} ms", flush=True)  # fmt: skip
    result("scale", f"shared-target lookup before an upload, {n:,} entries", lookup * 1e6,
           head * 1e6, "one S3 HEAD on loopback", unit="us")  # fmt: skip
    result("scale", f"first read of another installation's list, {n:,} entries", first_read,
           None, "")  # fmt: skip
    catalog.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["reconcile", "status", "latency", "check", "shared"])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--assets", default="100000,1000000")
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    for tool in ("rsync", "sqlite3"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install {tool}")
    home = Path(tempfile.mkdtemp(prefix=f"photod-bench-{args.mode}-", dir=args.workdir))
    # photod's bytecode compiled first, as an install has it (pip compiles it): a checkout
    # run with PYTHONDONTWRITEBYTECODE set (as the helpers' shells have it) compiled all of
    # photod's modules again at each spawn, ~0.2 s of CPU timed as photod's start.
    compiled = compileall.compile_dir(Path(photod.__file__).parent, quiet=1)
    print(f"# bench/scale.py {args.mode}: {platform.platform()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, work dir {home}, photod's bytecode "
          f"{'compiled' if compiled else 'NOT compiled (read-only checkout?)'}", flush=True)  # fmt: skip
    try:
        modes = {"reconcile": reconcile, "status": status, "latency": latency, "check": check,
                 "shared": shared}  # fmt: skip
        modes[args.mode](args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
