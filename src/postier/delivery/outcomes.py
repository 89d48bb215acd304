"""From one courier ``Attempt`` to one queue outcome: pure judgement, no I/O (the log line is
``attemptlog``; DSNs, records and the log are ``settle.Settler``'s).

Reply classes (RFC 5321 §4.2.1): 2xx → delivered; 4xx → deferred to the next time of the backoff
schedule (``postier.queue.schedule.next_attempt`` with the configured base, cap and maximum age), or,
once the message has been queued ``max_age_s``, failed with ``554 5.4.7 delivery time expired``
(RFC 3463 X.4.7) carrying the last reply; 5xx → failed. Each judgement also says which DSN report,
if any, the outcome calls for: ``failed`` for a failure; ``delayed`` for the one deferral that crosses
``delay_notice_s``; ``relayed`` when the next hop accepted without DSN support (RFC 3461 §4.1) and
``delivered`` for a local final delivery (Maildir or LMTP) — the last two only matter when the
recipient asked NOTIFY=SUCCESS, which ``postier.delivery.bounces`` checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from postier.bounce import Action, RecipientReport
from postier.delivery.bounces import is_delay_due
from postier.delivery.transport import Attempt, DestinationKind
from postier.mail.reply import EnhancedStatus, Reply
from postier.queue.model import ClaimedRecipient, RecipientResult, RecipientState
from postier.queue.schedule import next_attempt

__all__ = ["EXPIRED_STATUS", "Judgement", "RetryPolicy", "expired_reply", "judge"]

# RFC 3463 §3.5 X.4.7: delivery time expired.
EXPIRED_STATUS = EnhancedStatus(5, 4, 7)
_LOCAL_KINDS = frozenset({DestinationKind.MAILDIR, DestinationKind.LMTP})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The backoff schedule and notice times of ``[delivery]`` (seconds)."""

    base_s: float = 300.0
    cap_s: float = 3600.0
    max_age_s: float = 5 * 86400.0
    delay_notice_s: float = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Judgement:
    """``result`` goes to ``queue.record``; ``report`` (if any) to the bouncer; ``expired`` is True
    for a 4xx that ended the message's time in the queue."""

    result: RecipientResult
    reply: Reply
    report: RecipientReport | None = None
    expired: bool = False


def expired_reply(last: Reply) -> Reply:
    return Reply(554, EXPIRED_STATUS, f"delivery time expired; last reply: {last}")


def judge(
    item: ClaimedRecipient,
    attempt: Attempt,
    *,
    kind: DestinationKind | None,
    now: datetime,
    last_attempt_at: datetime | None,
    policy: RetryPolicy,
    rng: random.Random,
) -> Judgement:
    """The outcome of ``attempt`` for ``item``; ``kind`` is the destination's (None: no courier was
    asked, the router decided); ``last_attempt_at`` is the previous attempt's time (None: first)."""
    reply = attempt.reply
    mta = _mta_name(attempt.remote_mta)
    if reply.code < 400:
        action = Action.RELAYED if attempt.dsn_relayed else None
        if kind in _LOCAL_KINDS:
            action = Action.DELIVERED
        report = None if action is None else _report(item, action, reply, mta, now)
        return Judgement(_result(item, RecipientState.DELIVERED, reply), reply, report)
    if reply.is_permanent:
        report = _report(item, Action.FAILED, reply, mta, now)
        return Judgement(_result(item, RecipientState.FAILED, reply), reply, report)
    when = next_attempt(
        item.attempts + 1,
        item.arrived_at,
        now,
        rng=rng,
        base_s=policy.base_s,
        cap_s=policy.cap_s,
        max_age_s=policy.max_age_s,
    )
    if when is None:  # RFC 5321 §4.5.4.1: give up after the maximum time in the queue
        final = expired_reply(reply)
        report = _report(item, Action.FAILED, reply, mta, now, status=EXPIRED_STATUS)
        return Judgement(_result(item, RecipientState.FAILED, final), final, report, expired=True)
    report = None
    if is_delay_due(item.arrived_at, last_attempt_at, now, policy.delay_notice_s):
        until = item.arrived_at + timedelta(seconds=policy.max_age_s)
        report = _report(item, Action.DELAYED, reply, mta, now, until=until)
    return Judgement(_result(item, RecipientState.DEFERRED, reply, when), reply, report)


def _result(
    item: ClaimedRecipient, state: RecipientState, reply: Reply, when: datetime | None = None
) -> RecipientResult:
    return RecipientResult(item.message_id, item.index, state, str(reply), when)


def _report(
    item: ClaimedRecipient,
    action: Action,
    reply: Reply,
    mta: str | None,
    now: datetime,
    *,
    status: EnhancedStatus | None = None,
    until: datetime | None = None,
) -> RecipientReport:
    return RecipientReport(
        recipient=item.recipient,
        action=action,
        reply=reply,
        status=status,
        remote_mta=mta,
        last_attempt_at=now,
        will_retry_until=until,
    )


def _mta_name(remote_mta: str | None) -> str | None:
    """RFC 3464 §2.3.5 Remote-MTA is a host name: "mx.example.org [192.0.2.1]:25" → its first word."""
    if not remote_mta:
        return None
    return remote_mta.split()[0]
