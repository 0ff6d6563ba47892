"""Offsite benchmark: photod against rclone, uploading the same corpus to the same
loopback S3 server, in the same run.

    python bench/offsite.py [--gb 2] [--video-mb 200] [--workdir DIR] [--rounds 2]

A real ``rclone serve s3`` on 127.0.0.1 stores the objects under the work dir.  Each
round times, in turn:

  photod         `photod run --once` with one S3 target: hash and probe every file,
                 record it in the catalog, upload it (4 at a time, Content-MD5 checked
                 by the server), and check the stored size (the fresh prefix was
                 met first, untimed: a target's first contact is once in its life);
  rclone copy    `rclone copy CORPUS s3:` (4 transfers; it checks MD5s as well);
  photod crypt   the same with `encrypt = true` (age, keyed names, encrypted index);
  photod rclone  the same to an rclone target: the S3 server as an rclone remote,
                 through photod's rcd (each photo proved by the store's MD5);
  rclone crypt   `rclone copy CORPUS crypt:` over the same S3 remote;
  bare client    the floor: every file PUT by a bare boto3 client, 4 at a time, with
                 the Content-MD5 the server checks and nothing else (bench/floors.py).

Prints the times and the ratios (goal: photod <= 1.0 x rclone, both ways), and the CPU
each tool and the server spent (the loopback server shares the two cores: where both
sides are CPU-bound, a tool's CPU per file is what decides); copy them into
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.floors import s3_bare_put  # noqa: E402
from bench.ingest import make_corpus  # noqa: E402
from bench.report import result  # noqa: E402
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server  # noqa: E402


def rclone_conf(path: Path, endpoint: str) -> Path:
    rclone = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    password = subprocess.run(
        [rclone, "obscure", "bench-password"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path.write_text(
        f"[s3]\ntype = s3\nprovider = Other\nendpoint = {endpoint}\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n\n"
        f"[crypt]\ntype = crypt\nremote = s3:{BUCKET}/rclone-crypt\npassword = {password}\n"
    )
    path.chmod(0o600)
    return path


def photod_config(
    work: Path, corpus: Path, server: S3Server, encrypt: bool, prefix: str, rclone: Path | None
) -> Path:
    """photod's config: its S3 target, or with ``rclone`` (a config file), the same
    server as the remote ``s3:`` of an rclone target."""
    creds = server.credentials(work / "aws-credentials")
    state = work / "photod-state"
    key = work / "photod.key"
    if encrypt and not key.exists():
        subprocess.run([sys.executable, "-m", "photod", "keygen", "--output", str(key)],
                       check=True, capture_output=True)  # fmt: skip
    config = work / "photod.toml"
    config.write_text(
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 1\n"
        f'[[sources]]\nname = "corpus"\ntype = "folder"\npath = "{corpus}"\n'
        + (
            f'[[targets]]\nname = "offsite"\ntype = "rclone"\nremote = "s3:{BUCKET}/{prefix}/"\n'
            f'config_file = "{rclone}"\n'
            if rclone
            else f'[[targets]]\nname = "offsite"\ntype = "s3"\nendpoint = "{server.endpoint}"\n'
            f'bucket = "{BUCKET}"\nprefix = "{prefix}"\ncredentials_file = "{creds}"\n'
        )
        + f"encrypt = {'true' if encrypt else 'false'}\n"
        + (f'[encryption]\nidentity = "{key}"\n' if encrypt else "")
        + f'[daemon]\nstate_dir = "{state}"\nlog_dir = "{state}/log"\n'
    )
    return config


def timed(cmd: list[str]) -> float:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cpu_seconds(server: S3Server) -> tuple[float, float]:
    """CPU time (user + system) so far of this script's finished children (the tool
    just run) and of the S3 server: on two cores both sides share, the sum says how
    much of the machine a tool's upload costs."""
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv = psutil.Process(server.proc.pid).cpu_times()
    return own.ru_utime + own.ru_stime, srv.user + srv.system


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--video-mb", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/photod-bench-offsite"))
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    videos = 3
    photos = int((args.gb * 1e9 - videos * args.video_mb * 1.048e6) / 800_000)
    n, total = make_corpus(corpus, photos + videos, videos, args.video_mb)
    print(f"corpus: {n} files, {total / 1e9:.2f} GB ({videos} videos of {args.video_mb} MB)")
    server = S3Server(work / "s3")
    server.start()
    conf = rclone_conf(work / "rclone.conf", server.endpoint)
    rclone = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    times: dict[str, list[float]] = {
        "photod": [],
        "rclone": [],
        "photod crypt": [],
        "rclone crypt": [],
        "photod rclone": [],  # to the same server as an rclone remote (against "rclone")
        "bare client": [],  # the floor: bench/floors.py
    }
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in times}  # (tool, server)
    ok = True
    claim: list[float] = []  # photod's first contact with each fresh prefix, not timed
    try:
        for round_ in range(args.rounds):
            for name in times:
                # Fresh names each time: files deleted behind the server's back would
                # linger in its directory cache.
                run = f"{name.replace(' ', '-')}-{round_}"
                shutil.rmtree(work / "photod-state", ignore_errors=True)
                if name.startswith("photod"):
                    # The target's first contact, once in its life (its marker, agreed
                    # with any other computer: 2 s; this computer's records), made
                    # before the clock starts, as a user's photod made it long ago.
                    (work / "empty").mkdir(exist_ok=True)
                    via = conf if name == "photod rclone" else None
                    config = photod_config(work, work / "empty", server, "crypt" in name, run, via)
                    cmd = [sys.executable, "-m", "photod", "--config", str(config), "run", "--once"]
                    claim.append(timed(cmd))
                    config = photod_config(work, corpus, server, "crypt" in name, run, via)
                    before = cpu_seconds(server)
                    times[name].append(timed(cmd))
                    after = cpu_seconds(server)  # (before `photod status` below)
                    status = json.loads(subprocess.run(
                        [sys.executable, "-m", "photod", "--config", str(config), "status", "--json"],
                        capture_output=True, text=True, check=True).stdout)  # fmt: skip
                    ok = ok and status["policy"]["compliant"] == n
                elif name == "bare client":
                    before = cpu_seconds(server)
                    times[name].append(
                        s3_bare_put(corpus, server.endpoint, BUCKET, run, ACCESS_KEY, SECRET_KEY)
                    )
                else:
                    dest = f"s3:{BUCKET}/{run}" if name == "rclone" else f"crypt:{run}"
                    before = cpu_seconds(server)
                    times[name].append(
                        timed([rclone, "--config", str(conf), "copy", str(corpus), dest])
                    )
                if not name.startswith("photod"):
                    after = cpu_seconds(server)
                cpu[name].append((after[0] - before[0], after[1] - before[1]))
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
                + f"; ratios {times['photod'][-1] / times['rclone'][-1]:.2f} plain, "
                f"{times['photod crypt'][-1] / times['rclone crypt'][-1]:.2f} encrypted, "
                f"{times['photod rclone'][-1] / times['rclone'][-1]:.2f} through rclone",
                flush=True,
            )
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {args.rounds} rounds ({total / 1e9:.2f} GB, {n} files):")
    for k, v in med.items():
        print(f"  {k:13s} {v:7.2f} s  {total / v / 1e6:6.1f} MB/s")
    print(f"  photod / rclone copy:        {med['photod'] / med['rclone']:.2f}  (goal <= 1.0)")
    print(
        f"  photod crypt / rclone crypt: {med['photod crypt'] / med['rclone crypt']:.2f}  (goal <= 1.0)"
    )
    print("  CPU seconds (user + system), median: the tool's own, the S3 server's, per file")
    for k, v in cpu.items():
        own, srv = (statistics.median(x[i] for x in v) for i in (0, 1))
        print(f"  {k:13s} {own:7.2f} s  server {srv:6.2f} s  {own / n * 1e3:6.2f} ms a file")
    print(f"  photod rclone / rclone copy: {med['photod rclone'] / med['rclone']:.2f}")
    print(f"  every file verified offsite by photod: {ok}")
    print(f"  (not in photod's times: a fresh target's first contact, {statistics.median(claim):.2f} s,"
          " made once in its life)")  # fmt: skip
    bare = "bare boto3 PUT with Content-MD5, 4 at a time"
    result("offsite", f"{n:,} files to S3", med["photod"], med["rclone"], "rclone copy",
           goal="<= 1.0 x", met=med["photod"] <= med["rclone"], floor=med["bare client"],
           floor_tool=bare)  # fmt: skip
    result("offsite", f"{n:,} files to S3, encrypted", med["photod crypt"], med["rclone crypt"],
           "rclone copy (crypt remote)", goal="<= 1.0 x",
           met=med["photod crypt"] <= med["rclone crypt"], floor=med["bare client"],
           floor_tool=bare + " (unencrypted)")  # fmt: skip
    result("offsite", f"{n:,} files to S3 through an rclone remote", med["photod rclone"],
           med["rclone"], "rclone copy", goal="<= 1.0 x", met=med["photod rclone"] <= med["rclone"],
           floor=med["bare client"], floor_tool=bare)  # fmt: skip
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
