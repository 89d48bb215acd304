"""From the end of DATA to the reply: the loop check, the envelope, the ``Received:`` header, the queue.

Theory of operation, in order (docs/flow.md, end of data):

1. a message that already carries ``MAX_HOPS`` ``Received:`` fields is in a loop → ``554 5.4.6``
   (RFC 5321 §6.3), logged as a ``reject`` at stage ``data``;
2. the envelope: the recipients as accepted, expanded by the local directory (aliases), the ESMTP
   parameters (RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID, RFC 1870 SIZE) and what the
   session knows of the client (``ClientInfo``);
3. the trace header (``received.py``) is prepended under the queue id the message will have, and
   above it the DKIM signatures for our own users' mail (``signing.py``; the trace header need not
   be signed, RFC 6376 §5.4);
4. the replies the session still holds are flushed, because the enqueue waits for a group commit;
5. ``Queue.enqueue`` returns once the message is on stable storage: only then ``250 … queued as ID``
   (STYLE: say 250 only after fsync). Out of space → ``452 4.3.1``; any other queue error →
   ``451 4.3.0``, with the detail in the log, never to the client;
6. the message is counted against the client's hourly limits, and one ``queued`` mail event written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from postier.mail.envelope import BodyType, ClientInfo, Envelope
from postier.mail.errors import QueueError, QueueFullError
from postier.mail.replies import S, queued
from postier.mail.reply import Reply
from postier.observe import get_logger, mail_event
from postier.server.rcpt_checks import count_message
from postier.server.received import MAX_HOPS, hop_count, protocol_keyword, received_header
from postier.server.signing import UNSIGNED, dkim_sign
from postier.smtp.server.events import MessageReceived
from postier.spool import MessageBody, prepend

if TYPE_CHECKING:
    from postier.server.listener import SmtpServer

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
    event: MessageReceived,
    content: bytes | MessageBody,
    client: ClientInfo,
    *,
    sid: str,
    mail_at: float,
    flush: Callable[[], None],
) -> Reply:
    """The reply to the end of DATA; ``content``: the message as received (``bytes``, or over a spool
    file when large); ``mail_at``: monotonic time of the transaction's MAIL FROM."""
    header_section = content if isinstance(content, bytes) else content.header_section()
    if hop_count(header_section) >= MAX_HOPS:  # RFC 5321 §6.3: a mail loop (e.g. through aliases)
        mail_event("reject", sid=sid, stage="data", reply=str(S.TOO_MANY_HOPS), reason="hop count")
        return S.TOO_MANY_HOPS
    envelope = _envelope(server, event, client)
    queue_id = server.queue.new_id()
    header = received_header(
        helo=client.helo,
        client_ip=client.ip,
        hostname=server.hostname,
        protocol=client.protocol,
        queue_id=queue_id,
        tls=client.tls,
        recipients=tuple(r.address for r in event.recipients),
        now=datetime.now(UTC),
    )
    signed = UNSIGNED if server.dkim.is_empty else await dkim_sign(server, event, content, client)
    flush()
    try:
        await server.queue.enqueue(envelope, prepend(signed.fields + header, content), queue_id=queue_id)
    except QueueFullError:
        _log.error("session %s: queue is out of space", sid)
        return S.QUEUE_FULL
    except QueueError:
        _log.exception("session %s: queue error", sid)
        return S.QUEUE_ERROR
    count_message(server, client.ip, client.auth_user)
    mail_event(
        "queued",
        sid=sid,
        id=queue_id,
        from_=f"<{'' if event.sender is None else str(event.sender)}>",
        size=len(content),
        nrcpt=len(envelope.recipients),
        proto=client.protocol,
        user=client.auth_user,
        duration_s=round(time.monotonic() - mail_at, 4),
        dkim=signed.result,
        dkim_reason=signed.reason,
    )
    return queued(queue_id)


def _envelope(server: SmtpServer, event: MessageReceived, client: ClientInfo) -> Envelope:
    directory = server.directory
    return Envelope(
        sender=event.sender,
        recipients=event.recipients if directory is None else directory.expand(event.recipients),
        body=event.params.body or BodyType.SEVEN_BIT,
        smtputf8=event.params.smtputf8,
        ret=event.params.ret,
        envid=event.params.envid,
        declared_size=event.params.size,
        client=client,
        requiretls=event.params.requiretls,
    )
