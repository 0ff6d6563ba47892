"""An S3 target's two commonest requests, the PUT of one object and the HEAD of one,
sent at a third of botocore's cost: botocore still decides everything a request is
(the endpoint, the bucket's address, the region, the credentials and their refresh,
the signature), and the client's own connection pool sends it (the same proxies,
certificates and timeouts); only botocore's request pipeline (its events, its retries,
its parsing of the answer) is skipped.  That pipeline costs more CPU per request than
all of rclone's work for a small file (bench/RESULTS.md).

Each request is signed by botocore's own S3 SigV4 signer, in its headers as the
client's own requests are (the body's Content-MD5 signed, the body itself not, as
the client's ``payload_signing_enabled = False``), at the address, region and scope
botocore's presigning gave the target's first request of each kind (``_Quick``):
botocore's whole presigning (its endpoint rules, resolved again for every key) cost
more CPU than the request's own sending, and a signature in the URL made it 400
characters long, which urllib3 checks one character at a time, more than once a
request (0.15 to 0.2 ms of CPU a request).  The address of a key is botocore's (``percent_encode(key,
safe="/~")`` after the bucket's), checked against botocore's own presigned URL before
it is used; where it differs, every request is presigned by botocore as before.

The path is taken only towards the host the client's own requests go to (learned from
them).  An answer it cannot act on (no answer, a refusal, a redirect) is asked again
through the client's own call, which has the last word; when that call succeeds where
this path was refused, the target keeps to the client from then on (one
``s3_presigned_off`` event).  Not a PUT's refusal that any path gets alike, as its
answer tells: ``If-None-Match`` refused over an object (412), a Content-MD5 refused
(BadDigest) that is not its body's MD5 (taken in an earlier read of a file changed
since): the body is not sent a second time for it (``S3Target.put``).  A server that
does not answer at all costs one timeout more than before, then the client's own
retries; once photod stops, none (TargetUnavailable: a dead link is not waited on
twice at a stop).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.utils import percent_encode

from photod.errors import TargetUnavailable
from photod.logs import log
from photod.targets.s3client import NETWORK, no_server, unanswered
from photod.targets.stopcut import UNANSWERED

EXPIRES = 300  # seconds a presigned request stays valid: it is sent at once
NO_ANSWER = 0  # the status when this path got none (or is off)
PASSING = (429, 500, 502, 503, 504)  # answers that say nothing about this path


class Presigned:
    def __init__(
        self, client: Any, presigner: Callable[[], Any], bucket: str, target: str,
        stopping: Callable[[], bool] = lambda: False, unanswered: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        """``stopping``: whether photod stops (``s3client.Cut.stopping``); ``unanswered``
        told of a request the server did not answer (``S3Target.forget``: the next
        answer may be another server's, asked again whether it refuses overwrites)."""
        self.bucket = bucket
        self.stopping = stopping
        self.unanswered = unanswered
        self.target = target
        self._make_signer = presigner  # (a second client: made at the first request)
        self._signer: Any = None
        self._quick: dict[str, _Quick | None] = {}  # by operation: None where not learned
        self._lock = threading.Lock()
        # The client's own pool (botocore's ``Endpoint.http_session``): if a botocore
        # release moves it, every request goes through the client's call as before.
        self.http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self.host: str | None = None  # where the client's own last request went
        client.meta.events.register("before-send.s3", self._learn)

    def _learn(self, request: Any, **kwargs: Any) -> None:
        self.host = urlsplit(request.url).netloc

    def head(self, key: str) -> tuple[int, int | None]:
        """(the status, the object's size when the answer says it)."""
        status, headers, _ = self._send("head_object", "HEAD", {"Key": key}, {}, None)
        try:
            return status, int(headers["Content-Length"])
        except (KeyError, TypeError, ValueError):
            return status, None

    def put(
        self, key: str, body: bytes, md5: str, exclusive: bool, mtime: str = ""
    ) -> tuple[int, str | None]:
        """The status of a PUT of the body with its Content-MD5 (the server checks it
        before it stores anything: a 2xx is the proof), and the S3 error code of a
        refusal that says one; ``exclusive``: If-None-Match; ``mtime``: the file time,
        as the object's ``mtime`` metadata (signed with it)."""
        params: dict[str, Any] = {"Key": key, "ContentMD5": md5}
        headers = {"Content-MD5": md5}
        if exclusive:
            params["IfNoneMatch"] = headers["If-None-Match"] = "*"
        if mtime:
            params["Metadata"] = {"mtime": mtime}
            headers["x-amz-meta-mtime"] = mtime
        status, _, code = self._send("put_object", "PUT", params, headers, body)
        return status, code

    def decided(self, status: int) -> None:
        """The client's own call succeeded after this path's answer ``status``: a
        refusal of this path (not a throttle, not the network) turns it off."""
        if status >= 300 and status not in PASSING:
            self._off(f"HTTP {status}")

    def _request(
        self, op: str, method: str, params: dict[str, Any], headers: dict[str, str],
        body: bytes | None,
    ) -> AWSRequest:  # fmt: skip
        """The request, signed: here, in its headers, where this operation's first was
        learned from botocore (``_Quick``), else presigned by botocore."""
        quick = self._quick.get(op)
        if quick is not None:
            return quick.signed(method, params["Key"], headers, body)
        with self._lock:
            if self._signer is None:
                self._signer = self._make_signer()
        url = str(self._signer.generate_presigned_url(
            op, Params={"Bucket": self.bucket, **params}, ExpiresIn=EXPIRES))  # fmt: skip
        if op not in self._quick:
            credentials = getattr(
                getattr(self._signer, "_request_signer", None), "_credentials", None
            )
            self._quick[op] = _Quick.learned(url, method, params["Key"], headers, credentials)
        return AWSRequest(method, url, headers, body)

    def _off(self, why: str) -> None:
        if self.http is not None:
            self.http = None
            log.info("s3_presigned_off", target=self.target, reason=why,
                     action="every request goes through botocore's own call")  # fmt: skip

    def _send(
        self, op: str, method: str, params: dict[str, Any], headers: dict[str, str],
        body: bytes | None,
    ) -> tuple[int, Any, str | None]:  # fmt: skip
        """(the status, the answer's headers, its S3 error code when it has one)."""
        http = self.http
        if http is None or self.host is None:
            return NO_ANSWER, {}, None
        try:
            request = self._request(op, method, params, headers, body)
            if method == "HEAD":  # a shared cache on the way must not answer it for the
                # server (on a PUT, the server keeps it as the photo's own Cache-Control);
                # not signed, as it was not in the URL botocore presigned (``learned``)
                request.headers["Cache-Control"] = "no-cache"
            netloc = urlsplit(request.url).netloc
            if netloc != self.host:
                self._off(f"signed for {netloc}, not {self.host}")
                return NO_ANSWER, {}, None
            response = http.send(request.prepare())
            code = _code(response)
            if no_server(response.status_code, code):  # (maybe another's next)
                self.unanswered()
            return int(response.status_code), response.headers, code
        except NETWORK as exc:  # the client's own call tries again and says what went wrong
            self.unanswered()
            if self.stopping():  # (not at a stop: a dead link is not waited on twice)
                why = UNANSWERED if unanswered(exc) else f"no answer as photod stops: {_said(exc)}"
                raise TargetUnavailable(self.target, why) from None  # (its URL: signed)
            return NO_ANSWER, {}, None
        except Exception as exc:  # a botocore this path does not know: off
            self._off(f"{type(exc).__name__}: {_said(exc)}")
            return NO_ANSWER, {}, None


_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


def _code(response: Any) -> str | None:
    """The S3 error code of a server's refusal or error (a few hundred bytes, read whole),
    None where it has none (a HEAD's, a gateway's page) or the answer is no error."""
    if response.status_code < 400:
        return None
    found = _CODE.search(response.content or b"")
    return found.group(1).decode("utf-8", "replace") if found else None


_QUERY = re.compile(r"(?i)(https?://[^\s?'\"]*)\?[^\s'\"()<>]*")
_SECRET = re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"()<>]*")


