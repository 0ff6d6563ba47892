"""A real `photod run` process: files dropped into a watch folder end up verified on
every target; signals, restarts, and bad configs behave."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Photod, make_mov, sha256, target_files, wait_for, write_config
from tests.fakephone import jpeg
from tests.integration.conftest import Setup, assert_target_holds
from tests.servers import FaultProxy, S3Server

pytestmark = pytest.mark.integration


def slow_write(src: Path, dest: Path, pieces: int = 6, pause: float = 0.3) -> None:
    """Write a file the way a sync client does: in pieces, with pauses, one handle."""
    data = src.read_bytes()
    step = len(data) // pieces + 1
    with open(dest, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            time.sleep(pause)


def test_dropped_files_are_verified_on_every_target(setup: Setup, samples: Path) -> None:
    """Photos copied, moved in, written slowly or renamed from a .part file all appear
    on every target, byte for byte, with a manifest `sha256sum -c` accepts; junk is
    left alone; events, logs and status tell the story; SIGTERM stops cleanly."""
    t1, t2 = setup.home / "library", setup.home / "backup"
    p = setup.photod(
        [{"name": "library", "path": str(t1)}, {"name": "backup", "path": str(t2)}]
    ).start()

    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "copied.jpg")
    outside = setup.home / "elsewhere.HEIC"
    shutil.copy(samples / "heic_IMG_5195.HEIC", outside)
    os.rename(outside, setup.inbox / "moved.HEIC")
    (setup.inbox / "2022" / "trip").mkdir(parents=True)
    writer = threading.Thread(
        target=slow_write,
        args=(samples / "jpg_hdr_iphone_hdr_YES.jpg", setup.inbox / "2022" / "trip" / "slow.jpg"),
    )
    writer.start()
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "synced.jpg.part")
    os.rename(setup.inbox / "synced.jpg.part", setup.inbox / "synced.jpg")
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "IMG_0002.HEIC")  # a JPEG in disguise
    data = (samples / "jpg_hdr_iphone_hdr_NO.jpg").read_bytes()
    (setup.inbox / "truncated.jpg").write_bytes(data[: len(data) // 2])
    # (An hour old: a file that ends early and was written a moment ago waits up to a
    # minute for the rest of it, as a slow writer's would.)
    os.utime(setup.inbox / "truncated.jpg", (time.time() - 3600,) * 2)
    for junk in (".DS_Store", "notes.txt", "left.jpg.part", "._copied.jpg"):
        (setup.inbox / junk).write_bytes(b"junk")
    writer.join()

    taken = ["copied.jpg", "moved.HEIC", "2022/trip/slow.jpg", "synced.jpg", "truncated.jpg"]
    status = p.wait_protected(len(taken), timeout=30)  # IMG_0002.HEIC has copied.jpg's bytes
    hashes = {sha256(setup.inbox / name) for name in taken}
    for root in (t1, t2):
        held = target_files(root)
        assert hashes == set(held.values())
        assert_target_holds(root, held)
    held = target_files(t1)
    assert {"2021/2021-04-11/moved.HEIC", "2015/2015-04-10/slow.jpg"} <= set(held)
    # copied.jpg and IMG_0002.HEIC are the same bytes: one copy, named after whichever
    # of the two the ingest workers (several files at once) took first.
    [twins] = [k for k, v in held.items() if v == sha256(setup.inbox / "copied.jpg")]
    first = {"copied": "copied.jpg", "IMG_0002": "IMG_0002.HEIC"}[
        twins.rsplit("/")[-1].split(".")[0]
    ]
    assert twins.startswith("2008/2008-05-30/"), twins

    assert {"assets", "bytes", "policy", "targets"} <= set(status)
    assert {"copies": 2, "media": 1, "offsite": 0, "compliant": 5, "noncompliant": 0} == {
        k: status["policy"][k] for k in ("copies", "media", "offsite", "compliant", "noncompliant")
    }
    assert [("library", True, 5, 0), ("backup", True, 5, 0)] == [
        (t["name"], t["available"], t["replicas"], t["pending"]) for t in status["targets"]
    ]
    assert sum((setup.inbox / n).stat().st_size for n in taken) == status["bytes"]

    written = p.events("replica_written")
    assert 10 == len(written)
    for e in written:
        assert {"ts", "level", "event", "asset", "target", "bytes", "duration"} <= set(e)
        assert e["ts"].endswith("Z")
    undecodable = p.events("asset_undecodable")
    assert ["truncated.jpg"] == [e["path"] for e in undecodable]
    assert [{"copied.jpg", "IMG_0002.HEIC"} - {first}] == [
        {e["path"]} for e in p.events("asset_seen_again")
    ]

    human = p.cli("logs")
    assert 0 == human.returncode
    assert "replica_written" in human.stdout and "target=backup" in human.stdout
    failures = p.cli("logs", "--failures", "--since", "1h").stdout.splitlines()
    assert failures and all(("WARNING" in line or "ERROR" in line) for line in failures)
    assert any("asset_undecodable" in line for line in failures)
    raw = p.cli("logs", "--json").stdout.splitlines()
    assert all(json.loads(line)["event"] for line in raw)

    plain = p.cli("status").stdout
    assert plain.startswith("All 5 photos and videos")

    started = time.monotonic()
    assert 0 == p.stop()
    assert time.monotonic() - started < 10
    assert p.events("daemon_stopped")


def test_restart_takes_what_arrived_while_down_and_copies_nothing_twice(
    setup: Setup, samples: Path
) -> None:
    """Files added while photod was stopped are taken at the next start; files already
    recorded are neither re-read nor copied again."""
    t1 = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(t1)}])
    p.start()
    for name in ("jpg_Canon_40D.jpg", "jpg_gps_DSCN0010.jpg", "heic_IMG_5195.HEIC"):
        shutil.copy(samples / name, setup.inbox / name)
    p.wait_protected(3)
    assert 0 == p.stop()
    for name in ("jpg_long_description.jpg", "heic_samplefilehub.heif"):
        shutil.copy(samples / name, setup.inbox / name)
    p.start()
    p.wait_protected(5)
    scans = p.events("scan_finished")
    assert (5, 2) == (scans[-1]["files"], scans[-1]["changed"])
    per_asset: dict[str, int] = {}
    for e in p.events("replica_written"):
        per_asset[e["asset"]] = per_asset.get(e["asset"], 0) + 1
    assert {1} == set(per_asset.values())
    assert 5 == len(per_asset)
    assert 0 == p.stop()


def test_a_broken_pillow_is_said_as_each_photos_failure_and_the_photo_taken_once_fixed(
    setup: Setup, samples: Path
) -> None:
    """Pillow is loaded at the first photo, not at the start: when it cannot be loaded
    (a library it needs gone with a system upgrade), the photo's failure says so and
    what to do, with no trace, and the daemon goes on; once the install is fixed, the
    photo is taken (it got an ingest_failed with an ImportError's trace, as for a bug)."""
    broken = setup.home / "broken" / "PIL"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        'raise ImportError("libjpeg.so.8: cannot open shared object file")\n'
    )
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    kept = dict(p.env)
    p.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(broken.parent),
                                                         p.env.get("PYTHONPATH")]))  # fmt: skip
    p.start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    [failed] = p.wait_event("ingest_failed", timeout=30)
    assert "libjpeg.so.8" in failed["error"] and "reinstall photod" in failed["error"]
    assert "exception" not in failed  # (no trace: nothing of photod's is wrong)
    assert {} == target_files(lib)
    assert 0 == p.stop()
    p.env = kept  # (the install fixed)
    p.start()
    p.wait_protected(1)
    assert 0 == p.stop()


