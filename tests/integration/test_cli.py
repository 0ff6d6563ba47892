"""The command line as a script or a monitor sees it, through real `photod` processes:
exit codes with one meaning each (README, "Exit codes"), the paragraph `run --once`
ends with, a line when a filter matches nothing, each command's own advice beside a
running daemon, and `photod drill` through the daemon."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Photod, wait_for, write_config
from tests.fakephone import FakeUsbmuxd, camera_roll
from tests.integration.conftest import Setup
from tests.integration.test_iphone import UDID_A, PhoneSetup

pytestmark = pytest.mark.integration


def _two(setup: Setup, samples: Path) -> list[str]:
    """Two real photos in the inbox; their names."""
    names = sorted(p.name for p in samples.iterdir())[:2]
    for name in names:
        shutil.copy(samples / name, setup.inbox / name)
    return names


def _no_traceback(*outputs: str) -> None:
    for text in outputs:
        assert "Traceback" not in text, text


def test_run_once_and_status_fail_while_the_offsite_copy_is_missing(
    setup: Setup, samples: Path
) -> None:
    """The offsite NAS is not mounted: `run --once` says, in one paragraph on stdout
    (off a terminal too), how many files it saw and copied, that the photos are not
    protected and why, and exits 1; `status` (and `--json`) exit 1 too.  Once the NAS
    is there, the next `run --once` and `status` exit 0."""
    nas = setup.home / "nas"
    p = setup.photod(
        [
            {"name": "lib", "path": str(setup.home / "lib")},
            {"name": "nas", "path": str(nas), "media": "nas", "offsite": True},
        ],
        {"copies": 2, "media": 2, "offsite": 1},
    )
    _two(setup, samples)

    once = p.cli("run", "--once")
    assert 1 == once.returncode, once.stdout + once.stderr
    paragraph = once.stdout.strip()
    assert 1 == len(paragraph.splitlines()), paragraph
    assert "2 files in the watch folders: 2 new; 2 copies written and verified" in paragraph
    assert "NOT PROTECTED: 2 of 2 photos and videos" in paragraph
    assert "need 1 more copy" in paragraph and "1 more offsite" in paragraph
    assert "target 'nas' was not written to" in paragraph and "does not exist" in paragraph
    assert 1 == p.cli("status").returncode
    assert 1 == p.cli("status", "--json").returncode

    nas.mkdir()  # the NAS is mounted
    once = p.cli("run", "--once")
    assert 0 == once.returncode, once.stdout + once.stderr
    assert "All 2 photos and videos are protected (2 copies, 2 kinds of media, 1 offsite)" in (
        once.stdout
    )
    assert 0 == p.cli("status").returncode
    assert 0 == p.cli("status", "--json").returncode


def test_usage_errors_exit_64_in_every_command(setup: Setup) -> None:
    """A bad flag value is 64 (EX_USAGE) whichever command it is in, argparse's own
    errors included; bare `photod` prints the help on stdout and exits 64 too."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    for args in (
        ["restore", str(setup.home / "out"), "--since", "yesterday"],
        ["logs", "--since", "bogus"],
        ["pause", "--for", "soon"],
        ["status", "--no-such-flag"],
        ["no-such-command"],
        ["catalog", "rebuild"],  # --from is required
    ):
        r = p.cli(*args)
        assert 64 == r.returncode, (args, r.stderr)
        _no_traceback(r.stdout, r.stderr)
    assert "'yesterday' is not a date" in p.cli("restore", "x", "--since", "yesterday").stderr
    bare = p.cli(config=False)
    assert 64 == bare.returncode
    assert "usage: photod" in bare.stdout and "run the daemon in the foreground" in bare.stdout
    sub = p.cli("catalog")
    assert (64, True) == (sub.returncode, "rebuild a lost catalog" in sub.stdout)


