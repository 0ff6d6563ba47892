"""The fleet's checks of a remote target, on a real catalog with a memory target (or a
real rclone one) and a clock moved by hand: how soon a remote that comes back is seen,
and that a remote away is said once while it stays away for the same reason."""

from __future__ import annotations

import gc
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from photod import config, failpoints
from photod.catalog import Catalog
from photod.clock import ManualClock
from photod.errors import LinkInTarget, TargetUnavailable
from photod.fleet import REMOTE_PROBE, Fleet, TargetState
from photod.ingest import Ingestor
from photod.models import Kind, ManifestEntry, Media, PolicyRule, Probe, TargetInfo
from photod.replicate import Replicator
from photod.targets import rcd
from photod.targets.local import LocalTarget
from photod.targets.memory import MemoryTarget
from photod.targets.rclone import RcloneTarget
from photod.targets.records import Installation, Records
from tests.conftest import no_room_for_a_file, sha256
from tests.servers import BUCKET, FaultProxy, S3Server, SSHServer
from tests.targets.test_contract import s3_target


class Remote:
    """One queued (remote) target in a fleet whose pauses may grow to an hour."""

    def __init__(self, tmp: Path) -> None:
        self.catalog = Catalog(tmp / "catalog.sqlite")
        self.target = MemoryTarget("cloud")
        self.state = TargetState(self.target, TargetInfo("cloud", Media.CLOUD, True), queued=True)
        self.clock = ManualClock()
        self.fleet = Fleet(self.catalog, {"cloud": self.state}, threading.Event(),
                           retry_max=3600.0, clock=self.clock)  # fmt: skip
        assert self.fleet.refresh("cloud")

    def away(self, seconds: float) -> None:
        """The server does not answer for this long, checked whenever the fleet asks."""
        self.target.available = False
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            self.fleet.refresh("cloud")
            self.clock.advance(1.0)

    def seen_back_after(self) -> float:
        """Seconds until the fleet sees the server that answers again."""
        self.target.available = True
        waited = 0.0
        while not self.fleet.refresh("cloud"):
            self.clock.advance(1.0)
            waited += 1.0
        return waited


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    r = Remote(tmp_path)
    yield r
    r.catalog.close()


def test_a_remote_back_after_a_long_outage_is_seen_within_a_minute(remote: Remote) -> None:
    """Down for three hours, its pause grew to the hour of retry_max; it is still asked
    at least once a minute, so its uploads can start within a minute of its return
    (not up to an hour later, with status saying NOT PROTECTED all the while)."""
    remote.away(3 * 3600)
    assert 3600.0 == remote.state.backoff
    assert remote.seen_back_after() <= REMOTE_PROBE


def test_a_remote_that_sheds_uploads_still_waits_out_its_pause(remote: Remote) -> None:
    """A server that answers checks but fails uploads (throttling) is not asked again
    at every probe: after failed uploads the pause doubles and is waited out in full."""
    for _ in range(6):
        remote.fleet.fail("cloud", TargetUnavailable("cloud", "503 Slow Down"))
    assert 160.0 == remote.state.backoff
    remote.clock.advance(REMOTE_PROBE)
    assert not remote.fleet.refresh("cloud")  # answers now, but its pause has not passed
    remote.clock.advance(160.0 - REMOTE_PROBE)
    assert remote.fleet.refresh("cloud")


