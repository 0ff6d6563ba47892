"""The botocore client an S3 target talks through: its settings, S3's API description
read once per process instead of at every client, and its errors as photod's."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.handlers import add_expect_header
from urllib3.exceptions import HTTPError as Urllib3Error

from photod.errors import (
    ClockSkewed,
    ConfigError,
    KeyExists,
    ObjectArchived,
    PhotodError,
    TargetUnavailable,
)
from photod.policy import plural
from photod.targets.stopcut import UNANSWERED, cut_at_stop

THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
             "TooManyRequests", "ServiceUnavailable"}  # fmt: skip
CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
               "TokenRefreshRequired", "AccessDenied", "InvalidClientTokenId"}  # fmt: skip
# What a request can raise besides a ClientError: botocore's own errors, and (reading a
# broken response) urllib3's and the socket's.
NETWORK = (BotoCoreError, Urllib3Error, OSError)
# What a request may succeed with as it is, a moment later: the connection cut or timed
# out, the server busy or throttling, or the body too slow for it (not a damaged body:
# some servers, `rclone serve s3` among them, drop the whole upload at one).
CUT = (BotoConnectionError, HTTPClientError, Urllib3Error, OSError)
PASSING = {"RequestTimeout", "InternalError", *THROTTLED}
GATEWAY = (502, 503, 504)  # a gateway's (or the server's) word that no server answered
# A server's own 503s that ask for fewer requests: AWS's (THROTTLED), MinIO's when its
# drives lag (SlowDownRead, SlowDownWrite) or a lock waited too long (RequestTimeout).
SHEDDING = {*THROTTLED, "SlowDownRead", "SlowDownWrite", "RequestTimeout"}
DIGEST_REFUSED = ("BadDigest", "InvalidDigest")  # the body's Content-MD5 is not its MD5


def no_server(status: int | None, code: str | None) -> bool:
    """Whether an answer of HTTP ``status`` (S3 error ``code``, when it has one) says that
    no S3 server answered: a gateway's 502-504 (the server behind it gone, maybe
    replaced).  Not a server's own 503 that sheds load (``SHEDDING``): that server answered,
    and what was learned of it stands (forgotten, every throttle cost a new probe)."""
    return status in GATEWAY and code not in SHEDDING


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
) -> tuple[Any, Callable[[], Any]]:
    """The client, and how to make the one that presigns its requests (``s3presigned``),
    from the same session and credentials, when it is first needed."""
    try:
        session = _session(profile, credentials_file, region or "us-east-1")
    except ConfigParseError as exc:  # (a traceback, else)
        raise ConfigError([f"{credentials_file}: not an AWS credentials file ([profile] "
                           "sections of key = value lines)"]) from exc  # fmt: skip
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

    def presigner() -> Any:
        # SigV4 (a presigned URL is SigV2 unless told), and on AWS the bucket's regional
        # name, as the client's own requests use (else the global one): s3presigned
        # sends only where the client's own requests go.
        return session.client("s3", endpoint_url=endpoint, config=BotoConfig(
            signature_version="s3v4", parameter_validation=False,
            s3={"addressing_style": "path" if endpoint else "virtual"}))  # fmt: skip

    return client, presigner


class Unanswered(Exception):
    """A request not sent (``UNANSWERED``): botocore gives it as an HTTPClientError."""


def unanswered(exc: BaseException | None) -> bool:
    """Whether botocore's ``exc`` is a request ``Cut`` did not send."""
    return isinstance(getattr(exc, "kwargs", {}).get("error"), Unanswered)


