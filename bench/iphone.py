"""iPhone import benchmark: photod against pymobiledevice3's own `afc pull`, through
the same fake phone (tests/fakephone.py: usbmux, lockdownd and AFC on a local socket).

    python bench/iphone.py [--gb 2] [--small 5000] [--replug 20000] [--library 20000]
                           [--rounds 3] [--workdir DIR]

Three phones, each imported by a real `photod run` process (one local target):

  big     --gb GB of 250 MB movies: throughput.  Also timed: a bare AFC read loop
          (the fixture's ceiling: what any client can get through it) and
          `pymobiledevice3 afc pull /DCIM` (what a person would run by hand).
  small   --small files of about 50 KB: the cost per file (open, read, close, hash,
          stage, ingest, copy, verify); --rounds rounds of photod and `afc pull` in
          turn, medians and per-round ratios.
  replug  --replug tiny files, imported, unplugged and plugged in again: the time
          from plug-in to "import finished" when nothing is new.
  library --library assets in 500 albums (tests/photoslib.py, iOS 18's schema; 70 %
          of the originals on the phone as tiny files, the rest only in iCloud): the
          first read, and what the library adds to a re-plug when nothing changed
          (goal: under 5 s), beside `pymobiledevice3 afc pull /PhotoData` of the same
          database files.

Real phones give 15-40 MB/s; the goal is that photod is never the bottleneck: at least
200 MB/s through the fixture, and a re-plug of an unchanged 20,000-file phone in under
10 s.  Prints the numbers and the ratios; copy them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import result  # noqa: E402
from tests import photoslib  # noqa: E402
from tests.fakephone import FakePhone, FakeUsbmuxd  # noqa: E402

SAMPLE_JPEG = ROOT.parent / "shared" / "samples" / "jpg_Canon_40D.jpg"
UDID = "00008110-000A1B2C3D4E5F60"

BARE_READ = r"""
import asyncio, os, sys, time
from pathlib import Path
from pymobiledevice3.lockdown import create_using_usbmux
from pymobiledevice3.services.afc import AfcService

async def main():
    ld = await create_using_usbmux(serial=sys.argv[1], autopair=False,
                                   pairing_records_cache_folder=Path(sys.argv[2]))
    async with AfcService(ld) as afc:
        started, total = time.monotonic(), 0
        async for folder, _, files in afc.walk("/DCIM"):
            for name in files:
                h = await afc.fopen(folder + "/" + name)
                while chunk := await afc.fread(h, 4 << 20):
                    total += len(chunk)
                await afc.fclose(h)
        print(total, time.monotonic() - started)

asyncio.run(main())
"""


def build(media: Path, kind: str, count: int, size: int) -> int:
    """Fill a phone's /DCIM; returns the bytes written."""
    total = 0
    jpeg = SAMPLE_JPEG.read_bytes()
    for i in range(count):
        folder = media / "DCIM" / f"{100 + i // 1000}APPLE"
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "movie":
            path = folder / f"IMG_{i % 10000:04d}.MOV"
            with open(path, "wb") as f:
                f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
                left = size
                while left > 0:
                    chunk = os.urandom(min(left, 8 << 20))
                    f.write(chunk)
                    left -= len(chunk)
        else:
            path = folder / f"IMG_{i % 10000:04d}.JPG"
            pad = max(0, size - len(jpeg) - 8)
            path.write_bytes(jpeg + os.urandom(pad) + i.to_bytes(8, "big"))
        total += path.stat().st_size
    return total


def config(home: Path, library: bool = True) -> Path:
    path = home / "photod.toml"
    path.write_text(
        f"""
[policy]
copies = 1
media = 1
offsite = 0

[[sources]]
name = "iphone"
type = "iphone"
library = {str(library).lower()}

[[targets]]
name = "library"
type = "local"
path = "{home / "library"}"

[daemon]
state_dir = "{home / "state"}"
log_dir = "{home / "log"}"
log_max_size = "4GiB"     # one file: the bench follows it from where it last read
"""
    )
    return path


_seen: dict[Path, tuple[int, list[dict[str, object]]]] = {}


