"""The resident daemon's cost: memory over a day of activity, and an idle watch.

    python bench/daemon.py day  [--minutes 20] [--photos 60] [--workdir DIR]
    python bench/daemon.py idle [--files 100000] [--minutes 5] [--workdir DIR]

day    A real `photod run` (a watch folder, a library and an external drive that is
       unplugged and plugged back, a fake iPhone through tests/fakephone.py) lives a
       day's activity many times over, compressed into --minutes: every minute
       --photos photos land in the watch folder, a phone with 20 new photos is
       plugged in and out, the drive goes away and comes back, a scrub and a restore
       drill run (cron "* * * * *"), and `photod status` asks the daemon five times.
       Resident memory (psutil) is sampled every 5 s; the goal is that it stays flat:
       after the first minutes it grows by less than 10 % and no faster than a few
       MB per hour of compressed activity.
idle   The same daemon, idle, watching --files files already in the catalog, beside
       watchdog's own `watchmedo log` on the same tree (the bare cost of watching with
       the library photod uses).  Goal: photod under 1 % of one core and 150 MB
       resident over --minutes.

Prints a table; copy it into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import result  # noqa: E402
from bench.scale import fill_catalog, fill_target  # noqa: E402
from tests.fakephone import FakePhone, FakeUsbmuxd  # noqa: E402

SAMPLE_JPEG = ROOT.parent / "shared" / "samples" / "jpg_Canon_40D.jpg"
UDID = "00008110-000A1B2C3D4E5F60"


def photo(path: Path, n: int, size: int = 150_000) -> None:
    """A unique JPEG of about ``size`` bytes (a real photo, padded after its data)."""
    jpeg = SAMPLE_JPEG.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg + os.urandom(max(0, size - len(jpeg) - 8)) + n.to_bytes(8, "big"))


def config(home: Path, day: bool) -> Path:
    sources = f'[[sources]]\nname = "inbox"\ntype = "folder"\npath = "{home / "inbox"}"\n'
    targets = f'[[targets]]\nname = "library"\ntype = "local"\npath = "{home / "library"}"\n'
    policy = "copies = 1\nmedia = 1\noffsite = 0\n"
    schedule = ""
    if day:
        sources += '\n[[sources]]\nname = "iphone"\ntype = "iphone"\n'
        targets += (
            f'\n[[targets]]\nname = "t7"\ntype = "local"\npath = "{home / "T7" / "photos"}"\n'
            'media = "external"\n'
        )
        policy = "copies = 2\nmedia = 2\noffsite = 0\n"
        schedule = (
            '[schedule]\nscrub = "* * * * *"\nscrub_budget = "50MiB"\n'
            'drill = "* * * * *"\ndrill_sample = 5\n'
        )
    path = home / "photod.toml"
    # The day retries fast (the drive comes back every minute); idle is a default daemon.
    retries = 'retry_interval = "2s"\nretry_max = "10s"\n' if day else ""
    path.write_text(
        f"[policy]\n{policy}\n{sources}\n{targets}\n{schedule}\n"
        f'[daemon]\nstate_dir = "{home / "state"}"\nlog_dir = "{home / "log"}"\n{retries}'
    )
    return path


def start(home: Path, cfg: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "photod", "--config", str(cfg), "run"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    log = home / "log" / "photod.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and '"daemon_started"' in log.read_text():
            return proc
        time.sleep(0.2)
    raise SystemExit("photod did not start")


def cli(cfg: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-m", "photod", "--config", str(cfg), *args],
                       env=env, capture_output=True, text=True)  # fmt: skip
    if r.returncode not in (0, 1):  # 1: `status` says a photo is not protected (yet)
        raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
    return json.loads(r.stdout) if "--json" in args else {}


def count(home: Path, event: str) -> int:
    with open(home / "log" / "photod.jsonl") as f:
        return sum(1 for line in f if f'"event": "{event}"' in line)


def day(args: argparse.Namespace, home: Path) -> None:
    mux = FakeUsbmuxd(home / "usbmuxd.sock")
    mux.start()
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(mux.socket_path), "HOME": str(home),
           "XDG_RUNTIME_DIR": str(home / "run")}  # fmt: skip
    (home / "run").mkdir(mode=0o700)
    (home / "inbox").mkdir()
    (home / "T7" / "photos").mkdir(parents=True)  # the drive, plugged in
    cfg = config(home, day=True)
    proc = start(home, cfg, env)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    n = 0
    status: dict[str, object] = {"assets": 0}
    print(f"{'minute':>6} {'RSS MB':>7} {'anon MB':>7} {'threads':>7} {'assets':>7} {'scrubs':>6} "
          f"{'drills':>6} {'imports':>7}")  # fmt: skip
    try:
        for minute in range(args.minutes):
            for _ in range(args.photos):
                n += 1
                photo(home / "inbox" / f"{minute:03d}" / f"IMG_{n:06d}.JPG", n)
            media = home / "phone" / f"{minute}"
            for i in range(20):
                n += 1
                photo(media / "DCIM" / "100APPLE" / f"IMG_{i:04d}.JPG", n, 60_000)
            phone = FakePhone(UDID, media, name="Bench iPhone")
            mux.plug(phone)
            end = t0 + (minute + 1) * 60
            unplugged = False
            while time.monotonic() < end:
                samples.append((time.monotonic() - t0, ps.memory_info().rss))
                left = end - time.monotonic()
                if left < 40 and not unplugged:
                    mux.unplug(phone)
                    (home / "T7").rename(home / "T7-away")  # the drive goes
                    unplugged = True
                if left < 25 and (home / "T7-away").exists():
                    (home / "T7-away").rename(home / "T7")  # and comes back
                if int(left) % 12 == 0:
                    status = cli(cfg, env, "status", "--json")
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            mem = ps.memory_info()
            anon = mem.rss - mem.shared  # what the daemon itself allocated (not file pages)
            print(f"{minute + 1:>6} {mem.rss / 1e6:>7.1f} {anon / 1e6:>7.1f} {ps.num_threads():>7} "
                  f"{status['assets']:>7} "
                  f"{count(home, 'scrub_finished'):>6} {count(home, 'drill_passed'):>6} "
                  f"{count(home, 'device_import_finished'):>7}", flush=True)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        mux.close()
    warm = [r for t, r in samples if t >= 180] or [r for _, r in samples]
    half = len(warm) // 2
    first, last = sum(warm[:half]) / max(half, 1), sum(warm[half:]) / max(len(warm) - half, 1)
    hours = (samples[-1][0] - 180) / 3600
    print(f"\nafter minute 3: mean RSS {first / 1e6:.1f} MB (first half), {last / 1e6:.1f} MB "
          f"(second half): {100 * (last - first) / first:+.1f} %; peak "
          f"{max(warm) / 1e6:.1f} MB; {(last - first) / 1e6 / max(hours / 2, 1e-9):+.1f} MB/h")  # fmt: skip
    growth = 100 * (last - first) / first
    result("daemon", f"a compressed day ({args.minutes} min): mean RSS, second half",
           last / 1e6, None, "", "MB", "flat: < +10 % on the first half", growth < 10)  # fmt: skip


def cpu_rss(procs: list[psutil.Process], seconds: float) -> tuple[list[float], list[int]]:
    """Mean share of one core and peak RSS of each process over ``seconds``."""
    start = [p.cpu_times() for p in procs]
    peak = [0] * len(procs)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for i, p in enumerate(procs):
            peak[i] = max(peak[i], p.memory_info().rss)
        time.sleep(1)
    wall = time.monotonic() - t0
    end = [p.cpu_times() for p in procs]
    cpu = [(e.user + e.system - s.user - s.system) / wall for s, e in zip(start, end, strict=True)]
    return cpu, peak


def idle(args: argparse.Namespace, home: Path) -> None:
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700)
    inbox = home / "inbox"
    rows = []
    for i in range(args.files):
        rel = f"{2010 + i % 15}/{i // 1000 % 100:02d}/IMG_{i:06d}.JPG"
        (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        data = b"\xff\xd8\xff" + i.to_bytes(8, "big")
        (inbox / rel).write_bytes(data)
        rows.append((hashlib.sha256(data).hexdigest(), rel, len(data),
                     (inbox / rel).stat().st_mtime_ns))  # fmt: skip
    cfg = config(home, day=False)
    # Every file already backed up (a catalog filled through photod's schema, as in
    # bench/scale.py): what follows is the idle state of a large library.
    fill_catalog(home / "state" / "catalog.sqlite", rows, ["library"])
    fill_target(inbox, home / "library")
    proc = start(home, cfg, env)
    while count(home, "scan_finished") < 1:
        time.sleep(1)
    time.sleep(20)
    watchmedo = subprocess.Popen(
        [str(Path(sys.executable).parent / "watchmedo"), "log", "--recursive", str(inbox)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(20)  # watchmedo walks the tree once to add its watches
    try:
        (cpu, peak) = cpu_rss([psutil.Process(proc.pid), psutil.Process(watchmedo.pid)],
                              args.minutes * 60)  # fmt: skip
    finally:
        watchmedo.terminate()
        proc.terminate()
        proc.wait(timeout=60)
    print(f"{'':<24} {'CPU (% of a core)':>18} {'peak RSS MB':>12}")
    print(f"{'photod run (idle)':<24} {100 * cpu[0]:>18.2f} {peak[0] / 1e6:>12.1f}")
    print(f"{'watchmedo log':<24} {100 * cpu[1]:>18.2f} {peak[1] / 1e6:>12.1f}")
    print(f"photod / watchmedo: CPU {cpu[0] / max(cpu[1], 1e-9):.2f} x, RSS "
          f"{peak[0] / peak[1]:.2f} x")  # fmt: skip
    result("daemon", f"idle, watching {args.files:,} files: CPU", 100 * cpu[0], 100 * cpu[1],
           "watchmedo log", "% of a core", "< 1 %", 100 * cpu[0] < 1)  # fmt: skip
    result("daemon", f"idle, watching {args.files:,} files: peak RSS", peak[0] / 1e6,
           peak[1] / 1e6, "watchmedo log", "MB", "< 150 MB", peak[0] < 150e6)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["day", "idle"])
    ap.add_argument("--minutes", type=int, default=None)
    ap.add_argument("--photos", type=int, default=60, help="day: photos per minute")
    ap.add_argument("--files", type=int, default=100_000, help="idle: files watched")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    args.minutes = args.minutes or (20 if args.mode == "day" else 5)
    home = Path(tempfile.mkdtemp(prefix=f"photod-bench-{args.mode}-", dir=args.workdir))
    print(f"# bench/daemon.py {args.mode}: {platform.platform()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, work dir {home}")  # fmt: skip
    try:
        (day if args.mode == "day" else idle)(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
