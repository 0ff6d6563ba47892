"""What the hardware allows, measured beside each benchmark (issue 21): no tool can
beat these on this machine, so a ratio to them says how much of photod's time is its
own.

- ``disk_write_rate``: `dd conv=fsync` of 512 MiB into the folder (MB/s): writing
  bytes durably, nothing else.
- ``sha256_rate``: hashlib's SHA-256 over 256 MiB in memory (MB/s), the same OpenSSL
  code photod hashes with (SHA-NI where the CPU has it).
- ``walk_time``: `find DIR -type f -printf '%s %T@'`: one walk that stats every file,
  the least any scan of a folder does.
- ``s3_bare_put``: every file of a folder PUT to an S3 server by a bare boto3 client,
  4 at a time, with the Content-MD5 the server checks and nothing else (no catalog, no
  read-back, no second hash): the loopback server's own ceiling for that corpus.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path


def disk_write_rate(folder: Path, mib: int = 512) -> float:
    out = folder / "floor-dd.bin"
    started = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={out}", "bs=4M", f"count={mib // 4}",
                    "conv=fsync"], check=True, capture_output=True)  # fmt: skip
    took = time.monotonic() - started
    out.unlink()
    return mib * 1024**2 / took / 1e6


def sha256_rate(mib: int = 256) -> float:
    block = os.urandom(4 * 1024**2)
    h = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(mib // 4):
        h.update(block)
    return mib * 1024**2 / (time.perf_counter() - started) / 1e6


def walk_time(folder: Path) -> float:
    started = time.monotonic()
    subprocess.run(["find", str(folder), "-type", "f", "-printf", "%s %T@\n"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.monotonic() - started


def s3_bare_put(folder: Path, endpoint: str, bucket: str, prefix: str, key: str,
                secret: str) -> float:  # fmt: skip
    """Seconds to PUT every file under ``folder`` (4 at a time), process start included
    as for the tools it is set beside."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", _BARE_PUT, str(folder), endpoint,
                    bucket, prefix, key, secret], check=True)  # fmt: skip
    return time.monotonic() - started


_BARE_PUT = r"""
import base64, hashlib, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import boto3
from botocore.config import Config
folder, endpoint, bucket, prefix, key, secret = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(max_pool_connections=8, request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
def put(path):
    data = path.read_bytes()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder)}", Body=data,
                  ContentMD5=md5)
files = [p for p in Path(folder).rglob("*") if p.is_file()]
with ThreadPoolExecutor(4) as pool:
    list(pool.map(put, files))
"""

__all__ = ["disk_write_rate", "s3_bare_put", "sha256_rate", "walk_time"]