def test_an_upload_that_failed_while_the_remote_was_away_goes_as_it_returns(
    remote: Remote, tmp_path: Path, samples: Path
) -> None:
    """A photo whose upload failed because the remote went away is uploaded by the
    first catch-up after the remote answers again, as a local drive's copy is: it
    does not wait out a retry_interval (30 s) of its own."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    photo = inbox / "a.jpg"
    photo.write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes())
    text = (f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\n'
            f'type = "folder"\npath = "{inbox}"\n[[targets]]\nname = "cloud"\n'
            'type = "s3"\nbucket = "photos"\n')  # fmt: skip
    cfg = config.parse(text, tmp_path / "c.toml")
    rep = Replicator(remote.catalog, remote.fleet, PolicyRule(1, 1, 1), threading.Event(),
                     {"in": inbox}, retry_base=30.0, retry_max=3600.0)  # fmt: skip
    try:
        remote.target.available = False  # it goes away as the photo arrives
        Ingestor(cfg.ingest, {"in": inbox}, remote.catalog, rep).ingest("in", photo)
        assert 0 == rep.replicate_pending("cloud")  # the upload fails: the remote is away
        assert remote.seen_back_after() <= 5.0
        assert 1 == rep.replicate_pending("cloud")  # at once, not 30 s later
        assert ["cloud"] == [r.target for r in remote.catalog.replicas(sha256(photo))]
    finally:
        rep.close()


def checked_again(fleet: Fleet, clock: ManualClock, name: str, times: int) -> None:
    """The fleet asks a target that stays away ``times`` times, each once its pause ended."""
    for _ in range(times):
        assert not fleet.refresh(name)
        clock.advance(REMOTE_PROBE + 1)


def rclone_remote_checked_three_times(
    tmp_path: Path, settings: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """An rclone remote (a local folder through rcd, else ``settings``'s) asked three
    times, each once its pause ended: its `target_unavailable` events."""
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "dir:",
                                            settings or {"type": "local"})  # fmt: skip
    target = RcloneTarget("cloud", f"dir:{tmp_path / 'remote'}", conf, timeout=2)
    state = TargetState(target, TargetInfo("cloud", Media.CLOUD, True), queued=True)
    catalog, clock = Catalog(tmp_path / "catalog.sqlite"), ManualClock()
    fleet = Fleet(catalog, {"cloud": state}, threading.Event(), clock=clock)
    try:
        with capture_logs() as events:
            checked_again(fleet, clock, "cloud", 3)
    finally:
        target.close()
        catalog.close()
    return [e for e in events if e["event"] == "target_unavailable"]


def test_an_rclone_remote_whose_rcd_cannot_start_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclone's rcd exits at each start (here its socket's path is too long for a
    socket: a deep temporary folder, and a deep folder in place of /tmp, where rcd's
    goes then): the reason is its last words, which carry the time and the folder made
    afresh at each start. It was a new `target_unavailable` at every try, once a minute
    for as long as it lasted; it is said once, and the reason still says what rclone
    said."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))  # where rcd's socket folder goes
    monkeypatch.setattr(rcd, "SHORT_TOP", str(deep))  # (and where it goes when that is deep)
    [away] = rclone_remote_checked_three_times(tmp_path)
    assert "rclone rcd exited" in away["reason"] and "bind: invalid argument" in away["reason"]
    assert f"{deep}/photod-rclone-*/rc.sock" in away["reason"], away["reason"]


def test_an_rclone_remote_whose_rcd_finds_no_room_in_tmp_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary folder is full (a tmpfs another program filled): an rclone target
    cannot make the folder its rcd listens in. The reason was the OSError's text, which
    names that folder, named afresh at each try: a new `target_unavailable` at every
    try, once a minute for as long as /tmp stayed full. It is said once, with what to
    free."""
    full = tmp_path / "tmp"
    with no_room_for_a_file(full):
        monkeypatch.setattr(tempfile, "tempdir", str(full))  # where rcd's folder goes
        monkeypatch.setattr(rcd, "SHORT_TOP", str(full))  # (and where when that is deep)
        [away] = rclone_remote_checked_three_times(tmp_path)
    assert away["reason"] == (
        f"cannot start rclone rcd: No space left on device (its folder goes in {full})"
    )


def test_an_sftp_nas_that_hangs_before_its_login_is_said_once(
    tmp_path: Path, ssh_server: SSHServer
) -> None:
    """The NAS's sshd does not answer (hung, booting): each try's reason named the
    connection's own port on this computer, new at each try ("read tcp
    127.0.0.1:50736->127.0.0.1:22: i/o timeout"), so it was a new `target_unavailable`
    at every check, once a minute for as long as it lasted. It is said once."""
    import signal

    import psutil

    if not ssh_server.running():
        ssh_server.start()
    sshd = psutil.Process(ssh_server.proc.pid)
    sshd.send_signal(signal.SIGSTOP)
    try:
        [away] = rclone_remote_checked_three_times(tmp_path, ssh_server.rclone_config())
    finally:
        sshd.send_signal(signal.SIGCONT)
    assert "i/o timeout" in away["reason"], away["reason"]


def test_a_check_that_fails_unexpectedly_each_time_is_said_once_with_its_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drive's check meets an error no one mapped (an I/O error photod has no words
    for, or a bug) at every probe: "one event, never a crash" was one trace at every
    probe, every 5 s for as long as it lasted. It is said once (its trace, and the
    target away), and again only when the error is another."""
    state = TargetState(
        LocalTarget("lib", tmp_path / "lib", True), TargetInfo("lib", Media.INTERNAL, False)
    )
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fleet = Fleet(catalog, {"lib": state}, threading.Event(), clock=ManualClock())
    try:
        with capture_logs() as events:
            monkeypatch.setattr(failpoints, "_armed", failpoints._parse("target_checking=eio"))
            for _ in range(3):
                assert not fleet.refresh("lib")
            monkeypatch.setattr(failpoints, "_armed", failpoints._parse("target_checking=raise"))
            for _ in range(3):
                assert not fleet.refresh("lib")
    finally:
        catalog.close()
    failed = [e for e in events if e["event"] == "target_check_failed"]
    assert ["[Errno 5] Input/output error", "failpoint 'target_checking' hit"] == [
        e["error"] for e in failed
    ]
    assert all(e["exc_info"] for e in failed)
    assert 2 == len([e for e in events if e["event"] == "target_unavailable"])
    assert "unexpected error: failpoint 'target_checking' hit" == state.reason


def test_copies_that_find_a_target_gone_at_the_same_moment_say_it_once(tmp_path: Path) -> None:
    """Sixteen copies meet the same refused folder (or unplugged drive) at once, five
    times over: one `target_unavailable` each time, not one per copy (each saw the
    target still available while another was saying it went)."""
    state = TargetState(
        LocalTarget("lib", tmp_path / "lib", True), TargetInfo("lib", Media.INTERNAL, False)
    )
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fleet = Fleet(catalog, {"lib": state}, threading.Event(), clock=ManualClock())
    together = threading.Barrier(16)

    def copy_fails() -> None:
        together.wait()
        fleet.fail("lib", TargetUnavailable("lib", "a folder inside it is another user's"))

    said = []
    try:
        for _ in range(5):
            assert fleet.refresh("lib")
            with capture_logs() as events:
                copies = [threading.Thread(target=copy_fails) for _ in range(16)]
                for t in copies:
                    t.start()
                for t in copies:
                    t.join()
            said.append(len([e for e in events if e["event"] == "target_unavailable"]))
    finally:
        catalog.close()
    assert [1] * 5 == said


def test_a_target_waiting_on_a_folder_says_that_folder_again_once_a_pause_ends(
    tmp_path: Path,
) -> None:
    """A target waits on a folder inside it (here a link), then its upload window
    closes and opens again: `photod status` says the folder again, not the window that
    is over (the probe that found the folder still refused left the window's reason)."""
    (tmp_path / "lib" / "2008").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "lib" / "2009"
    link.symlink_to(tmp_path / "elsewhere")
    state = TargetState(
        LocalTarget("lib", tmp_path / "lib", True), TargetInfo("lib", Media.INTERNAL, False)
    )
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fleet = Fleet(catalog, {"lib": state}, threading.Event(), clock=ManualClock())
    try:
        assert fleet.refresh("lib")
        fleet.fail("lib", LinkInTarget("lib", link))
        refused = state.reason
        now = datetime.now()
        later = (now.hour * 60 + now.minute + 60) % 1440
        state.window = (later, (later + 60) % 1440)  # (closed now)
        assert not fleet.refresh("lib")
        assert state.reason.startswith("outside its upload window"), state.reason
        state.window = None  # (open again)
        assert not fleet.refresh("lib")
        assert refused == state.reason and str(link) in refused, state.reason
        link.unlink()
        assert fleet.refresh("lib")
    finally:
        catalog.close()


def test_a_target_back_after_a_failed_write_leaves_the_copies_in_flight_alone(
    tmp_path: Path,
) -> None:
    """One copy fails and the target is away; another, on another worker, goes on
    writing.  The target answers again at the next probe: its tidy, which removes
    what a crash left, removed that copy's temporary too (an S3 upload in flight was
    aborted: on a slow server a large video could never finish).  A copy in flight
    is left alone, and commits."""
    state = TargetState(
        LocalTarget("lib", tmp_path / "lib", True), TargetInfo("lib", Media.INTERNAL, False)
    )
    catalog = Catalog(tmp_path / "catalog.sqlite")
    fleet = Fleet(catalog, {"lib": state}, threading.Event(), clock=ManualClock())
    rep = Replicator(catalog, fleet, PolicyRule(1, 1, 0), threading.Event(), {},
                     retry_base=30.0, retry_max=3600.0)  # fmt: skip
    try:
        assert fleet.refresh("lib")
        writer = state.target.open_writer("2024/a.jpg")
        rep.copier.temps.register({"lib": writer})
        writer.write(b"photo")
        fleet.fail("lib", TargetUnavailable("lib", "another copy's write failed"))
        assert fleet.refresh("lib")  # back: tidied
        assert [writer.temp_key] == catalog.temps("lib")
        writer.commit("2024/a.jpg", hashlib.sha256(b"photo").hexdigest())
        assert b"photo" == (tmp_path / "lib" / "2024" / "a.jpg").read_bytes()
    finally:
        rep.close()
        catalog.close()


class KeptVideo:
    """A video's upload to S3 through a proxy that drops its second part while ``cut``:
    a try fails with the link gone longer than `part_retry`, and its upload is kept."""

    def __init__(self, tmp_path: Path, s3_server: S3Server) -> None:
        if not s3_server.running():
            s3_server.start()
        self.cut = [True]
        self.proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: "drop"
                                if self.cut[0] and "partNumber=2" in query.split("&")
                                else "pass")  # fmt: skip
        creds = s3_server.credentials(tmp_path / "aws-credentials")
        self.target = s3_target(s3_server, f"kept-{tmp_path.name}/", creds,
                                endpoint=self.proxy.endpoint)  # fmt: skip
        self.state = TargetState(self.target, TargetInfo("s3", Media.CLOUD, True), queued=True)
        self.catalog = Catalog(tmp_path / "catalog.sqlite")
        self.clock = ManualClock()
        self.fleet = Fleet(self.catalog, {"s3": self.state}, threading.Event(), clock=self.clock)
        self.rep = Replicator(self.catalog, self.fleet, PolicyRule(1, 1, 1), threading.Event(),
                              {}, retry_base=30.0, retry_max=3600.0)  # fmt: skip
        self.video = os.urandom(12 * 1024**2)  # three parts: 5 MiB, 5 MiB and 2 MiB
        self.sha = hashlib.sha256(self.video).hexdigest()

    def one_try(self, between: Callable[[], object] = lambda: None) -> bool:
        """One try of the video's upload, as the catch-up makes it; whether it landed."""
        writer = self.state.open_writer("2024/v.mov")
        between()
        self.rep.copier.temps.register({"s3": writer})
        try:
            writer.write(self.video)
            writer.commit("2024/v.mov", self.sha)
        except TargetUnavailable as exc:
            self.rep.copier.temps.end("s3", writer)
            self.fleet.fail("s3", exc)
            return False
        return True

    def close(self) -> None:
        self.proxy.stop()
        self.rep.close()
        self.target.close()
        self.catalog.close()


