"""A/B of bench/iphone.py's small-file row: two or more photod trees, round by round.

    python bench/phone_ab.py [--files 2000] [--rounds 4] TREE[@PRIORITY] TREE[@PRIORITY] ...

Each round runs, for each tree in turn, `pymobiledevice3 afc pull` of the same fake
phone (tests/fakephone.py) and then a real `photod run` of that tree (its own
PYTHONPATH) importing it into one local target, as the row does.  Per run it prints the
wall time (plug-in to `device_import_finished`), photod's CPU (user + sys of its
process, plug-in to the end, so not its start-up) and its threads' context switches a
file, and the `afc pull` of that round: on a shared machine the CPU and the switches
move less with the load than the wall times do.  ``@normal`` runs that tree at
``priority = "normal"`` (photod's default is "idle": nice 10 and the idle I/O class,
against `afc pull` at nice 0).

Compile each tree's bytecode first (`python -m compileall -q photod`), as an install has
it, and run this without PYTHONDONTWRITEBYTECODE.  The trees are checkouts (say `git
worktree add /tmp/old COMMIT`); the fake phone and this script come from this one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import iphone  # noqa: E402
from tests.fakephone import FakePhone, FakeUsbmuxd  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + sys of the process, every thread's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def switches(pid: int) -> int:
    """Context switches of the process's threads alive now (its workers stay alive)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if "ctxt_switches" in line:
                    total += int(line.split()[1])
        except OSError:
            pass  # (a thread that ended meanwhile)
    return total


def import_once(
    work: Path, mux: FakeUsbmuxd, phone: FakePhone, tree: str, priority: str, tag: str
) -> tuple[float, float, int]:
    """One import by ``tree``'s photod: wall seconds, CPU seconds, context switches."""
    home = iphone.fresh(work / f"photod-{tag}")
    config = iphone.config(home)
    if priority:
        config.write_text(config.read_text() + f'priority = "{priority}"\n')
    env = {**os.environ, "USBMUXD_SOCKET_ADDRESS": str(mux.socket_path), "HOME": str(home),
           "PYTHONPATH": tree}  # fmt: skip
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "photod", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        iphone.wait_event(home, "usbmuxd_connected", timeout=60)
        time.sleep(1.0)  # what the start leaves running beside it (the page check) ends
        cpu, switched = cpu_seconds(proc.pid), switches(proc.pid)
        plugged = time.time()
        mux.plug(phone)
        done = iphone.wait_event(home, "device_import_finished")[0]
        cpu, switched = cpu_seconds(proc.pid) - cpu, switches(proc.pid) - switched
        mux.unplug(phone)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    shutil.rmtree(home)
    return iphone.ts(done) - plugged, cpu, switched


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="photod checkouts, each TREE or TREE@PRIORITY")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workdir", default="/tmp/photod-bench-phone-ab")
    args = ap.parse_args()
    n = args.files
    work = iphone.fresh(Path(args.workdir))
    mux = FakeUsbmuxd(work / "usbmuxd.sock")
    mux.start()
    media = work / "phone-small"
    iphone.build(media, "photo", n, 50_000)
    phone = FakePhone(iphone.UDID, media, name="Bench iPhone",
                      paired_hosts={f"HOST-{iphone.UDID}"})  # fmt: skip
    runs: dict[str, list[tuple[float, float, int, float]]] = {t: [] for t in args.trees}
    try:
        for r in range(args.rounds):
            for i, spec in enumerate(args.trees):
                tree, _, priority = spec.partition("@")
                mux.plug(phone)
                pull = iphone.afc_pull(work, mux.socket_path)
                mux.unplug(phone)
                wall, cpu, switched = import_once(work, mux, phone, tree, priority, f"{r}-{i}")
                runs[spec].append((wall, cpu, switched, pull))
                print(f"round {r} {spec}: photod {wall:6.2f} s, CPU {cpu / n * 1000:5.2f} ms "
                      f"a file, {switched / n:4.0f} switches a file; afc pull {pull:6.2f} s; "
                      f"ratio {wall / pull:.2f}", flush=True)  # fmt: skip
    finally:
        mux.close()
        shutil.rmtree(work, ignore_errors=True)
    for spec, rows in runs.items():
        cpus = " ".join(f"{c / n * 1000:.2f}" for _, c, _, _ in rows)
        ratios = " ".join(f"{w / p:.2f}" for w, _, _, p in rows)
        print(f"{spec}: photod median {statistics.median(r[0] for r in rows):.2f} s; CPU a "
              f"file median {statistics.median(r[1] for r in rows) / n * 1000:.2f} ms ({cpus}); "
              f"ratios {ratios}")  # fmt: skip


if __name__ == "__main__":
    main()
