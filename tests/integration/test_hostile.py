"""Hostile input in a watch folder, given to a real `photod run`: links out of the folder
and in loops, a FIFO and a device node (either would block a reader forever), empty
files, a 10 GB sparse file, NFC/NFD twins, names of 255 bytes, a path longer than the
kernel's PATH_MAX.  Nothing is written outside a target's root, nothing holds up the
photos beside them, each refusal is one clear event (not one per rescan), and the
daemon's threads all live on."""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import sha256, target_files, wait_for
from tests.integration.conftest import Setup, assert_target_holds

pytestmark = pytest.mark.integration


def deep_folder(top: Path, depth: int, name: bytes = b"deep.jpg") -> bytes:
    """Folders nested until the path is longer than PATH_MAX (4096 bytes), made with
    relative calls (no absolute path that long can be passed to the kernel); returns
    the path relative to ``top`` of the file ``name`` made in the deepest."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    rel = b""
    try:
        for i in range(depth):
            name = b"d%03d" % i + b"x" * 200
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            rel += name + b"/"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        out = os.open(name, flags, 0o644, dir_fd=fd)
        os.write(out, b"\xff\xd8\xff\xe0" + os.urandom(1000))
        os.close(out)
    finally:
        os.close(fd)
    return rel + name


def test_hostile_files_are_refused_once_and_never_hold_up_the_photos(
    setup: Setup, samples: Path
) -> None:
    """Each hostile entry is refused with one event; the photos beside them, and the
    odd but legitimate names, are all protected; nothing lands outside the target."""
    lib, outside = setup.home / "library", setup.home / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes((samples / "jpg_Canon_40D.jpg").read_bytes() + b"s")
    (outside / "album").mkdir()
    shutil.copy(samples / "jpg_Canon_40D.jpg", outside / "album" / "elsewhere.jpg")
    p = setup.photod([{"name": "library", "path": str(lib)}], daemon='rescan_interval = "1s"')
    sock_path = setup.home / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    p.env["NOTIFY_SOCKET"] = str(sock_path)
    p.start()
    inbox = setup.inbox
    jpeg = (samples / "jpg_Canon_40D.jpg").read_bytes()

    # What must be refused, each with its reason.
    (inbox / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (inbox / "album-link").symlink_to(outside / "album", target_is_directory=True)
    (inbox / "loop").symlink_to(".", target_is_directory=True)
    (inbox / "ping.jpg").symlink_to(inbox / "pong.jpg")
    (inbox / "pong.jpg").symlink_to(inbox / "ping.jpg")
    os.mkfifo(inbox / "pipe.jpg")
    os.mknod(inbox / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # as /dev/zero
    (inbox / "empty.jpg").write_bytes(b"")
    with open(inbox / "huge.mov", "wb") as f:  # 10 GB long, a few bytes on disk
        f.write(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ")
        f.truncate(10 * 1024**3)
    deep = deep_folder(inbox, 22)
    # A folder the kernel still reaches, holding a photo whose path it does not.
    depth = (4000 - len(bytes(inbox))) // 205
    (inbox / "edge").mkdir()
    past = deep_folder(inbox / "edge", depth, b"P" * (4200 - len(bytes(inbox)) - depth * 205))
    refused = {
        "link-out.jpg": "symbolic link",
        "album-link": "symbolic link",
        "loop": "symbolic link",
        "ping.jpg": "symbolic link",
        "pong.jpg": "symbolic link",
        "pipe.jpg": "not a regular file",
        "zero.jpg": "not a regular file",
        "empty.jpg": "empty file",
        "huge.mov": "sparse",
    }
    # What must be kept: photos beside them, NFC/NFD twins, 255-byte names twice.
    good = {
        "a.jpg": jpeg + b"a",
        "Cafe\u0301.jpg": jpeg + b"nfd",
        "Caf\u00e9.jpg": jpeg + b"nfc",
        ("x" * 251 + ".jpg"): jpeg + b"long1",
        ("sub/" + "x" * 251 + ".jpg"): jpeg + b"long2",
    }
    for name, data in good.items():
        (inbox / name).parent.mkdir(exist_ok=True)
        (inbox / name).write_bytes(data)

    p.wait_protected(len(good), timeout=60)
    time.sleep(4)  # several rescans: a refusal is told once, not once per scan
    skipped = collections.Counter(e["path"] for e in p.events("file_skipped"))
    assert {n: 1 for n in refused} == {n: skipped[n] for n in refused}
    for event in p.events("file_skipped"):
        assert refused[event["path"]] in event["reason"], event
    too_long = [e for e in p.events("folder_unreadable") if "File name too long" in e["error"]]
    assert 1 == len(too_long), p.events("folder_unreadable")
    assert os.fsdecode(deep).split("/")[0] in too_long[0]["path"]
    [unseen] = [e for e in p.events("file_unreadable") if "File name too long" in e["error"]]
    assert unseen["path"].endswith(os.fsdecode(past)), unseen  # (once, at every rescan)

    held = target_files(lib)
    assert sorted(sha256(inbox / n) for n in good) == sorted(held.values())
    assert_target_holds(lib, held)
    assert not any("secret" in k or "elsewhere" in k for k in held)
    ours = {lib, inbox, outside, samples, setup.home / "state", setup.home / "log"}
    made = {  # (os.walk passes over what the kernel cannot reach: the deep folders)
        Path(folder, name).relative_to(setup.home).as_posix()
        for folder, _, names in os.walk(setup.home)
        if not ours & {Path(folder), *Path(folder).parents}
        for name in names
    }
    assert {"photod.toml", "photod.out", "notify.sock", "run/photod/control.sock"} == made
    # Every thread lives: the daemon still pings systemd's watchdog.
    notify.settimeout(12)
    wait_for(lambda: notify.recv(4096).startswith(b"WATCHDOG=1"), 15, "a WATCHDOG ping")
    notify.close()
    assert 0 == p.stop()


def test_link_loops_in_a_polled_folder_are_refused_and_the_photos_beside_them_kept(
    setup: Setup, samples: Path
) -> None:
    """A watch folder that is polled (`poll = true`, as on a network share): two links
    to "." and one to "/" in it.  The daemon starts, refuses each link once, and backs
    up the photo beside them.  (watchdog's own poller followed them: a walk without end
    that grew the daemon until it died, before it said it had started.)"""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0},
                     daemon='rescan_interval = "1s"')  # fmt: skip
    p.config.write_text(
        p.config.read_text().replace('type = "folder"', 'type = "folder"\npoll = true')
    )
    for name, to in (("a", "."), ("b", "."), ("root", "/")):
        (setup.inbox / name).symlink_to(to, target_is_directory=True)
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "photo.jpg")
    p.start()
    p.wait_protected(1, timeout=30)
    time.sleep(3)  # polls and rescans
    skipped = collections.Counter(e["path"] for e in p.events("file_skipped"))
    assert {"a": 1, "b": 1, "root": 1} == dict(skipped)
    assert {"photo.jpg": sha256(samples / "jpg_Canon_40D.jpg")} == {
        q.name: sha for q, sha in ((lib / k, v) for k, v in target_files(lib).items())
    }
    assert 0 == p.stop()


def test_a_read_error_from_a_failing_disk_is_one_event_and_a_retry(
    setup: Setup, samples: Path
) -> None:
    """The watch folder's disk fails as a photo is copied (EIO): one `ingest_failed`
    with the error, no traceback, the daemon goes on, and the next scan takes the
    photo whole."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0},
                     daemon='rescan_interval = "1s"')  # fmt: skip
    p.env["PHOTOD_FAILPOINTS"] = "ingest_storing=1:eio"
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "photo.jpg")
    p.start()
    p.wait_protected(1, timeout=30)
    [failed] = p.events("ingest_failed")
    assert "Input/output error" == failed["error"] and "next scan" in failed["detail"]
    assert {sha256(setup.inbox / "photo.jpg")} == set(target_files(lib).values())
    assert 0 == p.stop()
    assert "Traceback" not in p.output.read_text()