@pytest.fixture
def kept_video(tmp_path: Path, s3_server: S3Server) -> Iterator[KeptVideo]:
    kept = KeptVideo(tmp_path, s3_server)
    try:
        yield kept
    finally:
        kept.close()


def test_a_target_back_as_a_kept_upload_resumes_leaves_it_to_resume(
    kept_video: KeptVideo,
) -> None:
    """A video's upload to S3 fails with the link gone longer than `part_retry`: its
    upload is kept, its parts on the server.  The next try opens its writer, which
    takes that upload, and the target's tidy (another copy's failure made it away, and
    it is back) runs before the try notes its writer in flight (a worker's moment, or
    the other targets' writers opened first): the tidy aborted the upload, and every
    part was sent again.  The try resumes it, and the first part is not sent again."""
    k, target, state, fleet = kept_video, kept_video.target, kept_video.state, kept_video.fleet
    assert fleet.refresh("s3")
    assert not k.one_try()  # the link gone at the second part
    assert not state.available and target.kept.temps()
    k.cut[0] = False
    k.clock.advance(REMOTE_PROBE)
    with capture_logs() as logs:
        assert k.one_try(lambda: fleet.refresh("s3"))  # back, tidied, between the two
    assert state.available
    [kept] = [e["parts_kept"] for e in logs if e["event"] == "upload_resumed"] or [0]
    assert kept >= 1, logs  # (the first, and the last if it went beside the second)
    firsts = [q for q, _, _ in k.proxy.bodies if "partNumber=1" in q.split("&")]
    assert 1 == len(firsts), k.proxy.bodies
    with target.open("2024/v.mov") as f:
        assert k.video == f.read()


