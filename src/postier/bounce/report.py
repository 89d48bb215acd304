"""What a bounce reports about one recipient (RFC 3464 §2.3), and whether to report it at all
(RFC 3461 §4.1 NOTIFY)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from postier.mail.address import Address
from postier.mail.envelope import Notify, Recipient
from postier.mail.reply import EnhancedStatus, Reply

__all__ = ["Action", "RecipientReport", "should_notify"]


class Action(StrEnum):
    """RFC 3464 §2.3.3 action-value."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """The fate of one recipient. ``reply`` is the reply that decided it — the remote MTA's when
    ``remote_mta`` is set (reported as ``Diagnostic-Code: smtp; …``), else Postier's own decision
    (a null MX, NXDOMAIN, expiry …). ``status`` defaults to the reply's enhanced status.
    ``will_retry_until`` is meaningful for ``delayed`` only."""

    recipient: Recipient
    action: Action
    reply: Reply | None = None
    status: EnhancedStatus | None = None
    remote_mta: str | None = None
    last_attempt_at: datetime | None = None
    will_retry_until: datetime | None = None

    @property
    def effective_status(self) -> EnhancedStatus:
        """RFC 3464 §2.3.4 Status: explicit, else the reply's, else a generic one for the action."""
        if self.status is not None:
            return self.status
        if self.reply is not None and self.reply.status is not None:
            return self.reply.status
        if self.reply is not None:
            return EnhancedStatus(self.reply.code // 100, 0, 0)
        return _DEFAULT_STATUS[self.action]


_DEFAULT_STATUS = {
    Action.FAILED: EnhancedStatus(5, 0, 0),
    Action.DELAYED: EnhancedStatus(4, 0, 0),
    Action.DELIVERED: EnhancedStatus(2, 0, 0),
    Action.RELAYED: EnhancedStatus(2, 0, 0),
    Action.EXPANDED: EnhancedStatus(2, 0, 0),
}

# RFC 3461 §4.1 / §6.2: which NOTIFY keyword asks for which action.
_KEYWORD_FOR = {
    Action.FAILED: Notify.FAILURE,
    Action.DELAYED: Notify.DELAY,
    Action.DELIVERED: Notify.SUCCESS,
    Action.RELAYED: Notify.SUCCESS,
    Action.EXPANDED: Notify.SUCCESS,
}


def should_notify(
    recipient: Recipient, action: Action, *, sender: Address | None, delay_by_default: bool = False
) -> bool:
    """Whether the sender gets a DSN about ``recipient`` reaching ``action``.

    Never for the null sender: a bounce is never bounced (RFC 5321 §4.5.5, RFC 3461 §6.1). With
    NOTIFY given, exactly the keywords asked for (NEVER: nothing). Without NOTIFY, RFC 3461 §4.1
    leaves it to the MTA: failures always, delays when ``delay_by_default`` (configuration),
    successes never."""
    if sender is None:
        return False
    if recipient.notify is None:
        if action is Action.FAILED:
            return True
        return action is Action.DELAYED and delay_by_default
    return _KEYWORD_FOR[action] in recipient.notify
