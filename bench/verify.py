"""Scrub benchmark: `photod verify --all` against `sha256sum -c` of the same checksum list,
on the same local target, in the same run.

    python bench/verify.py [--gb 2] [--video-mb 200] [--workdir DIR] [--rounds 3]

Setup (not timed): a corpus of phone-sized photos and a few large videos is backed up
by `photod run --once` to one local target.  Then each round, in turn, with the page
cache dropped before each (as root; otherwise a warning says the reads may come from
memory):

  photod      `photod verify --target library --all` (the target only; without
              --target the watch folders are re-read too): list the target, re-read
              every copy from the disk
              (its cached pages dropped first), hash it, compare with the catalog and
              record the check; at the configured io_priority (default idle);
  sha256sum   `sha256sum -c --quiet SUMS` in the target's root, SUMS being the target's
              checksum lists (`.photod/installations/*/sums/*.sha256`) in one file.

Prints wall time, throughput, CPU used (user + system of the process, in cores) and
the ratio of throughputs (goal: photod >= 1.5 x sha256sum, CPU below one core); copy
the output into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.floors import sha256_rate  # noqa: E402
from bench.ingest import make_corpus  # noqa: E402
from bench.report import result  # noqa: E402


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--video-mb", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/photod-bench-verify"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    corpus, target = work / "corpus", work / "target"
    corpus.mkdir(parents=True)
    videos = 3
    photos = int((args.gb * 1e9 - videos * args.video_mb * 1.048e6) / 800_000)
    n, total = make_corpus(corpus, photos + videos, videos, args.video_mb)
    config = work / "photod.toml"
    config.write_text(
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
        f'[[sources]]\nname = "corpus"\ntype = "folder"\npath = "{corpus}"\n'
        f'[[targets]]\nname = "library"\ntype = "local"\npath = "{target}"\n'
        f'[daemon]\nstate_dir = "{work}/state"\nlog_dir = "{work}/log"\n'
    )
    photod = [sys.executable, "-m", "photod", "--config", str(config)]
    subprocess.run([*photod, "run", "--once"], check=True, capture_output=True)
    print(
        f"target: {n} files, {total / 1e9:.2f} GB (photos and {videos} videos of {args.video_mb} MB)"
    )
    sums = Path(tempfile.mkdtemp(prefix="photod-bench-sums-")) / "SUMS"
    sums.write_bytes(b"".join(p.read_bytes() for p in sorted(
        target.glob(".photod/installations/*/sums/*.sha256"))))  # fmt: skip
    cold = drop_caches()
    if not cold:
        print("warning: cannot drop the page cache (not root): reads may come from memory")
    runs: dict[str, list[tuple[float, float]]] = {"photod": [], "sha256sum": []}
    for round_ in range(args.rounds):
        drop_caches()
        runs["photod"].append(timed([*photod, "verify", "--target", "library", "--all"]))
        drop_caches()
        runs["sha256sum"].append(timed(["sha256sum", "-c", "--quiet", str(sums)], cwd=target))
        p, s = runs["photod"][-1], runs["sha256sum"][-1]
        print(
            f"round {round_ + 1}: photod {p[0]:.2f} s ({p[1] / p[0]:.2f} cores), "
            f"sha256sum {s[0]:.2f} s ({s[1] / s[0]:.2f} cores); "
            f"throughput ratio {s[0] / p[0]:.2f}",
            flush=True,
        )
    print(f"median of {args.rounds} rounds ({total / 1e9:.2f} GB, {n} files, cold cache: {cold}):")
    med = {}
    for name, results in runs.items():
        wall = statistics.median(r[0] for r in results)
        cores = statistics.median(r[1] / r[0] for r in results)
        med[name] = wall
        print(f"  {name:10s} {wall:7.2f} s  {total / wall / 1e6:7.1f} MB/s  CPU {cores:.2f} cores")
    print(f"  photod / sha256sum throughput: {med['sha256sum'] / med['photod']:.2f}  (goal >= 1.5)")
    rate = sha256_rate()
    print(
        f"  floor: SHA-256 of the bytes on one core at {rate:.0f} MB/s: {total / 1e6 / rate:.2f} s"
    )
    result("verify", f"scrub {total / 1e9:.2f} GB", med["photod"], med["sha256sum"],
           "sha256sum -c", goal="<= 0.67 x (1.5 x throughput)",
           met=med["photod"] * 1.5 <= med["sha256sum"], floor=total / 1e6 / rate,
           floor_tool=f"SHA-256 of the bytes, one core ({rate:.0f} MB/s)")  # fmt: skip
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