def _said(exc: Exception) -> str:
    """What an exception says, any URL in it without its query: a presigned URL's
    query holds its signature and a session's token, usable for minutes, never to
    be in an event."""
    return _SECRET.sub(r"\1…", _QUERY.sub(r"\1?…", str(exc)))  # (a URL without its host too)


class _Quick:
    """One operation's requests signed as botocore signed its first: the same address
    before the key, the same region and service in the scope, the same signer and
    credentials (refreshed by botocore as they expire)."""

    def __init__(self, base: str, region: str, service: str, credentials: Any) -> None:
        self.base = base  # the URL up to the key
        self.region = region
        self.service = service
        self.credentials = credentials

    @classmethod
    def learned(
        cls, url: str, method: str, key: str, headers: dict[str, str], credentials: Any
    ) -> _Quick | None:
        """From botocore's URL for ``key``; None where signing it here would not give
        that URL again (another address for a key, other query fields, no credentials):
        botocore presigns every request then."""
        parts = urlsplit(url)
        quoted = percent_encode(key, safe="/~")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        scope = query.get("X-Amz-Credential", "").split("/")
        if credentials is None or not parts.path.endswith("/" + quoted) or len(scope) != 5:
            return None
        base = f"{parts.scheme}://{parts.netloc}{parts.path[: -len(quoted)]}"  # (its "/")
        quick = cls(base, scope[2], scope[3], credentials)
        try:
            again = urlsplit(quick.presigned(method, key, headers))
        except Exception:  # (a botocore this does not know)
            return None
        mine = dict(parse_qsl(again.query, keep_blank_values=True))
        varying = ("X-Amz-Date", "X-Amz-Signature", "X-Amz-Credential")
        same = {k: v for k, v in query.items() if k not in varying} == {
            k: v for k, v in mine.items() if k not in varying
        }
        if (again.netloc, again.path) != (parts.netloc, parts.path) or not same:
            return None
        return quick

    def presigned(self, method: str, key: str, headers: dict[str, str]) -> str:
        """The request's URL signed in its query: compared with botocore's own
        (``learned``), never sent."""
        request = AWSRequest(method, self.base + percent_encode(key, safe="/~"), dict(headers))
        frozen = self.credentials.get_frozen_credentials()
        S3SigV4QueryAuth(frozen, self.service, self.region, expires=EXPIRES).add_auth(request)
        return str(request.url)

    def signed(
        self, method: str, key: str, headers: dict[str, str], body: bytes | None
    ) -> AWSRequest:
        """The request to send, signed in its headers at the address ``presigned`` gives."""
        request = AWSRequest(method, self.base + percent_encode(key, safe="/~"), dict(headers),
                             body)  # fmt: skip
        frozen = self.credentials.get_frozen_credentials()
        _HeaderSigner(frozen, self.service, self.region).add_auth(request)
        return request


class _HeaderSigner(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer with the body left out of the signature, as the
    client's own requests leave it (``payload_signing_enabled = False``): the signed
    Content-MD5 is what proves the body; a SHA-256 of it would be a second hash of
    every photo (botocore signs bodies on plain http otherwise)."""

    def payload(self, request: Any) -> str:
        return str(UNSIGNED_PAYLOAD)