def test_filters_that_match_nothing_say_so_and_exit_1(setup: Setup, samples: Path) -> None:
    """`logs --target nope` / `--device foo` / `--asset 000000` and `restore --match
    'x*'` print one line saying nothing matched (naming the targets, or the phones in
    the log) and exit 1; a filter that matches exits 0."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    _two(setup, samples)
    assert 0 == p.cli("run", "--once").returncode

    target = p.cli("logs", "--target", "nope")
    assert (1, "") == (target.returncode, target.stdout)
    assert 1 == len(target.stderr.strip().splitlines()), target.stderr
    assert "--target 'nope'" in target.stderr and "the targets: lib" in target.stderr
    phone = p.cli("logs", "--device", "foo")
    assert 1 == phone.returncode and "no phone in the log yet" in phone.stderr
    asset = p.cli("logs", "--asset", "000000")
    assert 1 == asset.returncode and "no event in the log matches --asset" in asset.stderr
    assert 0 == p.cli("logs", "--target", "lib").returncode

    out = setup.home / "restored"
    nothing = p.cli("restore", str(out), "--match", "x*")
    assert 1 == nothing.returncode, nothing.stdout + nothing.stderr
    assert 1 == len(nothing.stderr.strip().splitlines()), nothing.stderr
    assert "nothing to restore" in nothing.stderr and "--match x*" in nothing.stderr
    assert 0 == p.cli("restore", str(out)).returncode


def test_files_that_cannot_be_made_exit_73(setup: Setup, samples: Path) -> None:
    """`recovery-plan --output missing-folder/plan.md` says in one line that the folder
    is missing (no traceback) and exits 73, as `keygen` onto an existing key does."""
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    _two(setup, samples)
    assert 0 == p.cli("run", "--once").returncode
    missing = setup.home / "missing-folder"
    r = p.cli("recovery-plan", "--output", str(missing / "plan.md"))
    assert 73 == r.returncode, r.stderr
    _no_traceback(r.stdout, r.stderr)
    assert 1 == len(r.stderr.strip().splitlines()), r.stderr
    assert f"the folder {missing} does not exist" in r.stderr
    key = setup.home / "photod.key"
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    again = p.cli("keygen", "--output", str(key))
    assert 73 == again.returncode and "never overwrites a key" in again.stderr


def test_the_encryption_table_keygen_prints_names_the_key_it_wrote(
    setup: Setup, samples: Path
) -> None:
    """`photod keygen --output 'my "keys"\\new/photod.key'`, typed in a folder that is
    not the config's: the [encryption] table it prints, pasted into the config as it
    is, opens that key and the backup runs (the path was printed as typed: read from
    the config's folder, and inside a TOML string, where '"' ended it and '\\n' was a
    line break: a key never found, or a config that did not load)."""
    work = setup.home / "shell here"
    work.mkdir()
    wrote = subprocess.run([sys.executable, "-m", "photod", "keygen", "--output",
                            'my "keys"\\new/photod.key'], cwd=work, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert 0 == wrote.returncode, wrote.stderr
    table = wrote.stdout[wrote.stdout.index("[encryption]") :]
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib), "encrypt": True}], extra=f"\n{table}")
    _two(setup, samples)
    run = p.cli("run", "--once")
    assert 0 == run.returncode, run.stdout + run.stderr
    assert "protected" in run.stdout
    assert (work / 'my "keys"\\new' / "photod.key").is_file()


def test_a_folder_named_in_another_unicode_form_is_said_with_the_name_to_write(
    setup: Setup, samples: Path
) -> None:
    """A watch folder and a drive's folder a Mac named ("Müller" decomposed: "u" and a
    combining diaeresis), in a config typed with the one character "ü": Linux takes
    them for other names.  `run --once`, `status` and `doctor` said both missing ("is
    the drive mounted?") while `ls` showed them; now they say the name is there in
    another Unicode form, and the path to write, which works as it is."""
    decomposed = unicodedata.normalize("NFD", "Fotos Müller")
    inbox, lib = setup.home / f"in {decomposed}", setup.home / f"lib {decomposed}"
    inbox.mkdir()
    lib.mkdir()
    _two(setup, samples)
    for f in setup.inbox.iterdir():
        shutil.move(f, inbox / f.name)

    def config(src: str, dst: str) -> Path:
        return write_config(setup.home / "photod.toml", [{"name": "in", "type": "folder", "path": src}],
                            [{"name": "lib", "type": "local", "path": dst, "media": "external"}],
                            extra=f'[daemon]\nstate_dir = "{setup.home}/state"\n'
                            f'log_dir = "{setup.home}/log"\n')  # fmt: skip

    typed = unicodedata.normalize("NFC", "Fotos Müller")  # (one character "ü")
    p = setup.factory(config(f"{setup.home}/in {typed}", f"{setup.home}/lib {typed}"))
    said = p.cli("run", "--once").stdout + p.cli("status").stdout + p.cli("doctor").stdout
    p.start()  # and the daemon's log
    said += "".join(f'"{e["reason"]}"' for e in p.wait_event("source_unavailable"))
    assert 0 == p.stop()
    advised = re.findall(r'another Unicode form \(as a Mac writes names\): write the path in '
                         r'the config as it is there, "([^"]*)"', said)  # fmt: skip
    written = {tomllib.loads(f'p = "{a}"')["p"] for a in advised}
    assert {str(inbox), str(lib)} == written, said
    assert 5 == len(advised) and "Mu\\u0308ller" in said, said
    p = setup.factory(config(str(inbox), str(lib)))
    run = p.cli("run", "--once")
    assert 0 == run.returncode and "protected" in run.stdout, run.stdout + run.stderr


def test_beside_the_daemon_each_command_says_what_to_do(setup: Setup, samples: Path) -> None:
    """With the daemon running: `drill` goes through it (as `verify` does) and the drill
    passes; `backup` needs no `--now`; `run --once` points to `photod backup` and
    `catalog rebuild` says to stop the daemon first (both exit 75); `reload` with the
    identity file readable by others is refused by the command itself, with the
    daemon's own words, and the daemon is not asked."""
    key = setup.home / "photod.key"
    p: Photod = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")}],
        extra=f'\n[encryption]\nidentity = "{key}"\n',
    )
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    _two(setup, samples)
    p.start()
    try:
        p.wait_protected(2)
        drill = p.cli("drill")
        assert 0 == drill.returncode, drill.stdout + drill.stderr
        assert "the daemon is running the drill now" in drill.stdout
        [passed] = p.wait_event("drill_passed", target="lib")
        assert passed["files"] == 2
        nope = p.cli("drill", "--target", "nope")
        assert 1 == nope.returncode and "no target named 'nope'" in nope.stdout

        backup = p.cli("backup")
        assert 0 == backup.returncode, backup.stderr
        assert "backing up now" in backup.stdout

        once = p.cli("run", "--once")
        assert 75 == once.returncode
        assert "the daemon is running" in once.stderr and "`photod backup`" in once.stderr
        rebuild = p.cli("catalog", "rebuild", "--from", "lib", "--force")
        assert 75 == rebuild.returncode
        assert "stop the daemon first" in rebuild.stderr
        _no_traceback(once.stderr, rebuild.stderr)

        key.chmod(0o644)
        reload = p.cli("reload")
        assert 78 == reload.returncode, reload.stdout + reload.stderr
        assert "reloading" not in reload.stdout
        assert f"encryption.identity: {key} is readable by others (mode 644)" in reload.stderr
        reloads = ("config_invalid", "config_reloaded", "daemon_reloaded")
        assert [] == [e for name in reloads for e in p.events(name)]  # not asked
        key.chmod(0o600)
        assert 0 == p.cli("reload").returncode
        wait_for(lambda: any(p.events(name) for name in reloads[1:]), 20, "the reload")
        assert [] == p.events("config_invalid")
    finally:
        assert 0 == p.stop()


