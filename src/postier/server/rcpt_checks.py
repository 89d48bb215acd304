"""What is checked at MAIL FROM and RCPT TO, in order (docs/flow.md), and the per-message rate-limit
counters.

At MAIL FROM: an authenticated user may send only as a sender the configured rule gives them
(``sender_rule``) → 553 5.7.1.

At RCPT TO:

1. relay access (``policy.relay``): a non-local recipient needs a trusted client or AUTH → 554 5.7.1;
2. the local directory (``recipients.directory``): an unknown local recipient → 550 5.1.1 now, never an
   accept-then-bounce (backscatter); a full mailbox → 452 4.2.2;
3. at the first accepted recipient of a message, the messages-per-hour limits per client IP and per
   authenticated user → 450 4.7.1 (RFC 5321 §4.3.2 allows 450 at RCPT, not at MAIL).

Each refusal is one ``reject`` mail event. The limits are counted once the message is queued.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from postier.mail.address import Address
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.observe import mail_event

if TYPE_CHECKING:
    from postier.server.listener import SmtpServer

__all__ = ["check_recipient", "check_sender", "count_message"]


def check_sender(server: SmtpServer, sender: Address | None, *, sid: str, user: str | None) -> Reply:
    """The reply to MAIL FROM (``None``: the null sender ``<>``); ``user``: the authenticated user."""
    rule = server.sender_rule
    if user is None or rule is None or rule(user, sender):
        return S.SENDER_OK
    mail_event(
        "reject",
        sid=sid,
        stage="mail",
        from_=f"<{'' if sender is None else str(sender)}>",
        user=user,
        reply=str(S.SENDER_NOT_OWNED),
    )
    return S.SENDER_NOT_OWNED


def check_recipient(
    server: SmtpServer,
    address: Address,
    *,
    sid: str,
    client_ip: str,
    user: str | None,
    is_first: bool,
) -> Reply:
    """The reply to one RCPT TO; ``is_first``: no recipient of this message was accepted yet."""
    refusal = server.relay.check_rcpt(address, client_ip=client_ip, authenticated=user is not None)
    reason = None
    if refusal is None and server.directory is not None:
        refusal = server.directory.check(address)
        reason = "unknown user" if refusal == S.UNKNOWN_USER else "mailbox full"
    if refusal is None and is_first and not _may_send_another_message(server, client_ip, user):
        refusal, reason = S.RATE_LIMITED, "rate limit"
    if refusal is None:
        return S.RECIPIENT_OK
    mail_event(
        "reject",
        sid=sid,
        stage="rcpt",
        rcpt=f"<{address}>",
        user=user if reason == "rate limit" else None,
        reply=str(refusal),
        reason=reason,
    )
    return refusal


def _may_send_another_message(server: SmtpServer, client_ip: str, user: str | None) -> bool:
    """Messages per hour, per client IP and per authenticated user."""
    limits, now = server.limits, time.monotonic()
    if not server.is_rate_limited(client_ip):
        return True
    by_ip, by_user = limits.messages_per_ip, limits.messages_per_user
    if by_ip is not None and not by_ip.allows(client_ip, now):
        return False
    return not (by_user is not None and user is not None and not by_user.allows(user, now))


def count_message(server: SmtpServer, client_ip: str, user: str | None) -> None:
    """Count one queued message against the client's (and the user's) hourly limits."""
    limits, now = server.limits, time.monotonic()
    if not server.is_rate_limited(client_ip):
        return
    if limits.messages_per_ip is not None:
        limits.messages_per_ip.record(client_ip, now)
    if limits.messages_per_user is not None and user is not None:
        limits.messages_per_user.record(user, now)
