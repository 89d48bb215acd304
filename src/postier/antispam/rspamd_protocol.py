"""rspamd's HTTP protocol (``POST /checkv2``), client side: the request and the reply. Pure.

The request is the message as the body and what we know of the session as header fields (``IP``,
``Helo``, ``From``, one ``Rcpt`` per recipient, ``Queue-Id``, ``User``, ``Hostname``). The reply is
one JSON object; what Postier reads of it (https://rspamd.com/doc/developers/protocol.html):

    {"action": "reject", "score": 1012.3, "required_score": 15.0,
     "symbols": {"GTUBE": {"name": "GTUBE", "score": 0.0, ...}, ...},
     "subject": "*** SPAM *** …", "messages": {"smtp_message": "…"}}

``parse_reply`` returns an ``RspamdResult`` or raises ``RspamdReplyError`` — for any bytes whatever
(tests/property: hypothesis).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from postier.mail.errors import PostierError

__all__ = ["ACTIONS", "RspamdReplyError", "RspamdResult", "build_request", "parse_http", "parse_reply"]

ACTIONS = frozenset({"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"})
MAX_REPLY = 1 << 20


class RspamdReplyError(PostierError):
    """rspamd's answer could not be read (not HTTP, not JSON, not the expected shape)."""


@dataclass(frozen=True, slots=True)
class RspamdResult:
    action: str
    score: float
    required_score: float
    symbols: tuple[str, ...] = ()
    """The symbols that matched, sorted by name."""
    subject: str | None = None
    """The new subject, for ``rewrite subject``."""
    message: str = ""
    """rspamd's ``smtp_message`` (for the log: the client gets our generic text)."""


def build_request(body: bytes, *, host: str, fields: list[tuple[str, str]], path: str = "/checkv2") -> bytes:
    """One HTTP/1.1 request; a field whose value holds CR or LF is left out whole."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in fields if not any(c in value for c in "\r\n\0")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def parse_http(data: bytes) -> bytes:
    """The body of a ``200`` HTTP/1.x response read to its end (``Connection: close``)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise RspamdReplyError("no end of the HTTP header")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or parts[1] != b"200":
        raise RspamdReplyError(f"HTTP status {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get(b"transfer-encoding") == b"chunked":
        return _unchunk(body)
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            raise RspamdReplyError("short HTTP body")
        return body[: int(length)]
    return body


def _unchunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise RspamdReplyError("truncated chunk")
        size_text = data[pos:end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise RspamdReplyError("bad chunk size") from None
        if size < 0 or end + 2 + size > len(data):
            raise RspamdReplyError("truncated chunk")
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 4 + size


def parse_reply(data: bytes) -> RspamdResult:
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        raise RspamdReplyError("reply is not JSON") from None
    if not isinstance(reply, dict):
        raise RspamdReplyError("reply is not a JSON object")
    action = reply.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise RspamdReplyError(f"unknown action {str(action)[:40]!r}")
    score = _number(reply.get("score", 0.0), "score")
    required = _number(reply.get("required_score", 0.0), "required_score")
    symbols = reply.get("symbols", {})
    if not isinstance(symbols, dict):
        raise RspamdReplyError("symbols is not an object")
    subject = reply.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise RspamdReplyError("subject is not a string")
    messages = reply.get("messages", {})
    message = messages.get("smtp_message", "") if isinstance(messages, dict) else ""
    return RspamdResult(
        action,
        score,
        required,
        tuple(sorted(str(name) for name in symbols)),
        subject,
        message if isinstance(message, str) else "",
    )


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RspamdReplyError(f"{name} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise RspamdReplyError(f"{name} is not finite")
    return number
