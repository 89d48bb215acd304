"""A ``[[milter]]`` as a data-stage check: one conversation per message (client.py), its outcome as a verdict.

=====================  ===================================================================
filter's verdict       Postier's
=====================  ===================================================================
accept / continue      accept, with the filter's modifications (if any): headers added
                       (``h``, ``i``: put on top with the other checks' headers), headers
                       changed or deleted (``m``) and the body replaced (``b``), applied by
                       the intake (``policy/edits.py``)
reject                 ``550 5.7.1 Message content rejected``
tempfail               ``451 4.7.1 Message content deferred, try again later``
reply code (``y``)     the filter's own reply (its text made printable ASCII, 200 characters
                       at most); a 4xx defers, a 5xx rejects
discard                ``250`` and the message is dropped
quarantine (``q``)     the message is queued held, with the modifications
=====================  ===================================================================

When the filter cannot be reached, times out or breaks the protocol, ``failure`` decides:
``"tempfail"`` (``451 4.3.0``, the default) or ``"accept"`` (the message goes on without it).
"""

from __future__ import annotations

import asyncio
import contextlib

from postier.antispam.milter.client import MilterOutcome, MilterTransaction, run_milter
from postier.antispam.milter.protocol import MilterProtocolError
from postier.mail.replies import S
from postier.mail.reply import EnhancedStatus, Reply
from postier.policy import (
    ACCEPT,
    Action,
    Client,
    Message,
    Transaction,
    Verdict,
    defer,
    discard,
    quarantine,
    reject,
)
from postier.policy.edits import BodyEdit, Edit, HeaderEdit

__all__ = ["MILTER_DEFERRED", "MILTER_REJECTED", "MilterCheck", "verdict_for"]

MILTER_REJECTED = S.MILTER_REJECTED
MILTER_DEFERRED = S.MILTER_DEFERRED


def verdict_for(outcome: MilterOutcome, name: str) -> Verdict:
    """The filter's outcome as a verdict (pure)."""
    why = f"{name} said {outcome.verdict!r}"
    if outcome.verdict == "r":
        return reject(MILTER_REJECTED, why)
    if outcome.verdict == "t":
        return defer(MILTER_DEFERRED, why)
    if outcome.verdict == "y":
        reply = _own_reply(outcome.reply)
        return (reject if reply.code // 100 == 5 else defer)(reply, f"{why}: {outcome.reply[:200]}")
    if outcome.verdict == "d":
        return discard(why)
    edits: list[Edit] = [HeaderEdit(name_, index, value) for index, name_, value in outcome.changed]
    if outcome.body is not None:
        edits.append(BodyEdit(outcome.body))
    headers = tuple(outcome.added)
    if outcome.quarantine is not None:
        return quarantine(f"{name}: {outcome.quarantine}", *headers).with_edits(*edits)
    if not headers and not edits:
        return ACCEPT
    changes = f"{len(headers)} header(s) added, {len(outcome.changed)} changed"
    changes += ", body replaced" if outcome.body is not None else ""
    return Verdict(Action.TAG, None, f"{name}: {changes}", headers).with_edits(*edits)


def _own_reply(text: str) -> Reply:
    code = int(text[:3])
    rest = "".join(ch if " " <= ch <= "~" else "?" for ch in text[4:])[:200]
    status, _, words = rest.partition(" ")
    try:
        enhanced = EnhancedStatus.parse(status)
    except ValueError:
        enhanced, words = None, rest
    if enhanced is None or enhanced.klass != code // 100:
        enhanced = EnhancedStatus(code // 100, 7, 1)
    return Reply(code, enhanced, words or "Message content rejected")


class MilterCheck:
    def __init__(
        self,
        address: str,
        *,
        hostname: str,
        name: str = "",
        connect_timeout_s: float = 10.0,
        timeout_s: float = 30.0,
        failure: str = "tempfail",
        scan_ours: bool = True,
    ) -> None:
        self.address = address
        self.name = name or f"milter:{address}"
        self.hostname = hostname
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.failure = failure
        self.on_failure = "accept" if failure == "accept" else "defer"
        self.scan_ours = scan_ours

    async def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        if client.is_ours and not self.scan_ours:
            return ACCEPT
        try:
            outcome = await self.ask(client, txn, message)
        except (OSError, TimeoutError, MilterProtocolError) as exc:
            why = f"{self.name} unavailable: {type(exc).__name__} {exc}".strip()
            if self.failure == "accept":
                return Verdict(Action.ACCEPT, reason=f"{why}; skipped")
            return defer(S.POLICY_TEMPFAIL, why)
        return verdict_for(outcome, self.name)

    async def ask(self, client: Client, txn: Transaction, message: Message) -> MilterOutcome:
        reader, writer = await asyncio.wait_for(self._connect(), self.connect_timeout_s)
        try:
            return await run_milter(
                reader, writer, _transaction(self.hostname, client, txn, message), timeout_s=self.timeout_s
            )
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("unix:"):
            return await asyncio.open_unix_connection(self.address.removeprefix("unix:"))
        host, _, port = self.address.removeprefix("inet:").rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))


def _transaction(hostname: str, client: Client, txn: Transaction, message: Message) -> MilterTransaction:
    return MilterTransaction(
        hostname=hostname,
        client_ip=client.ip,
        client_port=client.port,
        client_name=f"[{client.ip}]",
        helo=client.helo,
        sender=f"<{'' if txn.sender is None else txn.sender}>",
        recipients=tuple(f"<{r.address}>" for r in txn.recipients),
        headers=_raw_headers(message.header),
        body=message.body,
        queue_id=client.sid,
        auth_user=client.auth_user,
    )


def _raw_headers(header: bytes) -> tuple[tuple[str, str], ...]:
    """``(name, value)`` with the value as received after the colon (folding kept, CRLF)."""
    fields: list[tuple[str, str]] = []
    for line in header.split(b"\r\n") if header else ():
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line.decode("utf-8", "replace"))
            continue
        name_b, colon, value_b = line.partition(b":")
        if colon:
            fields.append((name_b.decode("ascii", "replace").strip(), value_b.decode("utf-8", "replace")))
    return tuple(fields)
