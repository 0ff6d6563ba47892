"""An S3 target with a real ``photod run`` when the server answers something photod
cannot use, or the network goes at the worst moment of an upload: what the user is
told, and that nothing is left on the server for ever."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from photod.targets.rclone import STREAM_CUTOFF
from photod.targets.records import Ledger, installations, snapshots_in
from photod.targets.s3 import S3Target
from tests.conftest import Photod, make_mov, stops_in_systemds_time, wait_for
from tests.fakephone import jpeg
from tests.integration.conftest import Setup
from tests.integration.test_offsite import keygen
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, FaultProxy, RefusingServer, S3Server

SKEWED = "The difference between the request time and the current time is too large."


def s3_credentials(path: Path) -> Path:
    path.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    path.chmod(0o600)
    return path


def test_a_clock_the_server_refuses_is_said_to_be_the_clock(setup: Setup) -> None:
    """A server whose clock is 20 minutes behind this computer's refuses every request
    (403 RequestTimeTooSkewed, as S3 does past 15 minutes).  `photod doctor` says so on
    the target's line and on the clock's (never "OK clock"), with by how much and the
    fix; `photod run --once` says the same, never "throttled"."""
    server = RefusingServer(403, "RequestTimeTooSkewed", SKEWED, clock=-20 * 60)
    try:
        creds = s3_credentials(setup.home / "aws-credentials")
        cloud = {"name": "cloud", "type": "s3", "endpoint": server.endpoint,
                 "bucket": BUCKET, "credentials_file": str(creds)}  # fmt: skip
        p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}, cloud],
                         policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip
        said = "this computer's clock is 20 minutes ahead of the server's"
        fix = "set the clock (timedatectl set-ntp true)"
        doctor = p.cli("doctor")
        lines = [line.split(None, 1) for line in doctor.stdout.splitlines() if ": " in line]
        found = {what.split(": ")[0]: (level, what) for level, what in lines}
        assert ("FAIL", f"target cloud: {said} -> {fix}") == found["target cloud"]
        assert ("FAIL", True) == (found["clock"][0], found["clock"][1].endswith(
            f": {said} (target 'cloud') -> {fix}"))  # fmt: skip
        jpeg(setup.inbox / "a.jpg", seed=1)
        once = p.cli("run", "--once")
        assert f"target 'cloud' was not written to: {said}: {fix}" in once.stdout
        assert "throttled" not in once.stdout + doctor.stdout
    finally:
        server.stop()


def protected_by_the_next_run(p: Photod, server: S3Server, prefix: str,
                              left: tuple[str, ...] = ()) -> None:  # fmt: skip
    """The next `run --once` protects the video, and of the uploads under ``prefix``
    only ``left`` (another computer's) stay open."""
    again = p.cli("run", "--once")
    assert "The one photo or video is protected" in again.stdout, again.stdout
    assert list(left) == uploads_left(server, prefix)


class LinkCut:
    """A link that goes for ``seconds`` the first time ``cut(method, path, query)`` says
    so (that request is dropped too), and counts each part sent (``sent``, ``firsts``).
    ``also(link, method, query)`` may answer the other requests (and ``go()`` again)."""

    def __init__(
        self, cut: Callable[[str, str, str], bool], seconds: float, also: Also | None = None
    ) -> None:
        self.lock = threading.Lock()
        self.cut, self.seconds, self.also = cut, seconds, also
        self.down_until = 0.0
        self.sent: dict[str, int] = {}

    @property
    def firsts(self) -> int:
        """How often the video's first part was sent (1: the upload never began again)."""
        return self.sent.get("partNumber=1", 0)

    def go(self) -> str:
        self.down_until = time.monotonic() + self.seconds
        return "drop"

    def __call__(self, method: str, path: str, query: str) -> object:
        with self.lock:
            if time.monotonic() < self.down_until:
                return "drop"
            part = next((f for f in query.split("&") if f.startswith("partNumber=")), "")
            if part:
                self.sent[part] = self.sent.get(part, 0) + 1
            if not self.down_until and self.cut(method, path, query):
                return self.go()
            if part:
                return "pass"
            return (self.also and self.also(self, method, query)) or "pass"


Also = Callable[[LinkCut, str, str], object]


class Sent:
    """What reached the server of a video's upload: its first part, its downloads."""

    def __init__(self) -> None:
        self.firsts = self.gets = 0

    def count(self, method: str, path: str, query: str) -> None:
        self.firsts += "partNumber=1&" in f"{query}&"
        self.gets += method == "GET" and path.endswith("v.mov")


def counted_at_this_run_its_parts_sent_once(p: Photod, link: LinkCut) -> None:
    """`run --once` through the link it cuts: the video counts at that run, and its
    first part was sent once (the upload never began again)."""
    once = p.cli("run", "--once")
    assert "The one photo or video is protected" in once.stdout, once.stdout
    assert (True, 1) == (bool(link.down_until), link.firsts)


def uploads_left(server: S3Server, prefix: str) -> list[str]:
    """The ids of the multipart uploads the server keeps open under ``prefix``: each
    one's parts are stored (and billed) until it is completed or aborted."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name="us-east-1")  # fmt: skip
    try:
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
                .get("Uploads", [])]  # fmt: skip
    finally:
        s3.close()


Proxies = Callable[..., FaultProxy]


@pytest.fixture
def proxies() -> Iterator[Proxies]:
    """Makes a test's FaultProxy (given its arguments); each is stopped at its end."""
    made: list[FaultProxy] = []

    def make(*args: Any, **kwargs: Any) -> FaultProxy:
        made.append(FaultProxy(*args, **kwargs))
        return made[-1]

    yield make
    for proxy in made:
        proxy.stop()


def video_to_s3(
    setup: Setup,
    s3_server: S3Server,
    proxy: FaultProxy,
    prefix: str,
    encrypt: bool = False,
    mb: int = 12,
    **more: object,
) -> Photod:
    """A video of ``mb`` MB in the inbox, and photod with a library and an S3 target
    reached through ``proxy`` (5 MiB parts: a multipart upload of three for 12 MB; a
    part the network cut is sent again once, after a second); ``more``: more of the
    target's settings."""
    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(setup.home / "aws-credentials")
    cloud = {**s3_server.target("cloud", creds, prefix=prefix, part_size="5MiB"),
             "endpoint": proxy.endpoint, "encrypt": encrypt, "part_retry": "1s", **more}  # fmt: skip
    extra = f'\n[encryption]\nidentity = "{keygen(setup)}"\n' if encrypt else ""
    make_mov(setup.inbox / "v.mov", datetime(2024, 1, 2, tzinfo=UTC),
             payload=os.urandom(mb * 1024**2))  # fmt: skip
    return setup.photod([{"name": "lib", "path": str(setup.home / "lib")}, cloud],
                        policy={"copies": 2, "media": 2, "offsite": 1}, extra=extra)  # fmt: skip


def test_an_answer_without_its_etag_is_a_reason_not_a_crash(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """A server (or a proxy in front of it) answers each part of an upload without
    the ETag that names it: the run ends as any run with a target away (no
    traceback, not exit 70), says why, aborts the upload, and the next run, through
    a network that gives the ETag, copies the video."""
    strip = True
    proxy = proxies(s3_server.endpoint, lambda method, path, query: (
        ("strip", "ETag") if strip and "partNumber=" in query else "pass"))  # fmt: skip
    p = video_to_s3(setup, s3_server, proxy, f"etag-{setup.home.name}/")
    first = p.cli("run", "--once")
    # 1: "not protected", as for any target away (70 was a bug of photod's own)
    assert (1, "") == (first.returncode, first.stderr.partition("Traceback")[1])
    assert "target 'cloud' was not written to: the server's answer to part" in first.stdout
    assert "has no ETag" in first.stdout
    assert [] == uploads_left(s3_server, f"etag-{setup.home.name}/")
    strip = False
    second = p.cli("run", "--once")
    assert (0, True) == (second.returncode,
                         "The one photo or video is protected" in second.stdout)  # fmt: skip


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_an_upload_the_network_cut_is_aborted_when_the_server_is_back(
    setup: Setup, s3_server: S3Server, proxies: Proxies, encrypt: bool
) -> None:
    """The network goes away after the first part of a video's upload: the abort cannot
    reach the server either, so the upload stays open there (its parts stored, and
    billed, out of every listing).  photod keeps what it needs to end it, and the next
    run, with the network back, aborts it: no upload is left open, and the video is
    copied."""
    sent, down = [0], [False]

    def rule(method: str, path: str, query: str) -> str:
        if "partNumber=" in query and not down[0]:
            sent[0] += 1
            down[0] = sent[0] > 1
        return "drop" if down[0] else "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"cut-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, encrypt)
    first = p.cli("run", "--once")
    assert "target 'cloud' was not written to: cannot reach" in first.stdout
    assert 1 == len(uploads_left(s3_server, prefix))
    down[0], sent[0] = False, -1000  # the network is back
    protected_by_the_next_run(p, s3_server, prefix)


def test_a_crash_mid_upload_ends_this_computers_upload_and_no_other(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """Two computers of a family upload the same video to one prefix at once (each found
    its name free).  This one is killed (a power cut) with its upload half sent.  Its
    next start ends its own upload, found by the id it recorded, and leaves the other
    computer's, in flight to the same name, to go on."""
    reached, release = threading.Event(), threading.Event()

    def rule(method: str, path: str, query: str) -> str:
        if "partNumber=2" in query and not release.is_set():
            reached.set()  # this computer's upload has started: it is killed now
            release.wait(60)
            return "drop"
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"two-{setup.home.name}/"
    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(setup.home / "their-credentials")
    theirs = S3Target("s3", BUCKET, prefix, s3_server.endpoint, credentials_file=creds,
                      part_size=5 * 1024**2)  # fmt: skip
    their_upload = theirs.open_writer("2024/2024-01-02/v.mov")
    try:
        their_upload.write(os.urandom(6 * 1024**2))  # started, its first part sent
        p = video_to_s3(setup, s3_server, proxy, prefix).start()
        try:
            assert reached.wait(60), "this computer's upload never started"
            p.stop(signal.SIGKILL)
        finally:
            release.set()
        assert 2 == len(uploads_left(s3_server, prefix))
        protected_by_the_next_run(p, s3_server, prefix, (their_upload.upload_id,))
    finally:
        their_upload.abort()
        theirs.close()


def test_a_crash_mid_upload_of_a_sealed_copy_leaves_no_upload_open(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """An encrypted copy's upload starts on its own thread, often once the whole file is
    read (its commit): killed (a power cut) with its upload half sent, its record named
    it by the id the server gave, so the next start ends it: no parts left stored (and
    billed) out of every listing.  (The record said only the temporary's name: the
    upload, at the object's own name, stayed open for ever.)"""
    reached, release = threading.Event(), threading.Event()

    def rule(method: str, path: str, query: str) -> str:
        if query.startswith("uploads") and method == "POST":
            time.sleep(3)  # a slow answer to the upload's start: the file is read by then
        if "partNumber=2" in query and not release.is_set():
            reached.set()
            release.wait(60)
            return "drop"
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"sealed-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, encrypt=True).start()
    try:
        assert reached.wait(60), "the upload never started"
        p.stop(signal.SIGKILL)
    finally:
        release.set()
    assert 1 == len(uploads_left(s3_server, prefix))
    protected_by_the_next_run(p, s3_server, prefix)


def test_a_link_that_drops_every_few_parts_still_gets_a_large_video_up(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """A home uplink that drops for a few seconds every few minutes (scaled: a 30 MB
    video in 5 MiB parts, the link gone for 3 s at every fourth part): each drop cuts
    the upload where it is.  The upload goes on from the part that was cut, not from
    its first byte (each try of a video longer to send than the link stays up met the
    same drop, and it never landed); no upload is left open."""
    lock = threading.Lock()
    passed, down_until, firsts = [0], [0.0], [0]

    def rule(method: str, path: str, query: str) -> str:
        with lock:
            if time.monotonic() < down_until[0]:
                return "drop"
            if "partNumber=" in query:
                passed[0] += 1
                firsts[0] += "partNumber=1&" in f"{query}&"
                if passed[0] % 4 == 0:  # the fourth part meets the drop
                    down_until[0] = time.monotonic() + 3
                    return "drop"
            return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"flaky-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, mb=30, part_retry="2m").start()
    try:
        p.wait_protected(1, timeout=90)
        assert [] == uploads_left(s3_server, prefix)
        assert 1 == firsts[0]  # the video's first part was sent once: never begun again
    finally:
        p.stop()


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_stop_mid_upload_over_a_slow_link_is_prompt(
    setup: Setup, s3_server: S3Server, proxies: Proxies, encrypt: bool
) -> None:
    """SIGTERM while a large video goes up over a slow uplink (scaled: 5 MiB parts at
    200 KB/s, half a minute each, two on the wire): photod stops well within
    systemd's 30 s (TimeoutStopSec; it waited for the parts on the wire, and was
    killed), ends its upload, and counts no copy there."""
    started = threading.Event()

    def rule(method: str, path: str, query: str) -> str:
        if method == "POST" and query.startswith("uploads"):
            started.set()
        return "pass"

    proxy = proxies(s3_server.endpoint, rule, rate=200_000)
    prefix = f"slow-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, encrypt).start()
    try:
        assert started.wait(60), "the upload never started"
        time.sleep(3)  # its first two parts on the wire
        stops_in_systemds_time(p)
    finally:
        p.stop()
    assert [] == uploads_left(s3_server, prefix)
    assert 1 == p.status()["policy"]["noncompliant"]  # no copy counted on the cloud


def test_a_stop_mid_upload_over_a_slow_live_link_writes_the_lists_and_snapshot(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """SIGTERM while an 8 MB video goes up in one PUT over a slow uplink that still
    moves its bytes (scaled: 200 KB/s, 40 s for it), a photo having landed since the
    last catalog snapshot: photod stops well within systemd's 30 s, nothing of the
    video is visible on the target, and the target's list names both photos and its
    newest snapshot is the one written at this stop (the PUT, still sending 5 s after
    the stop, was taken for a dead link: nothing more was asked of the target at that
    stop, and its newest snapshot lacked the photo and the video until the next start,
    for good if the computer never started again)."""
    proxy = proxies(s3_server.endpoint, rate=200_000)
    prefix = f"slowlive-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, mb=8, part_size="16MiB")
    video = setup.home / "v.mov"
    (setup.inbox / "v.mov").rename(video)  # (it comes last)
    p.start()
    try:
        jpeg(setup.inbox / "p1.jpg", 1)
        wait_for(lambda: any("cloud" in e["targets"] and e["assets"] == 1
                             for e in p.events("catalog_snapshot_written")),
                 60, "the first photo's snapshot")  # fmt: skip
        jpeg(setup.inbox / "p2.jpg", 2)  # (the next snapshot is due 30 s after that one)
        p.wait_event("replica_written", target="cloud", path="2026/2026-10-01/p2.jpg")
        video.rename(setup.inbox / "v.mov")
        put = ("PUT", f"/{BUCKET}/{prefix}2024/2024-01-02/v.mov")
        wait_for(lambda: put in proxy.begun, 30, "the video's upload")
        time.sleep(1)  # the video's PUT on the wire
        stops_in_systemds_time(p)
    finally:
        p.stop()
    assert "Traceback" not in p.output.read_text()
    bucket = S3Target("s3", BUCKET, prefix, s3_server.endpoint,
                      credentials_file=setup.home / "aws-credentials")  # fmt: skip
    try:
        photos = ["2026/2026-10-01/p1.jpg", "2026/2026-10-01/p2.jpg"]
        assert photos == sorted(key for key, _ in bucket.listing())  # no video, whole or not
        [me] = installations(bucket)
        assert photos == sorted(e.key for e in Ledger(bucket, me.folder).entries())
        assert 3 == snapshots_in(bucket, me.folder)[0].assets  # (the video on the library)
        assert [] == bucket.list_meta("tmp")
    finally:
        bucket.close()


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_restore_over_a_link_that_drops_goes_on_where_it_was_cut(
    setup: Setup, s3_server: S3Server, proxies: Proxies, encrypt: bool
) -> None:
    """The library's drive died; the video comes back from S3 over a link that drops
    every few minutes (scaled: every download cut after 4 MiB of the 12 MB video).
    Each cut download goes on from where it was cut, so the restore gives the video
    back whole (it began again at byte 0 and met the same cut: the video failed)."""
    cutting, gets = [False], [0]

    def rule(method: str, path: str, query: str) -> object:
        if cutting[0] and method == "GET" and ("/data/" in path or path.endswith("v.mov")):
            gets[0] += 1
            return ("cut", 4 * 1024**2)
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"restore-{setup.home.name}/", encrypt)
    restored_whole_once_cut(setup, p, cutting)
    assert gets[0] <= 4  # three downloads of 4 MiB, each from where the last was cut


def restored_whole_once_cut(setup: Setup, p: Photod, cutting: list[bool]) -> None:
    """The video backed up, then the link's cuts begun (``cutting``): `photod restore
    --target cloud` gives it back whole, exit 0."""
    assert 0 == p.cli("run", "--once").returncode
    video = (setup.inbox / "v.mov").read_bytes()
    cutting[0] = True
    out = setup.home / "restored"
    r = p.cli("restore", str(out), "--target", "cloud")
    assert (0, [video]) == (r.returncode, [f.read_bytes() for f in out.rglob("*.mov")]), (
        r.stdout + r.stderr
    )


def test_a_restore_through_a_proxy_that_ignores_ranges_gives_the_video_back(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The video comes back from S3 over a link that drops, through a proxy that drops
    the Range header (a 200 with the whole object, from its first byte): the download
    cut after 4 MiB goes on past the bytes it had, and the restore gives the video back
    whole (the object's first bytes were put after the 4 MiB read: "bytes do not
    match", the good copy on S3 called damaged)."""
    cutting, gets = [False], [0]

    def rule(method: str, path: str, query: str) -> object:
        if cutting[0] and method == "GET" and path.endswith("v.mov"):
            gets[0] += 1
            return ("cut", 4 * 1024**2) if gets[0] == 1 else "whole"
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"unranged-{setup.home.name}/")
    restored_whole_once_cut(setup, p, cutting)
    assert 2 == gets[0]  # the cut download and the one that went on


def test_a_stop_during_a_page_s_restore_waiting_for_the_link_says_it_did_not_finish(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """A restore chosen on the dashboard brings a video back from S3 (the library's
    copy is gone); the link drops mid-download and stays down, and the daemon is
    stopped while the download waits for it to come back: the restore ends at once,
    says it did not finish, and leaves no temporary in its folder (it waited on for the
    link, up to `part_retry`, past the stop's wait: the daemon went without a word and
    the half-written temporary stayed)."""
    from tests.integration.test_dashboard import Restores

    cutting, gets = [False], [0]

    def rule(method: str, path: str, query: str) -> object:
        if cutting[0] and path.endswith("v.mov"):
            gets[0] += 1
            return ("cut", 4 * 1024**2) if gets[0] == 1 else "drop"
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"page-{setup.home.name}/", part_retry="2m")
    p.start()
    p.wait_protected(1)
    p.wait_event("dashboard_started")
    [kept] = (setup.home / "lib").rglob("v.mov")
    kept.unlink()  # (the library's drive lost it: the copy on S3 is read)
    sha = hashlib.sha256((setup.inbox / "v.mov").read_bytes()).hexdigest()
    cutting[0] = True
    dest = setup.home / "Restored"
    status, said = Restores(p).restore(str(dest), [sha])
    assert 200 == status, said
    wait_for(lambda: gets[0] >= 2, 30, "the download cut, and asked again")
    assert 0 == p.stop(timeout=30)
    [stopped] = p.events("restore_stopped")
    assert (0, 1) == (stopped["restored"], stopped["not_restored"])
    assert [] == [f.name for f in dest.rglob("*") if f.is_file()]


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_large_upload_keeps_to_the_bandwidth_limit_on_the_wire(
    setup: Setup, s3_server: S3Server, proxies: Proxies, encrypt: bool
) -> None:
    """bandwidth_limit = "1MiB/s" (room left on a home uplink for a video call) and a
    video in 5 MiB parts: each part goes out at that pace, taking about five seconds
    (it was read at that pace, then sent whole at the link's full speed: the link
    was full for as long as each part took, the limit kept only on average)."""
    proxy = proxies(s3_server.endpoint)
    p = video_to_s3(setup, s3_server, proxy, f"paced-{setup.home.name}/", encrypt,
                    bandwidth_limit="1MiB/s")  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode
    parts = [took for query, size, took in proxy.bodies
             if "partNumber=" in query and size >= 5 * 1024**2]  # fmt: skip
    assert 2 == len(parts)
    assert all(took > 3 for took in parts), parts


def test_a_drop_as_the_upload_is_checked_does_not_send_the_video_again(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The link drops for a few seconds just as the server completed the video's upload,
    when photod asks the server for the object's size (its proof).  The question is
    asked again once the link is back: the copy counts at that run, its parts sent
    once, nothing downloaded (the copy failed; the next run sent the whole video again
    under a temporary name, then downloaded the published one to prove it the same)."""
    lock = threading.Lock()
    down_until, sent = [0.0], Sent()

    def rule(method: str, path: str, query: str) -> str:
        with lock:
            if method == "POST" and "uploadId=" in query:  # the completion goes through
                down_until[0] = time.monotonic() + 3
                return "pass"
            if time.monotonic() < down_until[0]:
                return "drop"
            sent.count(method, path, query)
            return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"checked-{setup.home.name}/",
                    part_retry="2m")  # fmt: skip
    once = p.cli("run", "--once")
    assert "The one photo or video is protected" in once.stdout, once.stdout
    assert (1, 0) == (sent.firsts, sent.gets)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_a_drop_as_a_large_upload_is_committed_does_not_send_the_video_again(
    setup: Setup, s3_server: S3Server, proxies: Proxies, encrypt: bool
) -> None:
    """The link drops for a few seconds just as the video's last bytes are read, when
    photod asks whether its name is still free before it completes the upload: the
    question is asked again once the link is back, and the copy counts at that run, its
    parts sent once (the upload was aborted with its parts sent, and the next try sent
    the whole video again: over a link that drops every few minutes, a long video met
    it there often)."""
    started = [False]

    def commits(method: str, path: str, query: str) -> bool:
        started[0] |= method == "POST" and query.startswith("uploads")
        return method == "HEAD" and started[0]  # the commit's question: cut

    link = LinkCut(commits, 3)
    proxy = proxies(s3_server.endpoint, link)
    p = video_to_s3(setup, s3_server, proxy, f"commit-{setup.home.name}/", encrypt,
                    part_retry="2m")  # fmt: skip
    counted_at_this_run_its_parts_sent_once(p, link)


def test_a_completion_whose_answer_was_lost_counts_the_video_once(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The server completes a large video's upload and the link drops before its answer
    arrives; asked again, this server (as MinIO) says there is no such upload.  The
    object there carries the upload's token and size, so it is known as this upload's:
    the copy counts at that run, its parts sent once, nothing downloaded (the copy
    failed: the next try sent the whole video again and downloaded the first)."""
    lost, sent = [False], Sent()

    def rule(method: str, path: str, query: str) -> str:
        if method == "POST" and "uploadId=" in query and not lost[0]:
            lost[0] = True
            return "forward_then_drop"
        sent.count(method, path, query)
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"lost-{setup.home.name}/")
    once = p.cli("run", "--once")
    assert "The one photo or video is protected" in once.stdout, once.stdout
    assert (True, 1, 0) == (lost[0], sent.firsts, sent.gets)


def test_a_completion_whose_answer_and_check_were_lost_counts_the_video_once(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The server completes a large video's upload and the link drops before its answer
    arrives, and again for a few seconds as photod asks whether the object there is its
    upload's: the question is asked again once the link is back, and the copy counts
    at that run, its parts sent once, nothing downloaded (the question cut was taken
    for "not ours": the copy failed, the next try sent the whole video again)."""
    lock = threading.Lock()
    lost, down_until, sent = [0], [0.0], Sent()

    def rule(method: str, path: str, query: str) -> str:
        with lock:
            if method == "POST" and "uploadId=" in query:
                lost[0] += 1
                return "forward_then_drop" if lost[0] == 1 else "pass"
            if method == "HEAD" and lost[0] == 2 and not down_until[0]:
                down_until[0] = time.monotonic() + 3  # (the link drops again)
            if time.monotonic() < down_until[0]:
                return "drop"
            sent.count(method, path, query)
            return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"lost2-{setup.home.name}/", part_retry="2m")
    once = p.cli("run", "--once")
    assert "The one photo or video is protected" in once.stdout, once.stdout
    assert (True, 1, 0) == (bool(down_until[0]), sent.firsts, sent.gets)


def test_a_drop_as_a_video_is_put_beside_a_namesake_does_not_send_it_again(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """Another video is already at the new video's name (a second camera's, same day),
    so the upload goes to a temporary name and the server copies it beside the other
    under a name of its own; the link drops for a few seconds during that copy (for a
    4 GB video the copy takes minutes).  The copy is asked again once the link is back:
    the video counts at that run, its parts sent once (the upload was thrown away and
    the next try sent the whole video again)."""

    def copies(method: str, path: str, query: str) -> bool:
        return method == "PUT" and not query and "~" in path  # the server-side copy: cut

    link = LinkCut(copies, 3)
    proxy = proxies(s3_server.endpoint, link)
    prefix = f"beside-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, part_retry="2m")
    other = S3Target("s3", BUCKET, prefix, s3_server.endpoint,
                     credentials_file=setup.home / "aws-credentials")  # fmt: skip
    other.put("2024/2024-01-02/v.mov", b"another camera's video")
    other.close()
    counted_at_this_run_its_parts_sent_once(p, link)


def test_a_stop_while_a_scrub_reads_over_a_dead_link_is_prompt(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The NAS or router on the way to S3 vanishes while the scrub re-reads the video:
    the server's end takes each request and never answers (no error ever comes).
    SIGTERM then: photod stops well within systemd's 30 s and says the scrub was
    interrupted (the cut read made the scrub ask the target again whether it was
    there, on the same dead link: the stop waited out the network's timeouts, a
    minute and more, and systemd killed it)."""
    scrubbing, silent = [False], threading.Event()

    def rule(method: str, path: str, query: str) -> str:
        if scrubbing[0] and method == "GET" and path.endswith("v.mov"):
            silent.set()  # from this request on, nothing answers
        return "hold" if silent.is_set() else "pass"

    proxy = proxies(s3_server.endpoint, rule)
    p = video_to_s3(setup, s3_server, proxy, f"dead-{setup.home.name}/").start()
    try:
        p.wait_protected(1)
        scrubbing[0] = True
        assert 0 == p.cli("verify", "--all").returncode
        assert silent.wait(60), "the scrub never read the video"
        time.sleep(1)  # the read waits on the dead link
        stops_in_systemds_time(p)
    finally:
        p.stop()
    [interrupted] = p.events("scrub_interrupted")
    assert "cloud" == interrupted["target"]


@pytest.mark.parametrize("namesake", [False, True], ids=["own-name", "beside-a-namesake"])
def test_a_stop_mid_upload_over_a_dead_link_is_prompt_and_the_next_start_ends_it(
    setup: Setup, s3_server: S3Server, proxies: Proxies, namesake: bool
) -> None:
    """The NAS or router on the way to S3 vanishes as a video's second part goes up:
    the server's end takes each request and never answers.  SIGTERM then: photod
    stops well within systemd's 30 s, without a traceback (it waited out the network's
    timeout for the abort of the upload, and beside another camera's video for the
    delete of its temporary, 20 s each: systemd killed it).  Nothing is visible under
    the video's name but what was there, and the next start ends the upload and its
    temporary and copies the video."""
    silent, back = threading.Event(), [False]

    def rule(method: str, path: str, query: str) -> str:
        if "partNumber=2" in query.split("&") and not back[0]:
            silent.set()  # from this request on, nothing answers
        return "hold" if silent.is_set() and not back[0] else "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"deadup-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix)
    bucket = S3Target("s3", BUCKET, prefix, s3_server.endpoint,
                      credentials_file=setup.home / "aws-credentials")  # fmt: skip
    try:
        if namesake:
            bucket.put("2024/2024-01-02/v.mov", b"another camera's video")
        there = sorted(bucket.listing())
        p.start()
        try:
            assert silent.wait(60), "the upload never sent its second part"
            time.sleep(1)  # the part waits on the dead link
            stops_in_systemds_time(p)
        finally:
            p.stop()
        assert "Traceback" not in p.output.read_text()
        assert there == sorted(bucket.listing())  # nothing partial under any name
        assert 1 == len(uploads_left(s3_server, prefix))  # (the next start's to end)
        back[0] = True  # the link is back
        protected_by_the_next_run(p, s3_server, prefix)
        assert [] == bucket.list_meta("tmp")
    finally:
        bucket.close()


def link_gone_at_part_4(also: Also | None = None) -> LinkCut:
    """A home uplink that goes for 8 s as the fourth part of a video's upload leaves
    (longer than the `part_retry` of ``video_to_s3``)."""
    return LinkCut(lambda method, path, query: "partNumber=4" in query.split("&"), 8, also)


def video_up_through(
    setup: Setup, s3_server: S3Server, proxies: Proxies, link: LinkCut, name: str
) -> tuple[Photod, str]:
    """A 30 MB video (6 parts) sent through ``link`` until it is protected: the daemon
    stopped, and the prefix it went to."""
    proxy = proxies(s3_server.endpoint, link)
    prefix = f"{name}-{setup.home.name}/"
    p = video_to_s3(setup, s3_server, proxy, prefix, mb=30).start()
    try:
        p.wait_protected(1, timeout=120)
    finally:
        p.stop()
    return p, prefix


def test_a_link_down_longer_than_part_retry_keeps_the_parts_the_server_took(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """A home uplink that goes away for longer than `part_retry` in the middle of a
    large video's upload (scaled: a 30 MB video in 5 MiB parts, the link gone for 8 s
    at the fourth part, `part_retry` 1 s): the part sent again says so once, the upload
    fails, and when the target is back the next try asks the server which parts it
    holds and sends only the rest (it aborted the upload and began again at byte 0: over
    a link that drops for minutes, a long video never landed).  The video comes back
    whole, and no upload is left open."""
    link = link_gone_at_part_4()
    p, prefix = video_up_through(setup, s3_server, proxies, link, "resumed")
    assert (1, 1) == (link.sent["partNumber=1"], link.sent["partNumber=2"]), link.sent
    assert 1 == len(p.events("upload_part_retried"))
    [resumed] = p.events("upload_resumed")
    assert resumed["parts_kept"] >= 2  # (the third was on the wire beside the fourth)
    assert [] == uploads_left(s3_server, prefix)
    restored_whole_once_cut(setup, p, [False])


def test_a_link_that_drops_again_as_the_upload_resumes_keeps_the_parts_the_server_took(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The uplink goes for 8 s in the middle of a large video's upload (longer than
    `part_retry`), comes back, and goes again for 8 s just as the next try asks the
    server which parts it holds (a link that flaps).  That try fails too, and the one
    after it still sends only the parts the server did not take (the question cut made
    the try abort the upload: its parts were thrown away and the video began again at
    byte 0)."""
    listed = [0]

    def list_parts(link: LinkCut, method: str, query: str) -> object:
        if method == "GET" and "uploadId=" in query:  # ListParts: the resumed try
            listed[0] += 1
            return link.go() if listed[0] == 1 else None  # the link goes again as it asks
        return None

    link = link_gone_at_part_4(list_parts)
    p, prefix = video_up_through(setup, s3_server, proxies, link, "flaps")
    assert listed[0] >= 2, listed  # the question was cut, and asked again at the next try
    assert (1, 1) == (link.sent["partNumber=1"], link.sent["partNumber=2"]), link.sent
    [resumed] = p.events("upload_resumed")
    assert resumed["parts_kept"] >= 2
    assert [] == uploads_left(s3_server, prefix)
    restored_whole_once_cut(setup, p, [False])


def test_a_name_taken_while_the_link_was_down_costs_one_more_send_of_the_video(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The uplink goes for 8 s in the middle of a large video's upload (longer than
    `part_retry`), and as it comes back another camera's video lands at its name (a
    second computer sharing the prefix).  The kept upload, bound to that name, is
    resumed and then given up; the next try goes beside the other video under a name
    of its own, and the video is sent once more, not again and again (each try trusted
    the minute-old listing that said the name was free, found it taken at the end, and
    sent the whole video again: a dozen times in that minute).  The video comes back
    whole from its own name, the other one is untouched, and no upload is left open."""
    name, landed = "2024/2024-01-02/v.mov", [False]
    creds = s3_server.credentials(setup.home / "aws-credentials")
    other = S3Target("s3", BUCKET, f"taken-{setup.home.name}/", s3_server.endpoint,
                     credentials_file=creds)  # fmt: skip

    def lands(link: LinkCut, method: str, query: str) -> object:
        if link.down_until and not landed[0]:  # (the first request once it is back)
            landed[0] = True
            other.put(name, b"another camera's video")
        return None

    link = link_gone_at_part_4(lands)
    try:
        _, prefix = video_up_through(setup, s3_server, proxies, link, "taken")
        assert (True, 2) == (landed[0], link.firsts), link.sent
        with other.open(name) as f:
            assert b"another camera's video" == f.read()
        [own] = [k for k, _ in other.listing() if k.startswith("2024/2024-01-02/v~")]
        with other.open(own) as f:
            assert (setup.inbox / "v.mov").read_bytes() == f.read()
    finally:
        other.close()
    assert [] == uploads_left(s3_server, prefix)


def test_a_key_refused_listparts_still_resumes_the_upload_without_a_failure(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """The uplink goes for 8 s in the middle of a large video's upload, with access
    keys whose policy does not allow ListParts (`s3:ListMultipartUploadParts`, left out
    of many a least-privilege policy; some S3 servers do not implement it).  The next
    try sends every part again into the upload kept, and the video lands at that try:
    no failure tells the user to check the access key, and no upload is left open (the
    refusal failed the try, "check the access key, the secret and their expiry", and
    made the target unavailable until a later try began again)."""
    asked = [0]

    def refused(link: LinkCut, method: str, query: str) -> object:
        if method == "GET" and "uploadId=" in query:  # ListParts
            asked[0] += 1
            return ("refuse", 403, "AccessDenied", "Access Denied")
        return None

    p, prefix = video_up_through(setup, s3_server, proxies, link_gone_at_part_4(refused), "nolist")
    assert asked[0] >= 1, "the next try never asked which parts the server held"
    failed = [e["error"] for e in p.events("replica_failed")]
    assert 1 == len(failed) and "access key" not in failed[0], failed  # the cut alone
    assert [] == uploads_left(s3_server, prefix)
    restored_whole_once_cut(setup, p, [False])


def _to_rclone_s3(setup: Setup, proxy: FaultProxy, prefix: str) -> Photod:
    """photod with a library and an rclone target: the S3 server behind ``proxy`` as an
    rclone remote of type s3, under ``prefix``."""
    remote = {"type": "s3", "provider": "Other", "endpoint": proxy.endpoint,
              "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}  # fmt: skip
    return setup.photod([{"name": "lib", "path": str(setup.home / "lib")},
                         {"name": "cloud", "type": "rclone", "remote": f"s3:{BUCKET}/{prefix}",
                          "rclone_config": remote, "media": "cloud", "offsite": True}],
                        policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip


@pytest.mark.parametrize("kind", ["s3", "rclone"])
def test_a_runs_last_snapshot_over_a_slow_uplink_reaches_the_target_however_long_it_takes(
    setup: Setup, s3_server: S3Server, proxies: Proxies, kind: str
) -> None:
    """`photod run --once` (a cron job) over a slow uplink (scaled: 1 KB/s), its work
    done: its last catalog snapshot takes longer than a stop's bounds, and reaches the
    target whole, on S3 and through rclone.  Those bounds (a request cut 5 s after the
    stop; rclone's last requests given up 9 s after it) are for a stop within systemd's
    time (a signal, a reload, a run cut short); at a run's end rclone's gave its
    snapshot up at 9 s, at every run: that target never held a snapshot of a cron-run
    catalog."""
    proxy = proxies(s3_server.endpoint, rate=1_000)
    prefix = f"slowend-{kind}-{setup.home.name}/"
    if kind == "s3":
        p = video_to_s3(setup, s3_server, proxy, prefix, mb=0)
        (setup.inbox / "v.mov").unlink()
    else:
        if not s3_server.running():
            s3_server.start()
        p = _to_rclone_s3(setup, proxy, prefix)
    for i in range(3):
        jpeg(setup.inbox / f"p{i}.jpg", i)
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert [] == p.events("snapshot_failed")
    [written] = p.events("catalog_snapshot_written")
    assert ["cloud", "lib"] == sorted(written["targets"])
    assert written["duration"] > 9, f"the snapshot took {written['duration']} s: not slow"
    bucket = S3Target("s3", BUCKET, prefix, s3_server.endpoint,
                      credentials_file=s3_server.credentials(setup.home / "aws-credentials"))  # fmt: skip
    try:
        [me] = installations(bucket)
        assert 3 == snapshots_in(bucket, me.folder)[0].assets
    finally:
        bucket.close()


def test_an_rclone_upload_whose_temporary_folder_the_server_removed_is_one_event_and_a_retry(
    setup: Setup, s3_server: S3Server, proxies: Proxies
) -> None:
    """`rclone serve s3` (a NAS's S3 server may be just that) removes `.photod/tmp/` the
    moment its last object goes, while another upload still streams into it: that
    upload's parts then fail (500 InternalError; "file does not exist" in the server's
    log; 1 upload in 320 of 6 MB, 8 at a time, against rclone 1.75.2).  rclone's own
    remotes with folders never do it (local and SFTP move by a rename and remove no
    emptied folder), and the streamed bytes cannot be sent again from photod's side, so
    the copy is one `replica_failed` and a retry: the photo is protected, nothing stays
    in `.photod/tmp/` and no upload stays open.  The proxy refuses the parts of the
    first upload into `.photod/tmp/` as the server did, so the race is not left to luck."""
    from PIL import Image

    if not s3_server.running():
        s3_server.start()
    refused: list[str] = []  # the upload ids refused, one

    def rule(method: str, path: str, query: str) -> object:
        if method == "PUT" and "/.photod/tmp/" in path and "partNumber=" in query:
            upload = query.partition("uploadId=")[2].partition("&")[0]
            if not refused or refused == [upload]:
                refused[:] = [upload]
                return ("refuse", 500, "InternalError", "We encountered an internal error")
        return "pass"

    proxy = proxies(s3_server.endpoint, rule)
    prefix = f"vanished-{setup.home.name}/"
    p = _to_rclone_s3(setup, proxy, prefix)
    for i in range(2):  # (noise: a JPEG over the 5 MiB sent whole, streamed in parts)
        Image.frombytes("RGB", (2400, 1800), os.urandom(2400 * 1800 * 3)).save(
            setup.inbox / f"p{i}.jpg", "JPEG", quality=95, subsampling=0
        )
        assert (setup.inbox / f"p{i}.jpg").stat().st_size > STREAM_CUTOFF
    p.start()
    try:
        p.wait_protected(2, timeout=90)
    finally:
        assert 0 == p.stop()
    assert 1 == len(refused)
    failed = [e for e in p.events("replica_failed") if e["target"] == "cloud"]
    # The refused upload's failure; any other is `rclone serve s3` (the test server)
    # losing a multipart upload under load (NoSuchUpload; a full run's 4 workers) or
    # cutting a part's connection without an answer (the proxy cuts the client's too),
    # which photod meets as it meets this one: an event and a retry.
    refusal = [e for e in failed if "InternalError" in e["error"] or "500" in e["error"]]
    said = [e["error"] for e in failed]
    # (one more is the server's own race, which this test forces, met the same way: seen
    # under a full run's load, 2 of 1,671 tests beside it)
    assert 1 <= len(refusal) <= 2, said
    others = [e["error"] for e in failed if e not in refusal and "NoSuchUpload" not in e["error"]]
    cut = ("unexpected EOF", "connection reset")  # (how rclone says a cut with no answer)
    assert all(any(c in o for c in cut) for o in others) and len(others) <= proxy.broken, said
    assert [] == [e for e in p.events() if e.get("level") in ("error", "critical")]
    tmp = s3_server.root / BUCKET / prefix / ".photod" / "tmp"
    assert [] == (sorted(f.name for f in tmp.iterdir()) if tmp.is_dir() else [])
    assert [] == uploads_left(s3_server, prefix)
