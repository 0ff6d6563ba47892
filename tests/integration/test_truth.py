"""The targets are the truth; the catalog is a cache of them.  Each story of issue 15,
on a real `photod run`: the catalog deleted, cut short, bit-flipped or rolled back, a
rebuild killed half way, a drive's image taken at a power cut, a full state dir, file
times past 2262.  After each, nothing any target said about itself was lost, and every
photo comes back from a single target, with photod and with stock tools."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Photod, damage_catalog, sha256, target_files, wait_for
from tests.integration.conftest import (
    Setup,
    assert_target_holds,
    fill,
    listed,
    rebuilt_and_restored,
)
from tests.servers import Webhook, need

pytestmark = pytest.mark.integration

JPEG = (SAMPLES / "jpg_Canon_40D.jpg").read_bytes() if SAMPLES.is_dir() else b""


def make_photos(folder: Path, n: int, start: int = 0, size: int = 200_000) -> dict[str, str]:
    """``n`` distinct real JPEGs (padded after the image data); name -> sha256."""
    rng = random.Random(start)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(start, start + n):
        path = folder / f"IMG_{i:04d}.JPG"
        path.write_bytes(JPEG + rng.randbytes(size) + i.to_bytes(4, "big"))
        out[path.name] = sha256(path)
    return out


def snapshots(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(".photod/installations/*/snapshots/*"))


def empty(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def stock_restore(
    plan: str, workdir: Path, key: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the shell block of a recovery document in ``workdir`` (KEY set for age; HOME
    too, where a plain target's steps copy the photos, in ``~/Pictures/restored``)."""
    block = re.search(r"```(?:sh|bash)\n(.*?)```", plan, re.S)
    assert block is not None, plan
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KEY": str(key or ""), "HOME": str(workdir)}
    return subprocess.run(["bash", "-e", "-c", block.group(1)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def two_targets(setup: Setup) -> tuple[Photod, Path, Path]:
    """A library and an external folder, both required."""
    lib, ext = setup.home / "lib", setup.home / "ext"
    p = setup.photod([{"name": "lib", "path": str(lib)},
                      {"name": "ext", "path": str(ext), "create": True}])  # fmt: skip
    return p, lib, ext


def three_targets(setup: Setup) -> tuple[Photod, list[Path], Path, Path]:
    """A library, an external folder and an encrypted folder, all three required."""
    need("age", "apt install age")
    lib, ext, vault = setup.home / "lib", setup.home / "ext", setup.home / "vault"
    key = setup.home / "key.txt"
    p = setup.photod(
        [
            {"name": "lib", "path": str(lib)},
            {"name": "ext", "path": str(ext), "create": True},
            {"name": "vault", "path": str(vault), "create": True, "encrypt": True},
        ],
        policy={"copies": 3, "media": 1, "offsite": 0},
        extra=f'\n[encryption]\nidentity = "{key}"\n',
    )
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    return p, [lib, ext], vault, key


@pytest.mark.parametrize("how", ["deleted", "killed-rebuild"])
def test_a_lost_catalog_shrinks_no_target_and_comes_back_from_them(setup: Setup, how: str) -> None:
    """The catalog deleted (or a `catalog rebuild --force` killed half way), the watch
    folder emptied, photod started: no target's list, index or snapshot shrinks;
    photod rebuilds the catalog from a target by itself; status, restore and the
    stock-tool recovery of the encrypted target all give back every photo."""
    p, plain, vault, key = three_targets(setup)
    made = make_photos(setup.inbox, 30)
    p.start()
    p.wait_protected(30, timeout=120)
    assert 0 == p.stop()
    lists = {root: listed(root) for root in plain}
    index = sorted(vault.glob(".photod/installations/*/index/*"))
    snaps = {root: snapshots(root) for root in (*plain, vault)}
    state = setup.home / "state"
    if how == "deleted":
        for f in state.glob("catalog.sqlite*"):
            f.unlink()
    else:
        r = subprocess.run(
            [*p.cli_command(), "catalog", "rebuild", "--from", "ext", "--force"],
            env={**p.env, "PHOTOD_FAILPOINTS": "catalog_rebuilding=kill"}, capture_output=True,
        )  # fmt: skip
        assert -signal.SIGKILL == r.returncode
        assert (state / "catalog.sqlite.rebuilding").exists()
    empty(setup.inbox)

    p.start()
    status = p.wait_protected(30, timeout=120)
    assert 0 == p.stop()
    assert [] == list(state.glob("catalog.sqlite.rebuild*"))
    if how == "deleted":
        [recovered] = p.events("catalog_recovered")
        assert "missing" in recovered["found"] and 30 == recovered["assets"]
    assert 30 == status["assets"] and status["protected"]
    for root in plain:
        assert lists[root].items() <= listed(root).items()  # nothing dropped from a list
        assert_target_holds(root, target_files(root))
    assert set(index) <= set(vault.glob(".photod/installations/*/index/*"))
    for root, names in snaps.items():
        assert names[-1] in snapshots(root)  # the newest is never replaced by a smaller one

    dest = setup.home / "restored"
    r = p.cli("restore", str(dest))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert sorted(made.values()) == sorted(target_files(dest).values())
    out = stock_restore((vault / ".photod" / "RECOVERY.md").read_text(), setup.home / "stock", key)
    assert 0 == out.returncode, out.stderr
    assert 30 == out.stdout.count(": OK"), out.stdout + out.stderr


def test_a_catalog_cut_to_nothing_with_its_installation_file_lost_is_no_new_computer(
    setup: Setup,
) -> None:
    """A disk's repair (fsck) leaves the catalog as a file of 0 bytes and loses
    installation.json: photod does not start afresh as a second installation of the
    same name beside the first (its records orphaned, a later rebuild finding two):
    it holds, naming the target that has this computer's records and the rebuild."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    make_photos(setup.inbox, 3)
    assert 0 == p.cli("run", "--once").returncode
    state = setup.home / "state"
    for f in state.glob("catalog.sqlite-*"):
        f.unlink()
    (state / "catalog.sqlite").write_bytes(b"")
    (state / "installation.json").unlink()
    for command in ("status", "doctor", "albums", "drill"):  # (each opened it, made it anew)
        said = p.cli(command)
        assert 0 != said.returncode, said.stdout + said.stderr
        assert 0 == (state / "catalog.sqlite").stat().st_size, command
    assert "0 bytes" in p.cli("status").stdout + p.cli("status").stderr
    r = p.cli("run", "--once")
    assert 0 != r.returncode and "catalog rebuild --from" in r.stdout + r.stderr, (
        r.stdout + r.stderr
    )
    assert 1 == len(list((lib / ".photod" / "installations").iterdir()))
    assert 0 == (state / "catalog.sqlite").stat().st_size  # (left as it was found)


def test_a_catalog_that_lost_its_last_commits_catches_up_from_the_targets(setup: Setup) -> None:
    """Killed, and its WAL deleted (a power cut that lost the last commits): the
    targets' lists keep every copy, the catalog gets them back from the lists (or a
    newer snapshot) at the next start, and status is true again."""
    p, lib, ext = two_targets(setup)
    make_photos(setup.inbox, 30)
    p.start()
    p.wait_protected(30, timeout=120)
    assert 0 == p.stop()
    make_photos(setup.inbox, 20, start=30)
    p.start()
    p.wait_protected(50, timeout=120)
    wait_for(lambda: all(len(listed(r)) == 50 for r in (lib, ext)), 15, "both lists at 50")
    lists = {root: listed(root) for root in (lib, ext)}
    p.stop(signal.SIGKILL)
    for f in (setup.home / "state").glob("catalog.sqlite-*"):
        f.unlink()  # the WAL and its index: the last commits are gone
    empty(setup.inbox)

    p.start()
    p.wait_protected(50, timeout=120)
    assert 0 == p.stop()
    recovered = p.events("replica_recovered") + p.events("catalog_recovered")
    assert recovered, "the catalog did not take back what the targets list"
    for root in (lib, ext):
        assert lists[root].items() <= listed(root).items()
        assert 50 == len(target_files(root))
        assert_target_holds(root, target_files(root))


def test_damaged_catalog_pages_are_noticed_and_never_reach_the_targets(setup: Setup) -> None:
    """Three hundred bytes flipped in the catalog's replicas table: photod notices at
    start, keeps the damaged file aside, rebuilds from a target, and no target's newest
    snapshot is replaced by the damaged catalog's."""
    p, lib, ext = two_targets(setup)
    make_photos(setup.inbox, 20)
    p.start()
    p.wait_protected(20, timeout=120)
    assert 0 == p.stop()
    snaps = {root: snapshots(root) for root in (lib, ext)}
    data = damage_catalog(setup.home / "state" / "catalog.sqlite", "replicas")

    p.start()
    [recovered] = p.wait_event("catalog_recovered", timeout=60)
    assert "damaged" in recovered["found"]
    status = p.wait_protected(20, timeout=60)
    assert 0 == p.stop()
    assert status["protected"]
    kept = list((setup.home / "state").glob("catalog.sqlite.*.bak"))
    assert kept and bytes(data) == kept[0].read_bytes()  # the damaged file is kept
    for root in (lib, ext):
        assert snaps[root][-1] in snapshots(root)
        assert_target_holds(root, target_files(root))


def test_a_truncated_catalog_is_one_clear_line_then_photod_waits_for_a_target(
    setup: Setup,
) -> None:
    """A catalog cut in half, its only target unplugged: `status` and `run --once` say
    so in one line naming the file and the fix (exit 65), doctor fails it and still
    runs its other checks, and the daemon writes nothing and waits.  When the target is
    back, the daemon rebuilds the catalog from it by itself."""
    lib = setup.home / "lib"
    lib.mkdir()  # (photod makes no drive's folder on the system disk)
    hook = Webhook()
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}],
                     extra=f'\n[notify]\ndesktop = false\nwebhook = "{hook.url}"\n')  # fmt: skip
    make_photos(setup.inbox, 10)
    assert 0 == p.cli("run", "--once").returncode
    db = setup.home / "state" / "catalog.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    away = setup.home / "lib-unplugged"
    lib.rename(away)

    r = p.cli("status")
    assert 65 == r.returncode
    assert 1 == len(r.stderr.strip().splitlines()), r.stderr
    assert str(db) in r.stderr and "catalog rebuild" in r.stderr
    no_traceback(r.stdout + r.stderr)
    doctor = p.cli("doctor")
    assert 1 == doctor.returncode
    assert re.search(r"^FAIL  catalog: .*damaged", doctor.stdout, re.M), doctor.stdout
    assert re.search(r"^OK    config:", doctor.stdout, re.M) and "clock:" in doctor.stdout
    once = p.cli("run", "--once")
    assert 65 == once.returncode, once.stdout + once.stderr
    no_traceback(once.stdout + once.stderr)

    p.start(wait=False)
    [held] = p.wait_event("catalog_untrusted", timeout=30)
    assert "damaged" in held["found"] and "catalog rebuild" in held["fix"]
    wait_for(lambda: any(b"backups stopped" in body for _, body in hook.got), 15,
             "the notification that backups stopped")  # fmt: skip
    r = p.cli("status")
    assert 65 == r.returncode
    no_traceback(r.stdout + r.stderr)
    assert not lib.exists()  # nothing was written where the drive belongs
    away.rename(lib)
    p.wait_event("catalog_recovered", timeout=30)
    p.wait_protected(10, timeout=60)
    assert 0 == p.cli("status").returncode
    assert 0 == p.stop()
    hook.close()
    no_traceback(p.output.read_text())


