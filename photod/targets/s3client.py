"""The botocore client an S3 target talks through: its settings, and S3's API
description read once per process instead of at every client."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.handlers import add_expect_header

_loaders: list[Any] = []  # the first session's loader of API descriptions, shared
_lock = threading.Lock()


def _session(profile: str | None, credentials_file: Path | None, region: str) -> boto3.Session:
    """A session of its own (credentials are read again: a key rotated before a reload
    is the one used) with the loader of the first: reading S3's API description takes
    0.08 s, and a daemon builds its targets twice at each start."""
    core = botocore.session.Session(profile=profile)
    if credentials_file is not None:
        core.set_config_variable("credentials_file", str(credentials_file))
    with _lock:
        if _loaders:
            core.register_component("data_loader", _loaders[0])
        session = boto3.Session(botocore_session=core, region_name=region)
        loader = core.get_component("data_loader")
        if not _loaders:
            _loaders.append(loader)
        # boto3 adds its own folder to the loader's search path at every session: once.
        loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


def make_client(
    endpoint: str | None,
    region: str | None,
    profile: str | None,
    credentials_file: Path | None,
    timeout: float,
) -> Any:
    session = _session(profile, credentials_file, region or "us-east-1")
    client = session.client(
        "s3",
        endpoint_url=endpoint,
        config=BotoConfig(
            # Content-MD5 already protects every body: no second hash of it for
            # the signature (botocore signs payloads on plain http otherwise).
            s3={"addressing_style": "path", "payload_signing_enabled": False}
            if endpoint
            else {"payload_signing_enabled": False},
            # A few quick retries inside botocore; after that the target is
            # unavailable and photod's own backoff takes over.
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=min(timeout, 10),
            read_timeout=timeout,
            max_pool_connections=16,
            # photod builds every request itself (a tenth of each request's time).
            parameter_validation=False,
            # Content-MD5 is what we send; no extra trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    # botocore asks "Expect: 100-continue" before each body over 1 MB: a round
    # trip per upload that buys nothing when the server is known to take it.
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client
