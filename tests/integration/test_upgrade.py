"""Targets an older photod wrote, read by this one: the day a user upgrades.

Each test writes the older layout itself, in the words the older photod used (no
stored blob): what it wrote is derived from what this photod writes, then turned
into the older form."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import sha256, target_files
from tests.integration.conftest import Setup, rebuilt_and_restored
from tests.integration.test_truth import make_photos, stock_restore, three_targets
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server, need


def _age(*args: str, data: bytes) -> bytes:
    return subprocess.run(["age", *args], input=data, capture_output=True, check=True).stdout


def test_an_encrypted_target_of_a_photod_before_installations_is_rebuilt_from(
    setup: Setup,
) -> None:
    """An encrypted target as photod wrote it before per-installation records (until
    2026-12-02): one sealed index at `.photod/index/<24 hex>` of five-field lines
    (object, SHA-256, size, capture time, path), no `.photod/installations/` and no
    object's own line.  The computer lost, `catalog rebuild --from` it finds every
    photo (it said "0 assets" and exit 0) and `restore` gives each back byte for byte
    under its name."""
    p, _, vault, key = three_targets(setup)
    made = make_photos(setup.inbox, 4)
    assert 0 == p.cli("run", "--once").returncode
    _as_before_installations(vault, key, snapshot=False)
    dest, back, said = rebuilt_and_restored(setup, p, made)
    assert "4 assets" in said, said
    assert sorted(target_files(setup.home / "lib")) == sorted(back)  # the original names
    assert all(sha256(dest / k) == v for k, v in back.items())


def _as_before_installations(vault: Path, key: Path, snapshot: bool = True) -> None:
    """Turn an encrypted target into the layout a photod before installations wrote:
    one sealed index at `.photod/index/<24 hex>` of five-field lines (object, SHA-256,
    size, capture time, path), one sealed catalog snapshot at
    `.photod/catalog.sqlite.gz` (unless not ``snapshot``), no `.photod/installations/`
    and no object's own line."""
    lines = b""
    for segment in vault.glob(".photod/installations/*/index/*.age"):
        lines += _age("-d", "-i", str(key), data=segment.read_bytes())
    old = b"".join(  # object sha size taken path: the file time came later
        b"\t".join(f[:4] + f[5:]) + b"\n"
        for f in (line.split(b"\t") for line in lines.splitlines())
    )
    if snapshot:
        newest = max(vault.glob(".photod/installations/*/snapshots/*.sqlite.gz"))
        shutil.copyfile(newest, vault / ".photod" / "catalog.sqlite.gz")
    shutil.rmtree(vault / ".photod" / "installations")
    shutil.rmtree(vault / ".photod" / "objects")
    (vault / ".photod" / "index").mkdir()
    (vault / ".photod" / "index" / ("ab" * 12)).write_bytes(
        _age("-r", _age_recipient(key), data=old)
    )


def test_a_target_of_a_photod_before_installations_gives_its_snapshot_s_file_times(
    setup: Setup,
) -> None:
    """Such a target's one catalog snapshot (`.photod/catalog.sqlite.gz`) is taken by a
    rebuild: each photo comes back with its file time, the only date of a photo without
    EXIF, which the early index lines never held (a full re-scan dated every photo by
    its restore).  (The snapshot here is of today's schema; older ones are migrated as
    any catalog is, `tests/test_catalog.py`.)"""
    p, _, vault, key = three_targets(setup)
    made, times = _dated_photos(setup, 1_300_000_000)
    assert 0 == p.cli("run", "--once").returncode
    _as_before_installations(vault, key)
    dest, back, said = rebuilt_and_restored(setup, p, made)
    assert "its catalog snapshot" in said, said
    for rel, digest in back.items():
        assert times[digest] == int((dest / rel).stat().st_mtime), rel


def _dated_photos(setup: Setup, first: int) -> tuple[dict[str, str], dict[str, int]]:
    """Three photos in the watch folder, their file times a second apart from
    ``first``: (name -> SHA-256, SHA-256 -> file time)."""
    made, times = make_photos(setup.inbox, 3), {}
    for i, path in enumerate(sorted(setup.inbox.iterdir())):
        os.utime(path, (first + i, first + i))
        times[made[path.name]] = first + i
    return made, times