def test_a_read_only_catalog_is_one_clear_hold_and_photod_goes_on_once_it_can_write(
    setup: Setup,
) -> None:
    """The catalog made read-only (a backup tool, a `chmod -R`), photod run by root
    without the capability that lets root ignore file modes (so modes bind it as they
    bind any user): `run --once` says in one line which file, its mode and the fix (exit
    65, not 70 "internal error", no traceback); doctor fails it.  Given its mode back,
    the -wal and -shm SQLite made with the catalog's mode while it was read-only are
    still named by doctor and by the daemon, which holds, writes nothing and takes no new
    photo; once every file can be written, it goes on by itself."""
    need("setpriv", "apt install util-linux")
    bound = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search", "--"]  # fmt: skip
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    p.prefix = bound

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*bound, *p.cli_command(), *args], env=p.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    make_photos(setup.inbox, 3)
    assert 0 == run("run", "--once").returncode
    db = setup.home / "state" / "catalog.sqlite"
    db.chmod(0o400)
    once = run("run", "--once")
    assert 65 == once.returncode, once.stdout + once.stderr
    last = once.stderr.strip().splitlines()[-1]  # (above it, the event, as the journal has it)
    assert last.startswith(f"photod: the catalog cannot be written: {db} (mode 0400); "), last
    assert f"`chmod u+w {db}`" in once.stderr
    no_traceback(once.stdout + once.stderr)
    doctor = run("doctor")
    assert (
        1 == doctor.returncode
        and f"FAIL  catalog: the catalog cannot be written: {db} (mode 0400)" in doctor.stdout
    ), doctor.stdout

    # What SQLite leaves when it opens a read-only catalog (as photod did): its -wal
    # and -shm, made with the catalog's mode.  Then the person gives the catalog back
    # its mode, and only it.
    peek = (
        "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM assets')"
    )
    subprocess.run([*bound, sys.executable, "-c", peek, str(db)], check=True, timeout=60)
    sidecars = [db.with_name(db.name + end) for end in ("-wal", "-shm")]
    assert [0o400, 0o400] == [stat.S_IMODE(f.stat().st_mode) for f in sidecars]
    db.chmod(0o600)
    doctor = run("doctor")
    assert (
        1 == doctor.returncode
        and f"{sidecars[0]} (mode 0400), {sidecars[1]} (mode 0400)" in doctor.stdout
    ), doctor.stdout

    before, ingested = target_files(lib), len(p.events("asset_ingested"))
    p.start(wait=False)
    [_, held] = p.wait_event("catalog_untrusted", count=2, timeout=30)  # (1: `run --once`)
    assert (
        f"the catalog cannot be written: {sidecars[0]} (mode 0400), {sidecars[1]} (mode 0400)"
        == held["found"]
    )
    make_photos(setup.inbox, 1, start=3)
    time.sleep(6)  # a look more, and time to take the photo if it were taken
    assert (before, ingested) == (target_files(lib), len(p.events("asset_ingested")))
    for f in sidecars:
        f.chmod(0o600)
    p.wait_event("daemon_started", timeout=30)
    p.wait_protected(4, timeout=60)
    assert 0 == p.stop()
    assert [] == p.events("daemon_failed")
    no_traceback(p.output.read_text())
    # Made by another user (`sudo photod` once): chmod by photod's user cannot help,
    # so the fix says chown.
    os.chown(db, 65534, 65534)
    theirs = run("run", "--once")
    assert 65 == theirs.returncode and "owner uid 65534" in theirs.stderr, theirs.stderr
    assert f"`sudo chown {os.geteuid()} {db}`" in theirs.stderr