@pytest.fixture
def phones(tmp_path: Path, photod_factory: Callable[[Path], Photod]) -> Iterator[PhoneSetup]:
    """A fake usbmuxd with phones to plug (tests/fakephone.py), as in test_iphone.py."""
    mux = FakeUsbmuxd(tmp_path / "usbmuxd.sock")
    mux.start()
    yield PhoneSetup(tmp_path, mux, photod_factory)
    mux.close()


def test_status_device_exits_1_until_everything_on_the_phone_is_protected(
    phones: PhoneSetup, samples: Path, tmp_path: Path
) -> None:
    """`photod status --device NAME` exits 1 while anything on the phone is not
    protected (the second target, an external drive, is not plugged in), and 0 once
    everything on it is safe to delete."""
    roll = camera_roll(tmp_path / "A", samples, photos=3, live=0)
    p = phones.photod()
    toml = p.config.read_text().replace(
        f'path = "{phones.mirror}"', f'path = "{phones.mirror}"\nmedia = "external"'
    )
    p.config.write_text(toml)
    p.start()
    try:
        phones.mux.plug(phones.phone(UDID_A, "Anna's iPhone", roll))
        p.wait_event("device_import_finished")
        short = p.cli("status", "--device", "Anna's iPhone")
        assert 1 == short.returncode, short.stdout + short.stderr
        assert "safe to delete from 'Anna's iPhone'; newer files are not all protected" in (
            short.stdout
        )
        phones.mirror.mkdir()  # the drive is plugged in
        p.wait_protected(3, timeout=60)
        safe = p.cli("status", "--device", UDID_A)
        assert 0 == safe.returncode, safe.stdout + safe.stderr
        assert "Everything on 'Anna's iPhone' is protected" in safe.stdout
    finally:
        assert 0 == p.stop()


