"""One contract, every target kind: atomic publish, read-back check, no overwrite."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from photod import failpoints
from photod.errors import ChecksumMismatch, KeyExists, PhotodError, TargetUnavailable
from photod.media import suffixed
from photod.models import ManifestEntry, VerifyMethod
from photod.targets import rclone as rclone_target
from photod.targets.agekeygen import keygen
from photod.targets.base import Identity, hash_object, holds
from photod.targets.crypt import CryptTarget, sidecar
from photod.targets.cryptkeys import Keys
from photod.targets.local import LocalTarget
from photod.targets.memory import MemoryTarget
from photod.targets.rclone import FOREIGN_TEMP_AGE, RcloneTarget
from photod.targets.rclonerival import STAND_IN, name_tag
from photod.targets.records import Ledger, index_line
from photod.targets.s3 import S3Target
from tests.conftest import wait_for
from tests.servers import (
    ACCESS_KEY,
    BUCKET,
    SECRET_KEY,
    DamagingProxy,
    FaultProxy,
    S3Server,
    SSHServer,
    ThrottlingServer,
)

DATA = b"photo bytes " * 100_000
SHA = hashlib.sha256(DATA).hexdigest()
KINDS = ["memory", "local", "s3", "rclone-sftp", "rclone-local", "rclone-s3"]


@dataclass
class Kind:
    """A target under test, and how to take its connection away and give it back."""

    target: Any
    cut: Callable[[], None]
    heal: Callable[[], None]
    raw: Callable[[], list[str]] = field(default=lambda: [])  # object names as stored
    folder: Path | None = None  # where they are stored, where that is a folder here


def s3_target(
    server: S3Server, prefix: str, credentials: Path, endpoint: str = "", owner: str = ""
) -> S3Target:
    return S3Target(
        "s3", BUCKET, prefix, endpoint or server.endpoint, credentials_file=credentials,
        part_size=5 * 1024**2, timeout=5, owner=owner, part_retry=1.0,
    )  # fmt: skip


def make_kind(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Kind:
    if kind == "memory":
        m = MemoryTarget("m")

        def cut() -> None:
            m.available = False

        def heal() -> None:
            m.available = True

        return Kind(m, cut, heal, lambda: sorted(m.objects))
    if kind == "local":
        root = tmp_path / "root"
        away = tmp_path / "unplugged"
        return Kind(
            LocalTarget("l", root, creates_root=True),
            lambda: root.rename(away),  # the drive goes: writes in flight cannot land
            lambda: away.rename(root),
            lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
            root,
        )
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        if not server.running():
            server.start()
        prefix = f"t{abs(hash((request.node.nodeid, str(tmp_path))))}"
        folder = server.root / BUCKET / prefix
        return Kind(
            s3_target(server, prefix, server.credentials(tmp_path / "aws-credentials")),
            server.stop,  # killed mid-upload: no goodbye to the client
            server.start,
            lambda: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
            folder,  # (rclone serve s3 keeps an object's `mtime` metadata as its file time)
        )
    if kind == "rclone-s3":  # (a bucket store: each photo straight to its name)
        server = request.getfixturevalue("s3_server")
        if not server.running():
            server.start()
        folder = server.root / BUCKET / tmp_path.name
        return Kind(
            rclone_s3_target(server.endpoint, tmp_path),
            server.stop,
            server.start,
            lambda: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
            folder,
        )
    if kind == "rclone-sftp":
        ssh: SSHServer = request.getfixturevalue("ssh_server")
        if not ssh.running():
            ssh.start()
        conf = RcloneTarget.write_inline_config(
            tmp_path / "rclone.conf", "box:", ssh.rclone_config()
        )
        folder = tmp_path / "sftp-files"
        return Kind(
            RcloneTarget("r", f"box:{folder}", conf, timeout=5),
            ssh.stop,
            ssh.start,
            lambda: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        )
    folder = tmp_path / "rclone-dir"
    folder.mkdir()
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "dir:", {"type": "local"})
    away = tmp_path / "rclone-away"

    def cut() -> None:  # rclone makes missing folders: put a file in the folder's place
        folder.rename(away)
        while True:
            try:
                folder.touch(exist_ok=False)
                return
            except (FileExistsError, IsADirectoryError):
                # The upload in flight made the folder again in the moment between: what
                # it wrote there is gone with the "drive", as it would be.
                shutil.rmtree(folder, ignore_errors=True)

    def heal() -> None:
        folder.unlink()
        away.rename(folder)

    return Kind(
        RcloneTarget("r", f"dir:{folder}", conf),
        cut,
        heal,
        lambda: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
    )


@pytest.fixture(params=[(k, enc) for k in KINDS for enc in (False, True)],
                ids=[f"{k}{'-encrypted' if enc else ''}" for k in KINDS for enc in (False, True)])  # fmt: skip
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    name, encrypted = request.param
    k = make_kind(name, request, tmp_path)
    if encrypted:
        keygen(tmp_path / "identity.txt")
        k.target = CryptTarget(k.target, Keys(tmp_path / "identity.txt"))
    if name not in ("memory", "local"):
        # A target in use has its id: the claims that settle a new object store's id
        # take seconds, and have a test of their own.
        k.target.put_meta("target.json", json.dumps({"id": f"t-{name}"}).encode())
    k.target.check(None)
    yield k
    k.target.close()


@pytest.fixture
def target(kind: Kind) -> Any:
    return kind.target


def local_rclone(tmp_path: Path, folder: Path, **kw: Any) -> RcloneTarget:
    """An rclone target over an inline remote of rclone's own local backend."""
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "dir:", {"type": "local"})
    return RcloneTarget("r", f"dir:{folder}", conf, **kw)


def put(target: Any, key: str, data: bytes = DATA) -> VerifyMethod:
    w = target.open_writer(key)
    for i in range(0, len(data), 65536):
        w.write(data[i : i + 65536])
    method: VerifyMethod = w.commit(key, hashlib.sha256(data).hexdigest())
    return method


def test_put_then_read_back(target: Any) -> None:
    """What is committed reads back byte for byte under its key, and is listed."""
    put(target, "2024/2024-01-02/IMG_1.HEIC")
    assert SHA == hash_object(target, "2024/2024-01-02/IMG_1.HEIC")
    assert len(DATA) == target.size("2024/2024-01-02/IMG_1.HEIC")
    assert ["2024/2024-01-02/IMG_1.HEIC"] == list(target.keys())
    # One listing gives every key with its stored size (not for an encrypted target,
    # whose stored size is the ciphertext's).
    size = None if isinstance(target, CryptTarget) else len(DATA)
    assert [("2024/2024-01-02/IMG_1.HEIC", size)] == list(target.listing())


def test_a_writer_aborted_before_its_first_byte_leaves_nothing(kind: Kind) -> None:
    """A copy that cannot start (its source unreadable) aborts a writer that never
    wrote: nothing reaches the target, not even an encrypted file's header."""
    before = kind.raw()
    kind.target.open_writer("a/c.jpg").abort()
    time.sleep(0.3)
    assert before == kind.raw()


def test_nothing_visible_before_commit(target: Any) -> None:
    """Bytes being written are not visible under the key, nor listed; abort leaves nothing."""
    w = target.open_writer("a/b.jpg")
    w.write(DATA)
    assert (None, []) == (target.size("a/b.jpg"), list(target.keys()))
    w.abort()
    assert [] == list(target.keys())


def test_opening_a_writer_puts_nothing_on_the_target(kind: Kind) -> None:
    """A writer's temporary is recorded in the catalog after it is opened and before
    its first byte: a process killed in between must leave nothing on the target that
    the next start does not know to remove, so opening a writer stores nothing."""
    before = kind.raw()
    w = kind.target.open_writer("a/b.jpg")
    time.sleep(0.5)  # an upload begun at once would have reached the remote by now
    assert before == kind.raw()
    w.write(DATA)
    w.abort()
    assert before == kind.raw()


def test_never_overwrites(target: Any) -> None:
    """Committing over an existing key raises KeyExists and leaves the old bytes."""
    put(target, "x.jpg", b"first")
    w = target.open_writer("x.jpg")
    w.write(DATA)
    with pytest.raises(KeyExists):
        w.commit("x.jpg", SHA)
    w.commit("x~other.jpg", SHA)  # the writer stays usable under another key
    with target.open("x.jpg") as f:
        assert b"first" == f.read()
    assert SHA == hash_object(target, "x~other.jpg")


def test_checksum_mismatch_publishes_nothing(target: Any) -> None:
    """If the bytes read back do not match the expected hash, nothing is published."""
    w = target.open_writer("bad.jpg")
    w.write(DATA)
    with pytest.raises(ChecksumMismatch):
        w.commit("bad.jpg", "0" * 64)
    assert [] == list(target.keys())


def test_a_sidecar_beside_an_original_is_replaced_whole_and_the_original_never(
    kind: Kind,
) -> None:
    """``put_beside`` keeps metadata at ``KEY.xmp`` and replaces it atomically when
    the facts change; the original is untouched.  A plain target shows it beside the
    original for other tools; an encrypted one seals it and lists only the original."""
    t = kind.target
    key = "2024/2024-01-02/IMG_1.HEIC"
    put(t, key)
    assert None is t.get_beside(key + ".xmp")
    assert t.put_beside(key + ".xmp", b"<x:xmpmeta>first</x:xmpmeta>", replace=False)
    t.put_beside(key + ".xmp", b"<x:xmpmeta>starred</x:xmpmeta>", replace=True)
    assert b"<x:xmpmeta>starred</x:xmpmeta>" == t.get_beside(key + ".xmp")
    # Not asked to replace (photod never wrote one there): what is there stays.
    if not isinstance(t, CryptTarget):
        put(t, "2024/2024-01-02/IMG_2.HEIC.xmp", b"someone's own file")
        assert not t.put_beside("2024/2024-01-02/IMG_2.HEIC.xmp", b"<x/>", replace=False)
        with t.open("2024/2024-01-02/IMG_2.HEIC.xmp") as f:
            assert b"someone's own file" == f.read()
        t.discard("2024/2024-01-02/IMG_2.HEIC.xmp")
    assert SHA == hash_object(t, key)
    raw = " ".join(kind.raw())
    if isinstance(t, CryptTarget):
        assert [key] == list(t.keys())
        assert "IMG_1" not in raw
        (sealed,) = t.inner.list_meta("beside")
        stored = t.inner.get_meta(sealed)
        assert stored.startswith(b"age-encryption.org/v1") and b"starred" not in stored
        assert "IMG_1" not in sealed
    else:
        assert [key, key + ".xmp"] == list(t.keys())
        if not isinstance(t, MemoryTarget):
            assert ".photod-" not in raw  # no temporary left beside it


def test_a_list_grows_by_whole_segments_and_reads_back(target: Any) -> None:
    """An installation's list is written as whole segments in its own folder, and
    reads back every entry (size, capture and file time where the format keeps them:
    the encrypted index does); another installation's list beside it is its own."""
    me = Ledger(target, "installations/laptop.aaaaaaaaaaaa")
    other = Ledger(target, "installations/desk.bbbbbbbbbbbb")
    entries = [
        ManifestEntry("a" * 64, "2024/x.jpg", 5, "2024-01-02T03:04:05", 1_700_000_000_123_456_789),
        ManifestEntry("b" * 64, "2024/y y.jpg", 6, "", None),
    ]
    me.append(entries[:1])
    assert [] == me.segments()  # buffered until flushed
    me.flush()
    me.append(entries[1:])
    me.flush()
    other.append([ManifestEntry("c" * 64, "2025/z.jpg", 7)])
    other.flush()
    assert 2 == len(me.segments()) and 1 == len(other.segments())
    got = sorted(me.entries(), key=lambda e: e.key)
    if target.encrypted:
        assert entries == got
    else:
        assert [(e.sha256, e.key) for e in entries] == [(e.sha256, e.key) for e in got]
    assert ["c" * 64] == [e.sha256 for e in other.entries()]


def test_compaction_merges_only_its_own_segments(target: Any) -> None:
    """Compaction merges an installation's segments into one, drops duplicates and
    only the keys it is told are gone, and leaves another installation's alone."""
    me = Ledger(target, "installations/laptop.aaaaaaaaaaaa")
    other = Ledger(target, "installations/desk.bbbbbbbbbbbb")
    for i in range(3):
        me.append([ManifestEntry(f"{i}" * 64, f"k{i}.jpg"), ManifestEntry("9" * 64, "same.jpg")])
        me.flush()
        other.append([ManifestEntry(f"{i}" * 64, f"o{i}.jpg")])
        other.flush()
    done = me.compact(me.segments(), drop=frozenset({"k1.jpg"}))
    assert done is not None
    assert [done[0]] == me.segments()
    assert ["k0.jpg", "k2.jpg", "same.jpg"] == sorted(e.key for e in me.entries())
    assert 3 == len(other.segments())
    assert ["o0.jpg", "o1.jpg", "o2.jpg"] == sorted(e.key for e in other.entries())


def test_create_meta_writes_once(target: Any) -> None:
    """create_meta writes a file only where none is: the second writer is told so
    and the first one's bytes stay."""
    assert target.create_meta("RECOVERY.md", b"first")
    assert not target.create_meta("RECOVERY.md", b"second")
    assert b"first" == target.get_meta("RECOVERY.md")


def test_discard_moves_a_bad_object_aside(kind: Kind) -> None:
    """discard takes an object out of its key (which a good copy can then take) and
    keeps the bytes under .photod/quarantine/; other objects are untouched; a key that
    is already gone is no error."""
    t = kind.target
    put(t, "2024/bad.jpg", b"rotten bytes")
    put(t, "2024/good.jpg")
    t.discard("2024/bad.jpg")
    assert ["2024/good.jpg"] == list(t.keys())
    assert SHA == hash_object(t, "2024/good.jpg")
    put(t, "2024/bad.jpg")  # the key is free for the repair
    assert SHA == hash_object(t, "2024/bad.jpg")
    assert any("quarantine" in name for name in kind.raw() + _meta_names(t))
    t.discard("2024/never-there.jpg")


def _meta_names(t: Any) -> list[str]:
    inner = t.inner if isinstance(t, CryptTarget) else t
    return list(inner.meta) if isinstance(inner, MemoryTarget) else []


def test_private_files_are_sealed_on_encrypted_targets(kind: Kind) -> None:
    """put_private/get_private round-trip (the catalog snapshot); on an encrypted
    target the stored bytes are an age file, not the plaintext."""
    t = kind.target
    secret = b"SQLite format 3\x00 catalog of every photo"
    t.put_private("catalog.sqlite.gz", secret)
    assert secret == t.get_private("catalog.sqlite.gz")
    assert None is t.get_private("nothing-here")
    stored = (t.inner if isinstance(t, CryptTarget) else t).get_meta("catalog.sqlite.gz")
    if isinstance(t, CryptTarget):
        assert stored.startswith(b"age-encryption.org/v1") and secret not in stored
    else:
        assert secret == stored


