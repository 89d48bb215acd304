"""From the end of DATA to the reply: the loop check, the envelope, the ``Received:`` header, the queue.

Theory of operation, in order (docs/flow.md, end of data):

1. the data stage of the policy (``postier.policy``): a refusal is the reply (logged as a ``reject`` at
   stage ``data``, with the check that made it); ``discard`` answers 250 and keeps nothing; the
   checks' edits (a header changed or deleted, the body replaced: ``policy/edits.py``) are applied to
   the message as received, then ``tag`` headers are added on top; ``quarantine`` queues it held;
   header fields a check listed in ``txn.remove_headers`` (forged Authentication-Results, RFC 8601
   §5) are dropped, and ``txn.auth_results`` (the mail authentication summary) goes into
   ``ClientInfo.mailauth`` and on the ``queued`` line;
2. the envelope: the recipients as accepted, expanded by the local directory (aliases), the ESMTP
   parameters (RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID, RFC 1870 SIZE) and what the
   session knows of the client (``ClientInfo``);
3. the trace header (``received.py``) is prepended under the queue id the message will have, above
   the headers the checks added, and above it the DKIM signatures for our own users' mail
   (``signing.py``: what is signed is the message as it is queued, less the trace header, which need
   not be signed, RFC 6376 §5.4);
4. the replies the session still holds are flushed, because the enqueue waits for a group commit;
5. ``Queue.enqueue`` returns once the message is on stable storage: only then ``250 … queued as ID``
   (STYLE: say 250 only after fsync). Out of space → ``452 4.3.1``; any other queue error →
   ``451 4.3.0``, with the detail in the log, never to the client;
6. the message is counted against the client's hourly limits, and one ``queued`` mail event written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from postier.mail.envelope import BodyType, ClientInfo, Envelope
from postier.mail.errors import QueueError, QueueFullError
from postier.mail.replies import S, queued
from postier.mail.reply import Reply
from postier.observe import get_logger, mail_event
from postier.policy import Action, Client, Decision, Message, Policy, Stage, Transaction
from postier.policy.context import drop_header_fields
from postier.policy.edits import apply_edits, header_line
from postier.server.arcsealing import is_forwarded, seal
from postier.server.received import protocol_keyword, received_header
from postier.server.signing import UNSIGNED, dkim_sign
from postier.smtp.server.events import MessageReceived
from postier.spool import MessageBody, as_bytes, prepend

if TYPE_CHECKING:
    from postier.server.listener import Live, SmtpServer

__all__ = ["client_info", "queue_message"]

_log = get_logger("postier.server")


def client_info(
    *,
    ip: str,
    port: int,
    helo: str,
    esmtp: bool,
    tls: str | None,
    auth_user: str | None,
    listener: str,
    smtputf8: bool,
) -> ClientInfo:
    """The client as the envelope records it, with the RFC 3848 / RFC 6531 ``with`` keyword."""
    protocol = protocol_keyword(
        esmtp=esmtp, tls=tls is not None, authenticated=auth_user is not None, smtputf8=smtputf8
    )
    return ClientInfo(
        ip=ip, port=port, helo=helo, protocol=protocol, tls=tls, auth_user=auth_user, listener=listener
    )


async def queue_message(
    server: SmtpServer,
    live: Live,
    event: MessageReceived,
    received: bytes | MessageBody,
    info: ClientInfo,
    client: Client,
    txn: Transaction,
    *,
    mail_at: float,
    flush: Callable[[], None],
) -> Reply:
    """The reply to the end of DATA; ``received``: the message as received (``bytes``, or over a spool
    file when large); ``mail_at``: monotonic time of the transaction's MAIL FROM."""
    policy = live.policy
    decision = await policy.pipeline.run(Stage.DATA, client, txn, Message(received))
    verdict = decision.verdict
    if verdict.is_refusal:
        assert verdict.reply is not None
        reply, reason = str(verdict.reply), verdict.reason
        mail_event("reject", sid=client.sid, stage="data", reply=reply, check=verdict.check, reason=reason)
        return verdict.reply
    queue_id = server.queue.new_id()
    _log_verdicts(client.sid, queue_id, decision)
    if verdict.action is Action.DISCARD:
        return queued(queue_id)  # RFC 5321 §6.2 allows it when a filter says so: nothing is kept
    if txn.remove_headers:  # forged trace fields a check found (rare: a spooled message is read whole)
        received = await asyncio.to_thread(drop_header_fields, as_bytes(received), txn.remove_headers)
    if txn.auth_results:
        info = dataclasses.replace(info, mailauth=txn.auth_results)
    envelope = _envelope(policy, event, info)
    if verdict.edits:  # a check changed the message: edited in memory (a spooled one is read whole)
        received = apply_edits(as_bytes(received), verdict.edits)
    content = prepend(_added_headers(verdict.headers), received)
    signed = UNSIGNED if live.dkim.is_empty else await dkim_sign(live.dkim, content, event.sender, client)
    sealed = b""
    forwarded = live.arc_seal and is_forwarded(event.recipients, envelope.recipients, policy.relay)
    if forwarded and txn.auth_results:
        sealed = await seal(live.dkim, server.hostname, content)
    header = received_header(
        helo=info.helo,
        client_ip=info.ip,
        hostname=server.hostname,
        protocol=info.protocol,
        queue_id=queue_id,
        tls=info.tls,
        recipients=tuple(r.address for r in event.recipients),
        now=datetime.now(UTC),
    )
    flush()
    held = verdict.action is Action.QUARANTINE
    try:
        await server.queue.enqueue(
            envelope, prepend(sealed + signed.fields + header, content), queue_id=queue_id, held=held
        )
    except QueueFullError:
        _log.error("session %s: queue is out of space", client.sid)
        return S.QUEUE_FULL
    except QueueError:
        _log.exception("session %s: queue error", client.sid)
        return S.QUEUE_ERROR
    policy.queued(client)
    mail_event(
        "queued",
        sid=client.sid,
        id=queue_id,
        from_=f"<{'' if event.sender is None else str(event.sender)}>",
        size=len(content),
        nrcpt=len(envelope.recipients),
        proto=info.protocol,
        user=info.auth_user,
        held=True if held else None,
        duration_s=round(time.monotonic() - mail_at, 4),
        dkim=signed.result,
        dkim_reason=signed.reason,
        mailauth=txn.auth_results or None,
        arc="sealed" if sealed else None,
    )
    return queued(queue_id)


def _log_verdicts(sid: str, queue_id: str, decision: Decision) -> None:
    """One ``verdict`` line per check that said something other than a plain accept."""
    for noted in decision.verdicts:
        mail_event(
            "verdict",
            sid=sid,
            id=queue_id,
            stage="data",
            check=noted.check,
            action=noted.action.value,
            reason=noted.reason or None,
            score=noted.score or None,
        )


def _added_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    """Header fields a check asked for, as lines; folded values keep their folding (a milter's
    DKIM-Signature), but a name or value that would split into a header the check did not mean is
    dropped whole (``policy.edits.header_line``)."""
    lines = [header_line(name, value) for name, value in headers]
    return b"".join(line for line in lines if line is not None)


def _envelope(policy: Policy, event: MessageReceived, client: ClientInfo) -> Envelope:
    return Envelope(
        sender=event.sender,
        recipients=policy.expand(event.recipients),
        body=event.params.body or BodyType.SEVEN_BIT,
        smtputf8=event.params.smtputf8,
        ret=event.params.ret,
        envid=event.params.envid,
        declared_size=event.params.size,
        client=client,
        requiretls=event.params.requiretls,
    )