def test_run_once_with_a_watch_folder_missing_does_not_end_well(setup: Setup) -> None:
    """A cron job's `run --once` whose watch folder is on a drive that is not mounted:
    the summary says the folder is missing and the exit is 1, not a success for ever
    (every photo it already holds is still protected)."""
    from tests.integration.test_truth import make_photos

    make_photos(setup.inbox, 1, size=20_000)
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    assert 0 == p.cli("run", "--once").returncode
    setup.inbox.rename(setup.home / "inbox-unmounted")
    r = p.cli("run", "--once")
    assert 1 == r.returncode, r.stdout
    assert (
        f"Watch folder 'inbox' ({setup.inbox}) is missing: nothing in it was looked at" in r.stdout
    )
    assert "The one photo or video is protected" in r.stdout


def test_run_once_holds_nothing_of_a_large_watch_folder_that_is_not_there(setup: Setup) -> None:
    """A cron job's `run --once` whose watch folder of 100,000 photos is on a drive that
    is not mounted: photod read every file the catalog knows of it into memory, for a
    scan that never came (a million photos: 300 MB; the daemon held them for as long as
    the drive was away).  It reads nothing of it now: photod's peak is the same as with
    a catalog that knows none of the folder's files."""
    import hashlib
    import sqlite3

    from bench.scale import fill_catalog

    p = setup.photod([{"name": "t7", "path": str(setup.home / "media" / "T7"),
                       "media": "external"}], policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    db = setup.home / "state" / "catalog.sqlite"
    fill_catalog(db, [(hashlib.sha256(b"%d" % i).hexdigest(), f"{2010 + i % 15}/IMG_{i:07d}.JPG",
                       1000 + i, 10**18 + i) for i in range(100_000)], ["t7"])  # fmt: skip
    setup.inbox.rename(setup.home / "inbox-unmounted")

    # (VmHWM: the run's own peak; ru_maxrss keeps the parent's, a test worker's)
    child = ("import sys\nfrom photod.cli import main\ncode = main(sys.argv[1:])\n"
             "peak = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')]\n"
             "print('peak', code, peak[0])")  # fmt: skip

    def peak_mb() -> float:
        r = subprocess.run([sys.executable, "-c", child, "--config", str(p.config), "run",
                            "--once"], env=p.env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "Watch folder 'inbox'" in r.stdout, r.stdout + r.stderr[-2000:]
        assert "100000 photos and videos are protected" in r.stdout
        code, peak = r.stdout.rpartition("\npeak ")[2].split()
        assert "1" == code
        return int(peak) / 1024

    shutil.copy(db, setup.home / "with-files.sqlite")
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM source_files")
    without = peak_mb()
    shutil.copy(setup.home / "with-files.sqlite", db)
    grown = peak_mb() - without
    assert grown < 10, f"{grown:.0f} MB more"


def test_status_on_a_new_computer_before_its_first_run_does_not_call_the_disk_full(
    setup: Setup,
) -> None:
    """A new computer after a disaster (a config naming the surviving drive, no state
    dir made yet): `photod status` does not say "NOT TAKING NEW FILES: the state dir
    is full (0 B free)" of a disk with room (the folder not made yet was asked, and its
    error taken for no room)."""
    state = setup.home / "state"
    p = setup.photod([{"name": "drive", "path": str(setup.home / "drive"), "create": True}],
                     policy={"copies": 1, "media": 1, "offsite": 0})  # fmt: skip
    assert not state.exists()
    r = p.cli("status")
    assert "NOT TAKING NEW FILES" not in r.stdout, r.stdout
    said = p.cli("status", "--json")
    assert False is json.loads(said.stdout)["state_dir_full"], said.stdout
