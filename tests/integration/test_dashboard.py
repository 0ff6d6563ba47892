"""The dashboard in a real browser (headless Chromium driven by Selenium) against a
real `photod run` with real sample photos (HEIC included) and an external drive that
is not plugged in; and its guard, asked over plain HTTP as another site or program
would.  A screenshot of each page is kept in test-output/dashboard/."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Photod, wait_for
from tests.integration import test_iphone
from tests.integration.conftest import Setup
from tests.integration.test_iphone import UDID_A, UDID_B, PhoneSetup
from tests.integration.test_schedule import _peak_rss_mb

pytestmark = pytest.mark.integration

# The phone tests' fake usbmuxd and setup, as fixtures here too.
phones = test_iphone.phones
usbmuxd = test_iphone.usbmuxd

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PHOTOD_TEST_OUTPUT", ROOT / "test-output")) / "dashboard"
PHOTOS = ("heic_IMG_5195.HEIC", "jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    for program, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        if shutil.which(program) is None:
            pytest.fail(f"{program} not found: apt-get install {package}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def start(setup: Setup, samples: Path) -> tuple[Photod, Path, Path]:
    """A daemon with a library folder and an external drive not plugged in, the sample
    photos backed up to the library."""
    lib, drive = setup.home / "library", setup.home / "media" / "T7"
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "t7", "path": str(drive), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()  # fmt: skip
    for name in PHOTOS:
        shutil.copy(samples / name, setup.inbox / name)
    p.wait_event("replica_written", count=len(PHOTOS), target="library")
    p.wait_event("dashboard_started")
    return p, lib, drive


def base_url(p: Photod) -> str:
    return str(json.loads((p.home / "state" / "dashboard.json").read_text())["url"])


def login(p: Photod) -> str:
    r = p.cli("dashboard", "--no-browser")
    assert 0 == r.returncode, r.stderr
    link = r.stdout.split()[0]
    assert link.startswith(base_url(p) + "/login?t=")
    return link


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def images_loaded(driver: Any) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every image on the page, once each has finished loading."""
    script = (
        "const imgs = Array.from(document.images); imgs.forEach(i => i.loading = 'eager');"
        "return imgs.every(i => i.complete) ? imgs.map(i => [i.src, i.naturalWidth]) : null;"
    )
    found: list[tuple[str, int]] = []

    def done() -> bool:
        nonlocal found
        found = driver.execute_script(script)
        return found is not None

    wait_for(done, 30, "every thumbnail to load")
    return [(src, width) for src, width in found]


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_every_page_shows_the_right_numbers_and_the_photos(
    setup: Setup, samples: Path, browser: Any
) -> None:
    """Home says NOT YET with the drive's reason; "not yet safe" shows the three photos
    the drive lacks, every thumbnail decoded (HEIC too), each opening its timeline;
    the page empties by itself when the drive comes; events put the failure first."""
    from selenium.webdriver.common.by import By

    p, _, drive = start(setup, samples)
    url = base_url(p)
    browser.get(login(p))
    assert browser.current_url == url + "/"
    assert "NOT YET: 3 of 3 photos" in text(browser, "#headline")
    card = text(browser, 'section[data-target="t7"]')
    assert "unavailable" in card and "does not exist" in card and "Pending\n3" in card
    assert "3 photos" in text(browser, 'section[data-target="library"] .replicas')
    shot(browser, "home")

    browser.get(url + "/unsafe")
    assert "3 photo(s) needs 1 more copy, 1 more kind of media" in text(browser, "main")
    assert "t7: unavailable" in text(browser, ".why")
    loaded = images_loaded(browser)
    assert 3 == len(loaded) and all(width > 0 for _, width in loaded), loaded
    shot(browser, "unsafe")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".photo span")]
    assert sorted(PHOTOS) == sorted(names)

    browser.find_element(By.CSS_SELECTOR, 'a.photo[title$="HEIC"]').click()
    wait_for(lambda: "/asset/" in browser.current_url, 10, "the photo's page")
    sha = hashlib.sha256((samples / "heic_IMG_5195.HEIC").read_bytes()).hexdigest()
    assert browser.current_url == f"{url}/asset/{sha}"
    assert "replica_written" in text(browser, "ol.events") and "library" == text(browser, "#held")
    assert all(width > 0 for _, width in images_loaded(browser))
    shot(browser, "asset")

    browser.get(url + "/events")
    assert "target_unavailable" in text(browser, "#failures") and "t7" in text(browser, "#failures")
    shot(browser, "events")
    browser.get(url + "/phones")
    assert "No phone has been plugged in yet" in text(browser, "main")
    shot(browser, "phones")

    browser.get(url + "/unsafe")
    drive.mkdir(parents=True)  # the drive is plugged in; the open page follows by itself
    p.wait_protected(3)
    wait_for(lambda: browser.find_elements(By.ID, "all-safe"), 30, "the page to empty itself")
    shot(browser, "unsafe-after")
    browser.get(url + "/")
    assert "PROTECTED: all 3 photos" in text(browser, "#headline")


