"""The rspamd check, at the end of data: the message goes to rspamd's ``/checkv2``, its action is obeyed.

rspamd's action → Postier's verdict (the score and the matched symbols go to the log either way):

=================  ==========================================================================
reject             reject ``554 5.7.1 Message rejected as spam``
soft reject        defer ``451 4.7.1 Message deferred, try again later``
greylist           defer ``451 4.7.1 Greylisted, please try again later``
rewrite subject    accept, tagged, and the Subject replaced by rspamd's (``X-Spam: Yes``)
add header         accept, tagged ``X-Spam: Yes``
no action          accept, tagged
=================  ==========================================================================

Tagged means the headers ``X-Spam-Score: 3.20 / 15.00``, ``X-Spam-Action`` and ``X-Spam-Symbols``
(names only, sorted, at most ``MAX_SYMBOLS``) are added; fields of those names that came with the
message are removed first (a sender must not vouch for its own mail). When rspamd cannot be reached,
times out or answers something unreadable, ``failure`` decides: ``"accept"`` (the message goes on
unscanned, logged) or ``"tempfail"`` (``451 4.3.0``, the client retries). Trusted and authenticated
clients are not scanned unless ``scan_ours``.

The HTTP exchange is one request per message over a new connection (``Connection: close``) on the
stdlib's asyncio streams: rspamd is on the same host or network, and a connection costs far less than
the scan. ``rspamd_protocol.py`` builds the request and reads the reply (pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

from postier.antispam.greylist import GREYLISTED
from postier.antispam.rspamd_protocol import (
    MAX_REPLY,
    RspamdReplyError,
    RspamdResult,
    build_request,
    parse_http,
    parse_reply,
)
from postier.mail.replies import S
from postier.policy import ACCEPT, Action, Client, Message, Transaction, Verdict, defer, reject, tag
from postier.policy.edits import HeaderEdit

__all__ = ["SPAM_DEFERRED", "SPAM_REJECTED", "RspamdCheck", "verdict_for"]

SPAM_REJECTED = S.SPAM_REJECTED
SPAM_DEFERRED = S.SPAM_DEFERRED
MAX_SYMBOLS = 50
_OURS = frozenset({"x-spam", "x-spam-score", "x-spam-action", "x-spam-symbols"})


def verdict_for(result: RspamdResult) -> Verdict:
    """rspamd's result as a verdict (pure)."""
    reason = _describe(result)
    if result.action == "reject":
        return reject(SPAM_REJECTED, reason)
    if result.action == "soft reject":
        return defer(SPAM_DEFERRED, reason)
    if result.action == "greylist":
        return defer(GREYLISTED, reason)
    headers = [
        ("X-Spam-Score", f"{result.score:.2f} / {result.required_score:.2f}"),
        ("X-Spam-Action", result.action),
    ]
    if result.symbols:
        headers.append(("X-Spam-Symbols", ", ".join(result.symbols[:MAX_SYMBOLS])))
    if result.action in ("add header", "rewrite subject"):
        headers.append(("X-Spam", "Yes"))
    verdict = tag(*headers, score=result.score, reason=reason)
    if result.action == "rewrite subject" and result.subject:
        return verdict.with_edits(HeaderEdit("Subject", 1, result.subject))
    return verdict


def _describe(result: RspamdResult) -> str:
    symbols = ",".join(result.symbols[:MAX_SYMBOLS])
    score = f"{result.score:.2f}/{result.required_score:.2f}"
    text = f"rspamd action={result.action} score={score} symbols={symbols}"
    return f"{text} message={result.message[:200]!r}" if result.message else text


class RspamdCheck:
    name = "rspamd"

    def __init__(
        self,
        url: str,
        *,
        hostname: str,
        timeout_s: float = 15.0,
        failure: str = "accept",
        scan_ours: bool = False,
        max_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 11333
        self.path = (parts.path.rstrip("/") or "") + "/checkv2"
        self.hostname = hostname
        self.timeout_s = timeout_s
        self.failure = failure
        self.on_failure = "accept" if failure == "accept" else "defer"
        self.scan_ours = scan_ours
        self.max_bytes = max_bytes

    async def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        if (client.is_ours and not self.scan_ours) or message.size > self.max_bytes:
            return ACCEPT
        try:
            result = await asyncio.wait_for(self.scan(client, txn, message), self.timeout_s)
        except (OSError, TimeoutError, RspamdReplyError) as exc:
            why = f"rspamd unavailable: {type(exc).__name__} {exc}".strip()
            if self.failure == "accept":
                return Verdict(Action.ACCEPT, reason=f"{why}; not scanned")
            return defer(S.POLICY_TEMPFAIL, why)
        txn.notes["rspamd"] = result
        verdict = verdict_for(result)
        if verdict.is_refusal:
            return verdict
        # X-Spam-* fields that came with the message are not rspamd's: they go, ours are added.
        forged = [HeaderEdit(name, 1, None) for name, _ in message.headers if name.lower() in _OURS]
        return verdict.with_edits(*forged)

    async def scan(self, client: Client, txn: Transaction, message: Message) -> RspamdResult:
        fields = [("IP", client.ip), ("Helo", client.helo or client.ip), ("Hostname", "unknown")]
        fields.append(("From", "" if txn.sender is None else str(txn.sender)))
        fields += [("Rcpt", str(r.address)) for r in txn.recipients]
        fields += [("MTA-Name", self.hostname), ("Log-Tag", client.sid)]
        if client.auth_user:
            fields.append(("User", client.auth_user))
        request = build_request(message.data, host=f"{self.host}:{self.port}", fields=fields, path=self.path)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            await writer.drain()
            data = await reader.read(MAX_REPLY + 1)
            while data and len(data) <= MAX_REPLY:
                more = await reader.read(MAX_REPLY + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if len(data) > MAX_REPLY:
            raise RspamdReplyError("reply too long")
        return parse_reply(parse_http(data))