class _Failing(io.RawIOBase):
    """A file that cannot be read past its first ``good`` bytes (a disk error)."""

    def __init__(self, data: bytes, good: int) -> None:
        self.src, self.good = io.BytesIO(data), good

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.src.tell() >= self.good:
            raise OSError(5, "Input/output error")
        data = self.src.read(min(len(buf), self.good - self.src.tell()))
        buf[: len(data)] = data
        return len(data)


def test_a_large_private_file_goes_whole_through_a_writer_and_streams_back(kind: Kind) -> None:
    """The catalog snapshot (hundreds of MB for a large library) is put from a file and
    read back as a stream, sealed on an encrypted target; one whose reading fails half
    way is not there at all, and leaves no temporary (it was one bytes object held
    whole, twice over while it was sealed)."""
    t = kind.target
    big = os.urandom(3 * 1024 * 1024) + b"SQLite format 3\x00" * 200_000  # several parts
    name = "installations/x/snapshots/0000000001-0000000001.sqlite.gz"
    before = kind.raw()
    t.put_private_file(name, io.BytesIO(big))
    with t.open_private(name) as f:
        assert big == f.read()
    stored = (t.inner if isinstance(t, CryptTarget) else t).get_meta(name)
    assert (isinstance(t, CryptTarget)) == stored.startswith(b"age-encryption.org/v1")
    with pytest.raises(FileNotFoundError):
        t.open_private("installations/x/snapshots/none.sqlite.gz")
    broken = "installations/x/snapshots/0000000002-0000000001.sqlite.gz"
    with pytest.raises((OSError, PhotodError)):
        t.put_private_file(broken, _Failing(big, 6 * 1024 * 1024))
    assert None is t.get_private(broken)
    assert [name] == [n for n in t.list_meta("installations/x") if "snapshots" in n]
    if not isinstance(kind.target, MemoryTarget):
        left = [n for n in kind.raw() if n not in before and (".photod-" in n or "/tmp/" in n)]
        assert [] == left