def test_a_config_fixed_and_reloaded_while_the_catalog_is_held_is_acted_on(
    setup: Setup,
) -> None:
    """The catalog is lost and its only target is not where the config says (the drive
    now mounts elsewhere): photod holds.  The person fixes the path in the config and
    runs `photod reload`: the daemon reads it, finds the target there, rebuilds the
    catalog from it and goes on with the new config, without a restart.  Reloads
    before the fix do not say the hold (nor notify it) again."""
    lib, moved = setup.home / "lib", setup.home / "lib-moved"
    lib.mkdir()  # (photod makes no drive's folder on the system disk)
    p = setup.photod([{"name": "lib", "path": str(lib), "media": "external"}])
    make_photos(setup.inbox, 3)
    p.start()
    p.wait_protected(3)
    assert 0 == p.stop()
    for f in (setup.home / "state").glob("catalog.sqlite*"):
        f.unlink()
    lib.rename(moved)  # the drive mounts elsewhere now
    p.start(wait=False)
    p.wait_event("catalog_untrusted", timeout=30)
    for n in range(1, 4):  # reloads that change nothing: the hold is not said (sent) again
        assert 0 == p.cli("reload").returncode
        [*_, said] = p.wait_event("daemon_reloaded", count=n)  # (said at once, while held)
        assert [] == said["changed"]
    assert 1 == len(p.events("catalog_untrusted"))
    good = p.config.read_text()
    p.config.write_text(good + "\nthis is not TOML\n")  # a wrong one: said, the old kept
    p.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]  (`reload` would refuse it)
    p.wait_event("config_invalid")
    setup.config([{"name": "lib", "path": str(moved), "media": "external"}])  # fixed
    r = p.cli("reload")
    assert 0 == r.returncode, r.stdout + r.stderr
    p.wait_event("daemon_reloaded", changed=["targets.lib"])
    said = [e["changed"] for e in p.events("daemon_reloaded")]
    assert [[], [], [], ["targets.lib"]] == said  # (the wrong config was not said reloaded)
    p.wait_event("catalog_recovered", timeout=30)
    p.wait_event("daemon_started")  # acting from now on
    make_photos(setup.inbox, 1, start=3)  # a new photo goes where the config now says
    p.wait_protected(4, timeout=60)
    assert 4 == len(target_files(moved)) and not lib.exists()
    assert 0 == p.stop()
    no_traceback(p.output.read_text())


