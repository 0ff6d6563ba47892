"""A computer cloned from another's disk image (its state dir, installation id and
internal library with it) backs up to the family's NAS: the first computer, started
again, finds a newer snapshot of "itself" there and rebuilds its catalog from it.  Its
counts and its library's list never take the clone's photos for copies on its own
library, which never had them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Photod, sha256, target_files, wait_for, write_config
from tests.integration.conftest import assert_target_holds, target_lists
from tests.integration.test_truth import make_photos
from tests.servers import BUCKET, S3Server

pytestmark = pytest.mark.integration


def computer(
    home: Path,
    nas: Path,
    factory: Callable[[Path], Photod],
    shared: dict[str, object] | None = None,
) -> Photod:
    """``shared``: the target both computers write to, instead of the NAS folder."""
    (home / "inbox").mkdir(parents=True, exist_ok=True)
    config = write_config(
        home / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(home / "inbox")}],
        [
            {"name": "lib", "type": "local", "path": str(home / "lib"), "media": "internal"},
            shared or {"name": "nas", "type": "local", "path": str(nas), "media": "nas"},
        ],
        {"copies": 2, "media": 2, "offsite": 0},
        f'\n[daemon]\ninstance = "laptop"\nstate_dir = "{home}/state"\nlog_dir = "{home}/log"\n'
        'retry_interval = "1s"\nretry_max = "2s"\n[ingest]\nsettle = "0.5s"\n',
    )
    p = factory(config)
    p.home, p.output, p.log_dir = home, home / "photod.out", home / "log"
    p.env = {**p.env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    (home / "run").mkdir(mode=0o700, exist_ok=True)
    return p


def laptop_and_its_clone(
    tmp_path: Path, factory: Callable[[Path], Photod]
) -> tuple[Photod, Photod, Path]:
    """A laptop that backed up one photo to a NAS folder, and the desktop its state dir
    and library were copied onto (a disk image): both stopped.  (laptop, desktop, NAS)"""
    nas = tmp_path / "nas"
    nas.mkdir()
    laptop = computer(tmp_path / "laptop", nas, factory)
    make_photos(laptop.home / "inbox", 1, start=0)
    laptop.start()
    laptop.wait_protected(1, timeout=60)
    assert 0 == laptop.stop()
    for part in ("state", "lib"):  # the disk image, cloned onto the desktop
        shutil.copytree(laptop.home / part, tmp_path / "desktop" / part)
    return laptop, computer(tmp_path / "desktop", nas, factory), nas


def test_a_cloned_computers_snapshot_never_counts_copies_the_library_lacks(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    laptop, desktop, _ = laptop_and_its_clone(tmp_path, photod_factory)
    make_photos(desktop.home / "inbox", 3, start=10)
    desktop.start()
    desktop.wait_protected(4, timeout=60)
    assert 0 == desktop.stop()  # its snapshot on the NAS: a newer generation of "laptop"

    make_photos(laptop.home / "inbox", 1, start=20)
    laptop.start()
    laptop.wait_event("catalog_recovered", timeout=30)
    status = laptop.wait_protected(5, timeout=60)
    lib = next(t for t in status["targets"] if t["name"] == "lib")
    held = target_files(laptop.home / "lib")
    assert lib["replicas"] == len(held)  # counted only where they really are
    assert_target_holds(laptop.home / "lib", held)  # and listed only where they are
    assert 0 == laptop.stop()


def one_name_on_both(tmp_path: Path, factory: Callable[[Path], Photod]) -> tuple[Photod, str]:
    """The laptop cloned onto the desktop; both then run at once, and each takes a
    different IMG_0500.JPG of the same size (a camera's uncompressed raw, say), which
    each library holds under that name; the desktop two more.  Both stopped, the
    desktop's snapshot the NAS's newest.  The laptop and its photo's SHA-256."""
    laptop, desktop, _ = laptop_and_its_clone(tmp_path, factory)
    laptop.start()
    desktop.start()
    for p, seed, photos in ((laptop, 30, 2), (desktop, 40, 4)):  # same name, other bytes
        camera = make_photos(tmp_path / f"camera{seed}", 1, start=seed)
        (tmp_path / f"camera{seed}" / next(iter(camera))).rename(p.home / "inbox/IMG_0500.JPG")
        if p is desktop:
            make_photos(desktop.home / "inbox", 2, start=10)
        p.wait_protected(photos, timeout=60)
    assert 0 == laptop.stop()
    assert 0 == desktop.stop()  # its snapshot on the NAS: the newest generation
    return laptop, sha256(laptop.home / "inbox" / "IMG_0500.JPG")


def test_a_clones_photo_of_the_same_name_and_size_never_has_the_librarys_own_moved_aside(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """The laptop, started again, rebuilds its catalog from the desktop's newer snapshot,
    which says the desktop's IMG_0500.JPG is on "lib": the laptop's list names that file
    as its own photo, so the desktop's is not taken to be there; the laptop's is never
    called corrupt nor moved aside, and the list still passes `sha256sum -c`.  Nor is
    it taken for a new photo and stored again under another name."""
    laptop, ours = one_name_on_both(tmp_path, photod_factory)
    laptop.start()
    laptop.wait_event("catalog_recovered", timeout=30)
    laptop.wait_protected(5, timeout=60)
    assert 0 == laptop.cli("verify", "--all").returncode
    laptop.wait_event("scrub_finished", timeout=60)
    held = target_files(laptop.home / "lib")
    assert held["2008/2008-05-30/IMG_0500.JPG"] == ours  # still the laptop's own photo
    assert not laptop.events("replica_corrupt")
    assert not list((laptop.home / "lib" / ".photod").glob("quarantine/**/*.JPG"))
    assert_target_holds(laptop.home / "lib", held)  # its lists pass `sha256sum -c`
    lib = next(t for t in laptop.status()["targets"] if t["name"] == "lib")
    assert lib["replicas"] == len(set(held.values()))  # counted only where they are
    assert 0 == laptop.stop()
    for root in (laptop.home / "lib", tmp_path / "nas"):  # one copy of each photo
        held = target_files(root)
        assert sorted(held.values()) == sorted(set(held.values())), held


def test_a_rebuild_on_a_third_computer_brings_back_both_clones_photos_of_one_name(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """`catalog rebuild --from nas` on a new computer takes the newest snapshot (the
    desktop's, which never knew the laptop's IMG_0500.JPG) and the shared list, which
    names both: every photo on the NAS comes back, the laptop's beside the desktop's,
    and a restore writes each of them."""
    _, ours = one_name_on_both(tmp_path, photod_factory)
    third = computer(tmp_path / "third", tmp_path / "nas", photod_factory)
    r = third.cli("catalog", "rebuild", "--from", "nas")
    assert 0 == r.returncode, r.stderr
    on_nas = set(target_files(tmp_path / "nas").values())
    assert third.status()["assets"] == len(on_nas) == 5
    r = third.cli("restore", "--target", "nas", str(tmp_path / "restored"))
    assert 0 == r.returncode, r.stdout + r.stderr
    assert set(target_files(tmp_path / "restored").values()) == on_nas
    assert ours in on_nas


def test_two_computers_writing_as_one_installation_are_told_so_and_what_to_do(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """The laptop's state dir copied onto the desktop (Migration Assistant): the
    desktop's first run is a move, and nothing is said.  The laptop, run again, finds
    its folder on the NAS last written by the desktop: one `installation_cloned` and a
    `photod status` line saying what to do; so does the desktop at its next run.  Once
    the laptop no longer runs, the desktop's next look finds itself the last writer,
    and the line goes."""
    laptop, desktop, _ = laptop_and_its_clone(tmp_path, photod_factory)
    make_photos(desktop.home / "inbox", 2, start=10)
    assert 0 == desktop.cli("run", "--once").returncode
    assert not desktop.events("installation_cloned")  # (a copy whose original is gone)

    for p, runs in ((laptop, 1), (desktop, 1), (desktop, 2)):
        r = p.cli("run", "--once")
        assert 0 == r.returncode, r.stdout + r.stderr
        text = p.cli("status").stdout
        if runs == 1:
            [event] = p.events("installation_cloned")
            assert event["target"] == "nas"
            assert "TWO COMPUTERS AS ONE: target 'nas' was last written" in text, text
            assert "give it its own [daemon] instance name" in text, text
        else:  # the laptop stopped for good: said once, and no more
            assert len(p.events("installation_cloned")) == 1
            assert "TWO COMPUTERS" not in text, text
    assert laptop.status()["assets"] == 3


def test_run_once_beside_a_clone_on_one_s3_prefix_settles_the_catalog_and_backs_up(
    tmp_path: Path, photod_factory: Callable[[Path], Photod], s3_server: S3Server
) -> None:
    """The laptop and its clone back up with `photod run --once` (from cron) to one S3
    prefix.  Each run found the other's newer snapshot there, left the cloud unwritten
    "until the catalog is checked", which a one-shot run never did: NOT PROTECTED and
    exit 1, every run alike.  The run now settles the catalog again (rebuilt from the
    cloud's records) and goes on: every run protects every photo, and the laptop is
    told that two computers write as one installation."""
    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(tmp_path / "credentials")
    prefix = f"clone-{tmp_path.name}/"
    cloud = s3_server.target("cloud", creds, prefix=prefix, media="cloud", offsite=True)
    laptop = computer(tmp_path / "laptop", tmp_path, photod_factory, cloud)
    make_photos(laptop.home / "inbox", 1, start=0)
    assert 0 == laptop.cli("run", "--once").returncode
    for part in ("state", "lib"):  # the disk image, cloned onto the desktop
        shutil.copytree(laptop.home / part, tmp_path / "desktop" / part)
    desktop = computer(tmp_path / "desktop", tmp_path, photod_factory, cloud)
    for start, p in ((10, desktop), (20, laptop), (30, desktop), (40, laptop)):
        make_photos(p.home / "inbox", 1, start=start)
        r = p.cli("run", "--once")
        assert 0 == r.returncode, r.stdout + r.stderr
        assert "protected" in r.stdout and "was not written to" not in r.stdout, r.stdout
    assert len(target_files(s3_server.root / BUCKET / prefix)) == 5
    assert laptop.events("installation_cloned")


def landed_on_one_name(
    tmp_path: Path, factory: Callable[[Path], Photod], same_size: bool = False
) -> tuple[Photod, Photod, Path, str, str, str]:
    """A laptop and its clone (its state dir and library copied onto the desktop) both
    running on one NAS folder; the desktop stores its IMG_0050.JPG, then the laptop's own
    IMG_0050.JPG (``same_size``: of the same size, one byte apart) lands at that very name
    (a PUT that replaced the desktop's) and the laptop lists it there.  (laptop, desktop,
    the NAS, the name, the desktop's SHA-256, the laptop's)."""
    laptop, desktop, nas = laptop_and_its_clone(tmp_path, factory)
    laptop.start()
    desktop.start()
    size = {} if same_size else {"size": 300_000}
    mine = make_photos(desktop.home / "inbox", 1, start=50, **size)["IMG_0050.JPG"]
    desktop.wait_protected(2, timeout=60)
    [key] = [k for k, sha in target_files(nas).items() if sha == mine]
    camera = tmp_path / "camera" / "IMG_0050.JPG"
    if same_size:
        data = bytearray((desktop.home / "inbox" / "IMG_0050.JPG").read_bytes())
        data[-1] ^= 1  # another photo of that name and size
        camera.parent.mkdir()
        camera.write_bytes(data)
    else:
        make_photos(camera.parent, 1, start=50)
    theirs = sha256(camera)
    shutil.copyfile(camera, nas / key)  # its upload, landed
    shutil.copy2(camera, laptop.home / "inbox")
    laptop.wait_protected(2, timeout=60)
    wait_for(lambda: any(f"{theirs}  {key}" in s.read_text() for s in target_lists(nas)), 10,
             "the laptop to list its file")  # fmt: skip
    return laptop, desktop, nas, key, mine, theirs


def left_alone(nas: Path, key: str, theirs: str) -> None:
    """The laptop's file still at its name on the NAS, nothing moved into the quarantine."""
    assert theirs == sha256(nas / key)
    assert [] == [f for f in nas.glob(".photod/quarantine/**/*") if f.is_file()]


@pytest.mark.parametrize("restart", ["", "own", "rebuilt"], ids=["running", "restarted", "rebuilt"])
def test_a_clones_upload_landed_on_the_others_name_is_never_moved_aside(
    tmp_path: Path, photod_factory: Callable[[Path], Photod], restart: str
) -> None:
    """The laptop and its clone run at once and each takes a different IMG_0050.JPG; on
    a server that lets a PUT replace an object both uploads land at that name a moment
    apart: the name holds the laptop's file, which the laptop lists in the folder both
    write, while the desktop's catalog still counts its own copy there.  The desktop's
    scrub sees a wrong size: it stops counting its copy and writes it again beside,
    never moves the laptop's file aside (then each scrub would move the other's away
    in turn), and the list drops only its own stale line: `sha256sum -c` passes.
    ``restarted``: the desktop restarts before its scrub and reads the laptop's list
    lines at its start (its catalog then knows them); its scrub took the laptop's file
    for a corrupt copy and moved it aside all the same.  ``rebuilt``: the laptop takes
    one more photo and stops after the desktop stopped, so that the desktop's start
    rebuilds its catalog from the laptop's newer snapshot, which never knew the
    desktop's photo at that name: its stale line stayed on the list for good."""
    laptop, desktop, nas, key, mine, theirs = landed_on_one_name(tmp_path, photod_factory)
    photos = {"": 2, "own": 3, "rebuilt": 4}[restart]  # (and the laptop's, from its list)
    if restart:  # (the laptop's snapshot first: the desktop's, at its stop, the newest)
        laptop.wait_event("catalog_snapshot_written", count=2, timeout=60)
        assert 0 == desktop.stop()
        if restart == "rebuilt":
            make_photos(laptop.home / "inbox", 1, start=60)
            laptop.wait_protected(3, timeout=60)
            assert 0 == laptop.stop()  # its snapshot: the newest
        desktop.start()
        desktop.wait_protected(photos, timeout=60)

    assert 0 == desktop.cli("verify", "--target", "nas", "--all").returncode
    desktop.wait_event("scrub_finished", timeout=60)
    desktop.wait_protected(photos, timeout=60)
    left_alone(nas, key, theirs)
    assert mine in target_files(nas).values()  # the desktop's, beside
    assert not desktop.events("replica_corrupt")
    assert_target_holds(nas, target_files(nas))  # every list line holds
    assert 0 == laptop.stop()
    assert 0 == desktop.stop()


def laptop_that_wrote_a_nas(
    tmp_path: Path, factory: Callable[[Path], Photod]
) -> tuple[Photod, Path, Path]:
    """A laptop that backed up one photo to a NAS folder (`run --once`): the laptop, the
    NAS, and its installation's `writer.json` there."""
    nas = tmp_path / "nas"
    nas.mkdir()
    laptop = computer(tmp_path / "laptop", nas, factory)
    make_photos(laptop.home / "inbox", 1, start=0)
    assert 0 == laptop.cli("run", "--once").returncode
    [writer] = nas.glob(".photod/installations/*/writer.json")
    return laptop, nas, writer


def test_a_hostile_writer_file_on_a_shared_target_is_another_writer_never_a_traceback(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """Anyone who writes the NAS folder may leave any `writer.json` there: JSON nested
    a hundred thousand deep stopped photod with an internal error (exit 70) at every
    start, nothing backed up.  It is now an unknown writer: the run backs up, and the
    file is written anew."""
    laptop, nas, writer = laptop_that_wrote_a_nas(tmp_path, photod_factory)
    writer.write_text("[" * 100_000)
    make_photos(laptop.home / "inbox", 1, start=10)
    r = laptop.cli("run", "--once")
    assert 0 == r.returncode, r.stdout + r.stderr
    assert not laptop.events("target_check_failed")
    assert "Traceback" not in r.stdout + r.stderr
    assert len(target_files(nas)) == 2
    assert '"host"' in writer.read_text()


def test_a_clones_file_at_a_copys_name_read_as_a_repairs_source_is_never_moved_aside(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """As above, the NAS's IMG_0050.JPG holds the laptop's photo (the same size), which
    the laptop lists, while the desktop still counts its own copy there.  The desktop's
    own photo and its library copy go; its repair reads the NAS's file as its source,
    finds other bytes, and called the laptop's good file corrupt (`replica_corrupt`:
    moved aside, had another copy been left; here kept, "damaged as it is"), and the
    desktop's line for it stayed, failing `sha256sum -c`.  It is now the desktop's copy
    that is missing there: the laptop's file stays, and only that line goes."""
    laptop, desktop, nas, key, _, theirs = landed_on_one_name(tmp_path, photod_factory,
                                                              same_size=True)  # fmt: skip

    (desktop.home / "inbox" / "IMG_0050.JPG").unlink()
    [lib_copy] = [p for p in (desktop.home / "lib").rglob("IMG_0050*.JPG")]
    lib_copy.unlink()
    desktop.cli("verify", "--target", "lib", "--all")
    desktop.wait_event("scrub_finished", timeout=60)
    judged = ("replica_missing", "replica_corrupt")
    wait_for(lambda: [e for e in desktop.events() if e["event"] in judged and e["target"] == "nas"],
             30, "the desktop to judge its NAS copy")  # fmt: skip
    left_alone(nas, key, theirs)
    assert not [e for e in desktop.events("replica_corrupt") if e["target"] == "nas"]
    assert_target_holds(nas, target_files(nas))  # every list line holds
    assert 0 == laptop.stop()
    assert 0 == desktop.stop()


def test_two_computers_writing_as_one_installation_are_told_so_once_while_both_run(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """The laptop and its clone both go on running `photod run --once` (cron): each run
    of the laptop after one of the desktop's said `installation_cloned` again, an error
    every hour in its log.  It is said once, and `photod status` keeps saying it."""
    laptop, desktop, _ = laptop_and_its_clone(tmp_path, photod_factory)
    for p in (desktop, laptop, desktop, laptop, desktop, laptop):
        r = p.cli("run", "--once")
        assert 0 == r.returncode, r.stdout + r.stderr
    assert len(laptop.events("installation_cloned")) == 1
    assert len(desktop.events("installation_cloned")) == 1
    assert "TWO COMPUTERS AS ONE" in laptop.cli("status").stdout


def test_a_writer_files_host_name_reaches_the_terminal_only_as_printable_text(
    tmp_path: Path, photod_factory: Callable[[Path], Photod]
) -> None:
    """Anyone who writes the NAS folder may name any host in `writer.json`: `photod
    status` printed its escape sequences to the terminal as they were (one could retitle
    the window, or hide the line).  Its control characters are shown as `?` now."""
    import json

    laptop, _, writer = laptop_that_wrote_a_nas(tmp_path, photod_factory)
    writer.write_text(json.dumps({"here": "0123456789abcdef", "host": "pi\x1b]0;owned\x07\x1b[2K"}))
    assert 0 == laptop.cli("run", "--once").returncode
    [event] = laptop.events("installation_cloned")
    text = laptop.cli("status").stdout
    assert "TWO COMPUTERS AS ONE" in text, text
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert event["host"] == "pi?]0;owned??[2K"