def _age_recipient(key: Path) -> str:
    out = subprocess.run(["age-keygen", "-y", str(key)], capture_output=True, text=True)
    return out.stdout.strip()


# The top of a recovery plan an older photod (before installations) wrote on a target:
# it read one index, `.photod/index/`, which no photod writes any more.
EARLY_PLAN = """# photod recovery plan

## Restore without photod

### vault

```bash
cp -a VAULT encrypted
for f in encrypted/.photod/index/*; do age -d -i "$KEY" "$f"; done | sort -u > index.tsv
mkdir -p restored
while IFS=$'\\t' read -r object sha size taken path; do
  mkdir -p "restored/$(dirname "$path")"
  age -d -i "$KEY" -o "restored/$path" "encrypted/$object" || continue
  printf '%s  %s\\n' "$sha" "$path" >> restored/SHA256SUMS
done < index.tsv
cd restored && sha256sum -c SHA256SUMS
```
"""


def test_a_target_s_recovery_document_of_a_photod_before_installations_is_brought_up_to_date(
    setup: Setup,
) -> None:
    """The target's own `.photod/RECOVERY.md` is written once, but one an older photod
    wrote before installations kept records names an index no photod writes any more:
    whoever found the drive and followed it got back only the photos copied before the
    upgrade.  The next snapshot replaces it with the current document, which restores
    every photo with stock tools."""
    p, _, vault, key = three_targets(setup)
    made = make_photos(setup.inbox, 2)
    assert 0 == p.cli("run", "--once").returncode
    plan = vault / ".photod" / "RECOVERY.md"
    plan.write_text(EARLY_PLAN.replace("VAULT", str(vault)))
    made |= make_photos(setup.inbox, 2, start=2)  # after the upgrade
    assert 0 == p.cli("run", "--once").returncode
    text = plan.read_text()
    assert ".photod/installations/" in text, text
    out = stock_restore(text, setup.home / "stock", key)
    assert 4 == out.stdout.count(": OK"), out.stdout + out.stderr
    back = target_files(setup.home / "stock" / "restored")
    assert sorted(made.values()) == sorted(v for k, v in back.items() if k != "SHA256SUMS")
    mine = setup.home / "lib" / ".photod" / "RECOVERY.md"
    kept = mine.read_bytes()
    assert 0 == p.cli("run", "--once").returncode  # a current one is never written again
    make_photos(setup.inbox, 1, start=4)
    assert 0 == p.cli("run", "--once").returncode
    assert kept == mine.read_bytes()


def test_a_target_s_recovery_document_of_an_earlier_photod_is_brought_up_to_date(
    setup: Setup,
) -> None:
    """The document at the top of a drive named "Anna's Drive" as the photod of 4
    December wrote it: its first step put the drive's path between single quotes as it
    stood, and failed there ("unexpected EOF").  It was written once and never again,
    however the steps were fixed since: whoever found the drive and followed it got
    nothing back.  The next snapshot replaces it with the current document, which
    restores every photo; a current one is still never written again."""
    need("age", "apt install age")
    key, drive = setup.home / "key.txt", setup.home / "Anna's Drive"
    p = setup.photod([{"name": "vault", "path": str(drive), "create": True, "encrypt": True}],
                     {"copies": 1, "media": 1, "offsite": 0},
                     extra=f'\n[encryption]\nidentity = "{key}"\n')  # fmt: skip
    assert 0 == p.cli("keygen", "--output", str(key)).returncode
    made = make_photos(setup.inbox, 2)
    assert 0 == p.cli("run", "--once").returncode
    plan = drive / ".photod" / "RECOVERY.md"
    current = plan.read_text()
    # As the photod of 4 December wrote it: no format's mark, the path quoted as it stood.
    older = re.sub(r"<!-- photod recovery document[^>]*-->\n", "", current)
    older = older.replace(shlex.quote(f"{drive}/."), f"'{drive}/.'")
    assert older != current
    plan.write_text(older)
    assert 0 != stock_restore(older, setup.home / "before", key).returncode
    made |= make_photos(setup.inbox, 2, start=2)  # after the upgrade
    assert 0 == p.cli("run", "--once").returncode
    out = stock_restore(plan.read_text(), setup.home / "stock", key)
    assert 0 == out.returncode, out.stdout + out.stderr
    back = target_files(setup.home / "stock" / "restored")
    assert sorted(made.values()) == sorted(v for k, v in back.items() if k != "SHA256SUMS")
    kept = plan.read_bytes()
    make_photos(setup.inbox, 1, start=4)
    assert 0 == p.cli("run", "--once").returncode
    assert kept == plan.read_bytes()