def test_a_power_cut_right_after_a_copy_loses_nothing_on_the_drive(
    setup: Setup, small_drive: Path
) -> None:
    """The drive's image taken right after the copies landed, without a sync (what
    the disk holds at a power cut), mounted on a new computer: `catalog rebuild` finds
    every photo the drive holds, listed or not, and `restore` gives each back whole."""
    drive = small_drive / "photos"
    # (reserve 0: the drive is smaller than the default reserve)
    p = setup.photod(
        [{"name": "drive", "path": str(drive), "media": "external", "create": True, "reserve": 0}]
    )
    made = make_photos(setup.inbox, 8, size=900_000)
    p.start()
    p.wait_protected(8, timeout=60)
    image = small_drive.parent.parent / "small.img"
    crash = setup.home / "crash.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(crash)], check=True)  # no sync
    assert 0 == p.stop()

    mnt = setup.home / "media" / "CRASH"
    mnt.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-o", "loop", str(crash), str(mnt)], capture_output=True, text=True
    )
    assert 0 == r.returncode, r.stderr
    try:
        other = setup.home / "new-computer"
        other.mkdir()
        q = Photod(other, other / "photod.toml")
        (other / "photod.toml").write_text(
            f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[targets]]\nname = "drive"\n'
            f'type = "local"\npath = "{mnt / "photos"}"\nmedia = "external"\n'
            f'[daemon]\nstate_dir = "{other / "state"}"\nlog_dir = "{other / "log"}"\n'
        )
        r = q.cli("catalog", "rebuild", "--from", "drive")
        assert 0 == r.returncode, r.stdout + r.stderr
        assert ": 8 assets" in r.stdout, r.stdout
        dest = other / "restored"
        r = q.cli("restore", str(dest))
        assert 0 == r.returncode, r.stdout + r.stderr
        assert sorted(made.values()) == sorted(target_files(dest).values())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_state_dir_on_a_read_only_mount_stops_the_start_with_one_clear_line(
    setup: Setup,
) -> None:
    """The disk of the state dir (and its log, as by default) remounted read-only (what
    ext4 does after an error): `photod run` stops with one line naming the folder and
    the read-only disk, not a traceback of the lock's open (which systemd printed again
    at every restart, every 10 s).  The commands that take the lock in the foreground
    (verify, drill, catalog rebuild) say the same line: they printed a traceback."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     {"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    make_photos(setup.inbox, 1)
    assert 0 == p.cli("run", "--once").returncode
    for where in ("state", "log"):
        folder = str(setup.home / where)
        subprocess.run(["mount", "--bind", folder, folder], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
    try:
        lines = set()
        for args in (["run", "--once"], ["run"], ["verify"], ["drill"],
                     ["catalog", "rebuild", "--from", "lib"]):  # fmt: skip
            r = p.cli(*args)
            said = r.stdout + r.stderr
            assert r.returncode not in (0, 70) and "Traceback" not in said, (args, said)
            assert "read-only" in said.lower() and str(setup.home) in said, (args, said)
            assert ("", 1) == (r.stdout, len(r.stderr.splitlines())), (args, said)
            # the file it could not write (the log or the lock) is its only difference
            lines.add(re.sub(rf"{re.escape(str(setup.home))}/[^:`]+", "FILE", r.stderr))
        assert ["photod: cannot write FILE: Read-only file system; photod keeps its lock, "
                "catalog and log there: see whether that disk is mounted read-only (`findmnt "
                "-T FILE`) and who may write there, or set [daemon] state_dir and log_dir to "
                "folders of your own\n"] == sorted(lines)  # fmt: skip
    finally:
        for where in ("state", "log"):
            subprocess.run(["umount", str(setup.home / where)], capture_output=True)


def test_a_full_state_dir_is_one_event_and_the_files_go_when_there_is_room(
    setup: Setup, small_drive: Path
) -> None:
    """The state dir fills up: one `state_dir_full` event (not one per file, no
    traceback), a status headline and a doctor FAIL; once there is room again the
    waiting files are taken at once, not at the next rescan."""
    lib = setup.home / "lib"
    state = small_drive / "state"
    p = setup.photod(
        [{"name": "lib", "path": str(lib)}],
        daemon=f'state_dir = "{state}"\nrescan_interval = "1h"',
    )
    p.config.write_text(p.config.read_text().replace(f'state_dir = "{setup.home}/state"\n', ""))
    p.start()
    make_photos(setup.inbox, 2)
    p.wait_protected(2, timeout=60)
    filler = fill(small_drive, leave=256 * 1024)
    made = make_photos(setup.inbox, 12, start=2)
    p.wait_event("state_dir_full", timeout=30)
    status = p.cli("status")
    assert "NOT TAKING NEW FILES" in status.stdout and str(state) in status.stdout
    doctor = p.cli("doctor")
    assert re.search(r"^FAIL  state dir: .* is full", doctor.stdout, re.M), doctor.stdout
    filler.unlink()
    p.wait_event("state_dir_room", timeout=30)
    p.wait_protected(14, timeout=60)
    assert 0 == p.stop()
    assert 1 == len(p.events("state_dir_full"))
    no_traceback(p.output.read_text())
    assert set(made.values()) <= set(target_files(lib).values())
    assert_target_holds(lib, target_files(lib))


def test_a_state_dir_full_at_the_start_is_said_once_and_photod_goes_on_by_itself(
    setup: Setup, small_drive: Path
) -> None:
    """The state dir is full when photod starts (the catalog cannot even make its
    journal): one `state_dir_full` event, no traceback every few seconds, and nothing
    tells the person to restart photod.  Once there is room, photod goes on by itself
    (`state_dir_room`) and takes the photos that waited."""
    lib, state = setup.home / "lib", small_drive / "state"
    p = setup.photod([{"name": "lib", "path": str(lib)}], daemon=f'state_dir = "{state}"')
    p.config.write_text(p.config.read_text().replace(f'state_dir = "{setup.home}/state"\n', ""))
    make_photos(setup.inbox, 2)
    assert 0 == p.cli("run", "--once").returncode
    filler = small_drive / "filler.bin"
    for block in ("64k", "1k"):  # to the last kilobyte
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", f"bs={block}", "oflag=append",
                        "conv=notrunc"], capture_output=True)  # fmt: skip
    made = make_photos(setup.inbox, 3, start=2)
    p.start(wait=False)
    [full] = p.wait_event("state_dir_full", timeout=30)
    assert str(state) == full["state_dir"]
    time.sleep(11)  # two more looks at the catalog
    status = p.cli("status")  # (it cannot read the catalog either, and says why)
    assert "no room left in the state dir" in status.stderr, status.stdout + status.stderr
    assert "goes on by itself" in full["action"]
    filler.unlink()
    p.wait_event("state_dir_room", timeout=30)
    p.wait_event("daemon_started", timeout=30)
    p.wait_protected(5, timeout=60)
    assert 0 == p.stop()
    assert (1, []) == (len(p.events("state_dir_full")), p.events("catalog_check_failed"))
    assert "restart photod" not in p.log_file.read_text()  # (it went on by itself)
    no_traceback(p.output.read_text())
    assert set(made.values()) <= set(target_files(lib).values())


def test_a_start_on_a_full_state_dir_leaves_no_temporary_of_the_kept_config(
    setup: Setup, small_drive: Path
) -> None:
    """The copy of the config the daemon runs on (config.lastgood) cannot be written
    while the state dir is full: each start left a 0-byte temporary behind.  Now the
    failed write removes it, and the copy is made once there is room."""
    state = small_drive / "state"
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     daemon=f'state_dir = "{state}"')  # fmt: skip
    p.config.write_text(p.config.read_text().replace(f'state_dir = "{setup.home}/state"\n', ""))
    assert 0 == p.cli("run", "--once").returncode
    (state / "config.lastgood").unlink()
    filler = small_drive / "filler.bin"
    for block in ("64k", "1k"):  # to the last kilobyte
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", f"bs={block}", "oflag=append",
                        "conv=notrunc"], capture_output=True)  # fmt: skip
    for start in (1, 2):
        p.start(wait=False)
        p.wait_event("state_dir_full", count=start, timeout=30)
        assert 0 == p.stop()
        assert [] == sorted(q.name for q in state.glob(".config.lastgood.*"))
        assert not (state / "config.lastgood").exists()
    filler.unlink()
    p.start()
    assert 0 == p.stop()
    assert p.config.read_text() == (state / "config.lastgood").read_text()


def test_a_file_time_past_2262_is_stored_and_backed_up(setup: Setup) -> None:
    """A photo whose mtime does not fit in 64-bit nanoseconds (touch -d @253402300800:
    ext4 keeps 2446, a tmpfs the year 10000) is ingested, copied with its time, and
    leaves no temporary behind."""
    lib = setup.home / "lib"
    tmpfs = setup.home / "tmpfs-inbox"
    tmpfs.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(tmpfs)],
                       capture_output=True, text=True)  # fmt: skip
    assert 0 == r.returncode, f"mount tmpfs: {r.stderr} (these tests run as root, as in CI)"
    try:
        p = setup.photod([{"name": "lib", "path": str(lib)}])
        p.config.write_text(p.config.read_text() + f'\n[[sources]]\nname = "far"\ntype = "folder"\npath = "{tmpfs}"\n')  # fmt: skip
        made = make_photos(setup.inbox, 1)
        made |= make_photos(tmpfs, 1, start=1)
        for path in (setup.inbox / "IMG_0000.JPG", tmpfs / "IMG_0001.JPG"):
            subprocess.run(["touch", "-d", "@253402300800", str(path)], check=True)
        p.start()
        p.wait_protected(2, timeout=60)
        assert 0 == p.stop()
        assert [] == p.events("ingest_failed")
        held = target_files(lib)
        assert sorted(made.values()) == sorted(held.values())
        assert_target_holds(lib, held)
        ext4_copy = next(k for k, v in held.items() if v == made["IMG_0000.JPG"])
        assert (setup.inbox / "IMG_0000.JPG").stat().st_mtime == (lib / ext4_copy).stat().st_mtime
    finally:
        subprocess.run(["umount", "-l", str(tmpfs)], capture_output=True)


def test_an_encrypted_object_without_its_index_entry_keeps_its_name_and_date(
    setup: Setup,
) -> None:
    """Every index and snapshot on an encrypted target lost: each object's own sealed
    index line still gives it back under its original name and file time, with photod
    (a rebuild on a new computer, then restore) and with the stock tools."""
    p, _, vault, key = three_targets(setup)
    made = make_photos(setup.inbox, 6)
    times = {}
    for i, path in enumerate(sorted(setup.inbox.iterdir())):
        os.utime(path, (1_500_000_000 + i, 1_500_000_000 + i))
        times[sha256(path)] = 1_500_000_000 + i
    assert 0 == p.cli("run", "--once").returncode
    for lost in [*vault.glob(".photod/installations/*/index/*"),
                 *vault.glob(".photod/installations/*/snapshots/*")]:  # fmt: skip
        lost.unlink()
    _, back, _ = rebuilt_and_restored(setup, p, made)
    assert sorted(target_files(setup.home / "lib")) == sorted(back)  # the original names
    out = stock_restore((vault / ".photod" / "RECOVERY.md").read_text(), setup.home / "stock", key)
    assert 6 == out.stdout.count(": OK"), out.stdout + out.stderr
    for f in (setup.home / "stock" / "restored").rglob("*.JPG"):
        assert times[sha256(f)] == int(f.stat().st_mtime)  # the date, from the line


@pytest.mark.parametrize("damaged", [False, True], ids=["sound", "damaged"])
def test_a_catalog_checked_in_the_background_gates_every_write(setup: Setup, damaged: bool) -> None:
    """A catalog too large to check within the start-up budget (the failpoint takes
    that path on a small one) is checked in the background: meanwhile new photos are
    recorded but nothing is written to any target, and status says why; once the check
    passes the copies go.  If the check finds damage, the daemon stops, rebuilds the
    catalog from a target, and then copies."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    make_photos(setup.inbox, 3)
    assert 0 == p.cli("run", "--once").returncode
    before = target_files(lib)
    if damaged:
        damage_catalog(setup.home / "state" / "catalog.sqlite", "assets")
    p.env["PHOTOD_FAILPOINTS"] = "catalog_budget_spent=raise,catalog_checking=1:sleep:4"
    made = make_photos(setup.inbox, 2, start=10)
    p.start()
    if not damaged:
        p.wait_event("asset_ingested", count=2, timeout=10)
        assert before == target_files(lib)  # recorded, not written: the check is not done
        lib_status = next(t for t in p.status()["targets"] if t["name"] == "lib")
        assert "check of the catalog" in lib_status["reason"]
        p.wait_event("catalog_checked", timeout=30)
    else:  # found at the start or by the check in the background: rebuilt either way
        [recovered] = p.wait_event("catalog_recovered", timeout=60)
        assert "damaged" in recovered["found"]
    p.wait_protected(5, timeout=60)
    assert 0 == p.stop()
    assert set(made.values()) <= set(target_files(lib).values())
    assert before.items() <= target_files(lib).items()
    assert_target_holds(lib, target_files(lib))