def test_cut_connection_mid_upload_counts_nothing_and_retry_completes(kind: Kind) -> None:
    """The server (or drive) goes away half way through an upload: the write or the
    commit fails with TargetUnavailable, nothing appears under the key, the temporary
    is cleaned once it is back, and the same upload then completes."""
    t = kind.target
    big = DATA * 12  # 14 MB: several parts of a multipart upload on S3
    w = t.open_writer("2024/movie.MOV")
    w.write(big[: len(big) // 2])
    kind.cut()
    with pytest.raises(PhotodError):
        for i in range(len(big) // 2, len(big), 1 << 20):
            w.write(big[i : i + (1 << 20)])
        w.commit("2024/movie.MOV", hashlib.sha256(big).hexdigest())
    w.abort()
    kind.heal()
    t.check(None)
    t.delete_temp(w.temp_key)
    assert [] == list(t.keys())
    put(t, "2024/movie.MOV", big)
    assert hashlib.sha256(big).hexdigest() == hash_object(t, "2024/movie.MOV")
    assert ["2024/movie.MOV"] == list(t.keys())


@pytest.mark.parametrize("name", KINDS)
def test_encrypted_names_and_listing_leak_nothing(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On an encrypted target the stored names show no file name, date, folder or
    hash; still the target lists and reads back the original keys."""
    kind = make_kind(name, request, tmp_path)
    keygen(tmp_path / "identity.txt")
    kind.target = CryptTarget(kind.target, Keys(tmp_path / "identity.txt"))
    try:
        kind.target.check(None)
        put(kind.target, "2024/2024-05-06/IMG_4242.HEIC")
        raw = " ".join(kind.raw())
        assert SHA not in raw and SHA[:16] not in raw
        # (a random hex name holds "2024" once in a few thousand: not a date)
        words = re.sub(r"[0-9a-f]{32,}", "", raw)
        for secret in ("IMG_4242", "HEIC", "2024", "05-06"):
            assert secret not in words
        assert ["2024/2024-05-06/IMG_4242.HEIC"] == list(kind.target.keys())
        assert SHA == hash_object(kind.target, "2024/2024-05-06/IMG_4242.HEIC")
        # A target that learned nothing (every index lost) still knows the object, from
        # the index line sealed beside it: its key, size and times.
        fresh = CryptTarget(kind.target.inner, Keys(tmp_path / "identity.txt"))
        assert [("2024/2024-05-06/IMG_4242.HEIC", None)] == list(fresh.listing())
        assert len(DATA) == fresh.size("2024/2024-05-06/IMG_4242.HEIC")
    finally:
        kind.target.close()


def test_a_record_this_key_cannot_open_says_whether_it_is_damaged_or_sealed_to_another(
    tmp_path: Path,
) -> None:
    """A sealed record that does not open was always called damaged, though most often
    it is whole and sealed to another identity (the key replaced): a person would go
    looking for a failing disk. age tells the two apart, and so does the reason."""
    keygen(tmp_path / "a.txt")
    keygen(tmp_path / "b.txt")
    inner = MemoryTarget("m")
    CryptTarget(inner, Keys(tmp_path / "a.txt")).put_private("index/one", b"a list")
    with pytest.raises(PhotodError) as other:
        CryptTarget(inner, Keys(tmp_path / "b.txt")).get_private("index/one")
    assert str(other.value).endswith(
        "(sealed to another identity: this key is not one it was sealed to)"
    )
    sealed = bytearray(inner.get_meta("index/one") or b"")
    sealed[-3] ^= 1
    inner.put_meta("index/one", bytes(sealed))
    with pytest.raises(PhotodError) as damaged:
        CryptTarget(inner, Keys(tmp_path / "a.txt")).get_private("index/one")
    assert str(damaged.value).endswith("(the object is damaged)")


@pytest.mark.parametrize("name", ["local", "s3"])
def test_a_plain_copy_keeps_its_photos_file_time_and_an_encrypted_one_shows_none(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The file time is a photo without EXIF's only date. A plain copy keeps it: a
    local file as its own time, an S3 object as its `mtime` metadata (as rclone keeps
    it, so `rclone copy` gives it back), read back by a restore. An encrypted copy
    keeps it only in its sealed index line: no stored file shows it (a local
    encrypted object was given it as its file time, in plain sight on the drive)."""
    when = 1433160000 * 10**9 + 123456789  # 2015-06-01 12:00 UTC
    key = "2015/2015-06-01/IMG_0001.PNG"
    (tmp_path / "plain").mkdir()
    plain = make_kind(name, request, tmp_path / "plain")
    plain.target.check(None)
    w = plain.target.open_writer(key)
    w.write(DATA)
    w.commit(key, SHA, when)
    with plain.target.open(key) as f:
        kept = os.fstat(f.fileno()).st_mtime_ns if name == "local" else f.file_time()
    assert when == kept

    (tmp_path / "sealed").mkdir()
    kind = make_kind(name, request, tmp_path / "sealed")
    keygen(tmp_path / "identity.txt")
    sealed = CryptTarget(kind.target, Keys(tmp_path / "identity.txt"))
    try:
        sealed.check(None)
        w = sealed.open_writer(key)
        w.write(DATA)
        w.commit(key, SHA, when)
        assert kind.folder is not None
        stored = [p for p in kind.folder.rglob("*") if p.is_file()]
        assert stored
        for p in stored:
            assert abs(p.stat().st_mtime_ns - when) > 86400 * 10**9, p
        fresh = CryptTarget(kind.target, Keys(tmp_path / "identity.txt"))
        assert when == fresh.file_time(key)  # (the sealed line keeps it)
    finally:
        sealed.close()


# -- remote specifics: credentials and throttling -----------------------------------------


def test_s3_a_name_another_computer_took_this_minute_is_not_written_over(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Two computers of a family on one prefix: this one's listing of a folder (less
    than a minute old) says a name is free; the other then publishes a photo under it.
    `rclone serve s3` lets a PUT replace an object whatever If-None-Match says (which
    photod learns once, with an object of its own), so this one's upload asks the
    object itself first and goes beside it: the other's photo stays.  Its probe is
    gone, and so is one a killed process of this installation left; the other
    computer's is its own to remove."""
    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    prefix = f"fam-{tmp_path.name}"
    mine = s3_target(s3_server, prefix, creds, owner="0123456789ab")
    theirs = s3_target(s3_server, prefix, creds, owner="ba9876543210")
    assert not mine.exists("2024/x.jpg")  # listed: free
    put(theirs, "2024/x.jpg", b"theirs")
    mine._put(".photod/tmp/probe-0123456789ab-0123456789abcdef", b"")  # killed: ours
    theirs._put(".photod/tmp/probe-ba9876543210-0123456789abcdef", b"")  # theirs
    assert mine.refuses_overwrites() is False
    w = mine.open_writer("2024/x.jpg")
    w.write(DATA)
    with pytest.raises(KeyExists):
        w.commit("2024/x.jpg", SHA)
    w.commit("2024/x~mine.jpg", SHA)
    with theirs.open("2024/x.jpg") as f:
        assert b"theirs" == f.read()
    stored = [p.name for p in (s3_server.root / BUCKET / prefix).rglob("*") if p.is_file()]
    assert sorted(stored) == ["probe-ba9876543210-0123456789abcdef", "x.jpg", "x~mine.jpg"]


def test_s3_folder_listings_past_their_minute_are_not_kept(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon up for a year asks whether a name is taken in one folder after another
    (a folder a day): a listing answers for a minute, and one past it is dropped as the
    next is made, so memory holds the folders of the last minute, not of the year."""
    import photod.targets.s3 as s3

    if not s3_server.running():
        s3_server.start()
    t = s3_target(s3_server, f"days-{tmp_path.name}", s3_server.credentials(tmp_path / "c"))
    monkeypatch.setattr(s3, "LISTING_TTL", 0.0)  # every listing is past its minute at once
    for day in range(1, 101):
        assert not t.exists(f"2026/2026-{1 + day // 29:02d}-{1 + day % 29:02d}/IMG_0001.JPG")
    assert len(t._listings) == 1  # the last folder's (100 before)


def test_rclone_rcds_log_is_kept_to_its_last_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rcd says each failed request in its log, in the temporary folder: a remote away
    for months, asked once a minute, would grow it for as long as photod runs.  Past
    LOG_MAX its tail is kept, and what rcd said last is still there to quote."""
    import photod.targets.rcd as rcd

    monkeypatch.setattr(rcd, "LOG_MAX", 4096, raising=False)
    monkeypatch.setattr(rcd, "LOG_KEPT", 1024, raising=False)
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "dir:", {"type": "local"})
    t = RcloneTarget("r", f"dir:{tmp_path / 'away'}", conf)
    try:
        for i in range(100):  # two lines each: "error listing: directory not found"
            assert {} == t.call("operations/list", missing_ok=True, fs="dir:", remote=f"no{i}")
        assert t.rcd.folder is not None
        log = Path(t.rcd.folder) / "rcd.log"
        assert log.stat().st_size <= 4096 + 1024  # (15 KB before)
        assert "no99" in log.read_text()
    finally:
        t.close()


@pytest.mark.parametrize("during", ["check", "upload"])
def test_a_hung_rclone_rcd_is_replaced_and_the_target_works_again(
    tmp_path: Path, during: str
) -> None:
    """rcd stops answering (stopped, deadlocked) while the remote is fine: the request
    that waited out its timeout says rcd hung, that rcd is ended, and the next request
    gets a fresh one: the target works again without a restart of photod (every request
    waited out its timeout, for as long as photod ran)."""
    import signal

    import psutil

    folder = tmp_path / "remote"
    t = local_rclone(tmp_path, folder, timeout=1, owner="me")  # (requests: 4 s)
    try:
        t.put_meta("target.json", json.dumps({"id": "t"}).encode())
        t.check(None)
        assert t.rcd.proc is not None
        hung = t.rcd.proc.pid
        os.kill(hung, signal.SIGSTOP)
        wait_for(lambda: psutil.Process(hung).status() == psutil.STATUS_STOPPED, 5, "stopped")
        with pytest.raises(TargetUnavailable, match="hung"):
            if during == "check":
                t.check(None)
            else:
                put(t, "2024/IMG_1.HEIC", os.urandom(4 * 1024 * 1024))
        t.check(None)
        put(t, "2024/IMG_2.HEIC")
        assert SHA == hash_object(t, "2024/IMG_2.HEIC")
        assert t.rcd.proc is not None and t.rcd.proc.pid != hung
        assert not psutil.pid_exists(hung)  # ended and reaped, not left stopped
    finally:
        t.close()


def test_a_download_from_an_rclone_rcd_that_dies_mid_read_is_an_error_not_a_short_file(
    tmp_path: Path,
) -> None:
    """rcd killed (or replaced as hung) while a photo is read from it: the read says it
    was cut off.  It ended as a short file, quietly: an encrypted photo's object read
    so then failed to decrypt, taken for another photo's (its line removed, the photo
    sent again beside it), and a plain one hashed as a damaged copy."""
    import signal

    t = local_rclone(tmp_path, tmp_path / "remote", owner="me")
    try:
        t.put_meta("target.json", json.dumps({"id": "t"}).encode())
        t.check(None)
        big = os.urandom(32 * 1024 * 1024)
        put(t, "2024/IMG_1.MOV", big)
        got = 0
        with pytest.raises(OSError, match="cut off"), t.open("2024/IMG_1.MOV") as f:
            got += len(f.read(65536))
            assert t.rcd.proc is not None
            os.kill(t.rcd.proc.pid, signal.SIGKILL)
            while chunk := f.read(1024 * 1024):
                got += len(chunk)
        assert got < len(big)
    finally:
        t.close()


@pytest.mark.parametrize("honours", [True, False], ids=["honours", "ignores"])
def test_s3_two_computers_probing_at_once_each_learn_what_the_server_does(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, honours: bool
) -> None:
    """Two computers of a family start on one prefix at the same moment, and each
    learns whether the server refuses a PUT over an object with a probe object of its
    own.  The other's whole probe runs between this one's two PUTs: it removes its own
    object, not this one's, so where the server refuses (AWS S3, MinIO: a proxy that
    refuses as they do, in front of `rclone serve s3`) both learn that it refuses (this
    one learned "ignored", its object gone, and asked each name with a HEAD for the
    rest of its run), and where it does not (`rclone serve s3` itself) neither learns
    that it refuses: the overwrite of another computer's photo.  Both probes are gone."""
    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint, honours=s3_server.root if honours else None)
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    prefix = f"both-{tmp_path.name}"
    mine = s3_target(s3_server, prefix, creds, proxy.endpoint, owner="0123456789ab")
    theirs = s3_target(s3_server, prefix, creds, proxy.endpoint, owner="ba9876543210")
    between, go = threading.Event(), threading.Event()
    hit = failpoints.hit

    def held(name: str) -> None:  # this computer's probe waits between its two PUTs
        if name == "s3_probed" and threading.current_thread().name == "mine":
            between.set()
            go.wait(30)
        hit(name)

    monkeypatch.setattr(failpoints, "hit", held)
    learned: list[bool | None] = []
    probing = threading.Thread(target=lambda: learned.append(mine.refuses_overwrites()),
                               name="mine")  # fmt: skip
    probing.start()
    try:
        assert between.wait(30), "this computer's probe never made its first PUT"
        assert theirs.refuses_overwrites() is honours
    finally:
        go.set()
        probing.join(30)
        proxy.stop()
    assert [honours] == learned
    assert [] == list(mine._list(".photod/tmp/"))


def _cutting(drops: list[int], cut: Any = "drop") -> Any:
    """A FaultProxy rule: the next ``drops[0]`` requests get ``cut`` (set it any time),
    the rest pass."""

    def rule(method: str, path: str, query: str) -> Any:
        if drops[0]:
            drops[0] -= 1
            return cut
        return "pass"

    return rule


@pytest.mark.parametrize("lost", ["every request", "one request", "a gateway's 502s"])
def test_s3_a_server_replaced_while_it_was_away_is_asked_again_before_any_overwrite(
    s3_server: S3Server, tmp_path: Path, lost: str
) -> None:
    """A NAS's S3 server refuses a PUT over an object (as MinIO does: a proxy that
    refuses as it does, in front of `rclone serve s3`), stops answering, and comes back
    at the same address as one that ignores it (`rclone serve s3` itself).  What the
    probe learned goes with the lost answer: the next upload asks again, and another
    computer's photo stored at the name meanwhile, which the folder's listing (a
    minute old at most) does not show yet, is found and never overwritten.  So too
    when the one request lost is a photo's own quick PUT, whose upload the client's
    call then finishes, and when a gateway in front answers 502 while the server behind
    it is replaced, botocore's own retry then passing (both went unseen: the reviews
    of 029ed34)."""
    if not s3_server.running():
        s3_server.start()
    drops = [0]
    cut = ("refuse", 502, "BadGateway") if lost == "a gateway's 502s" else "drop"
    proxy = FaultProxy(s3_server.endpoint, _cutting(drops, cut), honours=s3_server.root)
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    prefix = f"replaced-{tmp_path.name}"
    mine = s3_target(s3_server, prefix, creds, proxy.endpoint, owner="0123456789ab")
    theirs = s3_target(s3_server, prefix, creds, owner="ba9876543210")
    try:
        put(mine, "2024/a.jpg")
        assert mine.refuses_overwrites() is True
        assert not mine.exists("2024/b.jpg")  # (the folder's listing, kept a minute)
        if lost == "every request":
            drops[0] = 10**6
            with pytest.raises(TargetUnavailable):
                put(mine, "2024/c.jpg")
            proxy.honours, drops[0] = None, 0  # back, as a server that ignores it
        else:  # replaced, one request lost on the way (a 502 from both paths)
            proxy.honours, drops[0] = None, 1 if lost == "one request" else 2
            put(mine, "2024/c.jpg")  # (its quick PUT the one lost: the client's passes)
        put(theirs, "2024/b.jpg", b"another computer's photo")
        with pytest.raises(KeyExists):
            put(mine, "2024/b.jpg")
        assert b"another computer's photo" == mine._get("2024/b.jpg")
        assert mine.refuses_overwrites() is False
    finally:
        mine.close()
        theirs.close()
        proxy.stop()


@pytest.mark.parametrize("code", ["SlowDown", "SlowDownWrite", "RequestTimeout"])
def test_s3_a_server_shedding_load_keeps_what_its_probe_learned(
    s3_server: S3Server, tmp_path: Path, code: str
) -> None:
    """A server that sheds load answers a photo's PUT 503 (AWS S3's SlowDown under a
    burst; MinIO's SlowDownWrite when its drives lag, RequestTimeout when a lock waited
    too long), on photod's quick path and on the client's first try; the client's retry
    passes.  That 503 is the server's own answer, not a gateway's word that none came:
    whether it refuses an overwrite is not asked again (a probe is four requests more to
    a server asking for fewer, and one throttled in turn left each photo's PUT behind a
    HEAD for ten minutes, with a target_probe_failed warning)."""
    if not s3_server.running():
        s3_server.start()
    throttled = [0]

    def rule(method: str, path: str, query: str) -> Any:
        if throttled[0] and method == "PUT":
            throttled[0] -= 1
            return ("refuse", 503, code, "Please reduce your request rate.")
        return "pass"

    proxy = FaultProxy(s3_server.endpoint, rule, honours=s3_server.root)
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    t = s3_target(s3_server, f"shedding-{tmp_path.name}", creds, proxy.endpoint, owner="0123")
    try:
        put(t, "2024/a.jpg")
        assert t.refuses_overwrites() is True
        probes = [path for method, path in proxy.begun if "/probe-" in path]
        throttled[0] = 2  # (the quick PUT's and the client's first: its retry passes)
        put(t, "2024/b.jpg")
        assert 0 == throttled[0]
        assert t.refuses_overwrites() is True
        assert probes == [path for method, path in proxy.begun if "/probe-" in path]
    finally:
        t.close()
        proxy.stop()


def _cut_during_probes(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, FaultProxy]:
    """An S3 target behind a link that cuts another request of it between each
    overwrite probe's two PUTs (the client's own retry passes): each probe's answer is
    thrown away.  ``monkeypatch.undo()`` makes the link whole again."""
    if not s3_server.running():
        s3_server.start()
    drops = [0]
    proxy = FaultProxy(s3_server.endpoint, _cutting(drops), honours=s3_server.root)
    creds = s3_server.credentials(tmp_path / "aws-credentials")
    t = s3_target(s3_server, f"cut-{tmp_path.name}", creds, proxy.endpoint, owner="0123")
    hit = failpoints.hit

    def cut_meanwhile(name: str) -> None:
        if name == "s3_probed":
            drops[0] = 1
            t.object_size("2024/other.jpg")
        hit(name)

    monkeypatch.setattr(failpoints, "hit", cut_meanwhile)
    return t, proxy


def test_s3_a_probes_answer_thrown_away_for_a_request_cut_meanwhile_is_asked_at_the_next_upload(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the server refuses a PUT over an object is learned by a probe; another
    request of the target goes unanswered while it runs (its link cut; a stop's cut of
    the requests in flight), so its answer is not kept.  The next upload probes again
    and its PUT is itself the check that nothing is at the name: nothing failed to wait
    for, and it waited ten minutes, each photo's PUT behind a HEAD of its name."""
    t, proxy = _cut_during_probes(s3_server, tmp_path, monkeypatch)
    try:
        assert t.refuses_overwrites() is None  # (learned, and thrown away)
        monkeypatch.undo()  # (the link whole again)
        proxy.begun.clear()
        put(t, "2024/a.jpg")
        assert [p for m, p in proxy.begun if m == "PUT" and "/probe-" in p]  # asked again
        assert not [p for m, p in proxy.begun if m == "HEAD" and p.endswith("2024/a.jpg")]
        assert t.refuses_overwrites() is True
    finally:
        t.close()
        proxy.stop()


def test_s3_a_link_that_cuts_during_every_probe_is_probed_twice_then_in_a_while(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link that cuts a request during every overwrite probe (each answer thrown
    away): the rule is asked again once at the next upload, then not before
    PROBE_AGAIN, not at every upload (two PUTs, a listing and a DELETE a photo, billed)."""
    t, proxy = _cut_during_probes(s3_server, tmp_path, monkeypatch)
    try:
        for _ in range(5):
            assert t.refuses_overwrites() is None
        probes = {p for m, p in proxy.begun if m == "PUT" and "/probe-" in p}
        assert 2 == len(probes), probes
    finally:
        t.close()
        proxy.stop()


def test_s3_an_upload_completed_at_its_temporary_whose_answer_was_lost_leaves_nothing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A video's name is taken, so its multipart upload goes to a temporary object under
    ``.photod/tmp/``; the server completes it, but its answer is lost on the way back
    (the network drops).  The copy fails, and the aborted upload deletes the temporary
    all the same: no object is left on the server, out of every listing, billed for
    ever."""
    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        "forward_then_drop" if method == "POST" and "uploadId=" in query else "pass"))  # fmt: skip
    prefix = f"lost-{tmp_path.name}"
    t = s3_target(s3_server, prefix, s3_server.credentials(tmp_path / "c"), proxy.endpoint)
    try:
        t.check(None)
        put(t, "2024/v.mov", b"another video")
        big = DATA * 6  # 7.2 MB: two parts
        w = t.open_writer("2024/v.mov")
        w.write(big)
        with pytest.raises(TargetUnavailable):
            w.commit("2024/v~2.mov", hashlib.sha256(big).hexdigest())
        w.abort()
        stored = [p.relative_to(s3_server.root / BUCKET / prefix).as_posix()
                  for p in (s3_server.root / BUCKET / prefix).rglob("*") if p.is_file()]  # fmt: skip
        mine = [n for n in stored if n.startswith(".photod/tmp/") or ".photod/" not in n]
        assert ["2024/v.mov"] == mine  # (not the target's own marker and claims)
    finally:
        t.close()
        proxy.stop()


def test_s3_a_snapshot_upload_photod_was_killed_during_is_ended_by_the_next_snapshot(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A catalog snapshot goes up as a multipart upload, at its own name; photod killed
    during it leaves the upload open, out of every listing and billed for ever (no
    record of it is anywhere: the snapshot is not a copy in the catalog).  The next
    snapshot into this installation's folder ends it; another folder's stays."""
    if not s3_server.running():
        s3_server.start()
    t = s3_target(s3_server, f"killed-{tmp_path.name}", s3_server.credentials(tmp_path / "c"))
    try:
        t.check(None)
        mine, other = "installations/me.abababababab/snapshots", "installations/them.cd/snapshots"

        def left(folder: str) -> str:  # what a killed photod's upload is: begun, one part sent
            key = t.full(f".photod/{folder}/0000000001-0000000001.sqlite.gz")
            up = t.client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            t.client.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=DATA * 5)
            return key

        left(mine)
        theirs = left(other)
        t.put_private_file(f"{mine}/0000000002-0000000001.sqlite.gz", io.BytesIO(DATA * 6))
        open_now = t.client.list_multipart_uploads(Bucket=BUCKET, Prefix=t.full(".photod/"))
        assert [theirs] == [u["Key"] for u in open_now.get("Uploads", [])]
        with t.open_private(f"{mine}/0000000002-0000000001.sqlite.gz") as f:
            assert DATA * 6 == f.read()
    finally:
        t.close()


def test_s3_refused_credentials_are_a_clear_reason(s3_server: S3Server, tmp_path: Path) -> None:
    """A wrong secret makes the target unavailable with "credentials refused", not a
    crash or a stack trace."""
    bad = s3_server.credentials(tmp_path / "aws-credentials", secret="not-the-secret-at-all")
    with pytest.raises(TargetUnavailable, match="credentials refused"):
        s3_target(s3_server, "x", bad).check(None)


def _sftp_nas(ssh_server: SSHServer, tmp_path: Path) -> tuple[RcloneTarget, Path]:
    """An rclone target on the test's SFTP NAS (its folder there, named after the test)."""
    if not ssh_server.running():
        ssh_server.start()
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "box:",
                                            ssh_server.rclone_config())  # fmt: skip
    folder = ssh_server.files / tmp_path.name
    return RcloneTarget("r", f"box:{folder}", conf, timeout=5, owner="aaaa1111"), folder


def test_s3_credentials_fixed_in_their_file_are_used_by_the_next_build(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The targets built again (a reload, the next start in the same process) read the
    credentials file again: the secret fixed there is the one used, though what S3's
    API looks like is read once per process."""
    creds = s3_server.credentials(tmp_path / "aws-credentials", secret="not-the-secret-at-all")
    with pytest.raises(TargetUnavailable, match="credentials refused"):
        s3_target(s3_server, "x", creds).check(None)
    s3_server.credentials(creds)
    s3_target(s3_server, "x", creds).check(None)
    s3_server.credentials(creds, secret="not-the-secret-at-all")
    with pytest.raises(TargetUnavailable, match="credentials refused"):
        s3_target(s3_server, "x", creds).check(None)


def test_a_nas_off_between_a_records_upload_and_its_move_leaves_nothing_once_back(
    ssh_server: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record (a list segment, a catalog snapshot) is uploaded to an SFTP NAS under
    .photod/tmp/, and the NAS goes off before it is moved to its name: the write fails,
    and the next check that reaches the NAS again removes the temporary (it stayed
    there until photod was next started: months, for a daemon)."""
    t, folder = _sftp_nas(ssh_server, tmp_path)
    hit = failpoints.hit

    def nas_off(name: str) -> None:  # the NAS goes off once the record is uploaded
        if name == "rclone_uploaded":
            ssh_server.stop()
        hit(name)

    try:
        t.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
        t.check(None)
        monkeypatch.setattr(failpoints, "hit", nas_off)
        try:
            with pytest.raises(TargetUnavailable):
                t.put_meta("installations/x/sums/0001.sha256", b"0" * 64 + b"  a.jpg\n")
        finally:
            monkeypatch.setattr(failpoints, "hit", hit)
            ssh_server.start()
        assert [] != list((folder / ".photod" / "tmp").iterdir())  # (what it left)
        t.check(None)
        assert [] == list((folder / ".photod" / "tmp").iterdir())
        assert not (folder / ".photod" / "installations").exists()
    finally:
        t.close()


def _refused_when_damaged(
    monkeypatch: pytest.MonkeyPatch,
    folder: Path,
    upload: Callable[[], object],
    key: str = "",
    refused: type[PhotodError] = ChecksumMismatch,
) -> None:
    """``upload`` with a bit of its temporary (the one file in the remote ``folder``'s
    .photod/tmp/), or of its object at ``key`` where it went straight there, flipped on
    the server's disk once it is uploaded: refused (``refused``)."""
    hit = failpoints.hit

    def damage(name: str) -> None:
        if name == "rclone_uploaded":
            (temp,) = [folder / key] if key else (folder / ".photod" / "tmp").iterdir()
            data = bytearray(temp.read_bytes())
            data[len(data) // 2] ^= 0x01
            temp.write_bytes(bytes(data))
        hit(name)

    monkeypatch.setattr(failpoints, "hit", damage)
    try:
        with pytest.raises(refused):
            upload()
    finally:
        monkeypatch.setattr(failpoints, "hit", hit)


def test_an_sftp_nas_hashes_no_photo_for_rclone_and_a_copy_damaged_there_is_caught(
    ssh_server: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each photo sent to an SFTP NAS was hashed there by rclone too (an md5sum run over
    SSH on the whole file, its answer unused: photod's own SHA-256 proves the copy).
    Now the NAS runs no command for a photo; a copy damaged there after its upload is
    still refused, and nothing is published."""
    t, folder = _sftp_nas(ssh_server, tmp_path)

    def commands() -> int:  # the commands the NAS ran (sshd: "Starting session: command")
        return ssh_server.log.read_text(errors="replace").count("session: command for")

    try:
        t.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
        t.check(None)
        before = commands()
        for n in range(3):  # (read back: the NAS's md5sum would be its whole file read)
            assert VerifyMethod.READBACK == put(t, f"2024/{n}.jpg", DATA + bytes([n]))
        assert 0 == commands() - before  # (3 md5sums before)
        assert hashlib.sha256(DATA + b"\x02").hexdigest() == hash_object(t, "2024/2.jpg")
        _refused_when_damaged(monkeypatch, folder, lambda: put(t, "2024/damaged.jpg"))
        assert ["2024/0.jpg", "2024/1.jpg", "2024/2.jpg"] == sorted(t.keys())
        assert [] == list((folder / ".photod" / "tmp").iterdir())
    finally:
        t.close()


def test_rclone_start_removes_the_temporaries_its_crash_left(tmp_path: Path) -> None:
    """A list segment or a marker is uploaded under .photod/tmp/ and then moved: a
    photod killed in between leaves a temporary no catalog knows of.  Its name carries
    the installation's id, and the next start's first check removes it; another
    computer's may be an upload in flight, whatever its time says (set by the other
    computer's clock, and this one's may be days off): it goes only once seen at the
    same size and time a day apart by this process's clock; a command that only reads
    removes nothing."""
    folder = tmp_path / "remote"
    tmp = folder / ".photod" / "tmp"
    tmp.mkdir(parents=True)
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "dir:", {"type": "local"})
    mine = RcloneTarget("r", f"dir:{folder}", conf, owner="aaaa1111")
    mine.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
    writer = mine.open_writer("x.jpg")
    assert writer.temp_key.startswith(".photod/tmp/aaaa1111-")
    writer.abort()
    mine.close()
    (tmp / "aaaa1111-0123").write_bytes(b"half a list")  # what the killed run left
    (tmp / "bbbb2222-0456").write_bytes(b"another computer, now")
    (tmp / "bbbb2222-0789").write_bytes(b"another computer, long ago")
    two_days_ago = time.time() - 2 * 86400
    os.utime(tmp / "bbbb2222-0789", (two_days_ago, two_days_ago))
    everything = sorted(p.name for p in tmp.iterdir())

    reader = RcloneTarget("r", f"dir:{folder}", conf)  # `photod status`, say
    reader.check(None, prepare=False)
    reader.close()
    assert everything == sorted(p.name for p in tmp.iterdir())

    again = RcloneTarget("r", f"dir:{folder}", conf, owner="aaaa1111")
    again.check(None)
    assert ["bbbb2222-0456", "bbbb2222-0789"] == sorted(p.name for p in tmp.iterdir())
    (tmp / "aaaa1111-0555").write_bytes(b"this process, in flight")
    with (tmp / "bbbb2222-0456").open("ab") as f:
        f.write(b", still uploading")
    (tmp / "cccc3333-0111").write_bytes(b"a third computer, new")
    again.check(None)  # (a minute later: not looked at again)
    again._looked -= FOREIGN_TEMP_AGE  # a day later, by this process's clock
    again.check(None)
    assert ["aaaa1111-0555", "bbbb2222-0456", "cccc3333-0111"] == sorted(
        p.name for p in tmp.iterdir()
    )
    again._looked -= FOREIGN_TEMP_AGE
    again.check(None)
    again.close()
    assert ["aaaa1111-0555"] == sorted(p.name for p in tmp.iterdir())
    (tmp / "aaaa1111-0555").unlink()

    # Tidying only: a leftover the remote refuses to delete (immutable here, which even
    # root cannot delete) is said, and the target works all the same.
    stuck = tmp / "aaaa1111-0999"
    stuck.write_bytes(b"cannot go")
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        refused = RcloneTarget("r", f"dir:{folder}", conf, owner="aaaa1111")
        assert "t-r" == refused.check(None).target_id
        refused.close()
        assert stuck.exists()
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)


def test_rclone_refused_key_is_a_clear_reason(ssh_server: SSHServer, tmp_path: Path) -> None:
    """An SFTP login with a key the server does not know is "credentials refused"."""
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    settings = {**ssh_server.rclone_config(), "key_file": str(tmp_path / "k")}
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "box:", settings)
    t = RcloneTarget("r", f"box:{tmp_path}/files", conf, timeout=5)
    try:
        with pytest.raises(TargetUnavailable, match="credentials refused"):
            t.check(None)
    finally:
        t.close()


def test_an_sftp_nas_that_hangs_before_its_login_is_not_said_to_refuse_credentials(
    ssh_server: SSHServer, tmp_path: Path
) -> None:
    """The NAS's sshd does not answer (hung, booting, too busy for another connection):
    SSH's handshake times out. The target is unavailable, "cannot reach" it; never
    "credentials refused" (which sent the person to check a login key that is fine)."""
    import signal

    import psutil

    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "box:",
                                            ssh_server.rclone_config())  # fmt: skip
    t = RcloneTarget("r", f"box:{ssh_server.files / tmp_path.name}", conf, timeout=2)
    if not ssh_server.running():
        ssh_server.start()
    sshd = psutil.Process(ssh_server.proc.pid)
    sshd.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(TargetUnavailable) as got:
            t.check(None)
    finally:
        sshd.send_signal(signal.SIGCONT)
        t.close()
    assert got.value.reason.startswith("cannot reach box:"), got.value.reason
    assert "credentials" not in got.value.reason


@pytest.mark.parametrize(("known", "reason"), [("another", "host key changed"),
                                               ("none", "host key unknown")])  # fmt: skip
def test_an_sftp_servers_changed_host_key_is_said_as_such_not_as_credentials(
    ssh_server: SSHServer, tmp_path: Path, known: str, reason: str
) -> None:
    """The NAS answers with a host key other than the one its known_hosts_file holds
    (reinstalled, or another machine in its place), or one the file does not hold:
    the target is unavailable with that reason, never "credentials refused" (which sent
    the person to check a key that is fine), and nothing is read or written there."""
    import subprocess

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    if known == "another":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "other")], check=True)  # fmt: skip
        other = (tmp_path / "other.pub").read_text()
        known_hosts.write_text(f"[127.0.0.1]:{ssh_server.port} {other}")
    settings = {**ssh_server.rclone_config(), "known_hosts_file": str(known_hosts)}
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "box:", settings)
    folder = ssh_server.files / tmp_path.name
    t = RcloneTarget("r", f"box:{folder}", conf, timeout=5)
    try:
        with pytest.raises(TargetUnavailable) as got:
            t.check(None)
    finally:
        t.close()
    assert got.value.reason.startswith(reason), got.value.reason
    assert "credentials" not in got.value.reason
    assert not folder.exists()


@pytest.mark.parametrize("via", ["s3", "rclone"])
def test_throttling_is_target_unavailable(via: str, tmp_path: Path) -> None:
    """A server shedding load (HTTP 503 SlowDown) makes the target unavailable with
    "throttled" as the reason; photod retries with backoff."""
    server = ThrottlingServer()
    try:
        if via == "s3":
            creds = tmp_path / "aws-credentials"
            creds.write_text(
                f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
            )
            t: Any = S3Target("s3", BUCKET, "", server.endpoint, credentials_file=creds, timeout=5)
        else:
            settings = {"type": "s3", "provider": "Other", "endpoint": server.endpoint,
                        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}  # fmt: skip
            conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "cloud:", settings)
            t = RcloneTarget("r", f"cloud:{BUCKET}", conf, timeout=5)
        try:
            with pytest.raises(TargetUnavailable, match="throttled"):
                t.check(None)
        finally:
            t.close()
    finally:
        server.stop()


def rclone_s3_target(
    endpoint: str, tmp_path: Path, name: str = "r", owner: str = ""
) -> RcloneTarget:
    """An rclone remote of type s3 at ``endpoint`` (the test server, or a proxy of it),
    in a folder of the bucket named after ``tmp_path``."""
    settings = {"type": "s3", "provider": "Other", "endpoint": endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}  # fmt: skip
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "cloud:", settings)
    return RcloneTarget(name, f"cloud:{BUCKET}/{tmp_path.name}/", conf, timeout=5, owner=owner)


def _family(
    remote: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[RcloneTarget, RcloneTarget, Path]:
    """Anna's and Ben's rclone targets on one remote, a local folder or a bucket store
    (``rclone serve s3``: each photo straight to its name), with its id; where it keeps
    the files."""
    if remote == "local":
        store = tmp_path / "store"
        anna, ben = (local_rclone(tmp_path, store, owner=o) for o in ("aaaa", "bbbb"))
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        if not server.running():
            server.start()
        store = server.root / BUCKET / tmp_path.name
        anna, ben = (rclone_s3_target(server.endpoint, tmp_path, owner=o) for o in ("aaaa", "bbbb"))
    anna.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
    anna.check(None)
    ben.check(None)
    return anna, ben, store


@pytest.fixture
def rclone_s3(s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[FaultProxy, RcloneTarget]]:
    """An rclone remote of type s3 on the test server, through a FaultProxy that notes
    each request; the target has its id."""
    if not s3_server.running():
        s3_server.start()
    proxy = FaultProxy(s3_server.endpoint)
    t = rclone_s3_target(proxy.endpoint, tmp_path)
    try:
        t.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
        t.check(None)
        yield proxy, t
    finally:
        t.close()
        proxy.stop()


def test_a_photo_goes_to_an_rclone_s3_remote_in_one_put(
    rclone_s3: tuple[FaultProxy, RcloneTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo sent through rclone to an S3 store went up as a multipart upload (its
    size unknown to rclone, which streamed anything past 100 KiB so): three requests,
    each one the store counts, where one PUT does.  A photo up to STREAM_CUTOFF now
    goes up in one PUT; a larger one as before; each is proved and reads back whole.
    And it goes straight to its name: it went to a temporary, which rclone's move then
    copied on the server, every byte again (a PUT with no body: the copy), and deleted;
    in ``.photod/tmp/`` now only its small stand-in (``rclonedirect``), put and deleted."""
    proxy, t = rclone_s3

    def sent(data: bytes, key: str) -> list[tuple[str, str]]:  # what wrote, and where
        n = len(proxy.begun)
        try:
            put(t, key, data)
        except TargetUnavailable as exc:
            # `rclone serve s3` (the test server) loses a multipart upload now and then
            # under load (NoSuchUpload at its completion; seen in full runs, never on a
            # real store): photod's answer is a retry, so is the test's, counted alone.
            assert "NoSuchUpload" in str(exc), exc
            n = len(proxy.begun)
            put(t, key, data)
        assert hashlib.sha256(data).hexdigest() == hash_object(t, key)
        asked = list(zip(proxy.begun[n:], proxy.bodies[n:], strict=True))
        return [("part" if "partNumber=" in query else "PUT" if size else "copy")
                if method == "PUT" else method if method == "DELETE" else
                ("create" if query.startswith("uploads") else "complete")
                for (method, path), (query, size, _) in asked
                if method in ("PUT", "POST", "DELETE") and path.endswith(f"/{key}")] + [
                "stand-in" if size == len(STAND_IN) else "temporary" if method != "DELETE"
                else "DELETE" for (method, path), (query, size, _) in asked
                if method in ("PUT", "DELETE") and "/.photod/tmp/" in path]  # fmt: skip

    assert 100 * 1024 < len(DATA) <= rclone_target.STREAM_CUTOFF
    # (it was create, part, complete into the temporary, then a copy on the server)
    assert ["PUT", "stand-in", "DELETE"] == sent(DATA, "2024/a.jpg")
    edge = os.urandom(rclone_target.STREAM_CUTOFF)  # (rclone streams a whole cutoff: not
    assert ["copy", "temporary", "DELETE"] == sent(edge, "2024/edge.jpg")  # one PUT, held)
    monkeypatch.setattr(rclone_target, "STREAM_CUTOFF", 512 * 1024)  # a larger photo:
    # through its temporary, as it is read (a movie's bytes are not held)
    assert ["copy", "temporary", "DELETE"] == sent(DATA + b"2", "2024/b.jpg")


def test_a_photo_to_an_rclone_s3_remote_is_proved_by_the_stores_md5_not_downloaded(
    rclone_s3: tuple[FaultProxy, RcloneTarget],
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 keeps no SHA-256, so each photo sent through rclone to an S3 store was then
    downloaded whole to prove it: twice the traffic, and on a cloud an egress charge for
    each.  It is now proved by the store's own MD5 of what it stored (a PUT's ETag),
    which photod computes as it sends: no GET (method "server").  An answer with no MD5
    (after a multipart upload rclone kept none of) is read back, and a copy damaged on
    the server after its upload is still refused, never counted."""
    proxy, t = rclone_s3
    folder = s3_server.root / BUCKET / tmp_path.name

    def sent(data: bytes, key: str) -> tuple[VerifyMethod, int]:  # and the downloads
        n = len(proxy.begun)
        method = put(t, key, data)  # (a GET of the bucket itself is a listing: of rivals)
        return method, [(m, p.strip("/") != BUCKET) for m, p in proxy.begun[n:]].count(
            ("GET", True)
        )

    assert (VerifyMethod.SERVER, 0) == sent(DATA, "2024/a.jpg")  # (READBACK, 1) before
    assert (VerifyMethod.SERVER, 0) == sent(DATA + b"b", "2024/b.jpg")
    proxy.rule = lambda method, path, query: (
        ("strip", "ETag") if method == "HEAD" and path.endswith("/2024/c.jpg") else "pass"
    )
    assert (VerifyMethod.READBACK, 1) == sent(DATA + b"c", "2024/c.jpg")
    proxy.rule = lambda method, path, query: "pass"
    for key, data in (("2024/a.jpg", DATA), ("2024/b.jpg", DATA + b"b")):
        assert hashlib.sha256(data).hexdigest() == hash_object(t, key)
    # Damaged under its name, where it went straight: other bytes there are taken for
    # another's file (never moved nor removed: ``rclonedirect``), and not counted.
    w = t.open_writer("2024/damaged.jpg")
    w.write(DATA + b"d")
    commit = lambda: w.commit("2024/damaged.jpg", hashlib.sha256(DATA + b"d").hexdigest())  # noqa: E731
    _refused_when_damaged(monkeypatch, folder, commit, "2024/damaged.jpg", KeyExists)
    w.abort()
    assert ["2024/a.jpg", "2024/b.jpg", "2024/c.jpg", "2024/damaged.jpg"] == sorted(t.keys())
    assert [] == list(folder.glob(".photod/tmp/*"))


def test_a_copy_to_an_rclone_remote_lists_no_folder(
    rclone_s3: tuple[FaultProxy, RcloneTarget],
) -> None:
    """Before its move and after it, a copy asks whether a name holds a file (its own:
    free; its temporary: gone), and rclone, finding none, looked for a folder of that
    name by listing the folder it would be in: on S3 two listings each, four a photo
    (each priced as an upload), over SFTP the photo's whole folder read, longer as it
    fills.  A copy now lists no folder but ``.photod/tmp/``, where the uploads in
    flight are (one listing: another upload of its name: ``rclonerival``), and a name
    taken is still seen."""
    proxy, t = rclone_s3
    n = len(proxy.bodies)
    put(t, "2024/a.jpg")
    listings = [q for q, _, _ in proxy.bodies[n:] if "delimiter=" in q or "list-type=" in q]
    assert 1 == len(listings), listings
    assert ".photod%2Ftmp%2F&" in listings[0] + "&", listings
    assert len(DATA) == t.size("2024/a.jpg")
    assert None is t.size("2024/b.jpg")
    assert None is t.size("2024")  # (a folder is no object)
    with pytest.raises(KeyExists):
        put(t, "2024/a.jpg", DATA + b"other")


def test_a_photo_held_for_its_commit_leaves_nothing_when_its_copy_ends_before(
    rclone_s3: tuple[FaultProxy, RcloneTarget], s3_server: S3Server, tmp_path: Path
) -> None:
    """A photo for a bucket store is held whole till its commit, which sends it straight
    to its name: a copy given up before (its source went, photod stopped) or photod
    killed then sent nothing, not even a stand-in.  A movie, past STREAM_CUTOFF, goes
    up through its temporary as it is read, and its abort leaves nothing either."""
    proxy, t = rclone_s3
    folder = s3_server.root / BUCKET / tmp_path.name
    n = len(proxy.begun)
    for key, data in (("2024/a.jpg", DATA), ("2024/b.mov", DATA * 10)):
        w = t.open_writer(key)
        w.write(data[: len(data) // 2])
        w.write(data[len(data) // 2 :])
        assert (w.held is not None) == (key == "2024/a.jpg")
        w.abort()
        time.sleep(1)
        assert (None, []) == (t.size(key), list(folder.glob(".photod/tmp/*")))
    sent = [m for m, path in proxy.begun[n:] if m in ("PUT", "POST") and "/a.jpg" in path]
    assert [] == sent  # (nothing of the photo held)
    put(t, "2024/a.jpg", DATA)
    assert SHA == hash_object(t, "2024/a.jpg")


def test_photos_of_any_name_go_straight_to_their_own_names_on_a_bucket_store(
    rclone_s3: tuple[FaultProxy, RcloneTarget], s3_server: S3Server, tmp_path: Path
) -> None:
    """The name a photo goes straight to is sent to rclone in the upload's form (it was
    a temporary's, hex alone): spaces, quotes, a percent sign, a semicolon, emoji and
    wide letters each land under the photo's own name, read back whole."""
    _, t = rclone_s3
    names = ["2024/é€😀 x.jpg", "2024/it's 100%.jpg", "2024/a;b=c.jpg",
             "2024/semi;filename=x.jpg", "2024/ｆｕｌｌ.heic", "2024/x y  .jpg"]  # fmt: skip
    for n, key in enumerate(names):
        assert VerifyMethod.SERVER == put(t, key, DATA + bytes([n]))
    assert sorted(names) == sorted(t.keys())
    folder = s3_server.root / BUCKET / tmp_path.name
    for n, key in enumerate(names):
        assert DATA + bytes([n]) == (folder / key).read_bytes(), key


# -- local specifics ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["local", "s3", "rclone-local"])
def test_two_computers_that_find_an_empty_target_agree_on_its_id(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two photods that check the same empty target at the same moment end with one
    target id, whether the store can refuse a second writer (a local folder) or not
    (S3 without conditional writes, an rclone remote: claims settle it)."""
    import threading

    first = make_kind(name, request, tmp_path)
    t = first.target
    twin = {  # a second photod's view of the same place
        "local": lambda: LocalTarget("l", t.configured, creates_root=True),
        "s3": lambda: S3Target(
            "s3",
            BUCKET,
            t.prefix,
            t.endpoint,
            credentials_file=tmp_path / "aws-credentials",
            timeout=5,
        ),
        "rclone-local": lambda: RcloneTarget("r", t.remote, tmp_path / "rclone.conf"),
    }[name]()
    targets = [t, twin]
    ids: list[str] = []
    threads = [threading.Thread(target=lambda t=t: ids.append(t.check(None).target_id))
               for t in targets]  # fmt: skip
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert 2 == len(ids) and ids[0] == ids[1]
    for t in targets:
        assert ids[0] == t.check(Identity(ids[0], "")).target_id
        t.close()


@pytest.mark.parametrize("name", ["s3", "rclone-local"])
def test_an_unreadable_marker_is_never_taken_for_none(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A target.json that does not parse makes the object store unavailable at once:
    photod neither writes a second marker (two ids for one target) nor loops."""
    import time

    t = make_kind(name, request, tmp_path).target
    t.put_meta("target.json", b"{not json")
    started = time.monotonic()
    with pytest.raises(TargetUnavailable, match="cannot be read"):
        t.check(None)
    assert time.monotonic() - started < 5
    assert b"{not json" == t.get_meta("target.json")
    t.close()


def test_local_marker_identity(tmp_path: Path) -> None:
    """A new local target gets a marker with an id; the same folder is recognised later,
    and a folder with another target's marker is refused."""
    t = LocalTarget("usb", tmp_path / "drive", creates_root=True)
    ident = t.check(None)
    marker = json.loads((tmp_path / "drive" / ".photod" / "target.json").read_text())
    assert ident.target_id == marker["id"]
    assert ident.target_id == t.check(ident).target_id
    other = Identity("someone-else", str(tmp_path / "drive"))
    with pytest.raises(TargetUnavailable, match="belongs to another target"):
        t.check(other)


def test_local_missing_drive_is_unavailable_and_not_created(tmp_path: Path) -> None:
    """An external drive's folder that does not exist is unavailable and is not created
    (an unplugged drive's mount point must not fill the system disk)."""
    t = LocalTarget("usb", tmp_path / "media" / "T7", creates_root=False)
    with pytest.raises(TargetUnavailable, match="does not exist"):
        t.check(None)
    assert not (tmp_path / "media").exists()


def test_local_marker_missing_for_known_target(tmp_path: Path) -> None:
    """An empty folder where a known drive used to be is not taken for that drive."""
    (tmp_path / "mnt").mkdir()
    t = LocalTarget("usb", tmp_path / "mnt", creates_root=False)
    with pytest.raises(TargetUnavailable, match=r"no \.photod/target\.json"):
        t.check(Identity("abc", str(tmp_path / "mnt")))


def test_local_temp_files_are_hidden_and_cleanable(tmp_path: Path) -> None:
    """A writer's temporary sits in the destination folder under a photod-only name;
    delete_temp removes it but refuses any other file."""
    t = LocalTarget("l", tmp_path / "r", creates_root=True)
    t.check(None)
    put(t, "d/keep.jpg")
    w = t.open_writer("d/new.jpg")
    w.write(b"partial")
    assert (tmp_path / "r" / w.temp_key).exists()
    assert ["d/keep.jpg"] == list(t.keys())
    t.delete_temp("d/keep.jpg")
    t.delete_temp(w.temp_key)
    assert not (tmp_path / "r" / w.temp_key).exists()
    assert (tmp_path / "r" / "d" / "keep.jpg").exists()
    w.abort()  # closes the handle a crashed writer would have lost


def test_local_preserves_mtime(tmp_path: Path) -> None:
    """A committed copy keeps the source file's modification time, like rsync -a."""
    t = LocalTarget("l", tmp_path / "r", creates_root=True)
    t.check(None)
    w = t.open_writer("a.jpg")
    w.write(DATA)
    w.commit("a.jpg", SHA, mtime_ns=1_500_000_000_000_000_000)
    assert 1_500_000_000 == int((tmp_path / "r" / "a.jpg").stat().st_mtime)


@pytest.mark.parametrize("encrypted", [False, True])
def test_s3_large_upload_streams_in_bounded_memory(
    s3_server: S3Server, tmp_path: Path, encrypted: bool
) -> None:
    """A 200 MB video goes up as a multipart upload without ever holding more than a
    few parts in memory (peak Python allocations stay under 40 MB), and reads back
    whole."""
    import tracemalloc

    if not s3_server.running():
        s3_server.start()
    t: Any = s3_target(s3_server, f"big{int(encrypted)}", s3_server.credentials(tmp_path / "c"))
    if encrypted:
        keygen(tmp_path / "identity.txt")
        t = CryptTarget(t, Keys(tmp_path / "identity.txt"))
    t.check(None)
    block = bytes(range(256)) * 4096  # 1 MiB
    h = hashlib.sha256()
    tracemalloc.start()
    try:
        w = t.open_writer("2024/long.MOV")
        for i in range(200):
            chunk = block[:-4] + i.to_bytes(4, "big")
            h.update(chunk)
            w.write(chunk)
        w.commit("2024/long.MOV", h.hexdigest())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024**2, f"peak {peak / 1e6:.0f} MB"
    assert h.hexdigest() == hash_object(t, "2024/long.MOV")
    t.close()


def test_extra_recipient_can_decrypt_with_the_stock_tool(tmp_path: Path) -> None:
    """An object on an encrypted target also opens with a second identity whose public
    key is listed in `recipients` (a key kept offline), using the stock age tool."""
    import subprocess

    from tests.servers import need

    age = need("age", "apt install age")
    keygen(tmp_path / "main.txt")
    spare = keygen(tmp_path / "spare.txt")
    t = CryptTarget(LocalTarget("l", tmp_path / "root", creates_root=True),
                    Keys(tmp_path / "main.txt", [spare]))  # fmt: skip
    t.check(None)
    put(t, "2024/IMG_1.HEIC")
    obj = tmp_path / "root" / t.keys_.object_name("2024/IMG_1.HEIC")
    opened = subprocess.run([age, "-d", "-i", str(tmp_path / "spare.txt"), str(obj)],
                            capture_output=True, check=True)  # fmt: skip
    assert DATA == opened.stdout


def proxied(
    s3_server: S3Server, tmp_path: Path, prefix: str, encrypted: bool
) -> tuple[DamagingProxy, Any]:
    """An S3 target (encrypted, or not) behind a DamagingProxy not damaging yet, checked."""
    if not s3_server.running():
        s3_server.start()
    proxy = DamagingProxy(s3_server.endpoint)
    proxy.damaging = False
    creds = s3_server.credentials(tmp_path / "c")
    t: Any = s3_target(s3_server, prefix, creds, proxy.endpoint)
    if encrypted:
        keygen(tmp_path / "identity.txt")
        t = CryptTarget(t, Keys(tmp_path / "identity.txt"))
    t.put_meta("target.json", json.dumps({"id": f"t-{prefix}"}).encode())
    t.check(None)
    return proxy, t


@pytest.mark.parametrize("size", [len(DATA), 12 * len(DATA)], ids=["one-put", "multipart"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_s3_bytes_damaged_on_the_wire_are_refused_and_nothing_is_published(
    s3_server: S3Server, tmp_path: Path, encrypted: bool, size: int
) -> None:
    """Every body sent to S3 carries its Content-MD5, and the server refuses one that
    does not match: the proof an upload rests on (an encrypted upload takes no other
    hash of its ciphertext).  A network that flips a bit in transit leaves nothing
    under the key; once it heals, the same file goes up and reads back whole."""
    proxy, t = proxied(s3_server, tmp_path, f"wire{int(encrypted)}{size}", encrypted)
    data = (DATA * (size // len(DATA) + 1))[:size]
    sha = hashlib.sha256(data).hexdigest()
    proxy.damaging = True
    with pytest.raises(PhotodError, match="other bytes than were sent"):
        put(t, "2024/x.jpg", data)
    assert proxy.damaged >= 1
    assert [] == list(t.keys())
    proxy.damaging = False
    presigned = proxy.presigned
    put(t, "2024/x.jpg", data)
    assert ["2024/x.jpg"] == list(t.keys())
    if size == len(DATA):  # a passing fault does not turn the presigned requests off
        assert proxy.presigned > presigned
    assert sha == hash_object(t, "2024/x.jpg")
    t.close()
    proxy.stop()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_server_that_refuses_presigned_requests_still_gets_every_copy(
    s3_server: S3Server, tmp_path: Path, encrypted: bool
) -> None:
    """A small object's PUT and a HEAD go out as presigned requests (botocore signs
    them, its connection pool sends them: a third of its request pipeline's CPU).  A
    server or a proxy that does not take them is asked once, and from then on every
    request goes through botocore's own call: each copy still lands and reads back."""
    proxy, t = proxied(s3_server, tmp_path, f"presigned{int(encrypted)}", encrypted)
    put(t, "2024/a.jpg")
    assert proxy.presigned >= 2  # the PUT and a HEAD, at least, went out presigned
    proxy.refusing_presigned = True
    refused_from = proxy.presigned
    for name in ("2024/b.jpg", "2024/c.jpg"):
        put(t, name)
    assert ["2024/a.jpg", "2024/b.jpg", "2024/c.jpg"] == sorted(t.keys())
    for name in ("2024/a.jpg", "2024/b.jpg", "2024/c.jpg"):
        assert SHA == hash_object(t, name)
    assert refused_from + 1 == proxy.presigned  # refused once, not at every request
    t.close()
    proxy.stop()


def test_photos_with_any_name_go_out_presigned_and_land_under_their_own_name(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The presigned PUT and HEAD are signed by photod with botocore's signer, at the
    address botocore gave the first of each: a name with spaces, accents, ``+``, ``&``,
    ``~``, ``%`` or brackets still lands under its own name (the server checked each
    signature: a refusal would have turned the presigned path off), and nothing else
    is stored, not even the ``Cache-Control: no-cache`` a HEAD asks with.  Only the
    first of each kind is presigned by botocore in its URL; the others carry their
    signature in their headers (a URL of 400 characters cost urllib3 0.15 to 0.2 ms
    of CPU a request to check)."""
    proxy, t = proxied(s3_server, tmp_path, "any name", False)
    names = ["2024/a.jpg", "2024/é à/IMG 0001 (1).HEIC", "2024/x+y=z&w~v%41#.jpg"]
    sent = proxy.presigned
    for i, name in enumerate(names):
        put(t, name, DATA + bytes([i]))
    assert proxy.presigned >= sent + 2 * len(names)  # a HEAD and the PUT of each
    assert proxy.in_url <= 2  # botocore's presigning of the first PUT and HEAD alone
    assert t.presigned.http is not None  # never refused
    assert sorted(names) == sorted(t.keys())
    for i, name in enumerate(names):
        assert hashlib.sha256(DATA + bytes([i])).hexdigest() == hash_object(t, name)
        assert "CacheControl" not in t.client.head_object(Bucket=BUCKET, Key=t.full(name))
    t.close()
    proxy.stop()


def _encrypted_s3_cut_at_will(
    s3_server: S3Server, tmp_path: Path, prefix: str
) -> tuple[Callable[[], CryptTarget], dict[str, str], FaultProxy]:
    """An encrypted target on S3 through a link whose downloads of objects do what
    ``gets["data"]`` says ("pass", "drop"); each call, a computer starting on it."""
    if not s3_server.running():
        s3_server.start()
    gets = {"data": "pass"}
    proxy = FaultProxy(s3_server.endpoint, lambda method, path, query: (
        gets["data"] if method == "GET" and "/data/" in path else "pass"))  # fmt: skip
    creds = s3_server.credentials(tmp_path / "c")
    keygen(tmp_path / "identity.txt")

    def computer() -> CryptTarget:  # (a new process: nothing learned)
        s3 = s3_target(s3_server, prefix, creds, proxy.endpoint)
        return CryptTarget(s3, Keys(tmp_path / "identity.txt"))

    return computer, gets, proxy


def test_an_encrypted_photo_left_without_its_line_waits_for_the_link_to_be_recognised(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A photo stored without its sealed index line (photod killed between the two) is
    recognised by its next upload, which decrypts the object.  Where the link does not
    let that download through, the copy fails and is tried again: it went up a second
    time under another name, and the first object stayed for ever without a line (no
    listing, restore or tidy knows it).  The target answering still (its size), that
    is this photo's failure, not the target's outage.  Tried again with the link back,
    the object is recognised, its line written, and it alone holds the photo."""
    run, gets, proxy = _encrypted_s3_cut_at_will(s3_server, tmp_path, "orphan")
    t = run()
    t.put_meta("target.json", json.dumps({"id": "t-orphan"}).encode())
    t.check(None)
    key = "2024/2024-01-02/IMG_1.HEIC"
    put(t, key)
    obj = t.keys_.object_name(key)
    t.inner.delete_meta(sidecar(obj))  # (its line, which the kill kept from the server)
    t.close()
    t = run()
    gets["data"] = "drop"
    with pytest.raises(PhotodError) as failed:
        put(t, key)
    assert not isinstance(failed.value, (KeyExists, TargetUnavailable))  # (KeyExists: beside it)
    assert f"{obj} could not be read" in str(failed.value)
    gets["data"] = "pass"
    assert VerifyMethod.EXISTING == put(t, key)
    assert [obj] == [o for o, _ in t.inner.listing() if o.startswith("data/")]
    assert t.inner.get_meta(sidecar(obj)) is not None
    t.close()
    t = run()
    assert [key] == list(t.keys())  # (from the object's own line)
    assert SHA == hash_object(t, key)
    t.close()
    proxy.stop()


def _hold_bens_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, threading.Event], list[str]]:
    """Ben's commit (a thread named "ben") held between its object's fsync and its link,
    and its line's PUT held, each till its gate opens; ``reached``: where it waits."""
    gates = {"replica_synced": threading.Event(), "index_line_sealing": threading.Event()}
    reached: list[str] = []
    hit = failpoints.hit

    def held(name: str) -> None:
        who = threading.current_thread().name
        if (who == "ben" and name == "replica_synced") or (
            who.startswith("line-ben") and name == "index_line_sealing"
        ):
            reached.append(name)
            gates[name].wait(30)
        hit(name)

    monkeypatch.setattr(failpoints, "hit", held)
    return gates, reached


def _ben_stores(ben: CryptTarget, key: str, data: bytes) -> tuple[threading.Thread, list[object]]:
    """Ben's computer storing ``data`` under ``key``, in its thread: what it was told."""
    said: list[object] = []

    def store() -> None:
        try:
            said.append(put(ben, key, data))
        except PhotodError as exc:
            said.append(exc)

    thread = threading.Thread(target=store, name="ben")
    thread.start()
    return thread, said


def _family_drive(tmp_path: Path) -> Callable[[str], CryptTarget]:
    """The computers of a family sharing one encrypted drive and its identity: each
    call, one of them starting (nothing learned)."""
    keygen(tmp_path / "identity.txt")
    root = tmp_path / "drive"

    def computer(name: str) -> CryptTarget:
        t = CryptTarget(LocalTarget(name, root, creates_root=True), Keys(tmp_path / "identity.txt"))
        t.check(None)
        return t

    return computer


@pytest.mark.parametrize("same", [False, True], ids=["another photo", "the same photo"])
def test_two_computers_sealing_one_name_at_once_never_leave_a_line_naming_the_wrong_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same: bool
) -> None:
    """Anna's and Ben's computers (one identity, one shared drive) store a photo under
    one name at the same moment.  Ben's index line goes up as his object is refused:
    Anna's took the name first, her line with it.  Ben's photo goes beside (KeyExists),
    and a new computer reading the lines alone (every index lost) finds no line naming
    a photo that is not the one its object holds: Ben's line over Anna's would have
    named his photo (its SHA-256) at her object.  When both are the same photo, its
    line stays (the same size either way: only reading the object tells)."""
    computer = _family_drive(tmp_path)
    anna, ben = computer("anna"), computer("ben")
    key = "2024/2024-01-02/IMG_1.HEIC"
    his = DATA if same else DATA[:-1] + b"!"
    gates, reached = _hold_bens_commit(monkeypatch)
    storing, said = _ben_stores(ben, key, his)
    try:
        wait_for(lambda: len(reached) == 2, 30, "Ben's commit at its link and its line")
        assert VerifyMethod.READBACK == put(anna, key)  # (her object and her line)
    finally:
        for gate in gates.values():
            gate.set()
        storing.join(30)
    assert len(said) == 1 and isinstance(said[0], KeyExists), said
    anna.close()
    ben.close()
    fresh = computer("carl")  # (nothing learned: the lines alone)
    listed = dict(fresh.listing())
    for name in listed:
        assert hash_object(fresh, name) == fresh.described(fresh.locate(name)).sha256  # type: ignore[union-attr]
    assert ([key] if same else []) == list(listed)
    assert SHA == hash_object(fresh, key)  # (Anna's photo, at its name)
    fresh.close()


def test_a_line_a_copy_cannot_take_back_fails_it_and_goes_at_its_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, where the drive refuses to take Ben's line back (its folder
    immutable, `chattr +i`, as a cut link or a failing disk would): Ben's copy fails,
    not "the name is taken" (his photo would go beside, his line left naming it over
    Anna's object, and his next try never come), and its next try, the folder
    writable again, reads Anna's object first, takes the line back, and goes beside."""
    computer = _family_drive(tmp_path)
    anna, ben = computer("anna"), computer("ben")
    key, his = "2024/2024-01-02/IMG_1.HEIC", DATA[:-1] + b"!"
    obj = anna.keys_.object_name(key)
    lines = tmp_path / "drive" / ".photod" / sidecar(obj)  # (as _family_drive keeps it)

    def names_his() -> bool:
        said = anna.described(obj)
        return said is not None and said.sha256 == hashlib.sha256(his).hexdigest()

    gates, reached = _hold_bens_commit(monkeypatch)
    storing, said = _ben_stores(ben, key, his)
    try:
        wait_for(lambda: len(reached) == 2, 30, "Ben's commit at its link and its line")
        put(anna, key)
        gates["index_line_sealing"].set()
        wait_for(names_his, 30, "Ben's line over Anna's")
        subprocess.run(["chattr", "+i", str(lines.parent)], check=True)
        gates["replica_synced"].set()
        storing.join(30)
    finally:
        for gate in gates.values():
            gate.set()
        subprocess.run(["chattr", "-i", str(lines.parent)], check=True)
        storing.join(30)
    assert len(said) == 1 and isinstance(said[0], PhotodError), said
    assert not isinstance(said[0], KeyExists), said[0]
    assert names_his()  # (what the next try finds)
    writer = ben.open_writer(key)
    writer.write(his)
    with pytest.raises(KeyExists) as taken:
        writer.commit(key, hashlib.sha256(his).hexdigest())
    writer.abort()
    assert taken.value.other
    anna.close()
    ben.close()
    fresh = computer("carl")
    assert [] == list(fresh.keys())  # (no line naming Ben's photo; Anna's scrub writes hers)
    assert SHA == hash_object(fresh, key)
    fresh.close()


@pytest.mark.parametrize(
    "case", ["another photo", "the same photo", "another photo, its line's removal refused"]
)
def test_a_line_naming_this_photo_over_another_photos_object_goes_at_its_next_try(
    tmp_path: Path, case: str
) -> None:
    """What the race above leaves when Ben's computer stops before taking its line back
    (a power cut), or when the refusal came as another error (an S3 upload in parts
    whose completion is refused): his line over Anna's object, naming his photo.  His
    next try of the name reads the object: another photo's, the line goes and his
    photo goes beside (KeyExists, told other); the same photo, it stays, and the
    caller is told so without reading the object again.  A drive that refuses the
    line's removal (`chattr +i`; a bucket key without delete) leaves it, and the photo
    still goes beside: not a failure at each try, the target taken for away."""
    same = case == "the same photo"
    computer = _family_drive(tmp_path)
    anna, ben = computer("anna"), computer("ben")
    key = "2024/2024-01-02/IMG_1.HEIC"
    his = DATA if same else DATA[:-1] + b"!"
    put(anna, key)
    obj = anna.keys_.object_name(key)
    bens = ManifestEntry(hashlib.sha256(his).hexdigest(), key, len(his), "", None)
    ben.inner.put_meta(sidecar(obj), ben.keys_.encrypt(index_line(obj, bens).encode()))
    refused = (tmp_path / "drive" / ".photod" / sidecar(obj)).parent
    if "refused" in case:
        subprocess.run(["chattr", "+i", str(refused)], check=True)
    try:
        writer = ben.open_writer(key)
        writer.write(his)
        with pytest.raises(KeyExists) as taken:
            writer.commit(key, bens.sha256)
        writer.abort()  # (as the caller does, beside it or adopting it)
    finally:
        subprocess.run(["chattr", "-i", str(refused)], check=True)
    assert (taken.value.same, taken.value.other) == (same, not same)
    anna.close()
    ben.close()
    fresh = computer("carl")
    assert ([key] if same or "refused" in case else []) == list(fresh.keys())
    assert SHA == hash_object(fresh, key)
    fresh.close()


def test_a_line_naming_this_photo_whose_object_cannot_be_read_now_waits_for_the_next_try(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Ben's line over Anna's object (as above), and at his next try the link lets no
    download through: that try fails, to be made again, not "the name is taken" (the
    caller's own read, the link back, sent his photo beside and left the line naming
    it over Anna's object).  With the link back, the line goes and his photo beside."""
    computer, gets, proxy = _encrypted_s3_cut_at_will(s3_server, tmp_path, f"cut-{tmp_path.name}")
    anna = computer()
    anna.put_meta("target.json", json.dumps({"id": "t-cut"}).encode())
    anna.check(None)
    key, his = "2024/2024-01-02/IMG_1.HEIC", DATA[:-1] + b"!"
    put(anna, key)
    obj = anna.keys_.object_name(key)
    bens = ManifestEntry(hashlib.sha256(his).hexdigest(), key, len(his), "", None)
    anna.inner.put_meta(sidecar(obj), anna.keys_.encrypt(index_line(obj, bens).encode()))
    ben = computer()
    told: list[PhotodError] = []
    for link in ("drop", "pass"):
        gets["data"] = link
        writer = ben.open_writer(key)
        writer.write(his)
        with pytest.raises(PhotodError) as failed:
            writer.commit(key, bens.sha256)
        writer.abort()
        told.append(failed.value)
    assert not isinstance(told[0], (KeyExists, TargetUnavailable)), told[0]
    assert isinstance(told[1], KeyExists) and told[1].other
    for t in (anna, ben):
        t.close()
    fresh = computer()
    assert [] == list(fresh.keys())
    assert SHA == hash_object(fresh, key)
    fresh.close()
    proxy.stop()


def test_a_damaged_object_keeps_the_line_naming_its_photo(tmp_path: Path) -> None:
    """A photo's object damaged on the drive (one byte, bit rot) and its line naming
    that photo: the photo's next try of the name (a computer that lost its catalog)
    cannot read the object whole, so it tells nothing about the line, which stays
    (the recovery without photod still finds the photo there, and says it damaged);
    the photo goes beside."""
    computer = _family_drive(tmp_path)
    anna = computer("anna")
    key = "2024/2024-01-02/IMG_1.HEIC"
    put(anna, key)
    obj = anna.keys_.object_name(key)
    stored = tmp_path / "drive" / obj
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.chmod(0o600)
    stored.write_bytes(bytes(damaged))
    anna.close()
    again = computer("anna")
    writer = again.open_writer(key)
    writer.write(DATA)
    with pytest.raises(KeyExists) as taken:
        writer.commit(key, SHA)
    writer.abort()
    assert (taken.value.other, taken.value.same) == (True, False)
    again.close()
    fresh = computer("carl")
    assert [key] == list(fresh.keys())
    fresh.close()


def test_an_encrypted_object_read_slowly_still_ends(tmp_path: Path) -> None:
    """A reader that stops for longer than a few seconds while the last chunks wait
    (a slow USB drive being restored to, a throttled upload of a repair) still gets the
    whole object and its end: it hung for ever once pyrage's end-of-stream could not
    be handed over within 5 seconds."""
    keygen(tmp_path / "identity.txt")
    target = CryptTarget(make_kind("local", None, tmp_path).target,  # type: ignore[arg-type]
                         Keys(tmp_path / "identity.txt"))  # fmt: skip
    target.check(None)
    data = os.urandom(9 * 8192 - 1000)  # pyrage writes 8 KiB: one read, eight waiting
    put(target, "2024/2024-01-02/slow.png", data)
    got: list[bytes] = []
    f = target.open("2024/2024-01-02/slow.png")
    got.append(f.read(1))
    time.sleep(6)  # every chunk decrypted meanwhile, the queue full
    reader = threading.Thread(target=lambda: got.append(f.read()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "the read never ended"  # (left open then: it would hang)
    f.close()
    assert data == b"".join(got)
    target.close()


def test_a_second_recipients_identity_finds_every_object_from_many_threads(
    tmp_path: Path,
) -> None:
    """Objects named with the owner's key, read with a second recipient's identity
    (the key in a drawer) from several threads at once: each finds its object once
    the lines are read (one thread took "not there" while another was reading them)."""
    owner, drawer = tmp_path / "owner.txt", tmp_path / "drawer.txt"
    keygen(owner)
    second = keygen(drawer)
    inner = make_kind("local", None, tmp_path).target  # type: ignore[arg-type]
    written = CryptTarget(inner, Keys(owner, [second]))
    written.check(None)
    keys = [f"2024/2024-01-02/IMG_{i:04d}.HEIC" for i in range(40)]
    for key in keys:
        put(written, key, DATA + key.encode())
    reader = CryptTarget(inner, Keys(drawer))
    sizes: dict[str, int | None] = {}

    def read(part: list[str]) -> None:
        for key in part:
            sizes[key] = reader.size(key)

    threads = [threading.Thread(target=read, args=(keys[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {key: len(DATA + key.encode()) for key in keys} == sizes
    with reader.open(keys[7]) as f:
        assert DATA + keys[7].encode() == f.read()


@pytest.mark.parametrize("folder", ["Fotos Müller", "100% Urlaub", "backup?", "Photos [2024]"])
def test_an_rclone_remote_whose_path_is_no_url_as_it_is_still_reads_back(
    tmp_path: Path, folder: str
) -> None:
    """A remote such as "onedrive:Bilder/Familie Müller": a space, a character beyond
    ASCII, a % or a ? in its path, or "[...]". Copies written there read back (the
    remote's path went into a URL as it was: a traceback that held every backup, the
    local ones too; a "400 Bad Request"; or a marker that never read back, and photod
    hung; a "]" cut the remote's path there: every copy was missing)."""
    target = local_rclone(tmp_path, tmp_path / folder / "photod", timeout=5)
    try:
        target.check(None)
        put(target, "2024/2024-01-02/IMG_1.HEIC")
        assert SHA == hash_object(target, "2024/2024-01-02/IMG_1.HEIC")
        assert ["2024/2024-01-02/IMG_1.HEIC"] == list(target.keys())
    finally:
        target.close()


def test_an_encrypted_rclone_config_without_its_password_is_a_clear_reason(
    tmp_path: Path,
) -> None:
    """The user's rclone.conf is encrypted (`rclone config encryption set`) and photod
    was not given its password: rclone's hidden prompt read the terminal (a stall of
    minutes) or the reason said only "did not answer". It says what to set."""
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\n" + "A" * 64 + "\n"
    )
    target = RcloneTarget("r", "box:photos", conf, timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(TargetUnavailable) as caught:
            target.check(None)
    finally:
        target.close()
    assert "RCLONE_CONFIG_PASS" in caught.value.reason
    assert "unable to decrypt configuration" in caught.value.reason
    assert time.monotonic() - started < 30


def test_photods_own_rclone_is_used_before_an_older_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian 12's rclone (1.60) first on PATH cannot serve on a socket file ("unknown
    port"): the offsite copy never happened and the reason blamed the network. The
    rclone photod installs with itself comes first."""
    old = tmp_path / "bin" / "rclone"
    old.parent.mkdir()
    old.write_text(
        "#!/bin/sh\necho 'listen tcp: address tcp////x/rc.sock: unknown port' >&2\nexit 1\n"
    )
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old.parent}:{os.environ['PATH']}")
    target = local_rclone(tmp_path, tmp_path / "remote", timeout=5)
    try:
        target.check(None)
        put(target, "2024/2024-01-02/IMG_1.HEIC")
        assert SHA == hash_object(target, "2024/2024-01-02/IMG_1.HEIC")
    finally:
        target.close()


def test_another_identitys_line_for_the_same_name_never_changes_what_ours_says(
    tmp_path: Path,
) -> None:
    """Two computers of a family keep a different file under one name on a shared
    encrypted target, the second sealing to the first's key too. Read by the first, the
    name's size is its own object's, before and after a listing read the other's line
    (it took the other's), and its bytes are its own."""
    anna, ben = tmp_path / "anna.txt", tmp_path / "ben.txt"
    anna_key = keygen(anna)
    keygen(ben)
    inner = make_kind("local", None, tmp_path).target  # type: ignore[arg-type]
    key = "2024/2024-01-02/same.jpg"
    mine, theirs = DATA[:40], DATA + b"ben's other photo"
    first = CryptTarget(inner, Keys(anna))
    first.check(None)
    put(first, key, mine)
    put(CryptTarget(inner, Keys(ben, [anna_key])), key, theirs)
    fresh = CryptTarget(inner, Keys(anna))
    assert len(mine) == fresh.size(key)
    assert [key] == list(fresh.keys())
    assert len(mine) == fresh.size(key)
    with fresh.open(key) as f:
        assert mine == f.read()


def _publish(target: RcloneTarget, w: Any, key: str, data: bytes, told: dict[str, bytes]) -> None:
    """Commit under ``key``, or where it is refused, beside it under the photo's own
    suffix, as photod does; note the name the computer was told holds ``data``."""
    sha = hashlib.sha256(data).hexdigest()
    for name in (key, f"{key}.{sha[:8]}"):
        try:
            w.commit(name, sha)
        except KeyExists:
            continue
        told[name] = data
        return
    w.abort()


def _publish_at_once(anna: RcloneTarget, ben: RcloneTarget, key: str, i: int) -> dict[str, bytes]:
    """Two computers publish different photos of one size under ``key`` at the same
    instant, each one refused the name putting it beside under its own suffix, as photod
    does; each name a computer was told holds its copy, with the bytes it holds."""
    told: dict[str, bytes] = {}
    both = threading.Barrier(2)

    def publish(target: RcloneTarget, data: bytes) -> None:
        w = target.open_writer(key)
        w.write(data)
        if w.held is None:  # (a bucket store's photo is sent at its commit)
            w._finish_upload()
        both.wait()
        _publish(target, w, key, data, told)

    threads = [threading.Thread(target=publish, args=(t, (t.owner * 500 + str(i)).encode()))
               for t in (anna, ben)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert 2 == len(told), (key, sorted(told))  # each photo went somewhere, under its name
    return told


@pytest.mark.parametrize("remote", ["local", "bucket"])
def test_two_computers_publishing_one_name_on_an_rclone_remote_never_both_count_it(
    remote: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two computers of a family upload different photos of one name to a shared
    rclone remote and publish them at the same instant: each copy a computer is told
    is there is there (both were told the name held theirs, most of the time, and the
    other's counted copy was gone; a look after the move still let one through now and
    then: the other's rename came after it).  So too on a bucket store, where a photo
    goes straight to its name: never both straight to it."""
    anna, ben, store = _family(remote, request, tmp_path)
    try:
        for i in range(20):
            for name, data in _publish_at_once(anna, ben, f"2024/IMG_{i}.JPG", i).items():
                assert data == (store / name).read_bytes(), name
        # Nothing of photod's left: `rclone serve s3` writes a request's body to a
        # temporary of its own (`.rclone_temp_put_*`), renamed into place when it is
        # whole; under a full run's load one was left now and then (the server's, as its
        # documentation says of a cut upload), not photod's to know or remove.
        left = (store / ".photod/tmp").glob("*")
        assert [] == [f for f in left if not f.name.startswith(".rclone_temp_put_")]
    finally:
        anna.close()
        ben.close()


@pytest.mark.parametrize("remote", ["local", "bucket"])
def test_two_computers_publishing_the_same_photo_at_once_keep_one_copy_of_it(
    remote: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same photo from two computers (a family's shared library synced to both) is
    no rival: both have it under its name (published, or found there and adopted, as
    photod does), which holds it, and none goes beside."""
    anna, ben, store = _family(remote, request, tmp_path)
    data = DATA + b"shared"
    both = threading.Barrier(2)
    told: list[VerifyMethod] = []

    def publish(target: RcloneTarget) -> None:
        w = target.open_writer("2024/IMG.JPG")
        w.write(data)
        if w.held is None:  # (a bucket store's photo is sent at its commit)
            w._finish_upload()
        both.wait()
        sha = hashlib.sha256(data).hexdigest()
        try:
            told.append(w.commit("2024/IMG.JPG", sha))
        except KeyExists:  # the other's landed first: it is this photo (adopted)
            w.abort()
            if holds(target, "2024/IMG.JPG", sha):
                told.append(VerifyMethod.EXISTING)

    try:
        threads = [threading.Thread(target=publish, args=(t,)) for t in (anna, ben)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert 2 == len(told)
        assert data == (store / "2024/IMG.JPG").read_bytes()
        assert ["IMG.JPG"] == sorted(p.name for p in (store / "2024").iterdir())
        # (the later move found the name holding these bytes, and left its temporary)
        assert [] == list((store / ".photod/tmp").glob("*"))
    finally:
        anna.close()
        ben.close()


def test_a_move_onto_the_same_photo_leaves_no_temporary_behind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ben's copy of a photo looked at the name (free), then Anna's copy of the same
    photo took it: rclone's move left his temporary where it was, and his check found
    the name holding these bytes, counted, the temporary (the whole photo) left in
    .photod/tmp/ with no record of it.  It goes."""
    anna, ben, store = _family("local", request, tmp_path)
    data, key = DATA + b"shared", "2024/IMG.JPG"
    sha = hashlib.sha256(data).hexdigest()
    anna_moved = threading.Event()
    real = rclone_target.rival

    def after_annas_move(t: RcloneTarget, *args: Any) -> bool:  # (the order, made sure)
        if t is ben:
            assert anna_moved.wait(30)
        return real(t, *args)

    monkeypatch.setattr(rclone_target, "rival", after_annas_move)
    told: list[VerifyMethod] = []
    try:
        wa, wb = anna.open_writer(key), ben.open_writer(key)
        wa.write(data)
        wb.write(data)
        ben_commits = threading.Thread(target=lambda: told.append(wb.commit(key, sha)))
        ben_commits.start()
        time.sleep(1)  # (his look at the name done)
        told.append(wa.commit(key, sha))
        anna_moved.set()
        ben_commits.join(timeout=60)
        assert 2 == len(told) and data == (store / key).read_bytes()
        assert [] == list((store / ".photod/tmp").glob("*"))
    finally:
        anna_moved.set()
        anna.close()
        ben.close()


def _commit_as_photod(target: RcloneTarget, w: Any, key: str, data: bytes) -> str | None:
    """As photod's copy does: under ``key``, else (another's file) beside it; the name
    that holds ``data`` (published, or found there and adopted), None if it failed."""
    sha = hashlib.sha256(data).hexdigest()
    for name in (key, suffixed(key, sha)):
        try:
            w.commit(name, sha)
        except KeyExists as taken:
            if taken.other or not holds(target, name, sha):
                continue
            w.abort()
        except PhotodError:
            break
        return name
    w.abort()
    return None


def _slow_link(server: S3Server, tmp_path: Path, key: str, timeout: float = 5) -> Any:
    """Anna's rclone target on the bucket store, through a FaultProxy whose PUTs of
    ``key`` each take 3 s to go through; with the proxy."""
    proxy = FaultProxy(server.endpoint, lambda method, path, query: (
        time.sleep(3) if method == "PUT" and path.endswith(f"/{key}") else None) or "pass")  # fmt: skip
    settings = {"type": "s3", "provider": "Other", "endpoint": proxy.endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}  # fmt: skip
    conf = RcloneTarget.write_inline_config(tmp_path / "anna.conf", "cloud:", settings)
    remote = f"cloud:{BUCKET}/{tmp_path.name}/"
    return RcloneTarget("r", remote, conf, timeout=timeout, owner="aaaa"), proxy


def test_the_same_photo_going_straight_from_another_computer_is_waited_for_not_kept_twice(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Path
) -> None:
    """Anna's copy of a photo is on its way straight to its name on a bucket store (a
    slow link); Ben's copy of the same photo, committed meanwhile, sees her stand-in
    and goes through its temporary.  Her stand-in holds no bytes to compare: a rival at
    once, the photo went beside its own copy (kept twice, each computer counting
    another name).  It is waited for: once hers is there, Ben finds the photo under its
    name and adopts it."""
    anna_, ben, store = _family("bucket", request, tmp_path)
    anna_.close()
    key, data = "2024/IMG.JPG", DATA + b"shared"
    anna, link = _slow_link(s3_server, tmp_path, key)
    told: dict[str, str | None] = {}
    try:
        anna.check(None)
        wa, wb = anna.open_writer(key), ben.open_writer(key)
        wa.write(data)
        wb.write(data)
        anna_commits = threading.Thread(
            target=lambda: told.update(anna=_commit_as_photod(anna, wa, key, data))
        )
        anna_commits.start()
        wait_for(lambda: any(store.glob(".photod/tmp/aaaa-*")), 30, "Anna's stand-in")
        told["ben"] = _commit_as_photod(ben, wb, key, data)
        anna_commits.join(timeout=60)
        assert {"anna": key, "ben": key} == told
        assert ["IMG.JPG"] == sorted(p.name for p in (store / "2024").iterdir())
        assert [] == list((store / ".photod/tmp").glob("*"))
    finally:
        anna.close()
        ben.close()
        link.stop()


def test_a_clones_first_start_leaves_a_commits_stand_in(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Path
) -> None:
    """While Anna's photo is on its way straight to its name, its stand-in keeps Ben's
    other photo of that name off it.  A clone of her disk (her id) starting then,
    whose first check removes every temporary of her id a crash left, took it too: Ben
    went straight to the name, and Anna's landed over his counted copy.  A stand-in is
    left to the age rule: Ben goes beside, and each copy is where its computer counts
    it."""
    anna_, ben, store = _family("bucket", request, tmp_path)
    anna_.close()
    key, mine, theirs = "2024/IMG.JPG", DATA + b"anna", DATA + b"ben!"
    anna, link = _slow_link(s3_server, tmp_path, key)
    told: dict[str | None, bytes] = {}
    try:
        anna.check(None)
        wa = anna.open_writer(key)
        wa.write(mine)
        anna_commits = threading.Thread(
            target=lambda: told.update({_commit_as_photod(anna, wa, key, mine): mine})
        )
        anna_commits.start()
        wait_for(lambda: any(store.glob(".photod/tmp/aaaa-*")), 30, "Anna's stand-in")
        clone = rclone_s3_target(s3_server.endpoint, tmp_path, owner="aaaa")
        clone.check(None)  # the clone's first start
        clone.close()
        wb = ben.open_writer(key)
        wb.write(theirs)
        told[_commit_as_photod(ben, wb, key, theirs)] = theirs
        anna_commits.join(timeout=60)
        assert {key, suffixed(key, hashlib.sha256(theirs).hexdigest())} == set(told)
        for name, data in told.items():
            assert data == (store / str(name)).read_bytes(), name
    finally:
        anna.close()
        ben.close()
        link.stop()


def test_other_bytes_found_under_the_name_a_photo_went_straight_to_are_never_moved(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two photos went straight to one name (a store whose listing lagged: Ben saw
    neither Anna's stand-in nor her photo), and Ben's landed over Anna's and was
    counted.  Anna's proof then finds his bytes: they were moved into
    .photod/quarantine/, and his counted copy was gone from its name.  The name is
    taken for another's file: Ben's copy stays, and Anna's, still held, goes beside."""
    anna, ben, store = _family("bucket", request, tmp_path)
    key, mine, theirs = "2024/IMG.JPG", DATA + b"anna", DATA + b"ben!"
    hit = failpoints.hit
    wa = anna.open_writer(key)

    def ben_meanwhile(name: str) -> None:  # between Anna's upload and its proof
        if name == "rclone_uploaded" and not ben_went:
            ben_went.append(True)  # (a store whose listing lagged: Ben saw neither hers
            ben._put(key, theirs)  # nor her stand-in, went straight, and was counted)
            told[key] = theirs
        hit(name)

    told: dict[str | None, bytes] = {}
    ben_went: list[bool] = []
    try:
        wa.write(mine)
        monkeypatch.setattr(failpoints, "hit", ben_meanwhile)
        told[_commit_as_photod(anna, wa, key, mine)] = mine
        beside = suffixed(key, hashlib.sha256(mine).hexdigest())
        assert {key: theirs, beside: mine} == told
        for name, data in told.items():
            assert data == (store / str(name)).read_bytes(), name
        assert [] == list(store.glob(".photod/quarantine/**/*"))
    finally:
        anna.close()
        ben.close()


def test_a_photo_sent_straight_and_not_said_stored_keeps_its_stand_in_till_the_tidy(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: Path
) -> None:
    """Anna's photo went straight to its name over a slow link, and rclone's wait for
    the store's answer timed out: her copy failed, and its stand-in was removed.  But
    the store took the whole body and stored it after: Ben, seeing no stand-in and no
    file, had gone straight to the name meanwhile, and Anna's landed over his counted
    copy.  Now such a stand-in stays, recorded, for the target's tidy (when the target
    is back, or at the next start): Ben goes beside, and his copy is where he counts
    it."""
    anna_, ben, store = _family("bucket", request, tmp_path)
    anna_.close()
    key, mine, theirs = "2024/IMG.JPG", DATA * 2 + b"anna", DATA + b"ben!"
    anna, link = _slow_link(s3_server, tmp_path, key, timeout=1)  # (rclone waits 1 s)
    try:
        anna.check(None)
        wa = anna.open_writer(key)
        wa.write(mine)
        assert None is _commit_as_photod(anna, wa, key, mine)  # (timed out: failed)
        assert not wa.abort()  # (left: the catalog keeps its record, for the tidy)
        assert [wa.temp_key] == [f".photod/tmp/{p.name}" for p in store.glob(".photod/tmp/*")]
        wb = ben.open_writer(key)
        wb.write(theirs)
        beside = _commit_as_photod(ben, wb, key, theirs)
        wait_for(lambda: (store / key).exists(), 30, "Anna's photo stored after all")
        assert suffixed(key, hashlib.sha256(theirs).hexdigest()) == beside
        assert (theirs, mine) == ((store / str(beside)).read_bytes(), (store / key).read_bytes())
    finally:
        anna.close()
        ben.close()
        link.stop()


def test_the_same_photo_still_being_sent_by_another_computer_is_no_rival(
    tmp_path: Path,
) -> None:
    """Over SFTP or to a local disk rclone writes an upload's temporary in place, so
    another computer's upload of the same photo, still being sent, shows at a smaller
    size: taken for other bytes, the photo went beside its own copy.  It grows while
    it is watched: one copy of the photo, under its name, whoever publishes first."""
    store = tmp_path / "store"
    anna = local_rclone(tmp_path, store, owner="aaaa")
    ben = local_rclone(tmp_path, store, owner="bbbb")
    anna.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
    data, chunk = os.urandom(1 << 20) * 16, 64 * 1024
    sha = hashlib.sha256(data).hexdigest()
    sending, anna_done = threading.Event(), threading.Event()
    told: dict[str, str] = {}

    def publish(target: RcloneTarget, w: Any) -> str:  # as photod does
        try:
            w.commit("2024/IMG.MOV", sha)
            return "published"
        except KeyExists as taken:
            if taken.other:
                w.commit(suffixed("2024/IMG.MOV", sha), sha)
                return "beside"
            w.abort()
            return "found" if holds(target, "2024/IMG.MOV", sha) else "lost"

    def ben_sends() -> None:  # slowly (64 KiB each 40 ms) until Anna's copy is done
        w = ben.open_writer("2024/IMG.MOV")
        for i in range(0, len(data), chunk):
            w.write(data[i : i + chunk])
            if i >= 10 * chunk:
                sending.set()
            if not anna_done.is_set():
                time.sleep(0.04)
        told["ben"] = publish(ben, w)

    try:
        sender = threading.Thread(target=ben_sends)
        sender.start()
        assert sending.wait(30)
        w = anna.open_writer("2024/IMG.MOV")
        w.write(data)
        told["anna"] = publish(anna, w)  # ("beside", before)
        anna_done.set()
        sender.join(timeout=60)
        assert {"published", "found"} >= set(told.values()) and len(told) == 2, told
        assert ["IMG.MOV"] == sorted(p.name for p in (store / "2024").iterdir())
        assert data == (store / "2024/IMG.MOV").read_bytes()
    finally:
        anna_done.set()  # (Ben ends before his rcd does)
        sender.join(timeout=60)
        anna.close()
        ben.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_crashed_computers_partial_upload_of_the_name_sends_the_copy_beside(
    tmp_path: Path, encrypted: bool
) -> None:
    """Another computer crashed while it sent a photo of this name: its partial
    temporary waits in .photod/tmp/ (a day, till a look sees it unchanged).  The copy
    goes beside under its own suffix, told another photo's (on an encrypted target it
    failed instead, "the file taking its name could not be read", each try sending the
    photo again, for as long as the temporary stayed)."""
    store = tmp_path / "store"
    raw = local_rclone(tmp_path, store, owner="aaaa")
    raw.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
    target: Any = raw
    if encrypted:
        keygen(tmp_path / "identity.txt")
        target = CryptTarget(raw, Keys(tmp_path / "identity.txt"))
    try:
        target.check(None)
        key = "2024/IMG_7.JPG"
        stored = target.keys_.object_name(key) if encrypted else key
        (store / ".photod/tmp").mkdir(parents=True, exist_ok=True)
        partial = store / ".photod/tmp" / f"cccc-{'0' * 24}{name_tag(stored)}"
        partial.write_bytes(DATA[:1000])
        w = target.open_writer(key)
        w.write(DATA)
        with pytest.raises(KeyExists) as taken:
            w.commit(key, SHA)
        assert taken.value.other  # (so the copy goes beside, the name unread)
        w.commit(suffixed(key, SHA), SHA)
        assert SHA == hash_object(target, suffixed(key, SHA))
        assert None is target.size(key)
    finally:
        raw.close()


@pytest.mark.parametrize("owners", [("aaaa", "bbbb"), ("aaaa", "aaaa")], ids=["family", "clone"])
def test_a_rename_slow_to_land_never_replaces_another_computers_counted_copy(
    s3_server: S3Server, tmp_path: Path, owners: tuple[str, str]
) -> None:
    """rclone looks whether the name is free, then renames (on S3, copies): Ben's
    rename is slow to land (a loaded remote); Anna's upload ends meanwhile, and her
    look, rename and check all passed, then Ben's landed over hers, and his check
    passed too: both were told the name held theirs, every time.  Anna now sees Ben's
    upload of the name waiting in .photod/tmp/ and goes beside; Ben keeps the name.  So
    too when Ben is a clone of Anna's computer, writing under her installation's id.
    (On this bucket store Ben's photo goes straight to its name, slow to land the same,
    and what Anna sees is its stand-in.)"""
    if not s3_server.running():
        s3_server.start()
    renaming = threading.Event()

    def slow_first_rename(method: str, path: str, query: str) -> str:
        if method == "PUT" and path.endswith("/2024/IMG.JPG") and not renaming.is_set():
            renaming.set()
            time.sleep(3)  # (Anna's whole commit fits in it)
        return "pass"

    proxy = FaultProxy(s3_server.endpoint, slow_first_rename)
    conf = RcloneTarget.write_inline_config(tmp_path / "rclone.conf", "cloud:", {
        "type": "s3", "provider": "Other", "endpoint": proxy.endpoint,
        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY})  # fmt: skip
    remote = f"cloud:{BUCKET}/{tmp_path.name}/"
    anna, ben = (RcloneTarget("r", remote, conf, owner=o) for o in owners)
    told: dict[str, bytes] = {}
    try:
        anna.put_meta("target.json", json.dumps({"id": "t-r"}).encode())
        anna.check(None)
        ben.check(None)
        ours, theirs = DATA + b"anna", DATA + b"ben!"
        w = ben.open_writer("2024/IMG.JPG")
        w.write(theirs)
        renamed = threading.Thread(target=_publish, args=(ben, w, "2024/IMG.JPG", theirs, told))
        renamed.start()
        assert renaming.wait(30)  # Ben's rename is on its way
        w = anna.open_writer("2024/IMG.JPG")
        w.write(ours)
        _publish(anna, w, "2024/IMG.JPG", ours, told)
        renamed.join(timeout=60)
        beside = f"2024/IMG.JPG.{hashlib.sha256(ours).hexdigest()[:8]}"
        assert {"2024/IMG.JPG": theirs, beside: ours} == told
        for name, data in told.items():
            assert hashlib.sha256(data).hexdigest() == hash_object(anna, name), name
    finally:
        anna.close()
        ben.close()
        proxy.stop()


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("failed to open .photod/tmp/aaaa1111-3f2a-9c4035be: write: no space left on device",
         "full: the remote has no room left"),
        ("directory not found: 2024/2024-05-06/IMG_5031.JPG", "directory not found"),
        ("HTTP error 403 (403 Forbidden) returned body: AccessDenied", "credentials refused"),
        ("HTTP error 429: Too Many Requests", "throttled by the remote"),
        ("couldn't connect SSH: ssh: handshake failed: read tcp 127.0.0.1:50732->"
         "127.0.0.1:22: read: connection reset by peer", "cannot reach"),
        ("couldn't connect SSH: ssh: handshake failed: ssh: unable to authenticate, "
         "attempted methods [none publickey], no supported methods remain",
         "credentials refused"),
    ],
)  # fmt: skip
def test_what_rclone_says_becomes_the_reason_it_means(
    tmp_path: Path, said: str, reason: str
) -> None:
    """rclone's complaint becomes a reason a person can act on, and only the one it
    means: a full remote is "full" (it was "credentials refused", for the "403" inside
    a temporary's name), a photo named IMG_5031 missing is not "throttled" (503)."""
    target = local_rclone(tmp_path, tmp_path)
    try:
        got = target.error(said).reason
    finally:
        target.close()
    assert got.startswith(reason), got


def test_a_sealed_sidecar_is_named_after_its_photos_object_and_an_older_one_still_reads(
    tmp_path: Path,
) -> None:
    """On an encrypted target a photo's sealed sidecar is ``.photod/beside/`` plus its
    photo's object name (the one its index line gives the recovery without photod),
    and one a photod before this wrote under its own key's name still reads back."""
    keygen(tmp_path / "main.txt")
    t = CryptTarget(LocalTarget("l", tmp_path / "root", creates_root=True),
                    Keys(tmp_path / "main.txt"))  # fmt: skip
    t.check(None)
    put(t, "2024/IMG_1.HEIC")
    put(t, "2024/IMG_2.HEIC")
    assert t.put_beside("2024/IMG_1.HEIC.xmp", b"<x>new</x>", replace=False)
    obj = t.keys_.object_name("2024/IMG_1.HEIC").rpartition("/")[2]
    assert [f"beside/{obj}"] == t.inner.list_meta("beside")
    assert b"<x>new</x>" == t.get_beside("2024/IMG_1.HEIC.xmp")
    old = t.keys_.object_name("2024/IMG_2.HEIC.xmp").rpartition("/")[2]
    t.put_private(f"beside/{old}", b"<x>older</x>")
    assert b"<x>older</x>" == t.get_beside("2024/IMG_2.HEIC.xmp")


def test_a_sealed_sidecar_never_takes_another_computers_sidecar_name(
    tmp_path: Path,
) -> None:
    """Two computers of a family share an encrypted target; Ben's computer stored a
    photo (sealed to Anna's key too) and its sidecar, and Anna's holds the same photo
    only through Ben's object. Anna's sidecar for it never replaces Ben's (his albums
    and favourites lost, and his photod unable to open what is then at his sidecar's
    name, sealed to Anna alone)."""
    anna, ben = tmp_path / "anna.txt", tmp_path / "ben.txt"
    anna_key = keygen(anna)
    keygen(ben)
    inner = make_kind("local", None, tmp_path).target  # type: ignore[arg-type]
    key = "2024/2024-01-02/IMG_1.HEIC"
    bens = CryptTarget(inner, Keys(ben, [anna_key]))
    bens.check(None)
    put(bens, key, DATA)
    assert bens.put_beside(key + ".xmp", b"<x>ben's</x>", replace=False)
    annas = CryptTarget(inner, Keys(anna))
    assert len(DATA) == annas.size(key)  # (held through Ben's object)
    assert annas.put_beside(key + ".xmp", b"<x>anna's</x>", replace=False)
    assert b"<x>anna's</x>" == annas.get_beside(key + ".xmp")
    assert b"<x>ben's</x>" == CryptTarget(inner, Keys(ben)).get_beside(key + ".xmp")


def test_a_folder_of_a_photos_name_on_an_rclone_remote_is_a_name_taken(tmp_path: Path) -> None:
    """A folder someone made on the NAS with a photo's name (``IMG_0001.JPG/``): the copy
    goes under another name, as over any name taken, and the target stays in use (it
    was a failed copy, the NAS said away, at each try: rclone, asked whether the name
    held a file, said no, then refused the move onto the folder)."""
    folder = tmp_path / "nas"
    (folder / "2024" / "a.jpg").mkdir(parents=True)
    t = local_rclone(tmp_path, folder)
    t.put_meta("target.json", json.dumps({"id": "t-nas"}).encode())
    t.check(None)
    try:
        w = t.open_writer("2024/a.jpg")
        w.write(DATA)
        with pytest.raises(KeyExists):
            w.commit("2024/a.jpg", SHA)
        w.commit("2024/a~other.jpg", SHA)  # the writer stays usable under another key
        assert SHA == hash_object(t, "2024/a~other.jpg")
        assert (folder / "2024" / "a.jpg").is_dir()
    finally:
        t.close()
