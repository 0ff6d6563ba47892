"""The dashboard's cost: the "not yet safe" page with 1,000 photos, and the idle daemon's
memory with the dashboard on.

    python bench/dashboard.py [--photos 1000] [--rounds 5] [--workdir DIR]

A real `photod run` backs up --photos JPEGs (800x600) to a library folder while its
external drive is not plugged in, so every photo is "not yet safe".  Then:

page     GET /unsafe (the HTML, 1,000 thumbnails listed) and the page with every
         thumbnail fetched as a browser does (6 connections), thumbnails cached (a
         first pass made them).  Against `python3 -m http.server` serving the same
         thumbnail files from the state dir (the least any page showing them costs).
         Goal: the page with its thumbnails under 1 s.
memory   the daemon's resident memory, idle: dashboard on and never opened, then after
         the page was shown, against the same daemon with `[dashboard] enabled =
         false`.  Goal: under 150 MB with the dashboard on.

Prints a report and RESULT lines for `bench/all`; copy them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import result  # noqa: E402
from bench.scale import Log, env  # noqa: E402


def make_photos(inbox: Path, n: int) -> None:
    from PIL import Image, ImageDraw

    for i in range(n):
        img = Image.new("RGB", (800, 600), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
        ImageDraw.Draw(img).text((40, 40), f"photo {i}", fill=(255, 255, 255))
        img.save(inbox / f"IMG_{i:05d}.JPG", quality=85)


def write_config(home: Path, enabled: bool) -> Path:
    cfg = home / "photod.toml"
    cfg.write_text(
        f'[policy]\ncopies = 2\nmedia = 2\noffsite = 0\n[[sources]]\nname = "inbox"\n'
        f'type = "folder"\npath = "{home / "inbox"}"\n[[targets]]\nname = "library"\n'
        f'type = "local"\npath = "{home / "library"}"\n[[targets]]\nname = "t7"\n'
        f'type = "local"\npath = "{home / "T7"}"\nmedia = "external"\n'
        f'[daemon]\nstate_dir = "{home / "state"}"\nlog_dir = "{home / "log"}"\n'
        f'[ingest]\nsettle = "0.5s"\n[dashboard]\nenabled = {str(enabled).lower()}\n'
        'listen = "127.0.0.1:0"\n'
    )
    cfg.chmod(0o600)
    return cfg


class Client:
    """Logged in to the dashboard as a browser would be."""

    def __init__(self, home: Path, cfg: Path) -> None:
        out = subprocess.run([sys.executable, "-m", "photod", "--config", str(cfg), "dashboard",
                              "--no-browser"], env=env(home), capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        link = urllib.parse.urlsplit(out.split()[0])
        self.host, self.port = link.hostname or "", link.port or 0
        status, headers, _ = self.get(f"{link.path}?{link.query}")
        assert status == 303, status
        self.cookie = headers["set-cookie"].split(";")[0]

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", path, headers={"Cookie": getattr(self, "cookie", "")})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


def fetch_all(host: str, port: int, paths: list[str], cookie: str = "") -> float:
    """Every path over 6 connections kept alive, as a browser loads a page's images."""

    def worker(share: list[str]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        for path in share:
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, (path, r.status)
        conn.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(worker, [paths[i::6] for i in range(6)]))
    return time.monotonic() - t0


def rss_after(proc: psutil.Process, seconds: float) -> float:
    time.sleep(seconds)
    return float(proc.memory_info().rss) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="photod-bench-dashboard-", dir=args.workdir))
    print(f"# bench/dashboard.py: {platform.platform()}, {psutil.cpu_count()} cores, "
          f"Python {platform.python_version()}, work dir {home}", flush=True)  # fmt: skip
    try:
        (home / "inbox").mkdir()
        make_photos(home / "inbox", args.photos)
        cfg = write_config(home, enabled=True)
        e, log = env(home), Log(home / "log" / "photod.jsonl")
        proc = subprocess.Popen([sys.executable, "-m", "photod", "--config", str(cfg), "run"],
                                env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            written, started, deadline = 0, False, time.monotonic() + 1800
            while (written < args.photos or not started) and time.monotonic() < deadline:
                for ev in log.events():
                    started |= ev.get("event") == "dashboard_started"
                    written += (
                        ev.get("event") == "replica_written" and ev.get("target") == "library"
                    )
                time.sleep(0.2)
            assert written >= args.photos and started, (written, started)
            ps = psutil.Process(proc.pid)
            unopened = rss_after(ps, 15)
            client = Client(home, cfg)
            status, _, page = client.get("/unsafe")
            assert status == 200 and page.count(b'src="/thumb/') == args.photos, status
            thumbs = [p.decode() for p in _thumb_paths(page)]
            t_first = fetch_all(client.host, client.port, thumbs, client.cookie)
            pages, fulls = [], []
            for _ in range(args.rounds):
                t0 = time.monotonic()
                client.get("/unsafe")
                pages.append(time.monotonic() - t0)
                t0 = time.monotonic()
                client.get("/unsafe")
                fulls.append(time.monotonic() - t0 + fetch_all(client.host, client.port,
                                                               thumbs, client.cookie))  # fmt: skip
            opened = rss_after(ps, 15)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        files = sorted((home / "state" / "thumbs").glob("*.jpg"))
        server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1",
                                   "--directory", str(home / "state" / "thumbs")],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            line = server.stdout.readline() if server.stdout else ""
            port = int(line.split("port ")[1].split()[0])
            plain = [fetch_all("127.0.0.1", port, ["/" + f.name for f in files])
                     for _ in range(args.rounds)]  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
        write_config(home, enabled=False)
        proc = subprocess.Popen([sys.executable, "-m", "photod", "--config", str(cfg), "run"],
                                env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            log.wait("daemon_started")
            off = rss_after(psutil.Process(proc.pid), 15)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    page_t, full_t, plain_t = (statistics.median(x) for x in (pages, fulls, plain))
    n = f"{args.photos:,}"
    print(f"not yet safe, {n} photos: the page {page_t:.3f} s; with every thumbnail "
          f"{full_t:.3f} s (the first time, thumbnails made: {t_first:.1f} s); "
          f"http.server, the same thumbnails {plain_t:.3f} s (medians of {args.rounds})")  # fmt: skip
    print(f"idle RSS: dashboard on, never opened {unopened:.1f} MB; after the page "
          f"{opened:.1f} MB; dashboard off {off:.1f} MB")  # fmt: skip
    result("dashboard", f"not yet safe page, {n} photos, thumbnails cached", full_t, plain_t,
           "python3 -m http.server (the thumbnails alone)", goal="< 1 s", met=full_t < 1.0)  # fmt: skip
    result("dashboard", f"not yet safe page, {n} photos: the HTML alone", page_t, None, "")
    result("dashboard", "idle daemon RSS, dashboard opened", opened, off,
           "the same daemon, dashboard off", unit="MB", goal="< 150 MB", met=opened < 150)  # fmt: skip


def _thumb_paths(page: bytes) -> list[bytes]:
    return [b"/thumb/" + part[:64] for part in page.split(b'src="/thumb/')[1:]]


if __name__ == "__main__":
    main()
