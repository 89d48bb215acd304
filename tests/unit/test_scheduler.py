"""The scheduler against a real SqliteQueue, a real Router over a fake resolver, and fake couriers:
routing replies, reply classes, retries on the configured schedule, expiry, bounces, delay notices,
transactions and concurrency limits."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flufl.bounce import scan_message
from tests.waiting import eventually

from postier.delivery import BounceSettings, DeliverySettings, RetryPolicy, Router, RoutingTable, Scheduler
from postier.delivery.transport import Attempt, Destination, DestinationKind, OutboundMessage
from postier.dns import MxRecord
from postier.dns.errors import DnsError, NoData, NxDomain, TemporaryDnsError
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Notify, Recipient
from postier.mail.errors import QueueError
from postier.mail.reply import EnhancedStatus, Reply
from postier.observe.logs import FIELDS_ATTR
from postier.queue.model import QueueId, RecipientState
from postier.queue.sqlite import SqliteQueue

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Address("alice", "example.org")  # a local sender: her bounces come back through MAILDIR
OK = Reply(250, EnhancedStatus(2, 0, 0), "Ok: queued")
LATER = Reply(451, EnhancedStatus(4, 7, 1), "Greylisted, try later")
UNKNOWN = Reply(550, EnhancedStatus(5, 1, 1), "No such user")
MTA = "mx1.remote.test [127.0.0.2]:25"
BODY = b"From: alice@example.org\r\nSubject: hello\r\n\r\nHi there\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeResolver:
    def __init__(self, answers: dict[str, list[MxRecord] | DnsError]) -> None:
        self.answers = answers

    async def mx(self, domain: str) -> list[MxRecord]:
        answer = self.answers.get(domain, NoData(domain, "MX"))
        if isinstance(answer, DnsError):
            raise answer
        return answer

    async def addresses(self, host: str) -> list[str]:
        return ["127.0.0.2"]

    async def txt(self, name: str) -> list[str]:
        raise NoData(name, "TXT")


Script = Callable[[Destination, Recipient], Reply]


class FakeCourier:
    """The Courier protocol: answers each recipient with ``script``; ``gate`` (when set) holds every
    delivery until opened; counts the deliveries in progress; ``until`` waits for its state."""

    def __init__(self, script: Script = lambda d, r: OK) -> None:
        self.script = script
        self.dsn_relayed = False
        self.remote_mta: str | None = MTA
        self.calls: list[tuple[Destination, OutboundMessage, list[Recipient]]] = []
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.most_active = 0
        self.closed = False
        self._changed = asyncio.Event()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait until ``condition()`` holds: checked each time a delivery starts or ends, or a close."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def deliver(
        self, destination: Destination, message: OutboundMessage, recipients: Sequence[Recipient]
    ) -> list[Attempt]:
        self.calls.append((destination, message, list(recipients)))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self._changed.set()
            if self.gate is not None:
                await self.gate.wait()
            return [
                Attempt(r, self.script(destination, r), self.remote_mta, "TLSv1.3", self.dsn_relayed)
                for r in recipients
            ]
        finally:
            self.active -= 1
            self._changed.set()

    async def close(self) -> None:
        self.closed = True
        self._changed.set()


ANSWERS: dict[str, list[MxRecord] | DnsError] = {
    "remote.test": [MxRecord(10, "mx1.remote.test")],
    "null.test": [MxRecord(0, ".")],
    "nowhere.test": NxDomain("nowhere.test", "MX"),
    "broken.test": TemporaryDnsError("broken.test", "MX", "SERVFAIL"),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def queue(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue", clock=clock)
    await q.open()
    yield q
    await q.close()


class World:
    def __init__(self, queue: SqliteQueue, clock: Clock, **settings: object) -> None:
        self.queue, self.clock = queue, clock
        self.remote = FakeCourier()
        self.local = FakeCourier()
        table = RoutingTable(local_domains=("example.org",), local_names=("mx.example.org",))
        router = Router(table, FakeResolver(ANSWERS), random.Random(3))
        retry = RetryPolicy(base_s=60, cap_s=600, max_age_s=3600, delay_notice_s=0)
        bounces = BounceSettings("mx.example.org", postmaster=Address("postmaster", "example.org"))
        options: dict[str, object] = {"retry": retry, "bounces": bounces, **settings}
        couriers = {DestinationKind.MX: self.remote, DestinationKind.MAILDIR: self.local}
        self.scheduler = Scheduler(
            queue,
            router,
            couriers,
            DeliverySettings(**options),
            clock=clock,
            rng=random.Random(5),  # type: ignore[arg-type]
        )

    async def send(self, *rcpts: Recipient | Address, sender: Address | None = ALICE) -> QueueId:
        recipients = tuple(r if isinstance(r, Recipient) else Recipient(r) for r in rcpts)
        return await self.queue.enqueue(Envelope(sender=sender, recipients=recipients), BODY)

    async def states(self, qid: QueueId) -> list[tuple[RecipientState, str | None]]:
        return [(r.state, r.last_reply) for r in (await self.queue.get(qid)).recipients]

    async def until_first_is(self, qid: QueueId, state: RecipientState) -> None:
        """Wait until the first recipient of ``qid`` is in ``state`` (the queue has no notification:
        it is read until then, with a deadline)."""

        async def reached() -> bool:
            return (await self.states(qid))[0][0] is state

        await eventually(reached, f"{qid} {state.value}")

    def bounces(self) -> list[OutboundMessage]:
        """DSNs handed to the local courier (they go back to the local sender)."""
        return [m for _, m, _ in self.local.calls if m.envelope.sender is None]


@pytest.fixture
def world(queue: SqliteQueue, clock: Clock) -> World:
    return World(queue, clock)


def bob(n: int = 0) -> Address:
    return Address(f"bob{n}", "remote.test")


async def test_recipients_of_one_message_share_transactions(queue: SqliteQueue, clock: Clock) -> None:
    w = World(queue, clock, max_recipients_per_transaction=2)
    carol = Address("carol", "example.org")
    qid = await w.send(bob(1), bob(2), bob(3), carol)
    assert await w.scheduler.run_once() == 4
    assert [s for s, _ in await w.states(qid)] == [RecipientState.DELIVERED] * 4
    assert sorted([str(r.address) for r in rcpts] for _, _, rcpts in w.remote.calls) == [
        [str(bob(1)), str(bob(2))],
        [str(bob(3))],
    ]
    [(dest, _, [local])] = w.local.calls
    assert (dest.kind, dest.key, local.address) == (DestinationKind.MAILDIR, "maildir:example.org", carol)


async def test_delivered_deferred_failed_and_a_bounce(world: World, caplog: pytest.LogCaptureFixture) -> None:
    replies = {"bob1": OK, "bob2": LATER, "bob3": UNKNOWN}
    world.remote.script = lambda d, r: replies[r.address.local_part]
    qid = await world.send(bob(1), bob(2), bob(3))
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        assert await world.scheduler.run_once() == 3
    [(dest, message, rcpts)] = world.remote.calls
    assert (dest.kind, dest.key, [h.host for h in dest.hosts]) == (
        DestinationKind.MX,
        "mx:remote.test",
        ["mx1.remote.test"],
    )
    assert message.queue_id == qid and message.body == BODY and len(rcpts) == 3
    (s1, r1), (s2, r2), (s3, r3) = await world.states(qid)
    assert (s1, r1) == (RecipientState.DELIVERED, str(OK))
    assert (s2, r2) == (RecipientState.DEFERRED, str(LATER))
    assert (s3, r3) == (RecipientState.FAILED, str(UNKNOWN))
    record = await world.queue.get(qid)
    retry_at = record.recipients[1].next_attempt_at
    assert (
        retry_at is not None and 54 <= (retry_at - world.clock.now).total_seconds() <= 66
    )  # base 60 s ±10 %
    lines = {
        getattr(r, FIELDS_ATTR)["rcpt"]: getattr(r, FIELDS_ATTR)
        for r in caplog.records
        if r.getMessage() == "delivery"
    }
    assert lines["<bob2@remote.test>"]["next"] == retry_at.isoformat(timespec="seconds")
    assert lines["<bob3@remote.test>"]["relay"] == MTA and lines["<bob3@remote.test>"]["dsn"] == "5.1.1"
    assert lines["<bob1@remote.test>"]["attempt"] == 1 and lines["<bob1@remote.test>"]["tls"] == "TLSv1.3"

    # The bounce is a new message from <> to alice, delivered locally at the next claim.
    assert await world.scheduler.run_once() == 1
    [dsn] = world.bounces()
    assert [r.address for r in dsn.envelope.recipients] == [ALICE]
    assert scan_message(email.message_from_bytes(dsn.body)) == {b"bob3@remote.test"}
    assert b"Remote-MTA: dns; mx1.remote.test" in dsn.body and b"smtp; 550 5.1.1 No such user" in dsn.body


async def test_a_retry_on_the_configured_schedule_then_success(world: World) -> None:
    attempts: list[Reply] = [LATER, OK]
    world.remote.script = lambda d, r: attempts.pop(0)
    qid = await world.send(bob())
    assert await world.scheduler.run_once() == 1
    assert await world.scheduler.run_once() == 0  # not due yet
    world.clock.advance(67)
    assert await world.scheduler.run_once() == 1
    assert await world.states(qid) == [(RecipientState.DELIVERED, str(OK))]
    assert world.bounces() == []


async def test_expiry_fails_with_5_4_7_and_bounces(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.remote.script = lambda d, r: LATER
    qid = await world.send(bob())
    world.clock.advance(3600)  # max_age_s
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        await world.scheduler.run_once()
    [(state, reply)] = await world.states(qid)
    assert state is RecipientState.FAILED
    assert reply == f"554 5.4.7 delivery time expired; last reply: {LATER}"
    assert [r.getMessage() for r in caplog.records].count("expired") == 1
    await world.scheduler.run_once()
    [dsn] = world.bounces()
    assert b"Status: 5.4.7" in dsn.body and b"Diagnostic-Code: smtp; 451 4.7.1 Greylisted" in dsn.body


@pytest.mark.parametrize(
    ("domain", "state", "status"),
    [
        ("null.test", RecipientState.FAILED, "5.1.10"),
        ("nowhere.test", RecipientState.FAILED, "5.1.2"),
        ("broken.test", RecipientState.DEFERRED, "4.4.3"),
    ],
)
async def test_routing_replies_settle_without_a_courier(
    world: World, domain: str, state: RecipientState, status: str
) -> None:
    qid = await world.send(Address("x", domain))
    await world.scheduler.run_once()
    [(got, reply)] = await world.states(qid)
    assert got is state and reply is not None and f" {status} " in reply
    assert world.remote.calls == []
    await world.scheduler.run_once()
    assert len(world.bounces()) == (1 if state is RecipientState.FAILED else 0)


async def test_notify_never_and_null_sender_get_no_bounce(world: World) -> None:
    world.remote.script = lambda d, r: UNKNOWN
    never = Recipient(bob(1), notify=frozenset({Notify.NEVER}))
    await world.send(never)
    pm_qid = await world.send(bob(2), sender=None)  # a bounce that bounces: to the postmaster
    await world.scheduler.run_once()
    await world.scheduler.run_once()
    [double] = world.bounces()
    assert [r.address for r in double.envelope.recipients] == [Address("postmaster", "example.org")]
    assert scan_message(email.message_from_bytes(double.body)) == {b"bob2@remote.test"}
    assert (await world.states(pm_qid))[0][0] is RecipientState.FAILED


async def test_success_notices_relayed_and_delivered(world: World) -> None:
    world.remote.dsn_relayed = True
    wants = frozenset({Notify.SUCCESS})
    await world.send(Recipient(bob(), notify=wants), Recipient(Address("carol", "example.org"), notify=wants))
    await world.scheduler.run_once()
    await world.scheduler.run_once()
    actions = sorted(
        line for m in world.bounces() for line in m.body.split(b"\r\n") if line.startswith(b"Action:")
    )
    assert actions == [b"Action: delivered", b"Action: relayed"]


async def test_delay_notice_once(queue: SqliteQueue, clock: Clock) -> None:
    w = World(queue, clock, retry=RetryPolicy(base_s=60, cap_s=60, max_age_s=3600, delay_notice_s=100))
    w.remote.script = lambda d, r: LATER
    await w.send(Recipient(bob(), notify=frozenset({Notify.DELAY})))
    for _ in range(4):  # attempts at about 0, 60, 120, 180 s: the one at ~120 s crosses 100 s
        await w.scheduler.run_once()
        clock.advance(70)
    notices = [m for m in w.bounces() if b"Action: delayed" in m.body]
    assert len(notices) == 1
    assert b"Will-Retry-Until:" in notices[0].body and b"Status: 4.7.1" in notices[0].body


async def test_courier_errors_defer(world: World) -> None:
    def boom(d: Destination, r: Recipient) -> Reply:
        raise RuntimeError("bug in a courier")

    world.remote.script = boom
    qid = await world.send(bob())
    await world.scheduler.run_once()
    [(state, reply)] = await world.states(qid)
    assert state is RecipientState.DEFERRED and reply is not None and reply.startswith("451 4.3.0")


async def test_per_destination_limit_and_a_slow_destination_blocks_nobody(
    queue: SqliteQueue, clock: Clock
) -> None:
    w = World(queue, clock, max_connections_per_destination=2, poll_s=0.05)
    slow = asyncio.Event()
    w.remote.gate = slow  # remote.test hangs until released
    stuck = [await w.send(bob(i)) for i in range(5)]
    task = asyncio.create_task(w.scheduler.run_forever())
    try:
        local = await w.send(Address("carol", "example.org"))
        w.scheduler.wake()
        await w.until_first_is(local, RecipientState.DELIVERED)
        # five messages, at most two at once to one destination: two in progress, three waiting
        await eventually(lambda: w.remote.active == 2 and w.scheduler.waiting_for_slots >= 1, "2 + waiting")
        slow.set()
        for qid in stuck:
            await w.until_first_is(qid, RecipientState.DELIVERED)
    finally:
        await w.scheduler.stop()
        await asyncio.wait_for(task, timeout=10)  # run_forever returns once stopped
    assert w.remote.most_active == 2 and w.remote.closed and w.local.closed


async def test_a_dead_destination_is_deferred_without_connecting(queue: SqliteQueue, clock: Clock) -> None:
    world = World(queue, clock, max_connections_per_destination=1)
    dead = Reply(451, EnhancedStatus(4, 4, 1), "connection refused")
    calls = 0

    def refuse(d: Destination, r: Recipient) -> Reply:
        nonlocal calls
        calls += 1
        return dead

    world.remote.script = refuse
    world.remote.remote_mta = None  # no server answered at all
    ids = [await world.send(bob(i)) for i in range(3)]
    await world.scheduler.run_once()
    assert calls == 1  # after the first refusal the others, waiting for the slot, are deferred at once
    for qid in ids:
        assert (await world.states(qid))[0] == (RecipientState.DEFERRED, str(dead))


async def test_global_connection_limit(queue: SqliteQueue, clock: Clock) -> None:
    w = World(queue, clock, max_connections=1)
    gate = asyncio.Event()
    w.remote.gate = gate
    ids = [await w.send(bob()), await w.send(Address("x", "else.test"))]  # two destinations
    run = asyncio.create_task(w.scheduler.run_once())
    # The witness: the other destination's transaction is waiting for the one slot, not delivering.
    await eventually(lambda: w.remote.active == 1 and w.scheduler.waiting_for_slots == 1, "one waiting")
    assert w.remote.active == 1
    gate.set()
    assert await run == 2
    assert w.remote.most_active == 1
    for qid in ids:
        assert (await w.states(qid))[0][0] is RecipientState.DELIVERED


# --- one message, many transactions; a failing or vanishing message ---------------------------------


async def test_one_dsn_per_message_over_its_transactions(queue: SqliteQueue, clock: Clock) -> None:
    w = World(queue, clock, max_recipients_per_transaction=2)
    w.remote.script = lambda d, r: UNKNOWN
    await w.send(*(bob(i) for i in range(5)))  # three transactions to remote.test
    await w.send(*(Address(f"x{i}", "null.test") for i in range(5)))  # settled by the route alone
    assert await w.scheduler.run_once() == 10
    assert len(w.remote.calls) == 3
    await w.scheduler.run_once()
    dsns = [scan_message(email.message_from_bytes(m.body)) for m in w.bounces()]
    assert sorted(len(d) for d in dsns) == [5, 5]  # one DSN per message naming all five, not one per batch


class FaultyBodies(SqliteQueue):
    """A real queue whose bodies of chosen messages cannot be read (a damaged body file)."""

    broken: set[str]
    refused: asyncio.Event

    async def read_body(self, queue_id: str) -> bytes:
        if queue_id in self.broken:
            self.refused.set()
            raise QueueError(f"cannot read the body of {queue_id}")
        return await super().read_body(queue_id)


async def test_a_message_that_cannot_be_read_does_not_stop_the_others(tmp_path: Path, clock: Clock) -> None:
    queue = FaultyBodies(tmp_path / "faulty", clock=clock)
    await queue.open()
    try:
        w = World(queue, clock)
        gate = asyncio.Event()
        w.remote.gate = gate
        good = await w.send(bob(1))
        bad = await w.send(bob(2))
        queue.broken, queue.refused = {bad}, asyncio.Event()
        run = asyncio.create_task(w.scheduler.run_once())
        await queue.refused.wait()  # the broken one has failed,
        await w.remote.until(lambda: w.remote.active == 1)  # and the good one is in flight
        gate.set()
        assert await run == 2
        assert (await w.states(good))[0][0] is RecipientState.DELIVERED
        assert (await w.states(bad))[0][0] is RecipientState.QUEUED  # leased: tried again later
    finally:
        await queue.close()


async def test_a_message_deleted_in_flight_gets_no_bounce(world: World) -> None:
    world.remote.script = lambda d, r: UNKNOWN
    gate = asyncio.Event()
    world.remote.gate = gate
    qid = await world.send(bob())
    run = asyncio.create_task(world.scheduler.run_once())
    await world.remote.until(lambda: world.remote.active == 1)
    await world.queue.delete(qid)  # `postier queue delete` while the courier is talking
    gate.set()
    await run
    await world.scheduler.run_once()
    assert world.bounces() == []


class SlowClaims(SqliteQueue):
    """A real queue whose claims wait for ``gate`` (a claim still running when stop() is called)."""

    gate: asyncio.Event
    entered: asyncio.Event

    async def claim(self, now: datetime, lease_s: float, limit: int) -> Any:
        self.entered.set()
        await self.gate.wait()
        return await super().claim(now, lease_s, limit)


async def test_stop_during_a_claim_leaves_nothing_running(tmp_path: Path, clock: Clock) -> None:
    queue = SlowClaims(tmp_path / "slow", clock=clock)
    queue.gate, queue.entered = asyncio.Event(), asyncio.Event()
    await queue.open()
    try:
        w = World(queue, clock)
        delivered_after_close: list[bool] = []
        script = w.remote.script
        w.remote.script = lambda d, r: (delivered_after_close.append(w.remote.closed), script(d, r))[1]
        await w.send(bob())
        runner = asyncio.create_task(w.scheduler.run_forever())
        await queue.entered.wait()
        stopping = asyncio.create_task(w.scheduler.stop(grace_s=5))
        await asyncio.sleep(0)  # one turn of the loop: stop() waits for the claim that is still out
        queue.gate.set()
        await asyncio.wait_for(stopping, timeout=10)
        await asyncio.wait_for(runner, timeout=10)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=10)
        assert True not in delivered_after_close  # nothing delivered once the couriers are closed
    finally:
        await queue.close()


class CountingReads(SqliteQueue):
    reads: int = 0

    async def read_body(self, queue_id: str) -> bytes:
        self.reads += 1
        return await super().read_body(queue_id)


async def test_a_message_is_read_once_for_all_its_transactions(tmp_path: Path, clock: Clock) -> None:
    """A big message to many recipients of one domain: its transactions share one copy of the body
    (not one per transaction, up to max_connections_per_destination copies in memory)."""
    queue = CountingReads(tmp_path / "counting", clock=clock)
    await queue.open()
    try:
        w = World(queue, clock, max_recipients_per_transaction=2)
        await w.send(*(bob(i) for i in range(7)))
        assert await w.scheduler.run_once() == 7
        assert len(w.remote.calls) == 4 and queue.reads == 1
    finally:
        await queue.close()


async def test_a_slow_destination_with_a_big_backlog_does_not_starve_the_others(
    queue: SqliteQueue, clock: Clock
) -> None:
    """More recipients waiting for one slow destination than may be in progress at all: they may
    not take all the room, or mail for every other domain would wait behind them."""
    w = World(
        queue,
        clock,
        max_in_flight=6,
        claim_batch=3,
        max_in_flight_per_destination=2,
        max_connections_per_destination=1,
        poll_s=0.05,
    )
    slow = asyncio.Event()
    script = w.remote.script
    w.remote.gate = None

    async def deliver(destination: Destination, message: OutboundMessage, rcpts: Sequence[Recipient]) -> Any:
        if destination.domain == "remote.test":
            await slow.wait()
        return await FakeCourier.deliver(w.remote, destination, message, rcpts)

    w.remote.deliver = deliver  # type: ignore[method-assign]
    w.remote.script = script
    stuck = [await w.send(bob(i)) for i in range(10)]
    task = asyncio.create_task(w.scheduler.run_forever())
    try:
        other = await w.send(Address("x", "else.test"))
        w.scheduler.wake()
        await w.until_first_is(other, RecipientState.DELIVERED)
    finally:
        slow.set()
        await w.scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
    assert len(stuck) == 10


async def _all_delivered(w: World, qids: list[QueueId]) -> bool:
    for qid in qids:
        if any(state is not RecipientState.DELIVERED for state, _ in await w.states(qid)):
            return False
    return True


async def test_a_burst_beyond_a_domain_share_drains_without_waiting_for_the_lease(
    queue: SqliteQueue, clock: Clock
) -> None:
    """A claim that brings more recipients of one domain than its share hands the rest back due in a
    second, not at the end of the 900 s lease (a burst of 10,000 messages to one relay once stalled for
    fifteen minutes after the first share was delivered)."""
    w = World(queue, clock, claim_batch=10, max_in_flight_per_destination=2, poll_s=0.02)
    qids = [await w.send(bob(i)) for i in range(10)]
    task = asyncio.create_task(w.scheduler.run_forever())

    async def drained() -> bool:
        clock.advance(0.5)  # the queue's time between two looks; the full lease is 900 s of it
        return await _all_delivered(w, qids)

    try:
        await eventually(drained, "every message delivered", timeout_s=60)
    finally:
        await w.scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
    assert clock.now - T0 < timedelta(seconds=120)
    assert len(w.remote.calls) == 10


class CountedClaims(SqliteQueue):
    """A real queue that counts the claims made of it."""

    claims = 0

    async def claim(self, now: datetime, lease_s: float, limit: int) -> Any:
        self.claims += 1
        return await super().claim(now, lease_s, limit)


async def test_a_saturated_destination_is_not_claimed_again_at_each_new_message(
    tmp_path: Path, clock: Clock
) -> None:
    """While every due recipient is for a destination at its share, new mail does not make the
    scheduler lease and hand back the same backlog again and again (once it did so after every
    enqueue: a fifth of the queue's time while a burst waited for a slow relay). It claims again
    when a batch finishes, and the backlog then drains."""
    queue = CountedClaims(tmp_path / "queue", clock=clock)
    await queue.open()
    w = World(queue, clock, claim_batch=20, max_in_flight_per_destination=2, poll_s=30)
    w.remote.gate = asyncio.Event()  # the destination takes its two and never answers, for now
    task = asyncio.create_task(w.scheduler.run_forever())
    try:
        qids = [await w.send(bob(i)) for i in range(5)]
        w.scheduler.wake()
        await w.remote.until(lambda: w.remote.active == 2)
        before = queue.claims
        for i in range(5, 60):  # each enqueue wakes the scheduler, as the server's does; the enqueue's
            qids.append(await w.send(bob(i)))  # own wait for its commit lets the woken scheduler run
            w.scheduler.wake()
        assert queue.claims - before <= 2  # not one per message
        w.remote.gate.set()

        async def drained() -> bool:
            clock.advance(1.0)  # the handed-back recipients come due again,
            w.scheduler.wake()  # and the poll (1 s in production, 30 s here) finds them
            return await _all_delivered(w, qids)

        await eventually(drained, "every message delivered", timeout_s=60)
    finally:
        await w.scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
        await queue.close()
    assert len(w.remote.calls) == 60


async def test_deliveries_are_recorded_when_their_transaction_ends(queue: SqliteQueue, clock: Clock) -> None:
    """A delivered recipient is recorded as soon as its transaction ends, not when the message's
    slowest transaction does: a crash meanwhile must not deliver it a second time."""
    w = World(queue, clock, max_recipients_per_transaction=1)
    slow = asyncio.Event()
    real = FakeCourier.deliver

    async def deliver(destination: Destination, message: OutboundMessage, rcpts: Sequence[Recipient]) -> Any:
        if rcpts[0].address == bob(2):
            await slow.wait()
        return await real(w.remote, destination, message, rcpts)

    w.remote.deliver = deliver  # type: ignore[method-assign]
    w.remote.script = lambda d, r: OK if r.address == bob(1) else UNKNOWN
    qid = await w.send(bob(1), bob(2), bob(3))
    run = asyncio.create_task(w.scheduler.run_once())
    await w.until_first_is(qid, RecipientState.DELIVERED)
    assert [s for s, _ in await w.states(qid)][1:] == [RecipientState.QUEUED] * 2  # bob3 waits: one DSN
    slow.set()
    assert await run == 3
    await w.scheduler.run_once()
    [dsn] = w.bounces()
    assert scan_message(email.message_from_bytes(dsn.body)) == {b"bob2@remote.test", b"bob3@remote.test"}


class FlakyClaims(SqliteQueue):
    """A real queue whose first claim fails with an error the queue did not foresee."""

    failures: int = 1

    async def claim(self, now: datetime, lease_s: float, limit: int) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database disk image is malformed")
        return await super().claim(now, lease_s, limit)


async def test_delivery_goes_on_after_an_unexpected_claim_error(tmp_path: Path, clock: Clock) -> None:
    queue = FlakyClaims(tmp_path / "flaky", clock=clock)
    await queue.open()
    w = World(queue, clock, poll_s=0.05)
    task = asyncio.create_task(w.scheduler.run_forever())
    try:
        qid = await w.send(bob())
        w.scheduler.wake()
        await w.until_first_is(qid, RecipientState.DELIVERED)
        assert queue.failures == 0
    finally:
        await w.scheduler.stop()
        await asyncio.wait_for(task, timeout=10)
        await queue.close()


async def test_bodies_are_not_read_to_defer_without_connecting(tmp_path: Path, clock: Clock) -> None:
    """A backlog for a domain whose MX lookup fails (SERVFAIL) or whose servers are all down is
    deferred without reading a single body: only a courier, or a DSN, needs one."""
    queue = CountingReads(tmp_path / "counting", clock=clock)
    await queue.open()
    try:
        w = World(queue, clock, max_connections_per_destination=1)
        w.remote.script = lambda d, r: Reply(421, EnhancedStatus(4, 4, 1), "Connection refused")
        w.remote.remote_mta = None  # no server answered: the destination is dead after the first
        for i in range(3):
            await w.send(Address(f"x{i}", "broken.test"))  # SERVFAIL
            await w.send(bob(i))
        assert await w.scheduler.run_once() == 6
        assert len(w.remote.calls) == 1 and queue.reads == 1  # the one transaction that tried
    finally:
        await queue.close()


async def test_stop_cancels_what_outlives_the_grace_time(world: World) -> None:
    """A transaction still hanging when the grace time is over is cancelled: nothing is recorded
    (the lease gives the recipient back after a restart) and the couriers are closed."""
    world.remote.gate = asyncio.Event()  # never opened: a server that hangs
    qid = await world.send(bob())
    task = asyncio.create_task(world.scheduler.run_forever())
    await world.remote.until(lambda: world.remote.active == 1)
    await world.scheduler.stop(grace_s=0.05)
    await asyncio.wait_for(task, timeout=10)
    assert world.remote.active == 0 and world.remote.closed  # cancelled, then closed
    assert await world.states(qid) == [(RecipientState.QUEUED, None)]


# --- a configuration reload ------------------------------------------------------------------------


async def test_a_reload_swaps_couriers_and_settings_for_what_starts_next(
    queue: SqliteQueue, clock: Clock
) -> None:
    w = World(queue, clock)
    old = w.remote
    old.gate = asyncio.Event()
    first = await w.send(bob(1))
    running = asyncio.create_task(w.scheduler.run_once())
    await old.until(lambda: old.active == 1)

    new = FakeCourier(lambda d, r: LATER)
    retry = RetryPolicy(base_s=600, cap_s=6000, max_age_s=36000, delay_notice_s=0)
    settings = dataclasses.replace(DeliverySettings(), retry=retry, max_connections=1)
    w.scheduler.reconfigure({DestinationKind.MX: new, DestinationKind.MAILDIR: w.local}, settings)
    await old.until(lambda: old.closed)  # closed at once: its transaction in progress keeps going
    assert not w.local.closed  # still in use
    old.gate.set()
    assert await running == 1
    assert await w.states(first) == [(RecipientState.DELIVERED, str(OK))]

    second = await w.send(bob(2))
    assert await w.scheduler.run_once() == 1
    assert [m.queue_id for _, m, _ in new.calls] == [second]
    assert [m.queue_id for _, m, _ in old.calls] == [first]
    record = await w.queue.get(second)
    retry_at = record.recipients[0].next_attempt_at
    assert retry_at is not None and 540 <= (retry_at - clock.now).total_seconds() <= 660  # 600 s ±10 %
    await w.scheduler.stop()
    assert new.closed
