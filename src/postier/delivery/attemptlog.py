"""The mail-log lines of one settled attempt: ``delivery`` (and ``expired`` when the attempt ended the
message's time in the queue). The fields are listed in ``observe/maillog.py``."""

from __future__ import annotations

from datetime import datetime

from postier.delivery.outcomes import Judgement
from postier.delivery.transport import Attempt, Destination, DestinationKind
from postier.observe.maillog import mail_event
from postier.queue.model import ClaimedRecipient

__all__ = ["log_attempt", "tls_default_of"]


def log_attempt(
    item: ClaimedRecipient,
    attempt: Attempt,
    judgement: Judgement,
    now: datetime,
    destination: Destination | None,
    duration_s: float | None,
) -> None:
    """The mail-log line of one attempt (``event=delivery``; ``expired`` too when it ended the
    message's time in the queue): queue id, recipient, the server (host [ip]:port) or the
    destination (``none``: no route), TLS, the TLS policy that applied and its source (when the
    courier set none: the destination's, or ``none``/``unrouted``), the reply, the result and the
    next attempt's time."""
    result = judgement.result
    relay = "none" if destination is None else destination.key
    tls_default = tls_default_of(destination)
    age_s = round((now - item.arrived_at).total_seconds(), 3)
    status = judgement.reply.status
    mail_event(
        "delivery",
        id=item.message_id,
        rcpt=f"<{item.recipient.address}>",
        result=result.state.value,
        relay=attempt.remote_mta or relay,
        tls=attempt.tls,
        reply=result.reply,
        attempt=item.attempts + 1,
        next=None if result.next_attempt_at is None else result.next_attempt_at.isoformat(timespec="seconds"),
        delay_s=age_s,
        duration_s=None if duration_s is None else round(duration_s, 3),
        dsn=None if status is None else str(status),
        tls_policy=attempt.tls_policy or tls_default[0],  # last: lines stay greppable as before
        source=attempt.tls_source or tls_default[1],
        tls_failure=attempt.tls_failure,
    )
    if judgement.expired:
        mail_event(
            "expired",
            id=item.message_id,
            rcpt=f"<{item.recipient.address}>",
            age_s=age_s,
            last_reply=str(attempt.reply),
        )


def tls_default_of(destination: Destination | None) -> tuple[str, str]:
    """The TLS policy and source logged for attempts that carry none of their own."""
    if destination is None:
        return "none", "unrouted"
    if destination.kind in (DestinationKind.MAILDIR, DestinationKind.LMTP):
        return "none", "local"
    return destination.tls_label or destination.tls.value, destination.tls_source or "config"
