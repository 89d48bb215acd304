"""Who gets which DSN (plan_notices), when the delay notice is due, and the Bouncer queueing real
DSNs that flufl.bounce reads back."""

from __future__ import annotations

import email
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flufl.bounce import scan_message

from postier.bounce import Action, RecipientReport
from postier.delivery.bounces import Bouncer, BounceSettings, is_delay_due, plan_notices
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Notify, Recipient
from postier.mail.reply import EnhancedStatus, Reply
from postier.queue.sqlite import SqliteQueue

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Address("alice", "example.org")
PM = Address("Postmaster", "Example.ORG")
BOB = Recipient(Address("bob", "remote.test"))
NEVER = Recipient(Address("never", "remote.test"), notify=frozenset({Notify.NEVER}))
DELAY = Recipient(Address("slow", "remote.test"), notify=frozenset({Notify.DELAY, Notify.FAILURE}))
SUCCESS = Recipient(Address("happy", "remote.test"), notify=frozenset({Notify.SUCCESS}))
REFUSED = Reply(550, EnhancedStatus(5, 1, 1), "no such user")
LATER = Reply(451, EnhancedStatus(4, 4, 1), "try later")


def report(recipient: Recipient, action: Action, reply: Reply = REFUSED) -> RecipientReport:
    return RecipientReport(recipient, action, reply, remote_mta="mx.remote.test", last_attempt_at=T0)


def env(*recipients: Recipient, sender: Address | None = ALICE) -> Envelope:
    return Envelope(sender=sender, recipients=recipients)


SETTINGS = BounceSettings("mx.example.org", postmaster=PM)


def test_sender_gets_what_notify_asks_for() -> None:
    reports = [
        report(BOB, Action.FAILED),
        report(NEVER, Action.FAILED),
        report(DELAY, Action.DELAYED, LATER),
        report(BOB, Action.DELAYED, LATER),  # no NOTIFY: delays only when configured
        report(SUCCESS, Action.RELAYED),
        report(BOB, Action.DELIVERED),  # no NOTIFY: never a success notice
    ]
    notices, dropped = plan_notices(env(BOB, NEVER, DELAY, SUCCESS), reports, SETTINGS)
    assert dropped == []
    [notice] = notices
    assert notice.to == ALICE and not notice.is_double
    assert [(r.recipient, r.action) for r in notice.reports] == [
        (BOB, Action.FAILED),
        (DELAY, Action.DELAYED),
        (SUCCESS, Action.RELAYED),
    ]
    by_default = BounceSettings("mx.example.org", delay_by_default=True)
    [notice] = plan_notices(env(BOB), [report(BOB, Action.DELAYED, LATER)], by_default)[0]
    assert [r.action for r in notice.reports] == [Action.DELAYED]


def test_nothing_to_tell_no_notice() -> None:
    assert plan_notices(env(NEVER), [report(NEVER, Action.FAILED)], SETTINGS) == ([], [])


def test_a_failed_bounce_goes_to_the_postmaster_once() -> None:
    bounce = env(Recipient(ALICE, notify=frozenset({Notify.NEVER})), sender=None)
    failed = report(bounce.recipients[0], Action.FAILED)
    [notice], dropped = plan_notices(bounce, [failed, report(BOB, Action.DELAYED, LATER)], SETTINGS)
    assert (notice.to, notice.reports, notice.is_double, dropped) == (PM, (failed,), True, [])
    # The double bounce to the postmaster failing too: dropped, never bounced again.
    double = env(Recipient(Address("postmaster", "example.org")), sender=None)
    pm_failed = report(double.recipients[0], Action.FAILED)
    assert plan_notices(double, [pm_failed], SETTINGS) == ([], [pm_failed])
    # No postmaster configured: logged and dropped.
    assert plan_notices(bounce, [failed], BounceSettings("mx")) == ([], [failed])


@pytest.mark.parametrize(
    ("last_s", "now_s", "due"),
    [
        (None, 3600, True),  # first attempt already past the threshold (held, or a late start)
        (None, 100, False),
        (1000, 3599, False),
        (1000, 3600, True),  # the attempt that crosses the threshold
        (3000, 7200, True),
        (3600, 7200, False),  # the previous attempt already crossed it: sent then
        (4000, 9000, False),
    ],
)
def test_delay_notice_is_due_once(last_s: float | None, now_s: float, due: bool) -> None:
    last = None if last_s is None else T0 + timedelta(seconds=last_s)
    assert is_delay_due(T0, last, T0 + timedelta(seconds=now_s), 3600) is due
    assert is_delay_due(T0, last, T0 + timedelta(seconds=now_s), 0) is False  # 0: off


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue", clock=Clock())
    await q.open()
    yield q
    await q.close()


ORIGINAL = b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nHello\r\n"


async def test_bouncer_queues_a_dsn_flufl_reads(queue: SqliteQueue, caplog: pytest.LogCaptureFixture) -> None:
    woken: list[bool] = []
    bouncer = Bouncer(queue, SETTINGS, clock=Clock(), on_enqueued=lambda: woken.append(True))
    qid = await queue.enqueue(env(BOB, NEVER), ORIGINAL)
    record = await queue.get(qid)
    with caplog.at_level("INFO", logger="postier.mail"):
        [bounce_id] = await bouncer.notify(
            record, ORIGINAL, [report(BOB, Action.FAILED), report(NEVER, Action.FAILED)]
        )
    assert woken == [True]
    bounce = await queue.get(bounce_id)
    assert bounce.envelope.sender is None
    assert [r.address for r in bounce.envelope.recipients] == [ALICE]
    assert bounce.envelope.recipients[0].notify == frozenset({Notify.NEVER})
    dsn = await queue.read_body(bounce_id)
    assert scan_message(email.message_from_bytes(dsn)) == {b"bob@remote.test"}
    assert b"never@remote.test" not in dsn and b"Hello" in dsn
    assert f"X-Postier-Queue-ID: {qid}".encode() in dsn
    events = [r for r in caplog.records if r.getMessage() == "bounce"]
    assert len(events) == 1


def test_success_and_delay_are_withheld_for_strangers() -> None:
    """Issue 14, finding 3: NOTIFY=SUCCESS/DELAY only for trusted or authenticated clients."""
    import ipaddress

    from postier.delivery.bounces import withhold
    from postier.mail.envelope import ClientInfo

    settings = BounceSettings("mx", trusted_networks=(ipaddress.ip_network("192.0.2.0/24"),))
    reports = [
        report(SUCCESS, Action.DELIVERED),
        report(DELAY, Action.DELAYED, LATER),
        report(BOB, Action.FAILED),
    ]
    for client, honoured in [
        (ClientInfo(ip="198.51.100.7"), False),
        (ClientInfo(ip="::ffff:198.51.100.7"), False),
        (ClientInfo(ip="198.51.100.7", auth_user="alice"), True),
        (ClientInfo(ip="192.0.2.9"), True),
        (ClientInfo(ip="::ffff:192.0.2.9"), True),
        (ClientInfo(), True),  # made here: no client address
    ]:
        envelope = Envelope(ALICE, (SUCCESS, DELAY, BOB), client=client)
        told, withheld = withhold(envelope, reports, settings)
        assert (told, withheld) == ((reports, []) if honoured else (reports[2:], reports[:2])), client