class Cut:
    """A client's requests in flight, cut once photod stops (``cut_when``): a dead link
    (a NAS or router that vanished, which takes a request and never answers) is not
    waited on past ``STOP_GRACE``, each request up to its timeout and botocore's retry
    (a stop took a minute and more, past systemd's 30 s).  Once one was cut so whose
    link moved no byte since the stop (``stopcut``: not a slow link still sending), no
    request is sent at this stop (``Unanswered``): the abort of an upload, the delete of
    its temporary, the last lists and the snapshot would each wait out the timeout
    again; the next start's tidy ends what is left.  Kept at the connections the
    client's own pool hands out (botocore's ``Endpoint.http_session``): if a botocore
    release moves it, nothing is cut, as before."""

    def __init__(self, client: Any) -> None:
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()  # connections lent out now
        self.lock = threading.Lock()
        http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        classes = getattr(http, "_pool_classes_by_scheme", None)
        if isinstance(classes, dict):  # (the pools are made at the first request)
            classes.update(http=self._tracked(AWSHTTPConnectionPool),
                           https=self._tracked(AWSHTTPSConnectionPool))  # fmt: skip
        self.stop: threading.Event | None = None
        self.silent = threading.Event()  # set once a stop found the link dead
        self.unanswered: Callable[[], None] = lambda: None  # told of each (``_again``)
        client.meta.events.register_first("needs-retry.s3", self._again)

    def _tracked(self, base: type) -> type:
        cut = self

        class Tracked(base):  # type: ignore[misc]
            def _get_conn(self, timeout: float | None = None) -> Any:
                conn = super()._get_conn(timeout)
                if cut.silent.is_set():  # (taken, as the pool's count of them wants)
                    conn.close()
                    raise Unanswered(UNANSWERED)
                with cut.lock:
                    cut.live.add(conn)
                return conn

            def _put_conn(self, conn: Any) -> None:
                if conn is not None:  # (None: one closed on an error, gone with it)
                    with cut.lock:
                        cut.live.discard(conn)
                super()._put_conn(conn)

        return Tracked

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _again(self, **kwargs: Any) -> bool | None:
        """botocore's retry of a failed request, none once photod stops: a request cut
        then is not sent again on the same dead link (photod's next run tries).  A
        request the server did not answer (the link, or a gateway's 502-504: a server
        behind it replaced; ``no_server``) is told (``unanswered``) though botocore's
        retry may pass."""
        response = kwargs.get("response")
        status = getattr(response[0], "status_code", None) if response else None
        error = response[1].get("Error") if response and isinstance(response[1], dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
        if isinstance(kwargs.get("caught_exception"), NETWORK) or no_server(status, code):
            self.unanswered()
        return False if self.stopping() else None

    def when(self, stop: threading.Event) -> None:
        """Once ``stop`` is set, the requests still in flight after ``STOP_GRACE`` are
        cut (as an rclone target's, ``Rcd.cut_when``); requests made after the cut (the
        last lists, the snapshot) go as usual, unless one cut had moved no byte since
        the stop (``silent``: the link is dead)."""
        self.stop = stop
        self.silent = cut_at_stop(stop, self._lent, "s3-stop")

    def _lent(self) -> list[Any]:
        with self.lock:
            return list(self.live)


def mapped(exc: Exception, name: str, bucket: str, where: str, endpoint: str | None) -> PhotodError:
    """One botocore exception as photod's error: the one place that knows them."""
    if isinstance(exc, NoCredentialsError):
        return TargetUnavailable(
            name,
            "no S3 credentials found: set credentials_file or profile, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "PreconditionFailed" or status == 412:
            return KeyExists(str(exc.response.get("Error", {}).get("Key", "")))
        if code in DIGEST_REFUSED:
            # Bytes changed on the way (a bad link or proxy): nothing was stored.
            return TargetUnavailable(
                name, f"the server received other bytes than were sent ({code})"
            )
        if code == "RequestTimeTooSkewed":  # 403 too: not the credentials, not a throttle
            return ClockSkewed(name, skewed(exc.response))
        if code in THROTTLED or status in (429, 503):
            return TargetUnavailable(
                name, f"throttled by the server (HTTP {status} {code}); retrying later"
            )
        if code == "InvalidObjectState":  # 403 too: not the credentials
            return ObjectArchived(
                name,
                "the object is archived (Glacier or Deep Archive): restore it on the "
                "server to read it",
            )
        if code in CREDENTIALS or status in (401, 403):
            return TargetUnavailable(
                name,
                f"credentials refused ({code or status}): check the access key, the "
                f"secret and their expiry for {where}",
            )
        if code == "NoSuchBucket":
            return TargetUnavailable(name, f"bucket {bucket!r} does not exist; create it")
        return TargetUnavailable(name, f"S3 error {code or status}: {err.get('Message', exc)}")
    if unanswered(exc):
        return TargetUnavailable(name, UNANSWERED)
    if isinstance(exc, NETWORK):
        return TargetUnavailable(name, f"cannot reach {endpoint or 'S3'}: {exc}")
    return TargetUnavailable(name, f"S3 request failed: {exc}")


def error_code(exc: BaseException | None) -> str:
    """The S3 error code of botocore's ``exc`` ('' for none)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def retries(part_retry: float, stop: threading.Event) -> Iterator[bool]:
    """The waits before a request the network cut is sent again, one a ``next``: 2 s,
    4 s, 8 s ... (a minute at most apart) for ``part_retry`` seconds in all; each gives
    True once waited, and none is left (``next(it, False)``) once that time is spent or
    photod stops.  One schedule for an upload's parts and a download's rest."""
    waited, wait = 0.0, 2.0
    while True:
        wait = min(wait, part_retry - waited)
        if wait <= 0 or stop.wait(wait):
            return
        yield True
        waited, wait = waited + wait, min(wait * 2, 60.0)


def passing(exc: BaseException | None) -> bool:
    """Whether a request that failed with ``exc`` (botocore's) may succeed sent again as
    it is: the network dropped or timed out, the server was busy; never credentials
    refused, a bucket or an upload gone."""
    if isinstance(exc, CUT):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in PASSING or status == 429 or status >= 500
    return False


def skewed(response: Mapping[str, Any]) -> str:
    """How far this computer's clock is from the server's, when its answer tells:
    AWS gives the request's time and its own (their difference is the skew botocore
    signs with); others give their own time (``ServerTime``, the ``Date`` header),
    compared here with this computer's clock."""
    err = response.get("Error", {})
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    server = _when(err.get("ServerTime")) or _when(headers.get("date"), http=True)
    sent = _when(err.get("RequestTime")) or datetime.now(UTC)
    off = (sent - server).total_seconds() if server is not None else 0.0
    # Under a minute is no skew a server refuses: what was measured is not what the
    # request was signed with; the amount is left out rather than said wrong.
    if abs(off) < 60:
        return "this computer's clock is too far off the server's"
    way = "ahead of" if off > 0 else "behind"
    return f"this computer's clock is {_span(abs(off))} {way} the server's"


def _when(text: object, http: bool = False) -> datetime | None:
    """A time in an S3 answer ('2024-01-02T03:04:05.123Z', '20240102T030405Z', or an HTTP
    date), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = parsedate_to_datetime(text) if http else datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return plural(minutes, "minute")
    if minutes < 48 * 60:
        return plural(round(minutes / 60), "hour")
    return plural(round(minutes / 1440), "day")