def test_an_encrypted_target_s_list_completed_keeps_each_photo_s_file_time(setup: Setup) -> None:
    """An encrypted target whose list lacks copies the catalog counts (written by a
    photod before installations kept records, or the drive put back from an old copy
    of itself): the lines photod adds for them keep each photo's file time, the only
    date of a photo without EXIF.  They had none: the recovery without photod gave
    every such photo the moment of its restore."""
    p, _, vault, key = three_targets(setup)
    _, times = _dated_photos(setup, 1_400_000_000)
    assert 0 == p.cli("run", "--once").returncode
    for lost in [
        *vault.glob(".photod/installations/*/index/*"),
        *vault.glob(".photod/objects/*/*"),
    ]:
        lost.unlink()
    assert 0 == p.cli("run", "--once").returncode
    assert p.events("list_completed")
    out = stock_restore((vault / ".photod" / "RECOVERY.md").read_text(), setup.home / "stock", key)
    assert 3 == out.stdout.count(": OK"), out.stdout + out.stderr
    for f in (setup.home / "stock" / "restored").rglob("*.JPG"):
        assert times[sha256(f)] == int(f.stat().st_mtime), f


@pytest.mark.parametrize("shared", [False, True], ids=["alone", "shared"])
def test_an_upload_an_older_photod_was_killed_during_is_ended(
    setup: Setup, s3_server: S3Server, shared: bool
) -> None:
    """A photod before 2026-12-05 killed during a large upload left it open at the
    photo's own key, recorded as `s3-upload:<temporary>:<key>` (no id): this photod's
    start looked for it at the temporary alone, and its parts stayed stored (and
    billed) out of every listing for ever.  Where no other computer keeps records on
    the target (none could be uploading there) it is ended; on a shared one another
    computer's upload in flight to that name is never touched."""
    import sqlite3

    import boto3

    prefix = f"old-{setup.home.name}-{shared}/"
    if not s3_server.running():
        s3_server.start()
    creds = s3_server.credentials(setup.home / "aws-credentials")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")},
                      s3_server.target("cloud", creds, prefix=prefix)],
                     policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip
    make_photos(setup.inbox, 1)
    assert 0 == p.cli("run", "--once").returncode
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name="us-east-1")  # fmt: skip
    try:
        if shared:  # another computer backs up here too
            s3.put_object(Bucket=BUCKET, Body=b'{"id": "' + b"7" * 32 + b'", "name": "den"}',
                          Key=f"{prefix}.photod/installations/den.777777777777/installation.json")  # fmt: skip
        key = "2024/2024-01-02/BIG.MOV"
        up = s3.create_multipart_upload(Bucket=BUCKET, Key=prefix + key)["UploadId"]
        s3.upload_part(Bucket=BUCKET, Key=prefix + key, UploadId=up, PartNumber=1,
                       Body=b"\0" * (5 << 20))  # fmt: skip
        db = sqlite3.connect(setup.home / "state" / "catalog.sqlite")
        with db:  # the older photod's record of its upload, as it wrote it
            db.execute("INSERT INTO temp_files VALUES (?,?)",
                       ("cloud", f"s3-upload:.photod/tmp/{'ab' * 12}:{key}"))  # fmt: skip
        db.close()
        assert 0 == p.cli("run", "--once").returncode
        left = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
        assert ([up] if shared else []) == [u["UploadId"] for u in left]
        if shared:
            s3.abort_multipart_upload(Bucket=BUCKET, Key=prefix + key, UploadId=up)
    finally:
        s3.close()