@pytest.mark.parametrize("damaged", [False, True], ids=["sound", "damaged"])
def test_the_first_scan_does_not_wait_for_the_catalogs_check(setup: Setup, damaged: bool) -> None:
    """The page check begun while photod loads is not done when the daemon is ready (a
    large catalog; the failpoint makes a small one's last): the first scan runs beside
    it, new photos are recorded but nothing is written to a target until it passes,
    then they are copied.  If the catalog is damaged, that check's finding leads where
    it always did: the catalog is rebuilt from the target, the folder scanned again,
    and every photo copied."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    make_photos(setup.inbox, 3)
    assert 0 == p.cli("run", "--once").returncode
    before = target_files(lib)
    if damaged:  # (a table the start reads none of: only the page check finds it)
        damage_catalog(setup.home / "state" / "catalog.sqlite", "replicas")
    p.env["PHOTOD_FAILPOINTS"] = "catalog_prechecking=sleep:6"
    made = make_photos(setup.inbox, 2, start=10)
    p.start()
    if not damaged:
        p.wait_event("asset_ingested", count=2, timeout=20)
        assert [] == p.events("catalog_checked")  # the scan went first
        assert before == target_files(lib)  # recorded, not written: the check is not done
        lib_status = next(t for t in p.status()["targets"] if t["name"] == "lib")
        assert "check of the catalog" in lib_status["reason"]
        p.wait_event("catalog_checked", timeout=30)
    else:
        [recovered] = p.wait_event("catalog_recovered", timeout=60)
        assert "damaged" in recovered["found"]
        wait_for(lambda: any(e["event"] == "scan_finished" and e["ts"] > recovered["ts"]
                             for e in p.events()), 30, "the scan after the rebuild")  # fmt: skip
    p.wait_protected(5, timeout=60)
    assert 0 == p.stop()
    assert set(made.values()) <= set(target_files(lib).values())
    assert before.items() <= target_files(lib).items()
    assert_target_holds(lib, target_files(lib))


def test_run_once_rebuilds_a_damaged_catalog_its_check_found_after_the_start(
    setup: Setup,
) -> None:
    """`run --once` (a cron job) on a damaged catalog whose page check was not done when
    photod was ready (a large catalog; the failpoint makes a small one's last): the
    damage that check finds is met as at the start and as the daemon meets it: the
    catalog is rebuilt from the target, then the run is done and every photo copied
    (it ended with exit 65 and nothing backed up, night after night)."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    make_photos(setup.inbox, 3)
    assert 0 == p.cli("run", "--once").returncode
    before = target_files(lib)
    damage_catalog(setup.home / "state" / "catalog.sqlite", "replicas")
    p.env["PHOTOD_FAILPOINTS"] = "catalog_prechecking=sleep:3"
    made = make_photos(setup.inbox, 2, start=10)
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    [recovered] = p.events("catalog_recovered")
    assert "damaged" in recovered["found"]
    assert set(made.values()) <= set(target_files(lib).values())
    assert before.items() <= target_files(lib).items()
    assert_target_holds(lib, target_files(lib))


def test_copies_on_a_target_away_longer_than_the_scrub_cycle_do_not_count(
    setup: Setup,
) -> None:
    """A drive unplugged for longer than the scrub cycle (every copy is proven within
    one; one nobody has seen for longer cannot have been): its copies no longer make a
    photo protected (`photod status`, its exit code, its report), and the drive's line
    says why.  Plugged in again, they count at once."""
    import sqlite3
    import time

    make_photos(setup.inbox, 2, size=50_000)
    lib, t7 = setup.home / "library", setup.home / "T7"
    t7.mkdir()  # (photod makes no drive's folder on the system disk)
    p = setup.photod(
        [{"name": "library", "path": str(lib)},
         {"name": "t7", "path": str(t7), "media": "external"}],
        policy={"copies": 2, "media": 2, "offsite": 0},
    )  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode
    assert 0 == p.cli("status").returncode
    t7.rename(setup.home / "T7-in-a-drawer")  # unplugged
    seen = time.time() - 7 * 86400
    week_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen))
    with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:
        db.execute("UPDATE targets SET last_seen=? WHERE name='t7'", (week_ago,))
    week = p.cli("status")
    assert 0 == week.returncode, "a drive away for a while is still a copy"
    p.config.write_text(p.config.read_text().replace("[ingest]", '[schedule]\nscrub_cycle = "1d"\n[ingest]'))  # fmt: skip
    later = p.cli("status")
    assert 1 == later.returncode and later.stdout.startswith("NOT PROTECTED"), later.stdout
    shown = time.strftime("%Y-%m-%d %H:%M", time.localtime(seen))  # (local, as status says it)
    assert f"its copies do not count: not seen since {shown}" in later.stdout
    report = p.status()
    assert (0, False) == (report["policy"]["compliant"], report["targets"][1]["counted"])
    with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:  # then photod was
        db.execute("UPDATE targets SET last_seen=?", (week_ago,))  # off, or asleep, a week
    assert 0 == p.cli("status").returncode, "the computer off takes no target away"
    year = time.time() + 365 * 86400
    year_on = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(year))
    with sqlite3.connect(setup.home / "state" / "catalog.sqlite") as db:  # the clock set
        db.execute("UPDATE targets SET last_seen=? WHERE name='t7'", (year_on,))  # back a year
    behind = p.cli("status")
    assert 1 == behind.returncode and behind.stdout.startswith("NOT PROTECTED"), behind.stdout
    shown = time.strftime("%Y-%m-%d %H:%M", time.localtime(year))
    assert f"not seen since {shown}, a time ahead of this computer's clock" in behind.stdout
    (setup.home / "T7-in-a-drawer").rename(t7)  # plugged in again
    assert 0 == p.cli("status").returncode


