"""An S3 target's two commonest requests, the PUT of one object and the HEAD of one,
sent at a third of botocore's cost: botocore still decides everything a request is
(the endpoint, the bucket's address, the region, the credentials and their refresh,
the signature: a presigned URL), and the client's own connection pool sends it (the
same proxies, certificates and timeouts); only botocore's request pipeline (its
events, its retries, its parsing of the answer) is skipped.  That pipeline costs more
CPU per request than all of rclone's work for a small file (bench/RESULTS.md).

Anything this path does not expect (an answer that is no success, a 404 to a HEAD or a
412 to an exclusive PUT) is asked again through botocore's own call, which then has
the last word: a bucket in another region, an expired token, a throttle.  After an
answer of the first kind (not throttling, not the network), the target stops using
this path.
"""

from __future__ import annotations

from typing import Any

from botocore.awsrequest import AWSRequest

UNTOLD = -1  # what a HEAD returns when this path could not tell
EXPIRES = 900  # seconds a presigned request stays valid (it is sent at once)
WHATEVER = (429, 500, 502, 503, 504)  # answers that say nothing about this path


class Presigned:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        # The client's own pool (botocore's ``Endpoint.http_session``): if a botocore
        # release moves it, every request goes through botocore's call as before.
        self.http = getattr(getattr(client, "_endpoint", None), "http_session", None)

    @property
    def usable(self) -> bool:
        return self.http is not None

    def head(self, key: str) -> int | None:
        """The object's size; None if there is none; UNTOLD if this path could not
        tell (the caller asks botocore)."""
        status, headers = self._send("head_object", "HEAD", {"Key": key}, {}, None)
        if status == 200 and "Content-Length" in headers:
            return int(headers["Content-Length"])
        if status == 404:
            return None
        return UNTOLD

    def put(self, key: str, body: bytes, md5: str, exclusive: bool) -> bool:
        """Whether the server stored the body at the key (its 200 follows its own check
        of the Content-MD5); False if this path could not tell (the caller asks
        botocore, which then raises what the answer means)."""
        params = {"Key": key, "ContentMD5": md5}
        headers = {"Content-MD5": md5}
        if exclusive:
            params["IfNoneMatch"] = headers["If-None-Match"] = "*"
        status, _ = self._send("put_object", "PUT", params, headers, body)
        return status == 200

    def _send(
        self, op: str, method: str, params: dict[str, str], headers: dict[str, str],
        body: bytes | None,
    ) -> tuple[int, Any]:  # fmt: skip
        if self.http is None:
            return 0, {}
        try:
            url = self.client.generate_presigned_url(
                op, Params={"Bucket": self.bucket, **params}, ExpiresIn=EXPIRES
            )
            response = self.http.send(AWSRequest(method, url, headers, body).prepare())
        except Exception:  # botocore's call tries again and says what went wrong
            return 0, {}
        status = int(response.status_code)
        expected = {"HEAD": 404, "PUT": 412}[method]  # no object; an exclusive PUT refused
        if status >= 300 and status not in WHATEVER and status != expected:
            self.http = None  # an answer this path did not expect: botocore from now on
        return status, response.headers
