"""Ingest benchmark: photod against rsync on the same corpus, in the same run.

    python bench/ingest.py [--files 2000] [--videos 6] [--video-mb 100] [--workdir DIR] [--workers N] [--rounds 3]

Generates a corpus of real-JPEG-based photos (each made unique) plus a few large
videos, then times, each from a flushed page cache state (`sync` between runs):

  photod   `photod run --once`: read each file once, hash, write two local targets,
           fsync, read back and verify every copy, record it in the catalog;
  rsync -a --fsync   to two fresh directories (the same durability as photod);
  rsync -a           to two fresh directories (no fsync, no verification).

Prints the times and the ratios; copy them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.floors import disk_write_rate  # noqa: E402
from bench.report import result  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def make_corpus(root: Path, files: int, videos: int, video_mb: int) -> tuple[int, int]:
    rng = random.Random(42)
    # Real photos small enough to pad to a typical 0.4-1.2 MB phone or camera file.
    jpegs = [p.read_bytes() for p in sorted(SAMPLES.glob("*.jpg")) if p.stat().st_size < 400_000]
    heics = [
        p.read_bytes() for p in sorted(SAMPLES.glob("*.HEI[CF]")) if p.stat().st_size < 400_000
    ]
    heics = heics or jpegs
    total = 0
    photos = files - videos
    for i in range(photos):
        base = rng.choice(heics) if i % 4 == 0 else rng.choice(jpegs)
        ext = "HEIC" if i % 4 == 0 else "JPG"
        # Pad to a phone-sized file after the image data (decoders ignore trailing bytes).
        pad = os.urandom(max(0, rng.randint(400_000, 1_200_000) - len(base)))
        folder = root / f"{2015 + i % 8}" / f"roll{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = base + pad + i.to_bytes(4, "big")
        (folder / f"IMG_{i:05d}.{ext}").write_bytes(data)
        total += len(data)
    block = os.urandom(1 << 20)
    for v in range(videos):
        path = root / "videos" / f"MOV_{v:03d}.MOV"
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
            for n in range(video_mb):
                f.write(block[:-8] + (v * 100_000 + n).to_bytes(8, "big"))
        total += path.stat().st_size
    past = time.time() - 3600  # complete files, as after a sync client finished
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))
    return files, total


def timed(cmds: list[list[str]]) -> float:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--video-mb", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/photod-bench"))
    ap.add_argument("--workers", type=int, default=None, help="default: the daemon's own")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("rsync") is None:
        print("rsync is needed: apt-get install rsync", file=sys.stderr)
        return 2
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    n, total = make_corpus(corpus, args.files, args.videos, args.video_mb)
    print(
        f"corpus: {n} files, {total / 1e9:.2f} GB ({args.videos} videos of {args.video_mb} MB)",
        flush=True,
    )

    def fresh(*names: str) -> list[Path]:
        out = []
        for name in names:
            shutil.rmtree(work / name, ignore_errors=True)
            out.append(work / name)
        subprocess.run(["sync"], check=True)
        return out

    config = work / "photod.toml"
    t1, t2, state = work / "photod-a", work / "photod-b", work / "photod-state"
    config.write_text(
        f"[policy]\ncopies = 2\nmedia = 1\noffsite = 0\n"
        f'[[sources]]\nname = "corpus"\ntype = "folder"\npath = "{corpus}"\n'
        f'[[targets]]\nname = "a"\ntype = "local"\npath = "{t1}"\n'
        f'[[targets]]\nname = "b"\ntype = "local"\npath = "{t2}"\n'
        f'[daemon]\nstate_dir = "{state}"\nlog_dir = "{state}/log"\n'
        + (f"workers = {args.workers}\n" if args.workers else "")
    )
    photod = [sys.executable, "-m", "photod", "--config", str(config)]
    times: dict[str, list[float]] = {"photod": [], "fsync": [], "plain": []}
    rates: list[float] = []  # dd conv=fsync MB/s, each round
    ok = True
    # Interleave the tools, round after round: a shared disk's speed drifts over minutes.
    for round_ in range(args.rounds):
        a, b = fresh("rsync-a", "rsync-b")
        times["fsync"].append(
            timed(
                [
                    ["rsync", "-a", "--fsync", f"{corpus}/", str(a)],
                    ["rsync", "-a", "--fsync", f"{corpus}/", str(b)],
                ]
            )
        )
        a, b = fresh("rsync-a", "rsync-b")
        times["plain"].append(
            timed([["rsync", "-a", f"{corpus}/", str(a)], ["rsync", "-a", f"{corpus}/", str(b)]])
        )
        fresh("rsync-a", "rsync-b", "photod-a", "photod-b", "photod-state")
        times["photod"].append(timed([[*photod, "run", "--once"]]))
        status = json.loads(
            subprocess.run(
                [*photod, "status", "--json"], capture_output=True, text=True, check=True
            ).stdout
        )
        ok = ok and status["assets"] == n and status["policy"]["compliant"] == n
        rates.append(disk_write_rate(work))  # the floor, in the same round
        print(
            f"round {round_ + 1}: photod {times['photod'][-1]:.2f} s, rsync --fsync {times['fsync'][-1]:.2f} s, "
            f"rsync {times['plain'][-1]:.2f} s; ratio to rsync --fsync "
            f"{times['photod'][-1] / times['fsync'][-1]:.2f}; "
            f"photod verified {status['policy']['compliant']}/{n} on both targets",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {args.rounds} rounds:")
    print(f"  photod run --once (hash, 2 targets, fsync, read-back verify): {med['photod']:7.2f} s")
    print(f"  rsync -a --fsync  x2:                                         {med['fsync']:7.2f} s")
    print(f"  rsync -a          x2:                                         {med['plain']:7.2f} s")
    paired = statistics.median(p / f for p, f in zip(times["photod"], times["fsync"], strict=True))
    print(
        f"  ratio photod / rsync --fsync: {med['photod'] / med['fsync']:.2f} (of medians), "
        f"{paired:.2f} (median of per-round ratios)  (goal <= 0.80)"
    )
    print(f"  ratio photod / rsync plain:   {med['photod'] / med['plain']:.2f}")
    rate = statistics.median(rates)
    floor = 2 * total / 1e6 / rate
    print(f"  floor: the bytes written twice at dd conv=fsync's {rate:.0f} MB/s: {floor:.2f} s")
    result("ingest", f"{n:,} files, 2 targets, verified", med["photod"], med["fsync"],
           "rsync -a --fsync x2", goal="<= 0.80 x", met=med["photod"] <= 0.8 * med["fsync"],
           floor=floor, floor_tool=f"2 x the bytes at dd conv=fsync ({rate:.0f} MB/s)")  # fmt: skip
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    fresh("photod-a", "photod-b", "photod-state")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