def test_external_drive_comes_and_goes(setup: Setup, samples: Path) -> None:
    """Copies for an unplugged drive wait as pending while the library gets them; when
    the drive appears they complete by themselves; an empty folder in its place is not
    taken for the drive."""
    lib, drive = setup.home / "library", setup.home / "media" / "T7"
    p = setup.photod(
        [
            {"name": "library", "path": str(lib)},
            {"name": "t7", "path": str(drive), "media": "external"},
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
    ).start()
    p.wait_event("target_unavailable", target="t7")
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    shutil.copy(samples / "heic_IMG_5195.HEIC", setup.inbox / "b.HEIC")
    p.wait_event("replica_written", count=2, target="library")
    status = p.status()
    assert (False, 2, 2) == (
        status["protected"],
        status["policy"]["noncompliant"],
        status["targets"][1]["pending"],
    )
    assert "does not exist" in status["targets"][1]["reason"]
    assert not drive.exists()  # an external target's folder is never created on the system disk
    assert "NOT PROTECTED" in p.cli("status").stdout

    drive.mkdir(parents=True)  # the drive is plugged in
    p.wait_protected(2, timeout=30)
    assert_target_holds(drive, target_files(lib))

    drive.rename(setup.home / "media" / "T7-away")  # unplugged
    drive.mkdir()  # an empty mount point where it was
    p.wait_event("target_unavailable", count=2, target="t7")
    shutil.copy(samples / "jpg_gps_DSCN0010.jpg", setup.inbox / "c.jpg")
    p.wait_event("replica_written", count=3, target="library")
    status = p.status()
    assert (1, 1) == (status["policy"]["noncompliant"], status["targets"][1]["pending"])
    assert "no .photod/target.json" in status["targets"][1]["reason"]
    assert [] == list(drive.iterdir())

    drive.rmdir()
    (setup.home / "media" / "T7-away").rename(drive)  # plugged in again
    p.wait_protected(3, timeout=30)
    assert_target_holds(drive, target_files(lib))
    assert 0 == p.stop()


def test_bad_config_refuses_to_start(setup: Setup) -> None:
    """`photod run` on a bad config prints one line per problem with the key, exits 78,
    and starts nothing."""
    cfg = setup.config([{"name": "library", "path": str(setup.home / "library"), "media": "tape"}])
    p = Photod(setup.home, cfg)
    r = p.cli("run")
    assert 78 == r.returncode
    assert (
        f"{cfg}: targets[0].media: is 'tape'; allowed: 'internal', 'external', 'nas' or 'cloud'"
        == r.stderr.strip()
    )
    assert not (setup.home / "state").exists()
    assert not (setup.home / "library").exists()
    assert r.stderr == p.cli("config", "check").stderr


def test_first_run_writes_default_config(tmp_path: Path, photod_factory) -> None:  # type: ignore[no-untyped-def]
    """With no config, `photod run` writes a commented default (inbox and library under
    the home directory, both created), says where, starts, and backs up."""
    home = tmp_path
    p = photod_factory(home / ".config" / "photod" / "photod.toml")
    p.log_dir = home / ".local" / "state" / "photod" / "log"
    p.start(config=False)
    written = home / ".config" / "photod" / "photod.toml"
    assert f"wrote a default one to {written}" in p.output.read_text()
    assert "# " in written.read_text()
    assert 0o600 == written.stat().st_mode & 0o777  # it may come to hold a secret
    inbox, library = home / "Pictures" / "Inbox", home / "Pictures" / "photod"
    assert inbox.is_dir() and library.is_dir()
    from tests.conftest import SAMPLES

    (inbox / "first.jpg").write_bytes((SAMPLES / "jpg_Canon_40D.jpg").read_bytes())
    wait_for(lambda: len(target_files(library)) == 1, 20, "the first photo in the library")
    assert 0 == p.cli("config", "check", config=False).returncode
    # The default config also imports iPhones; with no usbmuxd here it says so, once.
    assert 'type = "iphone"' in written.read_text()
    if "USBMUXD_SOCKET_ADDRESS" not in p.env and not Path("/var/run/usbmuxd").exists():
        waiting = p.wait_event("usbmuxd_waiting")
        assert len(waiting) == 1 and "usbmuxd" in waiting[0]["detail"]
    assert 0 == p.stop()


def test_second_instance_is_refused(setup: Setup) -> None:
    """A second daemon on the same state dir refuses to start, naming the first."""
    p = setup.photod([{"name": "library", "path": str(setup.home / "library")}]).start()
    second = p.cli("run")
    assert 75 == second.returncode
    assert f"already running (pid {p.proc.pid})" in second.stderr  # type: ignore[union-attr]
    assert 0 == p.stop()


def test_sighup_reloads_config(setup: Setup, samples: Path) -> None:
    """SIGHUP applies a new config (a new target gets every asset); a bad new config, or
    one that moves the state dir, is reported and the daemon keeps running on the old one."""
    lib, extra = setup.home / "library", setup.home / "second"
    p = setup.photod([{"name": "library", "path": str(lib)}]).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    setup.config([{"name": "library", "path": str(lib)}, {"name": "second", "path": str(extra)}])
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    p.wait_event("daemon_reloaded")
    p.wait_protected(1)
    assert target_files(lib) == target_files(extra)

    p.config.write_text(p.config.read_text().replace('name = "second"', 'name = "bad name!"'))
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    bad = p.wait_event("config_invalid")
    assert "targets[1].name" in bad[0]["problems"][0]

    setup.config([{"name": "library", "path": str(lib)}])
    p.config.write_text(p.config.read_text().replace('/state"', '/elsewhere"'))
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    moved = p.wait_event("config_invalid", count=2)
    assert "daemon.state_dir" in moved[1]["problems"][0]
    assert p.proc.poll() is None  # type: ignore[union-attr]
    assert 0 == p.stop()


def test_a_reload_that_changes_nothing_writes_no_snapshot(setup: Setup) -> None:
    """Two reloads with the config as it was and nothing new (a SIGHUP from a log
    rotation, `systemctl reload`): no snapshot generation is written for them (each
    reload wrote one more of the same catalog to every target); the next photo's
    snapshot is the catalog's second generation."""
    jpeg(setup.inbox / "a.jpg", seed=1)
    p = setup.photod([{"name": "library", "path": str(setup.home / "library")}]).start()
    p.wait_protected(1)
    p.wait_event("catalog_snapshot_written")
    for reloads in (1, 2):
        p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        p.wait_event("daemon_reloaded", count=reloads)
        time.sleep(5)  # (its first rounds: a snapshot was written by now)
    jpeg(setup.inbox / "b.jpg", seed=2)
    p.wait_event("catalog_snapshot_written", assets=2, timeout=60)
    assert 0 == p.stop()
    written = [(e["generation"], e["assets"]) for e in p.events("catalog_snapshot_written")]
    assert [(1, 1), (2, 2)] == written[:2], written


def _refused_by_a_reload(p: Photod, problems: list[str]) -> None:
    """A SIGHUP after the config was edited: one `config_invalid` carrying ``problems``,
    and the daemon runs on (neither failed nor stopping) with the config it had."""
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    [invalid] = p.wait_event("config_invalid")
    assert problems == invalid["problems"]
    time.sleep(1)
    assert p.proc.poll() is None  # type: ignore[union-attr]
    assert [] == p.events("daemon_failed") + p.events("daemon_stopping")


@pytest.mark.parametrize(
    ("line", "shown"),
    [("retry_interval = inf", "inf"), ('retry_interval = "99999999999d"', "'99999999999d'")],
    ids=["inf", "huge"],
)
def test_a_duration_without_end_is_refused_by_a_reload(setup: Setup, line: str, shown: str) -> None:
    """`inf` is a TOML float, and a duration of millions of years parses: each passed
    `config check` and a reload, and the daemon then died of an OverflowError (its
    scheduler's interval), a traceback and no backups.  Refused in one line naming the
    key and what is allowed; the daemon keeps running on its config."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    p.config.write_text(p.config.read_text().replace('retry_interval = "1s"', line))
    want = f"{p.config}: daemon.retry_interval: is {shown}; allowed: a duration up to 3650d"
    r = p.cli("config", "check")
    assert (78, [want]) == (r.returncode, r.stderr.splitlines())
    _refused_by_a_reload(p, [want])
    assert 0 == p.stop()


def test_a_reload_that_fails_in_a_way_no_check_foresaw_keeps_the_daemon(
    setup: Setup, samples: Path
) -> None:
    """A reload that fails in a way no check of photod's foresaw (its own bug: here a
    failpoint raising where the config is read again) ended the daemon, a traceback
    and no backups until someone looked.  Now it is one `config_invalid` naming the
    config and what failed; the daemon runs on, and the next reload applies."""
    lib, extra = setup.home / "lib", setup.home / "second"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    p.env["PHOTOD_FAILPOINTS"] = "config_reread=1:raise"
    p.start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "a.jpg")
    p.wait_protected(1)
    setup.config([{"name": "lib", "path": str(lib)}, {"name": "second", "path": str(extra)}])
    _refused_by_a_reload(p, [f"{p.config}: could not be applied (FailpointHit: failpoint "
                             "'config_reread' hit); `photod config check` may say more"])  # fmt: skip
    assert not extra.exists()  # (the running config has no such target)
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    [reloaded] = p.wait_event("daemon_reloaded")
    assert "targets.second" in reloaded["changed"]
    wait_for(lambda: target_files(extra) == target_files(lib), 30, "the new target filled")
    assert 0 == p.stop()


def test_a_nul_in_a_path_is_refused_by_a_reload(setup: Setup) -> None:
    """A NUL in a path (TOML's "\\u0000" escape, a paste gone wrong): `config check`
    printed a traceback and a reload killed the daemon (ValueError: embedded null
    byte).  One line naming the key and what is allowed; the daemon keeps its config."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    text = p.config.read_text()
    p.config.write_text(text.replace(f'"{setup.inbox}"', f'"{setup.inbox}\\u0000x"'))
    want = (
        f"{p.config}: sources[0].path: is {str(setup.inbox) + chr(0) + 'x'!r}; allowed: a "
        "path without a NUL character"
    )
    r = p.cli("config", "check")
    assert (78, [want]) == (r.returncode, r.stderr.splitlines())
    _refused_by_a_reload(p, [want])
    assert 0 == p.stop()


def test_a_reload_to_a_key_that_is_no_age_identity_keeps_the_daemon(setup: Setup) -> None:
    """A reload that turns encryption on with an identity file that holds no age key
    (the public key pasted instead, a file mangled): it passed `config check` and
    `photod reload`, and the daemon then stopped for good (exit 78, so systemd does
    not restart it).  Now `photod reload` refuses it as the daemon does (exit 78, the same
    line, nothing sent), and a SIGHUP's `config_invalid` names the key; the daemon runs on."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}]).start()
    key = setup.home / "photod.key"
    key.write_text("age1notasecretkey\n")
    key.chmod(0o600)
    text = p.config.read_text().replace('type = "local"', 'type = "local"\nencrypt = true')
    p.config.write_text(text + f'\n[encryption]\nidentity = "{key}"\n')
    line = (f"{p.config}: encryption.identity: {key}: not an age identity (expected a line "
            "AGE-SECRET-KEY-1...): invalid Bech32 encoding")  # fmt: skip
    r = p.cli("reload")
    assert (78, [line]) == (r.returncode, r.stderr.splitlines())
    assert [] == p.events("config_invalid")
    _refused_by_a_reload(p, [line])
    assert 0 == p.stop()


def test_a_reload_to_an_unreadable_credentials_file_keeps_the_daemon(setup: Setup) -> None:
    """A reload adding an S3 target whose credentials file is no INI file (a key pasted
    bare): the daemon died of botocore's ConfigParseError, a traceback.  Now one
    `config_invalid` names the file, and the daemon goes on with the targets it had."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}]).start()
    creds = setup.home / "b2-credentials"
    creds.write_text("AKIAIOSFODNN7EXAMPLE\n")
    creds.chmod(0o600)
    setup.config(
        [{"name": "lib", "path": str(lib)},
         {"name": "b2", "type": "s3", "bucket": "photos", "endpoint": "https://127.0.0.1:9",
          "offsite": False, "credentials_file": str(creds)}],
        {"copies": 1, "media": 1, "offsite": 0},
    )  # fmt: skip
    _refused_by_a_reload(
        p,
        [
            f"{p.config}: targets[1].credentials_file: {creds} is not an "
            "AWS credentials file ([profile] sections of key = value lines)"
        ],
    )
    (setup.inbox / "a.jpg").write_bytes((SAMPLES / "jpg_Canon_40D.jpg").read_bytes())
    r = p.cli("status")
    assert (78, [f"{creds}: not an AWS credentials file ([profile] sections of key = value "
                 "lines)"]) == (r.returncode, r.stderr.splitlines())  # fmt: skip
    wait_for(lambda: p.events("replica_written"), 30, "the photo backed up all the same")
    assert 0 == p.stop()


def test_a_watch_folder_around_the_state_dir_is_refused(setup: Setup, samples: Path) -> None:
    """A reload that widens a watch folder to one holding photod's state dir (~/Pictures,
    the state in ~/Pictures/photod-state) is refused, naming the key and the state dir,
    and the daemon keeps its config: its thumbnails (JPEGs, one for each photo looked at
    in the dashboard) would be backed up as photos, and the phones' staged files twice."""
    from tests.integration.test_dashboard import ask, session

    pictures, lib = setup.home / "Pictures", setup.home / "lib"
    (pictures / "Inbox").mkdir(parents=True)
    state = pictures / "photod-state"

    def config(source: Path) -> Path:
        return write_config(
            setup.home / "photod.toml",
            [{"name": "pictures", "type": "folder", "path": str(source)}],
            [{"name": "lib", "type": "local", "path": str(lib)}],
            {"copies": 1, "media": 1, "offsite": 0},
            f'\n[daemon]\nstate_dir = "{state}"\nlog_dir = "{setup.home}/log"\n'
            '[ingest]\nsettle = "0.5s"\n',
        )

    p = setup.factory(config(pictures / "Inbox")).start()
    shutil.copy(samples / "jpg_Canon_40D.jpg", pictures / "Inbox" / "a.jpg")
    p.wait_protected(1)
    config(pictures)
    want = (
        f"{p.config}: sources[0].path: {pictures} overlaps photod's state dir ({state}: its "
        "catalog, thumbnails and the phones' staged files); keep watch folders and the "
        "state dir apart"
    )
    r = p.cli("config", "check")
    assert (78, [want]) == (r.returncode, r.stderr.splitlines())
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    [invalid] = p.wait_event("config_invalid")
    assert [want] == invalid["problems"]
    url = json.loads((state / "dashboard.json").read_text())["url"]
    cookie = session(url, p.cli("dashboard", "--no-browser").stdout.split()[0])
    [ingested] = p.events("asset_ingested")
    assert 200 == ask(url, f"/thumb/{ingested['asset']}", headers={"Cookie": cookie})[0]
    time.sleep(3)  # (a thumbnail watched would be taken by now: settle is 0.5 s)
    assert [] == p.events("daemon_reloaded")
    assert ["2008/2008-05-30/a.jpg"] == sorted(target_files(lib))
    assert 0 == p.stop()


def test_a_storm_of_reloads_still_says_what_changed(setup: Setup) -> None:
    """`photod reload` run again and again (or a burst of SIGHUPs) after one edit: the
    daemon ends up running the new config, and its `daemon_reloaded` names the change,
    not an empty list (each reload compared with the one just before it)."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}]).start()
    p.config.write_text(p.config.read_text().replace('retry_max = "2s"', 'retry_max = "7s"'))
    assert 'retry_max = "7s"' in p.config.read_text()
    for _ in range(20):
        p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        time.sleep(0.003)
    p.wait_event("daemon_reloaded")
    time.sleep(2)  # the burst's last reload has run too
    said = {key for e in p.events("daemon_reloaded") for key in e["changed"]}
    assert "daemon.retry_max" in said, p.events("daemon_reloaded")
    assert p.proc.poll() is None  # type: ignore[union-attr]
    assert 0 == p.stop()


def test_sigterm_mid_copy_leaves_nothing_partial(setup: Setup) -> None:
    """SIGTERM while a large video is being copied stops within 10 s, leaves no partial
    file on any target and no replica; the next start copies it completely."""
    t1, t2 = setup.home / "library", setup.home / "backup"
    p = setup.photod([{"name": "library", "path": str(t1)}, {"name": "backup", "path": str(t2)}])
    p.start()
    big = setup.home / "big.mov"
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
        f.write((8 + 600 * (1 << 20)).to_bytes(4, "big") + b"mdat")  # (whole: not waited for)
        for _ in range(600):
            f.write(block)
    os.rename(big, setup.inbox / "big.mov")
    wait_for(lambda: list(t1.rglob(".photod-*.tmp")), 30, "the copy to start")
    started = time.monotonic()
    assert 0 == p.stop()
    assert time.monotonic() - started < 10
    for root in (t1, t2):
        assert [] == [p.name for p in root.rglob("*") if p.is_file() and ".photod" not in p.parts]
    assert 0 == p.status()["targets"][0]["replicas"]
    p.start()
    p.wait_protected(1, timeout=120)
    for root in (t1, t2):
        assert {sha256(setup.inbox / "big.mov")} == set(target_files(root).values())
    assert 0 == p.stop()


def test_hostile_names_stay_inside_the_targets(setup: Setup, samples: Path) -> None:
    """Names with control characters, invalid UTF-8, NFD accents or 250 bytes land
    inside the target under safe names, and the manifest still checks out."""
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}]).start()
    src = (samples / "jpg_Canon_40D.jpg").read_bytes()
    inbox = os.fsencode(setup.inbox)
    names = [
        b"new\nline.jpg",
        b"tab\tand\x1bescape.jpg",
        b"bad\xff\xfeutf8.jpg",
        "Cafe\u0301.jpg".encode(),
        b"x" * 250 + b".jpg",
        b"..\\..\\evil.jpg",
    ]
    for i, name in enumerate(names):
        with open(os.path.join(inbox, name), "wb") as f:
            f.write(src + bytes([i]))  # distinct bytes, still a valid JPEG
    p.wait_protected(len(names), timeout=30)
    held = target_files(lib)
    assert len(names) == len(held)
    assert_target_holds(lib, held)
    assert "2008/2008-05-30/Café.jpg" in held
    outside = [
        q
        for q in setup.home.rglob("*")
        if q.is_file() and not {lib, setup.inbox, samples} & set(q.parents)
    ]
    assert {
        "photod.toml",
        "photod.out",
        "photod.jsonl",
        "catalog.sqlite",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
        "photod.lock",
        "installation.json",
        "config.cache",  # `photod status` keeps its config check (configcache)
        "config.lastgood",  # the config the daemon runs on (config.keep_last_good)
        "status.cache",  # what `photod status` reads of the config (statusconfig)
        "dashboard.secret",  # the dashboard's login secret (600)
        "dashboard.json",  # where the dashboard listens
    } >= {q.name for q in outside}
    assert 0 == p.stop()


def test_cli_runs_as_module_and_script() -> None:
    """`python -m photod --version` answers (the entry point is wired)."""
    r = subprocess.run(
        [sys.executable, "-m", "photod", "--version"], capture_output=True, text=True
    )
    assert r.stdout.startswith("photod ")


def test_speaks_sd_notify(setup: Setup) -> None:
    """Under systemd (NOTIFY_SOCKET set, a real datagram socket here) photod sends
    nothing before it is up, then READY=1 with a one-line STATUS (folders, phones,
    photos, protection, and any missing target with its reason, non-ASCII intact);
    WATCHDOG=1 while it runs; RELOADING=1 then READY=1 on HUP; STOPPING=1 at the end."""
    import socket

    sock_path = setup.home / "notify.sock"
    away = setup.home / "Bibliothèque 📷"  # a drive that is not plugged in
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        p = setup.photod(
            [
                {"name": "library", "path": str(setup.home / "library")},
                {"name": "t7", "path": str(away), "media": "external"},
            ],
            policy={"copies": 1, "media": 1, "offsite": 0},
        )
        p.env["NOTIFY_SOCKET"] = str(sock_path)
        p.start()
        ready = sock.recv(4096).decode("utf-8")
        assert p.events("daemon_started")  # READY came after start-up, and first
        assert ready.startswith(
            "READY=1\nSTATUS=1 folder, 0 phones, 0 photos, nothing to protect yet"
        )
        assert f"; external drive 't7' missing for a moment ({away} does not exist" in ready
        assert "WATCHDOG=1" == sock.recv(4096).decode()[:10]
        assert p.proc is not None
        p.proc.send_signal(signal.SIGHUP)
        later = [sock.recv(4096).decode() for _ in range(4)]
        assert "RELOADING=1" in later
        assert any(m.startswith("READY=1") for m in later[later.index("RELOADING=1") :])
        assert 0 == p.stop()
        messages = []
        while not any(m.startswith("STOPPING=1") for m in messages):
            messages.append(sock.recv(4096).decode())


class Systemd:
    """The notify socket systemd listens on: every datagram, with when it came."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


def keep_alives(got: list[tuple[float, str]], since: float, until: float) -> list[str]:
    """What systemd heard between two moments, each message asserted to come before the
    time the one before it granted ran out (what would have it kill photod): an
    EXTEND_TIMEOUT_USEC grants its time, READY=1 or WATCHDOG=1 the unit's 60 s."""
    heard = [(t, m) for t, m in got if since <= t < until]
    deadline = since + 15  # the first must come well within either timeout
    for t, message in [*heard, (until, "")]:
        assert t <= deadline, f"systemd heard nothing for {t - since:.1f} s: {heard}"
        fields = dict(line.partition("=")[::2] for line in message.splitlines())
        grant = int(fields.get("EXTEND_TIMEOUT_USEC", 0)) / 1e6
        if "WATCHDOG" in fields or "READY" in fields:
            grant = max(grant, 60)
        deadline, since = t + grant, t
    return [m for _, m in heard]


def test_a_long_catalog_rebuild_keeps_systemd_told_it_goes_on(setup: Setup) -> None:
    """A catalog rebuilt from a target can take longer than systemd waits: 90 s for
    READY at a start, 60 s for a WATCHDOG once started.  While it works, photod tells
    systemd so every few seconds (EXTEND_TIMEOUT_USEC before READY; WATCHDOG=1 too after
    it, when the catalog was rebuilt after a hold), each message before the last one's
    time ran out, and a STATUS that says what it does: systemd would neither kill the
    rebuild nor start it over.  (The rebuild is made slow: 11 s, two keep-alives.)"""
    from tests.integration.test_truth import make_photos

    lib = setup.home / "lib"
    lib.mkdir()  # (photod makes no drive's folder on the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    make_photos(setup.inbox, 3)
    assert 0 == p.cli("run", "--once").returncode
    catalog = setup.home / "state" / "catalog.sqlite"
    systemd = Systemd(setup.home / "notify.sock")
    try:
        p.env["NOTIFY_SOCKET"] = str(systemd.path)
        p.env["PHOTOD_FAILPOINTS"] = "catalog_rebuilding=sleep:11"

        # At a start: the catalog lost, rebuilt from the drive before READY.
        catalog.unlink()
        began = time.monotonic()
        p.start(wait=False)
        p.wait_event("daemon_started", timeout=60)
        wait_for(lambda: any(m.startswith("READY=1") for _, m in systemd.got), 10, "READY=1")
        ready = next(t for t, m in systemd.got if m.startswith("READY=1"))
        before = keep_alives(systemd.got, began, ready)
        assert 2 <= len(before), before
        assert all(m.startswith("EXTEND_TIMEOUT_USEC=") for m in before), before
        assert "STATUS=checking the catalog before acting on it" in before[0]
        assert 0 == p.stop()

        # After READY: photod held (the catalog lost, the drive away), then the drive
        # came back and the catalog was rebuilt from it while systemd's watchdog ran.
        catalog.unlink()
        lib.rename(away := setup.home / "lib-unplugged")
        p.start(wait=False)
        p.wait_event("catalog_untrusted", timeout=30)
        held = time.monotonic()
        away.rename(lib)
        p.wait_event("catalog_recovered", count=2, timeout=60)
        recovered = time.monotonic()
        after = keep_alives(systemd.got, held, recovered)
        rebuilding = [m for m in after if m.startswith("WATCHDOG=1\nEXTEND_TIMEOUT_USEC=")]
        assert 2 <= len(rebuilding), after
        p.wait_event("daemon_started", count=2, timeout=30)
        assert 0 == p.stop()
    finally:
        systemd.close()


@contextlib.contextmanager
def held_three_looks(setup: Setup, p: Photod, failpoints: str) -> Iterator[list[str]]:
    """``p`` started with ``failpoints`` armed, under a systemd that listens: once
    photod has held three times (looked at the catalog and said NOT ACTING), what it
    said then, in order."""
    systemd = Systemd(setup.home / "notify.sock")
    try:
        p.env["NOTIFY_SOCKET"] = str(systemd.path)
        p.env["PHOTOD_FAILPOINTS"] = failpoints
        p.start(wait=False)
        looks = lambda: [m for _, m in systemd.got if "STATUS=NOT ACTING" in m]  # noqa: E731
        wait_for(lambda: len(looks()) >= 3, 60, "three looks at the catalog")
        yield looks()
    finally:
        systemd.close()


def test_a_rebuild_that_fails_at_each_look_is_said_once(setup: Setup) -> None:
    """The catalog lost, a drive holds its records, and the rebuild from it fails at
    every look (an I/O error as the rebuilt catalog is finished): photod holds, and
    tries again at every look (every 5 s), but `catalog_rebuilding` was said at each
    one, a warning every 5 s for as long as it lasted. It is said once; the failure
    is in `catalog_untrusted`'s fix."""
    from tests.integration.test_truth import make_photos

    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    make_photos(setup.inbox, 2)
    assert 0 == p.cli("run", "--once").returncode
    (setup.home / "state" / "catalog.sqlite").unlink()
    with held_three_looks(setup, p, "catalog_rebuilding=eio"):
        [rebuilding] = p.events("catalog_rebuilding")
        assert "lib" == rebuilding["target"]
        [untrusted] = p.events("catalog_untrusted")
        assert "the rebuild from 'lib' failed ([Errno 5] Input/output error)" in untrusted["fix"]
        assert 0 == p.stop()


def test_a_rebuild_that_keeps_failing_does_not_download_the_snapshot_every_look(
    setup: Setup, s3_server: S3Server
) -> None:
    """The catalog lost, an S3 bucket holds its records, and the rebuild from it fails
    at its end each time (an I/O error as the rebuilt catalog is finished): each try
    downloaded the catalog's whole snapshot again, at every look (every 5 s) for as long
    as it lasted: tens of MB of paid egress a try for a large library.  Tried again
    after 10 s, then after twice as long each time (up to 10 minutes)."""
    from tests.integration.test_truth import make_photos

    gets: list[str] = []

    def rule(method: str, path: str, query: str) -> str:
        if method == "GET" and "/snapshots/" in path:
            gets.append(path)
        return "pass"

    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint, rule)
    try:
        creds = s3_server.credentials(setup.home / "aws-credentials")
        cloud = {**s3_server.target("cloud", creds, prefix=f"rb-{setup.home.name}/"),
                 "endpoint": proxy.endpoint}  # fmt: skip
        p = setup.photod([cloud], policy={"copies": 1, "media": 1, "offsite": 1})
        make_photos(setup.inbox, 2)
        assert 0 == p.cli("run", "--once").returncode
        (setup.home / "state" / "catalog.sqlite").unlink()
        with held_three_looks(setup, p, "catalog_rebuilding=eio"):
            wait_for(lambda: len(gets) >= 1, 30, "the first try's download")
            time.sleep(25)
            tries = len(gets)
            assert 0 == p.stop()
    finally:
        proxy.stop()
    assert 2 <= tries <= 3, gets  # (at 0 s and 10 s, perhaps 30 s: not at every look)