def test_a_kept_upload_whose_resuming_try_is_cut_short_is_aborted_by_the_next_tidy(
    kept_video: KeptVideo,
) -> None:
    """A kept upload taken by a try that never went on (its writer opened, then given
    up before it was noted in flight or ended: the state disk full as the copy was
    noted) is no longer kept for any try: the target's next tidy aborts it on the
    server.  It was left there, its parts billed, until photod was restarted."""
    k, target, fleet = kept_video, kept_video.target, kept_video.fleet
    assert fleet.refresh("s3")
    assert not k.one_try()  # the link gone at the second part: the upload kept
    k.cut[0] = False
    k.state.open_writer("2024/v.mov")  # taken, and dropped (never noted, never ended)
    gc.collect()
    k.clock.advance(REMOTE_PROBE)
    assert fleet.refresh("s3")  # back: tidied
    left = target.client.list_multipart_uploads(Bucket=BUCKET, Prefix=target.full(""))
    assert [] == left.get("Uploads", [])


def test_a_kept_upload_whose_video_another_computer_stored_meanwhile_is_aborted(
    kept_video: KeptVideo, s3_server: S3Server, tmp_path: Path
) -> None:
    """A video's upload to S3 fails with the link gone longer than `part_retry`: its
    upload is kept for the next try.  Meanwhile the family's other computer, which
    shares the target and has the same video, stores it there under its own name and
    lists it.  The next try proves and records that copy, sends nothing, and aborts the
    kept upload on the server: no try ever took it, and it stayed there, its parts
    billed, with no tidy ending it, until photod was restarted."""
    k, target, fleet = kept_video, kept_video.target, kept_video.fleet
    k.state.records = Records(target, Installation("ab" * 16, "laptop"))
    assert fleet.refresh("s3")
    info = Probe(Kind.VIDEO, "quicktime", datetime(2024, 1, 2), "quicktime", None)
    k.catalog.add_asset(k.sha, len(k.video), "2024/v.mov", info, "in", "v.mov")
    assert not k.one_try()  # the link gone at the second part: the upload kept
    desktop = s3_target(s3_server, target.prefix, tmp_path / "aws-credentials")
    try:
        desktop.put("2024/2024-01-02/IMG_0042.MOV", k.video)
        theirs = Records(desktop, Installation("cd" * 16, "desktop"))
        theirs.register()
        theirs.ledger.append([ManifestEntry(k.sha, "2024/2024-01-02/IMG_0042.MOV")])
        theirs.ledger.flush()
    finally:
        desktop.close()
    k.cut[0] = False
    k.clock.advance(REMOTE_PROBE)
    assert fleet.refresh("s3")  # back: the other computer's list read
    asset = k.catalog.asset(k.sha)
    assert asset is not None and k.rep.copy_asset(asset, "s3")
    [replica] = k.catalog.replicas(k.sha)
    assert "2024/2024-01-02/IMG_0042.MOV" == replica.relpath
    left = target.client.list_multipart_uploads(Bucket=BUCKET, Prefix=target.full(""))
    assert [] == left.get("Uploads", [])
    assert [] == k.catalog.temps("s3")