def test_a_file_that_is_not_a_photo_is_one_file_skipped_told_once(
    setup: Setup, samples: Path
) -> None:
    """A .txt (or any file that is neither a photo, a video nor a sidecar) in a watch
    folder is left alone, as the README says, and that is one `file_skipped` with the
    reason, not one per rescan; a photo beside it is backed up."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0},
                     daemon='rescan_interval = "1s"')  # fmt: skip
    p.start()
    (setup.inbox / "notes.txt").write_text("shopping list\n")
    shutil.copy(samples / "jpg_Canon_40D.jpg", setup.inbox / "photo.jpg")
    p.wait_protected(1)
    [skipped] = p.wait_event("file_skipped", path="notes.txt")
    assert "not a photo, video or sidecar" in skipped["reason"]
    time.sleep(3)  # rescans
    assert 1 == len([e for e in p.events("file_skipped") if e["path"] == "notes.txt"])
    assert ["photo.jpg"] == [
        q.name for q in lib.rglob("*") if q.is_file() and ".photod" not in q.parts
    ]
    assert 0 == p.stop()


def test_a_photo_whose_suffixed_name_another_file_has_is_backed_up_under_a_longer_one(
    setup: Setup, samples: Path
) -> None:
    """Two photos named IMG_0001.JPG on one day: the second wants its suffixed name,
    IMG_0001~<its hash>.JPG, and a third file already has that name (a photod tree
    copied back into a watch folder, one of its photos edited since).  The second is
    filed under IMG_0001~<hash>~<hash>.JPG and counted; it was a traceback (FOREIGN KEY
    constraint failed) at every scan, its copy left unrecorded on the target, and the
    run said every photo protected (exit 0) without it."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}], {"copies": 1, "media": 1, "offsite": 0})
    jpeg = (samples / "jpg_Canon_40D.jpg").read_bytes()
    second = jpeg + b"second"
    mark = hashlib.sha256(second).hexdigest()[:8]
    (setup.inbox / "old").mkdir()
    (setup.inbox / "old" / "IMG_0001.JPG").write_bytes(jpeg + b"first")
    (setup.inbox / "old" / f"IMG_0001~{mark}.JPG").write_bytes(jpeg + b"edited")
    assert 0 == p.cli("run", "--once").returncode
    (setup.inbox / "new").mkdir()
    (setup.inbox / "new" / "IMG_0001.JPG").write_bytes(second)
    r = p.cli("run", "--once")
    assert 0 == r.returncode and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "All 3 photos and videos are protected" in r.stdout, r.stdout
    day = "2008/2008-05-30"
    assert (
        hashlib.sha256(second).hexdigest() == target_files(lib)[f"{day}/IMG_0001~{mark}~{mark}.JPG"]
    )
    assert 3 == p.status()["assets"]