def events(home: Path, name: str) -> list[dict[str, object]]:
    """Events so far; the log is read from where the last call stopped (re-reading a
    30 MB log every 50 ms would starve the fake phone, which runs in this process)."""
    log = home / "log" / "photod.jsonl"
    offset, seen = _seen.get(log, (0, []))
    if log.exists():
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            if b'"event": "device_' in line or b'"event": "usbmuxd_' in line:
                seen.append(json.loads(line))
        _seen[log] = (offset + len(complete), seen)
    return [e for e in seen if e["event"] == name]


def wait_event(
    home: Path, name: str, count: int = 1, timeout: float = 3600
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(home, name)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {name}")


def ts(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


class Daemon:
    def __init__(self, home: Path, sock: Path, library: bool = True) -> None:
        self.home = home
        env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(sock), "HOME": str(home)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "photod", "--config", str(config(home, library)), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_event(home, "usbmuxd_connected", timeout=60)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def photod_import(
    work: Path, mux: FakeUsbmuxd, phone: FakePhone, name: str, library: bool = True
) -> tuple[float, Daemon]:
    home = fresh(work / f"photod-{name}")
    daemon = Daemon(home, mux.socket_path, library)
    subprocess.run(["sync"], check=True)
    plugged = time.time()
    mux.plug(phone)
    done = wait_event(home, "device_import_finished")[0]
    return ts(done) - plugged, daemon


# The venv's own command, wherever the benchmark is started from.
PYMOBILEDEVICE3 = (
    shutil.which("pymobiledevice3", path=str(Path(sys.executable).parent)) or "pymobiledevice3"
)


def afc_pull(work: Path, sock: Path, top: str = "/DCIM", out: str = "pulled") -> float:
    """``afc pull`` of ``top`` into ``work/out``, kept for the caller to remove: on this
    machine's ext4 without a journal, a file made within a minute or so of thousands
    removed costs the kernel a search past them (``recently_deleted``), so what follows
    a removal pays for it; the rows remove every tool's files at their end."""
    folder = fresh(work / out)
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(sock), "HOME": str(work)}
    subprocess.run(["sync"], check=True)  # neither tool pays for the other's writeback
    started = time.monotonic()
    subprocess.run(
        [PYMOBILEDEVICE3, "afc", "pull", top, str(folder)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def bare_read(work: Path, sock: Path) -> float:
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(sock)}
    out = subprocess.run(
        [sys.executable, "-c", BARE_READ, UDID, str(work / "pair")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[1])


def library(work: Path, mux: FakeUsbmuxd, count: int) -> None:
    media = work / "phone-library"
    photos, albums = photoslib.sample(count, 500)
    for p in photos:
        if p.local:
            path = media / p.directory / p.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(p.uuid.encode() * 20)
    built = time.monotonic()
    db = photoslib.build(media, "18", photos, albums, wal_only=500)
    built = time.monotonic() - built
    size = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal", "-shm"))
    phone = FakePhone(UDID, media, name="Bench iPhone", paired_hosts={f"HOST-{UDID}"})
    mux.plug(phone)
    pull = afc_pull(work, mux.socket_path, "/PhotoData")
    mux.unplug(phone)
    shutil.rmtree(work / "pulled")  # (three files)
    _, daemon = photod_import(work, mux, phone, "library")
    first = wait_event(daemon.home, "device_library_read")[0]
    mux.unplug(phone)
    wait_event(daemon.home, "device_detached")
    replug_on, unchanged = [], []
    for n in range(2, 5):  # three re-plugs of the unchanged phone
        plugged = time.time()
        mux.plug(phone)
        finished = wait_event(daemon.home, "device_import_finished", count=n)[n - 1]
        replug_on.append(ts(finished) - plugged)
        unchanged.append(float(wait_event(daemon.home, "device_library_unchanged",
                                          count=n - 1)[n - 2]["duration"]))  # fmt: skip
        mux.unplug(phone)
        wait_event(daemon.home, "device_detached", count=n)
    daemon.stop()
    # The same phone and files, the library off: what a re-plug costs without it.
    _, off = photod_import(work, mux, phone, "library-off", library=False)
    mux.unplug(phone)
    wait_event(off.home, "device_detached")
    replug_off = []
    for n in range(2, 5):
        plugged = time.time()
        mux.plug(phone)
        finished = wait_event(off.home, "device_import_finished", count=n)[n - 1]
        replug_off.append(ts(finished) - plugged)
        mux.unplug(phone)
        wait_event(off.home, "device_detached", count=n)
    off.stop()
    on_s, off_s = statistics.median(replug_on), statistics.median(replug_off)
    added = on_s - off_s
    copy_s = float(first["copy_duration"])
    print(f"\nlibrary: {count} assets, {len(albums)} albums, database {size / 1e6:.1f} MB "
          f"(built in {built:.1f} s)")  # fmt: skip
    print(f"  the database copied by photod          {copy_s:7.2f} s")
    print(f"  pymobiledevice3 afc pull /PhotoData   {pull:7.2f} s  (the same three files)")
    print(f"  first read (copy, read, catalog)      {first['duration']:7.2f} s")
    print(f"  re-plug, plug -> import finished, library on  {on_s:7.2f} s  (median of 3)")
    print(f"  re-plug, the same, library off                {off_s:7.2f} s  (median of 3)")
    print(f"  added by the library                          {added:7.2f} s  "
          f"(its own copy and compare: {statistics.median(unchanged):.2f} s)")  # fmt: skip
    result("iphone", f"library of {count:,} assets, 500 albums: the database copied",
           copy_s, pull, "pymobiledevice3 afc pull /PhotoData")  # fmt: skip
    result("iphone", f"library of {count:,} assets, 500 albums: first read",
           float(first["duration"]), pull, "pymobiledevice3 afc pull /PhotoData")  # fmt: skip
    result("iphone", f"library of {count:,} assets: added to an unchanged re-plug", added,
           off_s, "the same re-plug, library off", goal="< 5 s", met=added < 5)  # fmt: skip
    shutil.rmtree(media)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--replug", type=int, default=20000)
    ap.add_argument("--library", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3, help="of the small files' row")
    ap.add_argument("--workdir", default="/tmp/photod-bench-iphone")
    args = ap.parse_args()
    work = fresh(Path(args.workdir))
    print(f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores")
    print(f"# workdir {work}")

    mux = FakeUsbmuxd(work / "usbmuxd.sock")
    mux.start()
    try:
        if args.gb:
            big(work, mux, args.gb)
        if args.small:
            small(work, mux, args.small, args.rounds)
        if args.replug:
            replug(work, mux, args.replug)
        if args.library:
            library(work, mux, args.library)
    finally:
        mux.close()


def big(work: Path, mux: FakeUsbmuxd, gb: float) -> None:
    """Throughput: ``gb`` GB of 250 MB movies, beside the fixture's ceiling."""
    movies = max(1, round(gb * 1024**3 / (250 * 1024**2)))
    media = work / "phone-big"
    size = build(media, "movie", movies, 250 * 1024**2)
    phone = FakePhone(UDID, media, name="Bench iPhone", paired_hosts={f"HOST-{UDID}"})
    mux.plug(phone)
    ceiling = bare_read(work, mux.socket_path)
    pull = afc_pull(work, mux.socket_path)
    mux.unplug(phone)
    took, daemon = photod_import(work, mux, phone, "big")
    mux.unplug(phone)
    daemon.stop()
    shutil.rmtree(work / "pulled")
    mb = size / 1e6
    print(f"\nbig: {movies} movies, {mb:.0f} MB")
    print(f"  bare AFC read loop (fixture ceiling) {ceiling:7.2f} s  {mb / ceiling:6.0f} MB/s")
    print(f"  pymobiledevice3 afc pull             {pull:7.2f} s  {mb / pull:6.0f} MB/s")
    print(f"  photod import (plug -> finished)     {took:7.2f} s  {mb / took:6.0f} MB/s")
    print(f"  photod / afc pull: {took / pull:.2f}   photod / ceiling: {took / ceiling:.2f}")
    result("iphone", f"import {mb:,.0f} MB of movies", took, pull,
           "pymobiledevice3 afc pull", goal=">= 200 MB/s", met=mb / took >= 200,
           floor=ceiling, floor_tool="a bare AFC read loop (no disk)")  # fmt: skip
    shutil.rmtree(media)


def small(work: Path, mux: FakeUsbmuxd, count: int, rounds: int) -> None:
    """Per-file overhead: ``count`` files of about 50 KB, photod and ``afc pull`` in
    turn for ``rounds`` rounds (who goes first alternates; the disk's pace drifts)."""
    media = work / "phone-small"
    size = build(media, "photo", count, 50_000)
    phone = FakePhone(UDID, media, name="Bench iPhone", paired_hosts={f"HOST-{UDID}"})
    mux.plug(phone)
    ceiling = bare_read(work, mux.socket_path)
    mux.unplug(phone)
    pulls: list[float] = []
    imports: list[float] = []
    for r in range(rounds):
        for tool in ("pull", "photod") if r % 2 == 0 else ("photod", "pull"):
            if tool == "pull":
                mux.plug(phone)
                pulls.append(afc_pull(work, mux.socket_path, out=f"pulled-{r}"))
                mux.unplug(phone)
            else:
                took, daemon = photod_import(work, mux, phone, f"small-{r}")
                mux.unplug(phone)
                daemon.stop()
                imports.append(took)
        print(f"  round {r + 1}: afc pull {pulls[-1]:.2f} s, photod {imports[-1]:.2f} s, "
              f"ratio {imports[-1] / pulls[-1]:.2f}", flush=True)  # fmt: skip
    for r in range(rounds):  # (at the end: see ``afc_pull``)
        shutil.rmtree(work / f"pulled-{r}")
        shutil.rmtree(work / f"photod-small-{r}")
    pull, took = statistics.median(pulls), statistics.median(imports)
    paired = statistics.median(i / p for i, p in zip(imports, pulls, strict=True))
    print(f"\nsmall: {count} files, {size / 1e6:.0f} MB, median of {rounds} rounds")
    print(f"  bare AFC read loop         {ceiling:7.2f} s  {ceiling / count * 1000:6.2f} ms/file")
    print(f"  pymobiledevice3 afc pull   {pull:7.2f} s  {pull / count * 1000:6.2f} ms/file")
    print(f"  photod import              {took:7.2f} s  {took / count * 1000:6.2f} ms/file")
    print(f"  photod / afc pull: {took / pull:.2f} (of medians), {paired:.2f} (median of "
          f"per-round ratios)")  # fmt: skip
    result("iphone", f"import {count:,} small files", took, pull, "pymobiledevice3 afc pull",
           goal="<= 1.5 x (issue 21)", met=took <= 1.5 * pull, floor=ceiling,
           floor_tool="a bare AFC read loop (no disk)")  # fmt: skip
    shutil.rmtree(media)


def replug(work: Path, mux: FakeUsbmuxd, count: int) -> None:
    """Nothing new: plug-in to "import finished" for an unchanged phone."""
    media = work / "phone-replug"
    build(media, "photo", count, 2_000)
    phone = FakePhone(UDID, media, name="Bench iPhone", paired_hosts={f"HOST-{UDID}"})
    first, daemon = photod_import(work, mux, phone, "replug")
    mux.unplug(phone)
    wait_event(daemon.home, "device_detached")
    phone.reset_counters()
    plugged = time.time()
    mux.plug(phone)
    again = wait_event(daemon.home, "device_import_finished", count=2)[1]
    took = ts(again) - plugged
    daemon.stop()
    mux.unplug(phone)  # else the next step's `afc pull` finds two phones and asks which
    print(f"\nreplug: {count} files")
    print(f"  first import               {first:7.2f} s")
    print(
        f"  re-plug, nothing new       {took:7.2f} s  (files opened: {sum(phone.opened.values())})"
    )
    result("iphone", f"re-plug of an unchanged {count:,}-file phone", took, None,
           "", goal="< 10 s", met=took < 10)  # fmt: skip
    shutil.rmtree(media)


if __name__ == "__main__":
    main()
