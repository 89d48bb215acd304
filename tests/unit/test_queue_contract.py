"""The contract every Queue backend keeps. Parametrized over backends (``BACKENDS``): SQLite inline,
SQLite with the body log, and PostgreSQL (a schema of its own per test: tests/pgtest.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests import pgtest

from postier.mail.address import Address
from postier.mail.envelope import BodyType, ClientInfo, Envelope, Notify, Recipient, Ret
from postier.queue import (
    MessageStatus,
    Queue,
    QueueError,
    QueueFilter,
    QueueId,
    RecipientResult,
    RecipientState,
    SqliteQueue,
    UnknownMessageError,
    is_queue_id,
)
from postier.queue.postgres import PostgresQueue
from postier.spool import MessageBody, SpoolFile

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock, injected into the queue."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def _sqlite(path: Path, clock: Clock) -> Queue:
    return SqliteQueue(path / "queue", clock=clock)


def _sqlite_log(path: Path, clock: Clock) -> Queue:
    """Every non-empty body in the body log."""
    return SqliteQueue(path / "queue", clock=clock, body_log_min_bytes=1)


def _postgres(path: Path, clock: Clock) -> Queue:
    return PostgresQueue(pgtest.DSN, schema=pgtest.new_schema(), node="contract", clock=clock)


BACKENDS: dict[str, Callable[[Path, Clock], Queue]] = {
    "sqlite": _sqlite,
    "sqlite-log": _sqlite_log,
    "postgres": _postgres,
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(BACKENDS))
async def queue(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[Queue]:
    q = BACKENDS[request.param](tmp_path, clock)
    if isinstance(q, PostgresQueue):
        await pgtest.require_pg()
    await q.open()
    yield q
    await q.close()
    if isinstance(q, PostgresQueue):
        await pgtest.drop_schema(q.schema)


def envelope(*rcpts: str, sender: str | None = "alice@example.org") -> Envelope:
    def addr(text: str) -> Address:
        local, _, domain = text.rpartition("@")
        return Address(local, domain)

    return Envelope(
        sender=None if sender is None else addr(sender),
        recipients=tuple(Recipient(addr(r)) for r in rcpts),
    )


FULL_ENVELOPE = Envelope(
    sender=Address('"john doe"', "exämple.org"),
    recipients=(
        Recipient(Address("bob", "Example.NET"), frozenset({Notify.SUCCESS, Notify.DELAY}), "rfc822;bob@x"),
        Recipient(Address("carol", "[192.0.2.1]"), frozenset({Notify.NEVER})),
        Recipient(Address("postmaster", "")),
    ),
    body=BodyType.EIGHT_BIT_MIME,
    smtputf8=True,
    ret=Ret.HDRS,
    envid="QQ+2B314",
    declared_size=12345,
    client=ClientInfo(
        ip="2001:db8::1",
        port=40000,
        helo="client.example",
        protocol="ESMTPSA",
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
        auth_user="john",
        listener="127.0.0.1:2587",
    ),
    requiretls=True,
)


async def test_enqueue_get_round_trip_keeps_every_field_and_exact_bytes(queue: Queue) -> None:
    body = b"Received: from x\r\n\r\n\x00\xff.\r\nline\r\n" * 100
    qid = await queue.enqueue(FULL_ENVELOPE, body)
    record = await queue.get(qid)
    assert record.envelope == FULL_ENVELOPE
    assert record.status is MessageStatus.ACTIVE
    assert record.size == len(body)
    assert record.body_sha256 == hashlib.sha256(body).hexdigest()
    assert hashlib.sha256(await queue.read_body(qid)).digest() == hashlib.sha256(body).digest()
    assert [r.domain for r in record.recipients] == ["example.net", "[192.0.2.1]", ""]
    assert all(r.state is RecipientState.QUEUED and r.attempts == 0 for r in record.recipients)
    assert record.arrived_at == T0


async def test_a_spooled_body_is_stored_exactly(queue: Queue, tmp_path: Path) -> None:
    """``MessageBody``: a head in memory, the rest in a spool file (a large message, issue 14: 2)."""
    spool = SpoolFile(tmp_path)
    spool.write([b"Subject: big\r\n\r\n", b"\x00\xffline\r\n" * 30_000])
    body = MessageBody(b"Received: from x\r\n", spool)
    try:
        qid = await queue.enqueue(FULL_ENVELOPE, body)
        record = await queue.get(qid)
        assert record.size == len(body)
        assert record.body_sha256 == hashlib.sha256(body.read()).hexdigest()
        assert await queue.read_body(qid) == body.read()
        small = await queue.enqueue(FULL_ENVELOPE, MessageBody(b"only a head\r\n"))
        assert await queue.read_body(small) == b"only a head\r\n"
    finally:
        body.close()


async def test_ids_are_unique_sortable_and_log_safe(queue: Queue, clock: Clock) -> None:
    ids = []
    for _ in range(50):
        ids.append(await queue.enqueue(envelope("b@x.test"), b"m"))
        clock.advance(0.0005)
    assert len(set(ids)) == 50
    assert ids == sorted(ids)
    assert all(is_queue_id(i) for i in ids)
    given = queue.new_id()
    assert await queue.enqueue(envelope("b@x.test"), b"m", queue_id=given) == given


async def test_null_sender_and_no_recipient(queue: Queue) -> None:
    qid = await queue.enqueue(envelope("b@x.test", sender=None), b"bounce")
    assert (await queue.get(qid)).envelope.sender is None
    with pytest.raises(QueueError):
        await queue.enqueue(envelope(), b"nobody")


async def test_duplicate_id_fails_alone(queue: Queue) -> None:
    qid = await queue.enqueue(envelope("b@x.test"), b"first")
    results = await asyncio.gather(
        queue.enqueue(envelope("b@x.test"), b"second", queue_id=qid),
        queue.enqueue(envelope("c@x.test"), b"other"),
        return_exceptions=True,
    )
    assert isinstance(results[0], QueueError)
    assert isinstance(results[1], str)
    assert await queue.read_body(qid) == b"first"


async def test_a_duplicate_among_many_concurrent_enqueues_fails_alone(queue: Queue) -> None:
    """Enqueues that share a group commit are stored together (store.Insert.many); one with a
    duplicate id makes the group run again one by one, so the others are stored all the same."""
    qid = await queue.enqueue(envelope("b@x.test"), b"first")
    bodies = [f"message {i}".encode() for i in range(40)]
    jobs = [queue.enqueue(envelope("c@x.test", "d@y.test"), body) for body in bodies]
    jobs.insert(20, queue.enqueue(envelope("b@x.test"), b"second", queue_id=qid))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results.pop(20), QueueError)
    assert all(isinstance(r, str) for r in results)
    for new, body in zip(results, bodies, strict=True):
        assert await queue.read_body(str(new)) == body
        assert [r.domain for r in (await queue.get(str(new))).recipients] == ["x.test", "y.test"]
    assert await queue.read_body(qid) == b"first"


async def test_a_group_commit_of_many_rows_keeps_every_recipient_in_order(queue: Queue) -> None:
    """Rows go in by multi-row INSERTs of a bounded size (store._insert_rows): a message with more
    recipients than one statement takes, among others in the same commit, keeps them all, in order."""
    many = [f"r{i}@d{i % 7}.test" for i in range(1234)]
    jobs = [queue.enqueue(envelope(*many), b"big list")]
    jobs += [queue.enqueue(envelope(f"s{i}@x.test"), f"small {i}".encode()) for i in range(30)]
    ids = await asyncio.gather(*jobs)
    record = await queue.get(ids[0])
    assert [str(r.recipient.address) for r in record.recipients] == many
    assert [r.index for r in record.recipients] == list(range(1234))
    for i, qid in enumerate(ids[1:]):
        assert await queue.read_body(qid) == f"small {i}".encode()
        assert [str(r.recipient.address) for r in (await queue.get(qid)).recipients] == [f"s{i}@x.test"]


async def test_unknown_id(queue: Queue) -> None:
    for call in (queue.get, queue.read_body, queue.hold, queue.release, queue.retry, queue.delete):
        with pytest.raises(UnknownMessageError):
            await call(QueueId("0000000000000000"))


async def test_claim_groups_by_domain_and_leases(queue: Queue, clock: Clock) -> None:
    a = await queue.enqueue(envelope("1@a.test", "2@b.test", "3@A.TEST"), b"m")
    b = await queue.enqueue(envelope("4@b.test"), b"m")
    claims = await queue.claim(clock.now, 60, 100)
    got = {c.domain: [(r.message_id, r.index) for r in c.recipients] for c in claims}
    assert got == {"a.test": [(a, 0), (a, 2)], "b.test": [(a, 1), (b, 0)]}
    assert all(c.lease_until == clock.now + timedelta(seconds=60) for c in claims)
    assert await queue.claim(clock.now, 60, 100) == []  # leased
    clock.advance(61)  # the worker died: its lease ran out
    again = await queue.claim(clock.now, 60, 100)
    assert sum(len(c.recipients) for c in again) == 4


async def test_unlease_makes_claimed_recipients_due_again_early(queue: Queue, clock: Clock) -> None:
    a = await queue.enqueue(envelope("1@a.test", "2@a.test"), b"m")
    await queue.claim(clock.now, 900, 10)
    soon = clock.now + timedelta(seconds=1)
    await queue.record([RecipientResult(a, 0, RecipientState.DELIVERED, "250 ok")])
    assert await queue.unlease([(a, 0), (a, 1)], soon) == 1  # the recorded one is left alone
    assert await queue.claim(clock.now, 900, 10) == []  # still leased for a second
    clock.advance(1)
    [again] = await queue.claim(clock.now, 900, 10)
    assert [(r.message_id, r.index) for r in again.recipients] == [(a, 1)]


async def test_claim_respects_limit(queue: Queue, clock: Clock) -> None:
    for _ in range(5):
        await queue.enqueue(envelope("1@a.test"), b"m")
    first = await queue.claim(clock.now, 60, 3)
    second = await queue.claim(clock.now, 60, 3)
    assert [len(c.recipients) for c in first] == [3]
    assert [len(c.recipients) for c in second] == [2]


async def test_outcomes_and_final_states(queue: Queue, clock: Clock) -> None:
    qid = await queue.enqueue(envelope("1@a.test", "2@b.test", "3@c.test"), b"m")
    await queue.claim(clock.now, 60, 10)
    later = clock.now + timedelta(minutes=5)
    applied = await queue.record(
        [
            RecipientResult(qid, 0, RecipientState.DELIVERED, "250 2.0.0 ok"),
            RecipientResult(qid, 1, RecipientState.DEFERRED, "451 4.4.1 try later", later),
            RecipientResult(qid, 2, RecipientState.FAILED, "550 5.1.1 no such user"),
        ]
    )
    assert applied == 3
    record = await queue.get(qid)
    assert [r.state for r in record.recipients] == ["delivered", "deferred", "failed"]
    assert [r.last_reply for r in record.recipients] == [
        "250 2.0.0 ok",
        "451 4.4.1 try later",
        "550 5.1.1 no such user",
    ]
    assert record.recipients[1].next_attempt_at == later
    assert record.status is MessageStatus.ACTIVE and record.attempts == 1
    assert await queue.claim(clock.now, 60, 10) == []  # deferred: not due yet
    clock.advance(300)
    claims = await queue.claim(clock.now, 60, 10)
    assert [(c.domain, c.recipients[0].index, c.recipients[0].attempts) for c in claims] == [("b.test", 1, 1)]
    await queue.record([RecipientResult(qid, 1, RecipientState.DELIVERED, "250 ok")])
    done = await queue.get(qid)
    assert done.status is MessageStatus.DONE and done.done_at == clock.now
    assert done.recipients[1].attempts == 2


async def test_delivered_is_never_claimed_or_changed_again(queue: Queue, clock: Clock) -> None:
    qid = await queue.enqueue(envelope("1@a.test"), b"m")
    await queue.claim(clock.now, 10, 10)
    clock.advance(11)  # the lease ends before the outcome is written: another worker claims
    await queue.claim(clock.now, 10, 10)
    await queue.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 ok")])
    late = RecipientResult(qid, 0, RecipientState.DEFERRED, "421 bye", clock.now)
    assert await queue.record([late]) == 0
    await queue.retry(qid)
    clock.advance(3600)
    assert await queue.claim(clock.now, 10, 10) == []
    assert (await queue.get(qid)).recipients[0].state is RecipientState.DELIVERED


async def test_hold_release_retry_delete(queue: Queue, clock: Clock) -> None:
    a = await queue.enqueue(envelope("1@a.test"), b"m")
    b = await queue.enqueue(envelope("2@b.test"), b"m")
    assert await queue.hold(a) == 1
    assert await queue.hold(a) == 0  # already held
    assert [r.message_id for c in await queue.claim(clock.now, 60, 10) for r in c.recipients] == [b]
    await queue.record(
        [RecipientResult(b, 0, RecipientState.DEFERRED, "451 later", clock.now + timedelta(hours=1))]
    )
    assert await queue.retry(QueueFilter()) == 2  # both pending recipients made due now
    assert await queue.release(a) == 1
    claimed = await queue.claim(clock.now, 60, 10)
    assert sorted(r.message_id for c in claimed for r in c.recipients) == sorted([a, b])
    assert await queue.delete(a) == 1
    with pytest.raises(UnknownMessageError):
        await queue.get(a)
    assert await queue.record([RecipientResult(a, 0, RecipientState.DELIVERED, "250")]) == 0
    assert await queue.delete(QueueFilter()) == 1
    assert await queue.list_messages() == []


async def test_a_message_enqueued_held_is_never_claimed_until_released(queue: Queue, clock: Clock) -> None:
    held = await queue.enqueue(envelope("1@a.test"), b"quarantined", held=True)
    other = await queue.enqueue(envelope("2@b.test"), b"m")
    assert (await queue.get(held)).status == MessageStatus.HELD
    assert [r.message_id for c in await queue.claim(clock.now, 60, 10) for r in c.recipients] == [other]
    assert await queue.release(held) == 1
    assert [r.message_id for c in await queue.claim(clock.now, 60, 10) for r in c.recipients] == [held]


async def test_hold_and_release_by_filter(queue: Queue) -> None:
    await queue.enqueue(envelope("1@a.test"), b"m")
    await queue.enqueue(envelope("2@b.test"), b"m")
    assert await queue.hold(QueueFilter(domain="A.test")) == 1
    assert [m.status for m in await queue.list_messages()] == ["held", "active"]
    assert await queue.release(QueueFilter(status=MessageStatus.HELD)) == 1


LIST_CASES = [
    (QueueFilter(), ["m1", "m2", "m3"]),
    (QueueFilter(status=MessageStatus.DONE), ["m3"]),
    (QueueFilter(status=MessageStatus.ACTIVE), ["m1", "m2"]),
    (QueueFilter(domain="b.test"), ["m2", "m3"]),
    (QueueFilter(sender="BOB@example.org"), ["m2"]),
    (QueueFilter(sender=""), ["m3"]),
    (QueueFilter(error="mailbox FULL"), ["m2"]),
    (QueueFilter(error="100%_"), []),
    (QueueFilter(arrived_before=T0 + timedelta(minutes=1)), ["m1"]),
    (QueueFilter(arrived_after=T0 + timedelta(minutes=1)), ["m2", "m3"]),
]


@pytest.mark.parametrize(("where", "expected"), LIST_CASES)
async def test_list_filters(queue: Queue, clock: Clock, where: QueueFilter, expected: list[str]) -> None:
    names = {}
    names[await queue.enqueue(envelope("1@a.test"), b"m")] = "m1"
    clock.advance(60)
    m2 = await queue.enqueue(envelope("2@b.test", "3@c.test", sender="bob@example.org"), b"mm")
    names[m2] = "m2"
    m3 = await queue.enqueue(envelope("4@b.test", sender=None), b"m")
    names[m3] = "m3"
    await queue.record(
        [
            RecipientResult(m2, 0, RecipientState.DEFERRED, "452 4.2.2 Mailbox full", clock.now),
            RecipientResult(m3, 0, RecipientState.FAILED, "550 5.1.1 unknown"),
        ]
    )
    listed = await queue.list_messages(where)
    assert [names[m.id] for m in listed] == expected


async def test_list_summary(queue: Queue, clock: Clock) -> None:
    qid = await queue.enqueue(envelope("1@a.test", "2@b.test", "3@a.test"), b"12345")
    await queue.record([RecipientResult(qid, 1, RecipientState.DELIVERED, "250 ok")])
    [summary] = await queue.list_messages()
    assert (summary.id, summary.sender, summary.size, summary.recipients, summary.pending) == (
        qid,
        "alice@example.org",
        5,
        3,
        2,
    )
    assert summary.domains == ("a.test", "b.test")
    assert summary.last_reply == "250 ok"
    assert summary.next_attempt_at == clock.now


async def test_stats_by_domain_and_age(queue: Queue, clock: Clock) -> None:
    await queue.enqueue(envelope("1@a.test", "2@a.test"), b"m")
    clock.advance(7 * 60)
    await queue.enqueue(envelope("3@b.test"), b"m")
    done = await queue.enqueue(envelope("4@c.test"), b"m")
    await queue.record([RecipientResult(done, 0, RecipientState.DELIVERED, "250 ok")])
    stats = await queue.stats()
    assert stats.messages == {MessageStatus.ACTIVE: 2, MessageStatus.HELD: 0, MessageStatus.DONE: 1}
    assert stats.recipients[RecipientState.QUEUED] == 3
    assert stats.recipients[RecipientState.DELIVERED] == 1
    assert list(stats.by_domain) == ["a.test", "b.test"]  # biggest first; nothing pending for c.test
    assert stats.by_domain["a.test"][:3] == (0, 2, 0)  # 7 minutes old: the 5-10 bucket
    assert stats.by_domain["b.test"][:3] == (1, 0, 0)


async def test_purge_keeps_history_then_drops_it(queue: Queue, clock: Clock) -> None:
    qid = await queue.enqueue(envelope("1@a.test"), b"body")
    pending = await queue.enqueue(envelope("2@a.test"), b"body")
    await queue.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 ok")])
    clock.advance(3600)
    result = await queue.purge(keep_s=86400, keep_body_s=1800)
    assert (result.messages, result.bodies) == (0, 1)
    record = await queue.get(qid)
    assert not record.has_body and record.status is MessageStatus.DONE
    with pytest.raises(QueueError):
        await queue.read_body(qid)
    clock.advance(86400)
    assert (await queue.purge(keep_s=86400, keep_body_s=1800)).messages == 1
    with pytest.raises(UnknownMessageError):
        await queue.get(qid)
    assert await queue.read_body(pending) == b"body"  # active messages are never purged


async def test_group_commit_groups_concurrent_enqueues(queue: Queue) -> None:
    before = getattr(queue, "stats_commits", 0)
    bodies = [f"message {i}".encode() * 50 for i in range(200)]
    ids = await asyncio.gather(*(queue.enqueue(envelope("b@x.test"), body) for body in bodies))
    assert len(set(ids)) == 200
    commits = getattr(queue, "stats_commits", 0) - before
    assert 1 <= commits <= 50
    for qid, body in zip(ids, bodies, strict=True):
        assert await queue.read_body(qid) == body


async def test_reopen_keeps_everything(tmp_path: Path, clock: Clock) -> None:
    q = SqliteQueue(tmp_path / "queue", clock=clock)
    await q.open()
    qid = await q.enqueue(FULL_ENVELOPE, b"persist")
    await q.close()
    again = SqliteQueue(tmp_path / "queue", clock=clock, create=False)
    await again.open()
    assert (await again.get(qid)).envelope == FULL_ENVELOPE
    await again.close()


async def test_missing_queue_is_an_error_without_create(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "nowhere", create=False)
    with pytest.raises(QueueError, match="no queue"):
        await q.open()
    assert not (tmp_path / "nowhere").exists()


async def test_closed_queue_refuses_work(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue")
    with pytest.raises(QueueError, match="not open"):
        await q.enqueue(envelope("b@x.test"), b"m")


async def test_renew_keeps_a_running_delivery_from_being_claimed_again(queue: Queue, clock: Clock) -> None:
    a = await queue.enqueue(envelope("1@a.test", "2@a.test"), b"m")
    await queue.claim(clock.now, 10, 10)
    clock.advance(8)
    await queue.record([RecipientResult(a, 1, RecipientState.DELIVERED, "250 ok")])
    assert await queue.renew([(a, 0), (a, 1)], clock.now + timedelta(seconds=10)) == 1  # not the final one
    clock.advance(5)  # past the first lease, within the renewed one
    assert await queue.claim(clock.now, 10, 10) == []
    clock.advance(6)  # the renewal ran out too (the node died): due again
    [again] = await queue.claim(clock.now, 10, 10)
    assert [(r.message_id, r.index) for r in again.recipients] == [(a, 0)]
