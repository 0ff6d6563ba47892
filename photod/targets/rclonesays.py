"""What rclone's complaints mean: each becomes a reason a person can act on, and only
the one it means (a full NAS is "full", a changed host key is not a refused login)."""

from __future__ import annotations

import contextlib
import json
import re

UNREACHABLE = ("connection refused", "couldn't connect", "no such host", "i/o timeout",
               "connection reset", "network is unreachable", "eof", "broken pipe")  # fmt: skip
# (HTTP codes as whole words: "403" inside a temporary's hex name or "503" in IMG_5031
# is no status.  Not SSH's "handshake failed" alone: a NAS that drops or does not
# answer a connection before its login, booting or busy, fails the handshake too;
# a refused login says "unable to authenticate".)
CREDENTIALS = ("unable to authenticate", r"\b401\b", r"\b403\b", "accessdenied",
               "invalid_grant", "token expired", "unauthorized")  # fmt: skip
THROTTLED = (r"\b429\b", r"\b503\b", "too many requests", "rate limit", "slowdown", "throttl")
FULL = ("no space left", "quota exceeded", "insufficient storage", r"\b507\b", "storage quota")


def complaint(body: bytes) -> str:
    """What an answer of rcd's says went wrong: the "error" of its JSON, not the whole
    of it (the request's parameters, tabs and newlines, in a reason a person reads)."""
    text = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        answer = json.loads(text)
        if isinstance(answer, dict) and "error" in answer:
            return str(answer["error"])
    return text


def _said(marks: tuple[str, ...], text: str) -> bool:
    return any(re.search(m, text) for m in marks)


def meaning(remote: str, message: str) -> str:
    """The reason rclone's ``message`` about ``remote`` gives, at most 400 characters."""
    # (without this computer's own end of a connection, its port new at each try:
    # "read tcp 127.0.0.1:50736->10.0.0.5:22: i/o timeout" made each try's reason new)
    message = re.sub(r"\b(tcp6?|udp6?) \S+->", r"\1 ", message)
    low = message.lower()
    if "didn't find section in config file" in low:
        why = f"remote {remote.partition(':')[0]!r} is not in the rclone config (`rclone listremotes`)"
    elif _said(FULL, low):
        why = f"full: the remote has no room left; free some space there: {message}"
    elif "knownhosts: key mismatch" in low:  # (no login's fault)
        why = ("host key changed: the SFTP server's key is not the one known_hosts_file "
               "holds for it (the NAS reinstalled, or another machine answering in its "
               f"place); nothing goes there until that file has its new key: {message}")  # fmt: skip
    elif "knownhosts: key is unknown" in low:
        why = ("host key unknown: known_hosts_file holds no key for this SFTP server; "
               f"add its key once you have checked it (`ssh-keyscan`): {message}")  # fmt: skip
    elif _said(CREDENTIALS, low):
        why = f"credentials refused: {message}"
    elif "permission denied" in low:
        # (no login refused: a file system's own word, an SFTP server's or rclone's
        # local one, is about the folder, not the credentials)
        why = ("permission denied on the remote folder: the account logs in but may "
               "not write (or read) there (the folder's owner or mode, a read-only "
               f"share): {message}")  # fmt: skip
    elif _said(THROTTLED, low):
        why = f"throttled by the remote; retrying later: {message}"
    elif any(m in low for m in UNREACHABLE):
        why = f"cannot reach {remote}: {message}"
    else:
        why = message
    return why.strip()[-400:]