def test_a_look_at_the_catalog_that_fails_each_time_is_said_once(setup: Setup) -> None:
    """The state dir's disk fails photod's look at the catalog with an error photod has
    no words for, at every look (every 5 s while it holds): its trace and a
    `catalog_untrusted` (an error, an urgent notification) came at every look, for as
    long as it lasted. Each is said once; photod holds and says why meanwhile."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    with held_three_looks(setup, p, "catalog_settling=eio") as looks:
        assert "Input/output error" in looks[-1]
        [failed] = p.events("catalog_check_failed")
        assert "Input/output error" in failed["error"] and failed["exception"]  # (its trace)
        [untrusted] = p.events("catalog_untrusted")
        assert "the catalog could not be checked" in untrusted["found"]
        assert 0 == p.stop()


@pytest.mark.parametrize(
    ("failpoint", "where"),
    [("status_line", "status_line"), ("daemon_serving", "_serve"), ("backup_waiting", "_run")],
)
def test_a_bug_of_photods_own_stops_its_work_and_ends_the_process(
    setup: Setup, failpoint: str, where: str
) -> None:
    """A bug in the daemon's own code, while photos are being copied: in the loop that
    watches over it (the line systemd shows, read there once a minute), just after its
    jobs started, or in `run --once` while it copies.  The work is stopped as a stop
    would (`pipeline_stopped`, nothing half done on the target), one line says so and
    the process ends with 70, which systemd restarts: it does not hang, nor go on with
    its workers on a closed catalog.  The next start protects every photo."""
    import socket

    from tests.integration.test_truth import make_photos

    make_photos(setup.inbox, 12, size=400_000)
    sock_path = setup.home / "notify.sock"
    lib = setup.home / "library"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        p = setup.photod([{"name": "library", "path": str(lib)}])
        p.env["NOTIFY_SOCKET"] = str(sock_path)
        once = failpoint == "backup_waiting"
        # (one-shot: its copies held on a slow disk, so that the bug lands among them)
        slow = "ingest_storing=sleep:0.5,backup_waiting=20:" if once else f"{failpoint}="
        p.env["PHOTOD_FAILPOINTS"] = f"{slow}raise"
        p.start(*(["--once"] if once else []), wait=False)
        assert p.proc is not None
        try:
            rc = p.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"photod hung: {p.output.read_text()[-2000:]}") from None
    assert 70 == rc  # EX_SOFTWARE: systemd's Restart=on-failure starts it again
    last = p.output.read_text().splitlines()[-1]  # (the event above it carries the trace)
    assert last.startswith("photod: stopped by an internal error (FailpointHit"), last
    if not once:  # (a one-shot run has no daemon to stop)
        assert [e["reason"] for e in p.events("daemon_stopping")] == ["failed"]
        assert p.events("pipeline_stopped")
    assert (
        p.events("daemon_stopped") and not p.events("job_failed") and not p.events("ingest_failed")
    )
    [failed] = p.events("daemon_failed")  # the trace, for the bug report
    [trace] = failed["exception"]
    assert where in [frame["name"] for frame in trace["frames"]]
    if lib.exists():  # nothing partial: no temporary, every file whole
        assert not [f for f in lib.rglob("*") if f.name.endswith(".tmp")]
        assert_target_holds(lib, target_files(lib))
    p.env.pop("PHOTOD_FAILPOINTS")
    p.start()
    p.wait_protected(12)
    assert 0 == p.stop()


@pytest.mark.parametrize("how", ["made_again", "mounted_over"])
def test_a_watch_folder_that_goes_and_comes_back_is_watched_again(
    setup: Setup, samples: Path, how: str
) -> None:
    """A watch folder deleted and made again (a sync client resetting it), or one a drive
    is mounted over: the daemon says the folder gone (`source_unavailable`), does not
    count its ended watch as a dead daemon (WATCHDOG=1 goes on, so systemd does not
    kill it), and watches the folder at its path again within seconds
    (`source_rewatched`), not at the next rescan (15 minutes by default): a new photo
    there is taken at once."""
    import socket

    from tests.conftest import write_config

    config = write_config(
        setup.home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(setup.inbox)}],
        [{"name": "library", "type": "local", "path": str(setup.home / "library")}],
        extra=(
            f'[daemon]\nstate_dir = "{setup.home}/state"\nlog_dir = "{setup.home}/log"\n'
            '[ingest]\nsettle = "0.5s"\n'
        ),
    )
    drive = setup.home / "drive"
    drive.mkdir()
    sock_path = setup.home / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(15)
        p = setup.factory(config)
        p.env["NOTIFY_SOCKET"] = str(sock_path)
        p.start()
        try:
            assert sock.recv(4096).startswith(b"READY=1")
            if how == "made_again":
                setup.inbox.rmdir()  # gone (as when its drive is unplugged)
                p.wait_event("source_unavailable", timeout=15, source="inbox")
                pings = [sock.recv(4096) for _ in range(2)]  # 5 s apart: still alive
                assert all(m.startswith(b"WATCHDOG=1") for m in pings)
                setup.inbox.mkdir()  # back, as a new folder
            else:
                subprocess.run(["mount", "--bind", str(drive), str(setup.inbox)], check=True)
            p.wait_event("source_rewatched", timeout=15, source="inbox")
            pings = [sock.recv(4096) for _ in range(2)]
            assert all(m.startswith(b"WATCHDOG=1") for m in pings)
            shutil.copy2(next(samples.iterdir()), setup.inbox / "back.jpg")
            p.wait_event("asset_ingested", timeout=15, path="back.jpg")
        finally:
            if how == "mounted_over":
                subprocess.run(["umount", "-l", str(setup.inbox)], check=False)
            assert 0 == p.stop()
    assert 1 >= len(p.events("source_unavailable"))


def test_a_watch_folder_renamed_away_and_back_is_said_gone_each_time(setup: Setup) -> None:
    """A watch folder renamed away and back (its watch lives on: the folder is the same)
    is said back, so that it going again is said again: after the first time, every
    later disappearance went unsaid for as long as the daemon ran."""
    p = setup.photod([{"name": "library", "path": str(setup.home / "library")}]).start()
    away = setup.home / "inbox-away"
    setup.inbox.rename(away)
    p.wait_event("source_unavailable", timeout=15, source="inbox")
    away.rename(setup.inbox)
    p.wait_event("source_available", timeout=15, source="inbox")
    setup.inbox.rename(away)
    p.wait_event("source_unavailable", count=2, timeout=15, source="inbox")
    assert 0 == p.stop()


def test_the_daemon_runs_politely_by_default(setup: Setup) -> None:
    """Without systemd setting it, the daemon lowers its own priority first thing: nice
    10 and the idle I/O class, inherited by every thread (a copy never competes with
    what the person is doing)."""
    import psutil

    p = setup.photod([{"name": "library", "path": str(setup.home / "library")}]).start()
    try:
        assert p.proc is not None
        proc = psutil.Process(p.proc.pid)
        threads = [psutil.Process(t.id) for t in proc.threads()]
        assert len(threads) > 3
        assert all(10 == t.nice() for t in threads), [t.nice() for t in threads]
        assert all(psutil.IOPRIO_CLASS_IDLE == t.ionice().ioclass for t in threads)
    finally:
        assert 0 == p.stop()


def test_live_photos_of_one_name_each_keep_their_movie_and_sidecar(
    setup: Setup, samples: Path
) -> None:
    """Two phones' Live Photos named IMG_0001 from one day: each movie and .AAE lands
    beside its own still, which for one of them carries a suffix; never beside the
    other phone's still.  Anna's three files are taken by several workers at once (each
    held a moment before its store, so that both would be stored together); Ben's still
    was written last and is still settling when the scan hands over his movie and edit.
    A movie whose still is never taken (Cara's is empty) does not wait for it forever."""
    when = datetime(2015, 4, 10, 9, tzinfo=UTC)
    families = []
    old = time.time() - 60
    for phone, still in (
        ("anna", "jpg_hdr_iphone_hdr_NO.jpg"),
        ("ben", "jpg_hdr_iphone_hdr_YES.jpg"),
    ):
        folder = setup.inbox / phone
        folder.mkdir()
        make_mov(folder / "IMG_0001.MOV", when, payload=phone.encode() * 4096)
        (folder / "IMG_0001.AAE").write_text(f"<plist><!-- {phone}'s edit --></plist>")
        shutil.copy(samples / still, folder / "IMG_0001.JPG")
        families.append([folder / n for n in ("IMG_0001.JPG", "IMG_0001.MOV", "IMG_0001.AAE")])
        for f in families[-1]:
            os.utime(f, (old, old))
    cara = setup.inbox / "cara"
    cara.mkdir()
    (cara / "IMG_0002.JPG").write_bytes(b"")  # refused: an empty file
    make_mov(cara / "IMG_0002.MOV", when, payload=b"cara" * 4096)
    for f in (cara / "IMG_0002.JPG", cara / "IMG_0002.MOV"):
        os.utime(f, (old, old))
    recent = time.time() + 2  # newer than the scan's settle cutoff: it waits to settle
    os.utime(families[1][0], (recent, recent))
    lib = setup.home / "library"
    p = setup.photod([{"name": "library", "path": str(lib)}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    p.env["PHOTOD_FAILPOINTS"] = "ingest_storing=sleep:0.3"
    assert 0 == p.cli("run", "--once").returncode
    held = {sha: key for key, sha in target_files(lib).items()}
    keys = [[held[sha256(f)] for f in family] for family in families]
    for family in keys:  # one stem per family: IMG_0001, or IMG_0001~<the still's tag>
        assert 1 == len({k.rsplit(".", 1)[0] for k in family}), keys
    assert 2 == len({family[0].rsplit(".", 1)[0] for family in keys}), keys
    assert held[sha256(cara / "IMG_0002.MOV")].endswith("/IMG_0002.MOV")


@pytest.mark.parametrize("workers", [1, 4, None], ids=["1", "4", "unset"])
def test_workers_is_how_many_files_are_taken_at_once(
    setup: Setup, samples: Path, workers: int | None
) -> None:
    """`[daemon] workers` bounds the files ingested at the same time: with each file
    held three seconds on its way to the targets (a slow disk), one worker takes four files
    one after another, four take them together, and so does a config that does not say
    (the default: copies wait on their disks, not on the CPU)."""
    names = ["jpg_Canon_40D.jpg", "heic_IMG_5195.HEIC", "jpg_gps_DSCN0010.jpg",
             "jpg_hdr_iphone_hdr_NO.jpg"]  # fmt: skip
    for name in names:
        shutil.copy(samples / name, setup.inbox / name)
    time.sleep(1)  # older than `settle`: the first scan takes all four at once
    p = setup.photod(
        [{"name": "library", "path": str(setup.home / "library")}],
        policy={"copies": 1, "media": 1, "offsite": 0},
        daemon=f"workers = {workers}" if workers else "",
    )
    # (3 s each: two at a time would be 3 s apart, more than a loaded machine's jitter)
    p.env["PHOTOD_FAILPOINTS"] = "ingest_storing=sleep:3"
    p.start()
    try:
        ingested = p.wait_event("asset_ingested", count=4, timeout=90)
        ts = sorted(datetime.fromisoformat(e["ts"]) for e in ingested)
        span = (ts[-1] - ts[0]).total_seconds()
        if workers == 1:
            gaps = [(b - a).total_seconds() for a, b in pairwise(ts)]
            assert all(g >= 2.95 for g in gaps), gaps
        else:
            # All four held at once; two at a time would take three seconds or more.
            assert span < 2.5, span
        assert sorted(names) == sorted(e["path"] for e in ingested)
    finally:
        assert 0 == p.stop()
