"""should_notify: RFC 3461 NOTIFY, the default, and never bouncing a bounce."""

from __future__ import annotations

import pytest

from postier.bounce import Action, should_notify
from postier.mail.address import Address
from postier.mail.envelope import Notify, Recipient

SENDER = Address("alice", "example.org")
N = Notify
A = Action

TABLE = [
    # notify                       action         delay_by_default  expected
    (None, A.FAILED, False, True),
    (None, A.DELAYED, False, False),
    (None, A.DELAYED, True, True),
    (None, A.DELIVERED, True, False),
    (None, A.RELAYED, True, False),
    ({N.NEVER}, A.FAILED, True, False),
    ({N.NEVER}, A.DELAYED, True, False),
    ({N.FAILURE}, A.FAILED, False, True),
    ({N.FAILURE}, A.DELAYED, True, False),
    ({N.DELAY}, A.DELAYED, False, True),
    ({N.DELAY}, A.FAILED, False, False),
    ({N.SUCCESS}, A.DELIVERED, False, True),
    ({N.SUCCESS}, A.RELAYED, False, True),
    ({N.SUCCESS}, A.EXPANDED, False, True),
    ({N.SUCCESS}, A.FAILED, False, False),
    ({N.SUCCESS, N.FAILURE, N.DELAY}, A.FAILED, False, True),
    ({N.SUCCESS, N.FAILURE, N.DELAY}, A.DELAYED, False, True),
    ({N.SUCCESS, N.FAILURE, N.DELAY}, A.DELIVERED, False, True),
]


@pytest.mark.parametrize(("notify", "action", "delay_by_default", "expected"), TABLE)
def test_notify_table(
    notify: set[Notify] | None, action: Action, delay_by_default: bool, expected: bool
) -> None:
    recipient = Recipient(Address("bob", "example.net"), notify=frozenset(notify) if notify else None)
    assert should_notify(recipient, action, sender=SENDER, delay_by_default=delay_by_default) is expected


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("notify", [None, frozenset(Notify)])
def test_null_sender_is_never_notified(action: Action, notify: frozenset[Notify] | None) -> None:
    recipient = Recipient(Address("bob", "example.net"), notify=notify)
    assert should_notify(recipient, action, sender=None, delay_by_default=True) is False