def test_photos_on_a_watch_folders_unplugged_drive_are_not_said_lost(
    setup: Setup, small_drive: Path
) -> None:
    """The only target is a drive that is away; two photos arrive from a watch folder
    on another drive, which is then unplugged (its mount point stays, empty, on the
    system disk).  The target back, nothing is said lost (no alarm for photos that are
    whole on their unplugged drive): they wait; the watch folder's drive back, both are
    copied.  (Every photo deleted from a folder that stays is still said lost: the
    test below.)"""
    drive = setup.home / "T7"
    drive.mkdir()
    p = setup.photod([{"name": "t7", "path": str(drive), "media": "internal"}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode  # the drive is known
    drive.rename(setup.home / "T7-away")
    subprocess.run(["mount", "--bind", str(small_drive), str(setup.inbox)], check=True)
    try:
        shas = make_photos(setup.inbox, 2, size=50_000)
        assert 1 == p.cli("run", "--once").returncode  # taken in, no copy yet
        subprocess.run(["umount", str(setup.inbox)], check=True)  # unplugged
        (setup.home / "T7-away").rename(drive)
        run = p.cli("run", "--once")
        assert [] == p.events("asset_lost"), run.stdout
        assert not p.cli("status").stdout.startswith("LOST")
        subprocess.run(["mount", "--bind", str(small_drive), str(setup.inbox)], check=True)
        time.sleep(2.1)  # the copies that found no source then are due again (retry_max)
        assert 0 == p.cli("run", "--once").returncode
        assert set(shas.values()) == set(target_files(drive).values())
        assert [] == p.events("asset_lost")
    finally:
        subprocess.run(["umount", "-l", str(setup.inbox)], capture_output=True)


@pytest.mark.parametrize("how", ["one deleted, one edited", "all deleted"])
def test_a_photo_deleted_before_any_target_took_it_is_said_lost_by_name(
    setup: Setup, how: str
) -> None:
    """The only target is a drive that is away; two photos arrive, then one is deleted
    and the other edited in place.  When the drive is back the edit is copied, and the
    two versions nothing is left of are said lost, by name (`asset_lost`, LOST in
    status, exit 1), instead of waiting as "pending" for ever."""
    drive = setup.home / "T7"
    drive.mkdir()
    p = setup.photod([{"name": "t7", "path": str(drive), "media": "internal"}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode  # the drive is known
    drive.rename(setup.home / "T7-away")
    shas = make_photos(setup.inbox, 2, size=50_000)
    assert 1 == p.cli("run", "--once").returncode  # taken in, no copy yet
    deleted, edited = sorted(shas)
    (setup.inbox / deleted).unlink()
    if how == "all deleted":  # (a sync client emptying the folder: no drive unplugged)
        (setup.inbox / edited).unlink()
    else:
        (setup.inbox / edited).write_bytes((setup.inbox / edited).read_bytes() + b"edit")
    (setup.home / "T7-away").rename(drive)
    run = p.cli("run", "--once")
    status = p.cli("status")
    assert 1 == status.returncode and status.stdout.startswith("LOST: 2 files"), status.stdout
    lost = {e["asset"] for e in p.events("asset_lost")}
    assert {shas[deleted], shas[edited]} == lost, run.stdout
    if how != "all deleted":
        assert sha256(setup.inbox / edited) in set(target_files(drive).values())