def test_a_restore_chosen_in_the_library_is_bit_exact_and_overwrites_nothing(
    setup: Setup, samples: Path, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    p, _, _ = start(setup, samples)
    url = base_url(p)
    browser.get(login(p))
    browser.get(url + "/library")
    assert all(width > 0 for _, width in images_loaded(browser))
    months = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "aside .months a")]
    assert len(months) >= 2  # the samples were taken in different months
    dest = tmp_path / "Restored"
    restored: dict[str, str] = {}
    for month in months:
        browser.get(f"{url}/library?month={month}")
        browser.find_element(By.ID, "all").click()
        box = browser.find_element(By.ID, "dest")
        box.clear()
        box.send_keys(str(dest))
        browser.find_element(By.ID, "go").click()
        wait_for(lambda: text(browser, "#progress").startswith(("restored", "restore failed")),
                 60, "the restore to end", lambda: text(browser, "#progress"))  # fmt: skip
        assert text(browser, "#progress").startswith("restored "), text(browser, "#progress")
    shot(browser, "library")
    for f in dest.rglob("*"):
        if f.is_file():
            restored[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    expected = {n: hashlib.sha256((samples / n).read_bytes()).hexdigest() for n in PHOTOS}
    assert expected == restored
    # Again, over what is there: every file skipped, none overwritten.
    browser.get(f"{url}/library?month={months[0]}")
    browser.find_element(By.ID, "all").click()
    browser.find_element(By.ID, "dest").send_keys(str(dest))
    browser.find_element(By.ID, "go").click()
    wait_for(lambda: "skipped" in text(browser, "#progress"), 60, "the second restore")
    assert "restored 0 file(s)" in text(browser, "#progress")
    assert "failed 0" in text(browser, "#progress")
    assert p.events("restore_finished")


# -- the guard, over plain HTTP ---------------------------------------------------------

PATHS = ["/", "/unsafe", "/phones", "/library", "/events", "/api/changes", "/static/app.js",
         "/thumb/" + "0" * 64, "/asset/" + "0" * 64, "/restore/1"]  # fmt: skip


def ask(
    url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
    body: str | None = None, timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True)
        sent = {"Host": u.netloc, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent["Content-Length"] = str(len(body))
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders(body.encode() if body is not None else None)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def session(url: str, link: str) -> str:
    status, headers, _ = ask(url, urllib.parse.urlsplit(link).path + "?" +
                             urllib.parse.urlsplit(link).query)  # fmt: skip
    assert 303 == status
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return cookie.split(";")[0]


class Restores:
    """Restores asked of a daemon's dashboard over HTTP, as its page asks them."""

    def __init__(self, p: Photod) -> None:
        self.url = base_url(p)
        self.cookie = {"Cookie": session(self.url, login(p))}
        page = ask(self.url, "/library?month=undated", headers=self.cookie)[2].decode()
        self.csrf = page.split('name="csrf" content="')[1].split('"')[0]

    def form(self, dest: str, shas: list[str]) -> str:
        return urllib.parse.urlencode({"dest": dest, "assets": ",".join(shas)})

    def restore(self, dest: str, shas: list[str]) -> tuple[int, dict[str, Any]]:
        headers = {**self.cookie, "X-CSRF-Token": self.csrf}
        status, _, body = ask(self.url, "/restore", "POST", headers, self.form(dest, shas))
        return status, json.loads(body)

    def view(self, job: int) -> dict[str, Any]:
        return dict(json.loads(ask(self.url, f"/restore/{job}", headers=self.cookie)[2]))

    def ended(self, job: int, timeout: float = 30) -> dict[str, Any]:
        wait_for(lambda: self.view(job)["state"] != "running", timeout, "the restore to end")
        return self.view(job)


def test_the_guard(setup: Setup, samples: Path) -> None:
    """Without a session every page and endpoint says 401; a foreign Host gets 403
    even with one; a change without the CSRF token, or from another origin, 403; a
    login link works once; every answer carries a strict CSP and no CORS header."""
    p, _, _ = start(setup, samples)
    url = base_url(p)
    for path in PATHS:
        status, headers, _ = ask(url, path)
        assert 401 == status, path
        assert "default-src 'none'" in headers["content-security-policy"]
    assert 401 == ask(url, "/restore", "POST", body="dest=/tmp/x&assets=" + "0" * 64)[0]
    assert 401 == ask(url, "/", headers={"Cookie": "photod_session=1.2.3"})[0]
    for junk in ("photod_session=1.2.\u00e9", "photod_session=" + "9" * 5000):  # never a 500
        assert 401 == ask(url, "/", headers={"Cookie": junk.encode().decode("latin-1")})[0]
    assert 401 == ask(url, "/login?t=1.2.%C3%A9")[0]
    assert not p.events("dashboard_failed") and "Traceback" not in p.log_file.read_text()

    link = login(p)
    cookie = {"Cookie": session(url, link)}
    assert (
        401
        == ask(url, urllib.parse.urlsplit(link).path + "?" + urllib.parse.urlsplit(link).query)[0]
    )  # fmt: skip  (used up)
    for path in PATHS[:5]:
        status, headers, body = ask(url, path, headers=cookie)
        assert 200 == status, (path, body[:200])
        assert not any(k.startswith("access-control-") for k in headers)
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "<script>" not in body.decode()  # no inline script: the CSP forbids it
    port = urllib.parse.urlsplit(url).port
    for host in (f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", "127.0.0.1"):
        assert 403 == ask(url, "/", headers={**cookie, "Host": host})[0], host
    assert 403 == ask(url, "/", headers={"Host": f"rebind.example:{port}"})[0]

    form = f"dest={setup.home / 'out'}&assets={'0' * 64}"
    assert 403 == ask(url, "/restore", "POST", cookie, form)[0]
    page = ask(url, "/library", headers=cookie)[2].decode()
    csrf = page.split('name="csrf" content="')[1].split('"')[0]
    good = {**cookie, "X-CSRF-Token": csrf}
    assert 403 == ask(url, "/restore", "POST", {**cookie, "X-CSRF-Token": "x" * 40}, form)[0]
    assert 403 == ask(url, "/restore", "POST", {**good, "Origin": "http://evil.example"}, form)[0]
    status, _, body = ask(url, "/restore", "POST", {**good, "Origin": url}, form)
    assert 200 == status, body
    wait_for(lambda: b'"running"' not in ask(url, "/restore/1", headers=cookie)[2], 30, "it")
    local = url.replace("127.0.0.1", "localhost")  # the same server by its other name
    status, _, body = ask(url, "/restore", "POST",
                          {**good, "Host": local.split("//")[1], "Origin": local}, form)  # fmt: skip
    assert 200 == status, body
    assert not (setup.home / "out").exists() or not any((setup.home / "out").rglob("*.jpg"))


def test_the_secret_and_the_address(setup: Setup, samples: Path) -> None:
    """The secret is private to the user; a link made with another secret is refused;
    the dashboard never listens beyond loopback; `enabled = false` serves nothing."""
    p, _, _ = start(setup, samples)
    secret = p.home / "state" / "dashboard.secret"
    assert 0o600 == secret.stat().st_mode & 0o777
    url = base_url(p)
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"
    forged = "9999999999.0123456789abcdef0123456789abcdef." + "ab" * 32
    assert 401 == ask(url, "/login?t=" + forged)[0]
    p.stop()
    text_ = p.config.read_text().replace('listen = "127.0.0.1:0"', 'listen = "0.0.0.0:8737"')
    p.config.write_text(text_)
    check = p.cli("config", "check")
    assert 78 == check.returncode
    assert "dashboard.listen" in check.stderr and "loopback" in check.stderr
    p.config.write_text(text_.replace('listen = "0.0.0.0:8737"', "enabled = false"))
    p.start()
    p.wait_event("daemon_started", count=2)
    time.sleep(1)
    assert not (p.home / "state" / "dashboard.json").exists()
    r = p.cli("dashboard", "--no-browser")
    assert 1 == r.returncode and "enabled = false" in r.stderr


def test_a_port_in_use_is_an_event_and_backups_go_on(setup: Setup, samples: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        lib = setup.home / "library"
        p = setup.photod([{"name": "library", "path": str(lib)}])
        p.config.write_text(p.config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
        p.start()
        shutil.copy(samples / PHOTOS[0], setup.inbox / PHOTOS[0])
        event = p.wait_event("dashboard_unavailable")[0]
        assert str(port) in event["listen"] and "free port" in event["reason"]
        p.wait_protected(1)
        r = p.cli("dashboard", "--no-browser")
        assert 3 == r.returncode, r.stderr
    finally:
        taken.close()


def test_thumbnails_follow_a_catalog_rebuilt_while_running(setup: Setup) -> None:
    """The daemon runs on an older catalog (its state dir restored from a backup, the
    drive away); the drive comes back with newer records and the catalog is rebuilt
    from them while the dashboard is open: a photo that only the rebuilt catalog knows
    shows its thumbnail (the dashboard reads the new file, not the old one set aside)."""
    from tests.integration.test_truth import make_photos

    lib, away, state = setup.home / "lib", setup.home / "lib-away", setup.home / "state"
    lib.mkdir()  # (the drive's folder: photod makes none under the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    first = make_photos(setup.inbox, 2)
    p.start()
    p.wait_protected(2)
    assert 0 == p.stop()
    shutil.copytree(state, setup.home / "state-old")
    second = make_photos(setup.inbox, 2, start=2)
    p.start()
    p.wait_protected(4)
    assert 0 == p.stop()
    shutil.rmtree(state)
    shutil.copytree(setup.home / "state-old", state)  # the older state dir, restored
    for name in second:
        (setup.inbox / name).unlink()
    lib.rename(away)
    p.start()
    p.wait_event("dashboard_started", count=3)
    url = base_url(p)
    cookie = session(url, login(p))
    status, headers, _ = ask(url, f"/thumb/{first['IMG_0000.JPG']}", headers={"Cookie": cookie})
    assert (200, "image/jpeg") == (status, headers.get("content-type"))
    away.rename(lib)  # the drive is back, with the newer records
    p.wait_event("catalog_recovered", timeout=60)
    wait_for(lambda: p.status().get("assets") == 4, 30, "the rebuilt catalog in use")
    status, headers, body = ask(url, f"/thumb/{second['IMG_0002.JPG']}",
                                headers={"Cookie": cookie})  # fmt: skip
    assert (200, "image/jpeg") == (status, headers.get("content-type")), body[:200]
    assert 0 == p.stop()


def test_a_thumbnail_asked_while_the_catalog_is_damaged_is_no_error_page(setup: Setup) -> None:
    """The catalog is damaged and held (its target away): the dashboard's thumbnails
    answer 503, not cached, its pages say what is wrong (503 too), and there is no
    traceback in the daemon's output."""
    from tests.integration.test_truth import make_photos

    lib = setup.home / "lib"
    lib.mkdir()  # (the drive's folder: photod makes none under the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    shas = make_photos(setup.inbox, 2)
    assert 0 == p.cli("run", "--once").returncode
    db = setup.home / "state" / "catalog.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    lib.rename(setup.home / "lib-away")
    p.start(wait=False)
    p.wait_event("catalog_untrusted", timeout=30)
    p.wait_event("dashboard_started", timeout=30)
    url = base_url(p)
    cookie = session(url, login(p))
    for sha in [*shas.values(), *shas.values()]:
        status, headers, body = ask(url, f"/thumb/{sha}", headers={"Cookie": cookie})
        assert (503, "no-store") == (status, headers.get("cache-control")), body
    for page in ("/", "/unsafe", "/library", f"/asset/{sha}"):
        status, _, body = ask(url, page, headers={"Cookie": cookie})
        assert 503 == status and b"catalog" in body and b"damaged" in body, (page, body[:300])
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()


def test_the_browser_is_given_the_login_page_in_a_temporary_folder_named_with_a_hash(
    setup: Setup,
) -> None:
    """`photod dashboard` on a desktop writes a private page that forwards to the link,
    in the temporary folder, and gives the browser its file:// address.  In a folder
    named "tmp #1 ?%41" that address was the bare path: the browser was sent to
    "tmp " (cut at '#') and showed no such file.  The "browser" here opens the address
    it is given the way a browser does (urllib's file handler) and must find the link."""
    tmp = setup.home / "tmp #1 ?%41"
    tmp.mkdir()
    given = setup.home / "given.txt"
    browser = setup.home / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > "{given}"\n')
    browser.chmod(0o755)
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    p.wait_event("dashboard_started")
    p.env |= {"TMPDIR": str(tmp), "DISPLAY": ":99", "BROWSER": f"{browser} %s"}
    r = p.cli("dashboard")
    assert 0 == r.returncode, r.stderr
    link = r.stdout.split()[0]
    import urllib.request

    with urllib.request.urlopen(given.read_text()) as page:
        assert f"url={link}" in page.read().decode()


def test_the_dashboard_follows_a_reload(setup: Setup) -> None:
    """`[dashboard] enabled = false` and `photod reload`: the dashboard stops (its port
    answers nothing, `photod dashboard` says it is off); enabled again and reloaded, it
    is served again."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}]).start()
    p.wait_event("dashboard_started")
    url = base_url(p)
    assert 401 == ask(url, "/")[0]
    used = login(p)
    assert session(url, used)
    on = p.config.read_text()
    assert 'listen = "127.0.0.1:0"' in on
    p.config.write_text(on.replace('listen = "127.0.0.1:0"', "enabled = false"))
    assert 0 == p.cli("reload").returncode
    p.wait_event("daemon_reloaded")
    assert not (p.home / "state" / "dashboard.json").exists()
    with pytest.raises(OSError):
        ask(url, "/")
    r = p.cli("dashboard", "--no-browser")
    assert 1 == r.returncode and "enabled = false" in r.stderr
    p.config.write_text(on)
    assert 0 == p.cli("reload").returncode
    p.wait_event("dashboard_started", count=2)
    again = base_url(p)
    assert 401 == ask(again, "/")[0]
    assert session(again, login(p))  # a login link works on it
    token = urllib.parse.urlsplit(used)
    assert 401 == ask(again, f"{token.path}?{token.query}")[0]  # spent before: still spent
    assert 0 == p.stop()
    # Started and stopped twice, and uvicorn's own chatter ("Shutting down") stays out:
    # every line of the log is one of photod's events.
    names = {e["event"] for e in p.events()}
    assert all(re.fullmatch("[a-z][a-z0-9_]*", n) for n in names), names


def test_a_dashboard_address_taken_at_a_reload_is_tried_again_at_the_next(setup: Setup) -> None:
    """A reload moves the dashboard to a port another program holds: one event, the
    backups go on; once the port is free, the next reload serves the dashboard there."""
    import socket

    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    p.wait_event("dashboard_started")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    p.config.write_text(p.config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    assert 0 == p.cli("reload").returncode
    p.wait_event("dashboard_unavailable")
    assert 3 == p.cli("dashboard", "--no-browser").returncode
    taken.close()
    assert 0 == p.cli("reload").returncode
    p.wait_event("dashboard_started", count=2)
    assert base_url(p) == f"http://127.0.0.1:{port}"
    assert session(base_url(p), login(p))
    assert 0 == p.stop()


def test_a_dashboard_that_failed_takes_no_reload_or_stop_down(setup: Setup) -> None:
    """The dashboard fails after it began (its address file cannot be written): one
    event, and a reload, then a stop, go as usual (no traceback, a clean exit); the
    reload tries the dashboard again, and once the cause is gone it is served."""
    state = setup.home / "state"
    state.mkdir(mode=0o700)
    (state / "dashboard.json").mkdir()  # what the dashboard cannot replace
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    p.wait_event("dashboard_failed")
    assert 0 == p.cli("reload").returncode
    p.wait_event("dashboard_failed", count=2)
    assert p.proc.poll() is None  # type: ignore[union-attr]
    (state / "dashboard.json").rmdir()
    assert 0 == p.cli("reload").returncode
    p.wait_event("dashboard_started")
    assert session(base_url(p), login(p))
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()


def test_connections_without_a_session_cannot_starve_the_daemon(
    setup: Setup, samples: Path
) -> None:
    """Another local user, without a session, opens more connections to the port than
    the dashboard keeps (idle ones took every descriptor the daemon had: copies failed
    with "Too many open files") and sends junk on others (each a warning line: a flood
    rotated the event log away).  Those past the cap are closed at once, those that
    send no whole request (nothing, or a byte of one) within seconds; the junk is one
    line a minute; a photo still backs up meanwhile."""
    import socket
    import time

    p, _, _ = start(setup, samples)
    port = int(base_url(p).rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    for s in held[:30]:  # a byte of a request, never the rest (it held one for ever)
        s.sendall(b"G")
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port)) as junk:
            junk.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    new = (samples / "jpg_gps_DSCN0010.jpg").read_bytes() + b"taken during the flood"
    (setup.home / "during.jpg").write_bytes(new)
    (setup.home / "during.jpg").rename(setup.inbox / "during.jpg")
    p.wait_event("replica_written", target="library", path="2008/2008-10-22/during.jpg")
    time.sleep(11)  # past the time a connection has to send its request (10 s)

    def closed(s: socket.socket) -> bool:
        s.settimeout(0.5)
        try:
            return s.recv(1) == b""
        except TimeoutError:
            return False  # still held open
        except OSError:
            return True  # reset
        finally:
            s.close()

    assert 200 == sum(closed(s) for s in held)
    invalid = [e for e in p.events() if "Invalid HTTP request" in str(e.get("event"))]
    assert len(invalid) <= 1, len(invalid)
    assert 0 == p.stop()


def test_a_catalog_older_than_its_snapshot_shows_why_nothing_is_done(
    setup: Setup, samples: Path, browser: Any
) -> None:
    """The catalog put back from an old backup, its drive away: the daemon holds.  Home
    said "Internal Server Error" (a traceback in the log); every page now says what
    `photod status` says: NOT ACTING, why, and what fixes it, and shows no photos."""
    import sqlite3

    from selenium.webdriver.common.by import By

    lib = setup.home / "lib"
    lib.mkdir()  # (the drive's folder: photod makes none under the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    shutil.copy(samples / PHOTOS[0], setup.inbox / PHOTOS[0])
    assert 0 == p.cli("run", "--once").returncode
    db, old = setup.home / "state" / "catalog.sqlite", setup.home / "from-a-backup.sqlite"
    with sqlite3.connect(db) as now, sqlite3.connect(old) as copy:
        now.backup(copy)
    shutil.copy(samples / PHOTOS[1], setup.inbox / PHOTOS[1])
    assert 0 == p.cli("run", "--once").returncode
    for leftover in ("-wal", "-shm"):
        Path(f"{db}{leftover}").unlink(missing_ok=True)
    old.replace(db)
    lib.rename(setup.home / "lib-away")
    p.start(wait=False)
    p.wait_event("catalog_untrusted", timeout=30)
    p.wait_event("dashboard_started", timeout=30)
    said = p.cli("status")
    assert 65 == said.returncode, said.stdout + said.stderr

    url = base_url(p)
    browser.get(login(p))
    for page in ("/", "/unsafe", "/library"):
        browser.get(url + page)
        headline = text(browser, "#headline")
        assert headline.startswith("NOT ACTING: the catalog "), (page, headline)
        assert "is older than its last snapshot" in headline
        assert "photod catalog rebuild --from TARGET" in text(browser, "#fix")
        assert headline in said.stdout.replace("\n", " ")
        assert not browser.find_elements(By.CSS_SELECTOR, ".photo")
    shot(browser, "held")
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()
    assert not p.events("dashboard_failed")


def test_a_lost_catalog_is_said_missing_and_being_rebuilt_not_new(
    setup: Setup, samples: Path, browser: Any
) -> None:
    """The catalog deleted after photos were backed up: the dashboard said "No catalog
    yet: photod has not recorded a photo yet".  With its drive away, every page says
    now what `photod status` says (NOT ACTING: the catalog is missing, and what fixes
    it); with the drive back, that photod is rebuilding it, then shows the photos."""
    from selenium.webdriver.common.by import By

    lib = setup.home / "lib"
    lib.mkdir()  # (the drive's folder: photod makes none under the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    for name in PHOTOS[:2]:
        shutil.copy(samples / name, setup.inbox / name)
    assert 0 == p.cli("run", "--once").returncode
    for lost in ("", "-wal", "-shm"):
        (setup.home / "state" / f"catalog.sqlite{lost}").unlink(missing_ok=True)

    def says_missing(page: str) -> str:
        browser.get(base_url(p) + page)
        body = text(browser, "main")
        assert "No catalog yet" not in body
        assert text(browser, "#headline").startswith("NOT ACTING: the catalog "), body
        assert text(browser, "#headline").endswith("catalog.sqlite is missing"), body
        return text(browser, "#fix")

    lib.rename(setup.home / "lib-away")
    p.start(wait=False)
    p.wait_event("catalog_untrusted", timeout=30)
    p.wait_event("dashboard_started", timeout=30)
    browser.get(login(p))
    for page in ("/", "/library", "/unsafe"):
        assert "plug in or connect a target" in says_missing(page)
        assert not browser.find_elements(By.ID, "checking")
    shot(browser, "missing-held")
    assert 0 == p.stop()

    (setup.home / "lib-away").rename(lib)
    p.env["PHOTOD_FAILPOINTS"] = "catalog_rebuilding=sleep:20"  # a long rebuild
    p.start(wait=False)
    p.wait_event("catalog_rebuilding", timeout=30)
    p.wait_event("dashboard_started", count=2, timeout=30)
    browser.get(login(p))
    assert "photod catalog rebuild --from TARGET" in says_missing("/library")
    assert "rebuilds it from one that holds" in text(browser, "#checking")
    shot(browser, "missing-rebuilding")
    p.wait_event("catalog_recovered", timeout=60)
    browser.get(base_url(p) + "/")
    assert "PROTECTED: all 2 photos" in text(browser, "#headline")
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()


def test_a_folder_no_restore_can_go_into_is_said_and_restores_go_on(
    setup: Setup, samples: Path
) -> None:
    """A folder named with a NUL byte started a restore that crashed in its thread and
    stayed "running": every later restore was refused (429) until a restart; and
    `~nosuchuser/x` was a 500.  Both are now refused at once (400) with what to type
    instead; and a restore that fails in a way no one expected (a bug) ends as failed,
    so the next one runs and restores every photo."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    p.env["PHOTOD_FAILPOINTS"] = "restore_chunk=1:raise"  # (the first file's first read)
    p.start()
    for name in PHOTOS:
        shutil.copy(samples / name, setup.inbox / name)
    p.wait_protected(len(PHOTOS))
    p.wait_event("dashboard_started")
    dash = Restores(p)
    shas = [hashlib.sha256((samples / n).read_bytes()).hexdigest() for n in PHOTOS]

    def restore(dest: str) -> tuple[int, dict[str, Any]]:
        return dash.restore(dest, shas)

    ended = dash.ended
    status, said = restore(f"{setup.home}/Re\0stored")
    assert 400 == status, said
    assert "NUL" in said["error"] and "give the folder as a full path" in said["error"]
    status, said = restore("~nosuchuser/Restored")
    assert 400 == status, said
    assert "there is no user named 'nosuchuser' here" in said["error"]
    dest = setup.home / "Restored"
    status, said = restore(str(dest))
    assert 200 == status, said
    assert ("failed", "FailpointHit: failpoint 'restore_chunk' hit") == (
        (job := ended(said["id"]))["state"], job["message"])  # fmt: skip
    status, said = restore(str(dest))
    assert 200 == status, said
    assert ("done", len(PHOTOS)) == ((job := ended(said["id"]))["state"], job["restored"])
    got = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in dest.rglob("*.*")}
    assert {n: hashlib.sha256((samples / n).read_bytes()).hexdigest() for n in PHOTOS} == got
    assert ["error"] == [e["level"] for e in p.events("restore_failed")]  # (the bug's traceback)
    assert 0 == p.stop()


def test_a_restore_cut_off_by_a_stop_says_it_did_not_finish(
    setup: Setup, samples: Path, browser: Any
) -> None:
    """The daemon stops while a restore chosen on the page runs: the page said
    "restoring ... %" for ever, and the log called it finished.  The page now says that
    the daemon stopped and the restore did not finish, with how many files it restored;
    the log says it at warning, with how many were not restored; no temporary is left."""
    import re as regex

    from selenium.webdriver.common.by import By

    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    p.env["PHOTOD_FAILPOINTS"] = "restore_chunk=sleep:0.3"  # a slow drive: 0.3 s a file
    p.start()
    photo = (samples / "jpg_gps_DSCN0010.jpg").read_bytes()
    for i in range(30):
        (setup.inbox / f"IMG_{i:04}.jpg").write_bytes(photo + i.to_bytes(2, "big"))
    p.wait_protected(30)
    p.wait_event("dashboard_started")
    browser.get(login(p))
    browser.get(base_url(p) + "/library")
    assert 30 == len(browser.find_elements(By.CSS_SELECTOR, ".photo"))
    dest = setup.home / "Restored"
    browser.find_element(By.ID, "all").click()
    browser.find_element(By.ID, "dest").send_keys(str(dest))
    browser.find_element(By.ID, "go").click()
    wait_for(lambda: len(list(dest.rglob("*.jpg"))) >= 3, 30, "a few files restored")

    def heard() -> bool:
        """The page (it asks every half second) has heard of a few files restored: a
        tenth of the bytes is three files read, two of them ended (they are restored
        one after another).  A fixed second of waiting assumed a browser that keeps
        time, which a loaded machine's need not."""
        said = regex.fullmatch(
            r"restoring 30 file\(s\) into .*: (\d+)%", text(browser, "#progress")
        )
        return said is not None and int(said[1]) >= 10

    wait_for(heard, 20, "the page to hear of them", lambda: text(browser, "#progress"))
    assert 0 == p.stop()

    wait_for(lambda: text(browser, "#progress").startswith("the daemon stopped"), 10,
             "the page to say so", lambda: text(browser, "#progress"))  # fmt: skip
    said = regex.fullmatch(r"the daemon stopped: this restore did not finish "
                           r"\((\d+) of 30 restored\)", text(browser, "#progress"))  # fmt: skip
    assert said is not None, text(browser, "#progress")
    shot(browser, "restore-stopped")
    restored = [f for f in dest.rglob("*") if f.is_file()]
    assert [] == [f.name for f in restored if f.name.startswith(".photod-")]
    assert 1 <= int(said[1]) <= len(restored) < 30  # (as many as the page last heard of)
    [stopped] = p.events("restore_stopped")
    assert ("warning", len(restored), 30 - len(restored)) == (
        stopped["level"], stopped["restored"], stopped["not_restored"])  # fmt: skip
    assert [] == p.events("restore_finished")


def slow_library(setup: Setup, failpoints: str, n: int) -> tuple[Photod, list[str]]:
    """A daemon whose restores are slowed where ``failpoints`` says, its library ``n``
    photos whose files are years old (their file time comes back with them); the
    commands run beside it are not slowed."""
    from tests.integration.test_truth import make_photos

    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.env["PHOTOD_FAILPOINTS"] = failpoints
    p.start()
    p.env.pop("PHOTOD_FAILPOINTS")
    made = make_photos(setup.home / "camera", n)
    for name in made:
        os.utime(setup.home / "camera" / name, (1.6e9, 1.6e9))
        (setup.home / "camera" / name).rename(setup.inbox / name)
    p.wait_protected(n)
    p.wait_event("dashboard_started")
    return p, sorted(made.values())


def test_two_restores_asked_at_once_run_one_at_a_time(setup: Setup) -> None:
    """Two restores asked at the same moment (their requests arriving in pieces, as a
    slow or busy connection sends them): both passed the one-at-a-time check and ran at
    once; now one runs and the other is told to wait (429)."""
    import socket

    p, shas = slow_library(setup, "restore_chunk=sleep:0.2", 10)
    dash = Restores(p)
    body = dash.form(str(setup.home / "Restored"), shas).encode()
    host = urllib.parse.urlsplit(dash.url).netloc
    head = (f"POST /restore HTTP/1.1\r\nHost: {host}\r\nCookie: {dash.cookie['Cookie']}\r\n"
            f"X-CSRF-Token: {dash.csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    port = int(dash.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as a, \
            socket.create_connection(("127.0.0.1", port)) as b:  # fmt: skip
        a.sendall(head + body[:100])
        b.sendall(head + body[:100])
        time.sleep(0.5)  # both heads read: each request waits for the rest of its body
        a.sendall(body[100:])
        b.sendall(body[100:])
        answers = [s.makefile("rb").read().split(b"\r\n", 1)[0] for s in (a, b)]
    assert [b"HTTP/1.1 200 OK", b"HTTP/1.1 429 Too Many Requests"] == sorted(answers)
    job = dash.ended(1, timeout=60)
    assert ("done", 10) == (job["state"], job["restored"])
    assert {} == dash.view(2)  # (never started)
    assert 1 == len(p.events("restore_started"))
    assert 0 == p.stop()


def test_two_restores_into_one_folder_each_restores_every_photo(setup: Setup) -> None:
    """A restore from the dashboard and `photod restore` into the same folder at once:
    the second took the first's temporary (stamped with the photo's years-old file
    time before it got its name) for a killed restore's and deleted it, and the first
    reported an intact photo "missing on the target".  Now both end with nothing
    failed, and every photo is there once, whole, with its own file time; and a file
    that goes from DEST as it is written is said to have gone from DEST."""
    p, shas = slow_library(setup, "restore_linking=sleep:2", 4)  # (a slow disk's flush)
    dash = Restores(p)
    dest = setup.home / "Restored"
    status, job = dash.restore(str(dest), shas)
    assert 200 == status, job
    wait_for(lambda: list(dest.rglob(".photod-restore-*")), 10, "the first file written")
    p.env["PHOTOD_FAILPOINTS"] = "restore_linking=sleep:2"  # (the same slow disk)
    cli = p.cli("restore", str(dest))
    assert 0 == cli.returncode, cli.stdout + cli.stderr
    assert "failed 0" in cli.stdout
    job = dash.ended(job["id"])
    assert ("done", [], 4) == (job["state"], job["failed"], job["restored"] + job["skipped"])
    got = [f for f in dest.rglob("*") if f.is_file()]
    assert shas == sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in got)
    assert {1.6e9} == {f.stat().st_mtime for f in got}

    other = setup.home / "Elsewhere"
    status, job = dash.restore(str(other), shas[:1])
    wait_for(lambda: list(other.rglob(".photod-restore-*")), 10, "the file written")
    for temp in other.rglob(".photod-restore-*"):
        temp.unlink()  # (another program tidying the folder)
    job = dash.ended(job["id"])
    [(_, why)] = job["failed"]
    assert "missing on the target" not in why and "in DEST went away" in why, why
    assert 0 == p.stop()


def test_a_restore_with_many_failures_counts_them_all(setup: Setup, browser: Any) -> None:
    """70 photos restored into a folder where 60 of their names already hold other
    files: the page said "failed 50" (the list it names was cut to 50, and it counted
    the list); it now says "failed 60", names the first 50 and says how many more."""
    from selenium.webdriver.common.by import By

    p, _ = slow_library(setup, "", 70)
    dest = setup.home / "Restored"
    day = dest / "2008" / "2008-05-30"  # (the sample's EXIF date)
    day.mkdir(parents=True)
    for i in range(60):
        (day / f"IMG_{i:04d}.JPG").write_bytes(b"another file of the same name")
    browser.get(login(p))
    browser.get(base_url(p) + "/library")
    assert 70 == len(browser.find_elements(By.CSS_SELECTOR, ".photo"))
    browser.find_element(By.ID, "all").click()
    browser.find_element(By.ID, "dest").send_keys(str(dest))
    browser.find_element(By.ID, "go").click()
    wait_for(lambda: text(browser, "#progress").startswith(("restored", "restore failed")),
             60, "the restore to end", lambda: text(browser, "#progress"))  # fmt: skip
    said = text(browser, "#progress")
    assert said.startswith(f"restored 10 file(s) into {dest}, skipped 0 already there, failed 60;")
    assert 50 == said.count("a different file is already there; left untouched")
    assert said.endswith("; and 10 more"), said[-200:]
    assert 0 == p.stop()


def test_two_phones_albums_of_one_name_stay_apart(
    phones: PhoneSetup, samples: Path, tmp_path: Path, browser: Any
) -> None:
    """Anna's phone and Bob's each have an album named "Summer": the library showed two
    "Summer" links, each opening the photos of both albums (and a restore of "the
    album" took Bob's photos with Anna's).  Each link now names its phone and opens
    that phone's album only."""
    from selenium.webdriver.common.by import By

    from tests import photoslib
    from tests.fakephone import camera_roll

    p = phones.photod().start()
    p.wait_event("usbmuxd_connected")
    summer: dict[str, set[str]] = {}  # each phone's album: the SHA-256 of its photos
    for udid, name, start, chosen in ((UDID_A, "Anna's iPhone", 1, 1),
                                      (UDID_B, "Bob's iPhone", 101, 2)):  # fmt: skip
        roll = camera_roll(tmp_path / udid, samples, photos=3, live=0, start=start)
        afcs = sorted(roll.files)
        lib = [photoslib.Photo(afc.rsplit("/", 1)[1], directory=afc[1:].rsplit("/", 1)[0])
               for afc in afcs]  # fmt: skip
        photoslib.build(roll.media, "17.6", lib, [(("Summer",), [x.uuid for x in lib[:chosen]])])
        summer[name] = {
            hashlib.sha256(roll.files[a].read_bytes()).hexdigest() for a in afcs[:chosen]
        }
        phones.mux.plug(phones.phone(udid, name, roll))
        p.wait_event("device_library_read", udid=udid, timeout=60)
    p.wait_event("dashboard_started")
    url = base_url(p)
    browser.get(login(p))
    browser.get(url + "/library")
    links = {
        a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".albums a")
    }
    assert {"Summer Anna's iPhone", "Summer Bob's iPhone"} == set(links), links
    for name, shas in summer.items():
        browser.get(links[f"Summer {name}"])
        assert f"Summer {name}" == text(browser, "section h2")
        shown = {
            b.get_attribute("value") for b in browser.find_elements(By.CSS_SELECTOR, ".photo input")
        }
        assert shas == shown, name
    shot(browser, "album")
    assert 0 == p.stop()


def test_the_events_page_of_a_long_log_reads_its_newest_lines(
    setup: Setup, samples: Path, browser: Any
) -> None:
    """A long log (60 MB over its rotated files, a warning in the oldest): each view of
    the Events page rendered every event of every file before keeping the last 500,
    seconds of the daemon's CPU a view.  It now reads from the newest line back: the
    newest event first, the old warning still among the failures, in a fraction of a
    second of CPU."""
    import psutil
    from selenium.webdriver.common.by import By

    log = setup.home / "log"
    log.mkdir(mode=0o700)
    old = {"ts": "2025-06-01T12:00:00Z", "level": "info", "event": "replica_written",
           "target": "library", "asset": "ab" * 32, "path": "2024/2024-05-01/IMG_1234.HEIC",
           "bytes": 2345678, "duration": 0.123}  # fmt: skip
    line = json.dumps(old) + "\n"
    warning = {**old, "level": "warning", "event": "target_unavailable", "reason": "an old one"}
    for n in range(5, 0, -1):  # (the oldest first: .5)
        first = json.dumps(warning) + "\n" if n == 5 else ""
        (log / f"photod.jsonl.{n}").write_text(first + line * (12 * 1024**2 // len(line)))
    p, _, _ = start(setup, samples)
    url = base_url(p)
    browser.get(login(p))
    daemon = psutil.Process(p.proc.pid)  # type: ignore[union-attr]
    for _ in range(3):
        before = sum(daemon.cpu_times()[:2])
        browser.get(url + "/events")
        spent = sum(daemon.cpu_times()[:2]) - before
        assert spent < 1.0, f"{spent:.2f} s of CPU for one view"
    timeline = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    assert 500 == len(timeline)
    assert "2025-06-01" not in timeline[0].text  # (today's run first)
    assert "2025-06-01" in timeline[-1].text  # (then the rotated files')
    assert "an old one" in text(browser, "#failures")
    assert 0 == p.stop()


def test_a_month_restored_from_the_library_keeps_each_photos_movie_and_edits(
    setup: Setup,
) -> None:
    """The library page shows each file by its own date: a Live Photo of 1 May, its
    movie, and the `.AAE` of an edit made on 10 June (its only date), which the June
    page shows.  Every photo the May page offers, restored, brings back the still with
    its movie and its edit, as the target keeps them together in one folder: the edit
    stayed behind (and restored alone from June's page, it would lose its photo)."""
    from datetime import UTC, datetime

    from tests.conftest import target_files
    from tests.integration.conftest import live_photo_edited_later

    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    live_photo_edited_later(
        setup.inbox, "2024:05:01 10:30:00", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    )
    p.start()
    p.wait_protected(3)
    p.wait_event("dashboard_started")
    dash = Restores(p)
    page = ask(dash.url, "/library?month=2024-05", headers=dash.cookie)[2].decode()
    shown = re.findall(r'type="checkbox" value="([0-9a-f]{64})"', page)
    assert 2 == len(shown)  # the still and its movie: the edit is June's
    dest = setup.home / "Restored"
    status, job = dash.restore(str(dest), shown)
    assert 200 == status, job
    job = dash.ended(job["id"])
    assert ("done", [], 3, 3) == (job["state"], job["failed"], job["files"], job["restored"])
    assert target_files(lib) == target_files(dest)
    assert 0 == p.stop()


def test_photos_added_today_are_in_todays_bar_whatever_the_time_zone(setup: Setup) -> None:
    """The chart of the last 30 days counts a photo on the day it was added on this
    computer's calendar: one added today is in today's bar, at any hour in any zone.
    (The days were UTC's: a photo added in the evening in New York went to tomorrow's
    day, past the chart's last bar, and today's stayed empty; in Berlin one added just
    after midnight counted on yesterday.)"""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tests.integration.test_truth import make_photos

    # A zone whose day is not UTC's now: 14 hours ahead from UTC noon, 12 behind before.
    zone = "Pacific/Kiritimati" if datetime.now(UTC).hour >= 12 else "Etc/GMT+12"
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    p.env["TZ"] = zone
    make_photos(setup.inbox, 2)
    p.start()
    p.wait_protected(2)
    p.wait_event("dashboard_started")
    url = base_url(p)
    page = ask(url, "/", headers={"Cookie": session(url, login(p))})[2].decode()
    bars = re.findall(r"<title>([0-9-]+): (\d+) protected</title>", page)
    today = datetime.now(ZoneInfo(zone)).date().isoformat()
    assert (today, "2") == bars[-1], bars[-3:]
    assert 0 == p.stop()


def test_the_phones_page_of_a_phone_with_many_files_reads_them_a_piece_at_a_time(
    setup: Setup,
) -> None:
    """A phone of 100,000 files (a large iPhone's photos, movies and edits): the
    phones page read every one of them at once, twice over, each time it was shown,
    the daemon growing by 74 MB (on a small computer, beside the rest, enough for
    the OOM killer).  Read a thousand at a time, it grows by 29 MB, and the page
    shows the same: every month of the phone, the files safe to delete counted."""
    from bench.scale import fill_phone

    n = 100_000
    p = setup.photod([{"name": "t7", "path": str(setup.home / "media" / "T7"),
                       "media": "external"}], policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    db = setup.home / "state" / "catalog.sqlite"
    fill_phone(db, UDID_A, n, ["t7"])
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM source_files")  # (nothing in the watch folder to scan)
    p.start()
    p.wait_event("dashboard_started")
    url = base_url(p)
    cookie = {"Cookie": session(url, login(p))}
    assert p.proc is not None
    Path(f"/proc/{p.proc.pid}/clear_refs").write_text("5")  # (its peak: its size now)
    before = _peak_rss_mb(p)
    # (its memory is what is measured: a slow machine, beside three other workers, took
    # more than 10 s to read the 100,000 files a thousand at a time)
    status, _, body = ask(url, "/phones", headers=cookie, timeout=120)
    grown = _peak_rss_mb(p) - before
    page = body.decode()
    assert 200 == status
    assert "100000 files at the last listing" in page
    months = re.findall(r"<tr class=\"safe\"><td>(\d{4}-\d\d)</td><td>(\d+)</td><td>0</td>", page)
    assert 60 == len(months) and n == sum(int(k) for _, k in months)
    assert grown < 50, f"{grown:.0f} MB"


def test_a_library_whose_drive_died_is_counted_lost_on_home_without_listing_every_photo(
    setup: Setup, browser: Any
) -> None:
    """100,000 photos with no good copy left (the drive that held them died): the home
    page counted the status report's list of every one, built again at each refresh
    (the daemon grew by 41 MB; `status --json` was 14 MB).  The report names the first
    50 and counts them all (the daemon grows by 2 MB); home still says how many."""
    from bench.scale import fill_catalog

    n = 100_000
    p = setup.photod([{"name": "t7", "path": str(setup.home / "media" / "T7"),
                       "media": "external"}], policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    db = setup.home / "state" / "catalog.sqlite"
    fill_catalog(db, [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                       1000 + i, 10**18 + i) for i in range(n)], ["t7"])  # fmt: skip
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM source_files")  # (nothing in the watch folder to scan)
        c.execute("UPDATE assets SET lost_at='2026-01-01T00:00:00Z'")
    c.close()
    p.start()
    p.wait_event("dashboard_started")
    browser.get(login(p))
    assert p.proc is not None
    Path(f"/proc/{p.proc.pid}/clear_refs").write_text("5")  # (its peak: its size now)
    before = _peak_rss_mb(p)
    browser.get(base_url(p) + "/")
    assert text(browser, "#headline") == f"LOST: {n} photo(s) no target holds any more"
    grown = _peak_rss_mb(p) - before
    assert grown < 30, f"{grown:.0f} MB"
    said = p.status()
    assert (n, 50) == (said["lost_count"], len(said["lost"]))
    assert "lib/2010/IMG_0000000.JPG" == said["lost"][0]["path"]
    assert 0 == p.stop()
