"""Local delivery end to end below the server: a real SqliteQueue, the Scheduler with a real Router
and the real MaildirCourier. Local recipients land in Maildir exactly once; a remote one whose
domain's DNS fails waits in the queue, deferred with 4.4.3, and is never confused with a local one."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postier.delivery import DeliverySettings, DestinationKind, RetryPolicy, Router, RoutingTable, Scheduler
from postier.delivery.local import MaildirCourier
from postier.dns import MxRecord
from postier.dns.errors import NoData, TemporaryDnsError
from postier.mail.address import POSTMASTER, Address
from postier.mail.envelope import Envelope, Recipient
from postier.mail.replies import S
from postier.queue.model import RecipientState
from postier.queue.sqlite import SqliteQueue
from postier.recipients.directory import LocalDirectory
from postier.users import UserStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BODY = b"Subject: test\r\n\r\nHello\r\n..leading dot kept as queued\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def queue(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "queue", clock=clock)
    await q.open()
    yield q
    await q.close()


def directory(root: Path) -> LocalDirectory:
    """Local users bob@example.org, dave@ and frank@localhost; Maildirs at root/<domain>/<user>."""
    users = UserStore(root.parent / "users.json", time_cost=1, memory_cost=8192, parallelism=1)
    for address in ("bob@example.org", "dave@localhost", "frank@localhost"):
        if users.get(address) is None:
            users.add(address, "pw")
    return LocalDirectory(
        local_domains=["Example.ORG", "localhost"],
        users=users,
        mailbox_root=root,
        mailbox_path="{domain}/{user}",
    )


class ServfailResolver:
    """Every remote domain's DNS is broken (SERVFAIL): its recipients are deferred with 4.4.3."""

    async def mx(self, domain: str) -> list[MxRecord]:
        raise TemporaryDnsError(domain, "MX", "SERVFAIL")

    async def addresses(self, host: str) -> list[str]:
        raise TemporaryDnsError(host, "A", "SERVFAIL")

    async def txt(self, name: str) -> list[str]:
        raise NoData(name, "TXT")


def runner(queue: SqliteQueue, root: Path, clock: Clock, poll_s: float = 1.0) -> Scheduler:
    local = directory(root)
    table = RoutingTable(local_domains=("example.org", "localhost"), local_names=("mx.test",))
    courier = MaildirCourier(local, hostname="mx.test", clock=clock, rng=random.Random(7))
    return Scheduler(
        queue,
        Router(table, ServfailResolver(), random.Random(3)),
        {DestinationKind.MAILDIR: courier},
        DeliverySettings(
            retry=RetryPolicy(base_s=300, cap_s=3600, max_age_s=5 * 86400, delay_notice_s=0), poll_s=poll_s
        ),
        clock=clock,
        rng=random.Random(5),
        expand=local.expand,
    )


ALICE = Address("alice", "sender.test")


def envelope(*rcpts: Address, sender: Address | None = ALICE) -> Envelope:
    return Envelope(sender=sender, recipients=tuple(Recipient(r) for r in rcpts))


def new_files(root: Path, domain: str, user: str) -> list[Path]:
    directory = root / domain / user / "new"
    return sorted(directory.iterdir()) if directory.exists() else []


async def test_local_delivered_remote_deferred_and_never_twice(
    tmp_path: Path, queue: SqliteQueue, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "mail"
    qid = await queue.enqueue(envelope(Address("Bob", "example.org"), Address("carol", "remote.test")), BODY)
    delivery = runner(queue, root, clock)
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        assert await delivery.run_once() == 2

    [stored] = new_files(root, "example.org", "bob")
    assert stored.read_bytes() == (
        b"Return-Path: <alice@sender.test>\r\nDelivered-To: Bob@example.org\r\n" + BODY
    )
    bob, carol = (await queue.get(qid)).recipients
    assert (bob.state, bob.last_reply) == (RecipientState.DELIVERED, str(S.DELIVERED_TO_MAILDIR))
    assert carol.state is RecipientState.DEFERRED
    assert carol.last_reply is not None and carol.last_reply.startswith("451 4.4.3 ")
    assert carol.next_attempt_at is not None and carol.next_attempt_at > clock.now
    events = [r.getMessage() for r in caplog.records if r.name == "postier.mail"]
    assert events == ["delivery", "delivery"]

    assert await delivery.run_once() == 0  # nothing due: carol waits for her next attempt
    clock.advance(3600)
    assert await delivery.run_once() == 1  # carol again, never bob
    assert len(new_files(root, "example.org", "bob")) == 1
    bob, carol = (await queue.get(qid)).recipients
    assert bob.attempts == 1 and carol.attempts == 2


async def test_null_sender_and_postmaster(tmp_path: Path, queue: SqliteQueue, clock: Clock) -> None:
    root = tmp_path / "mail"
    # The server expands recipients before queueing: <Postmaster> is postmaster@ the first local domain.
    expanded = directory(root).expand(envelope(POSTMASTER).recipients)
    assert [str(r.address) for r in expanded] == ["postmaster@example.org"]
    qid = await queue.enqueue(Envelope(sender=None, recipients=expanded), b"bounce\r\n")
    assert await runner(queue, root, clock).run_once() == 1
    [stored] = new_files(root, "example.org", "postmaster")
    assert stored.read_bytes() == (b"Return-Path: <>\r\nDelivered-To: postmaster@example.org\r\nbounce\r\n")
    [pm] = (await queue.get(qid)).recipients
    assert pm.state is RecipientState.DELIVERED


async def test_disk_error_defers_and_a_later_round_delivers(
    tmp_path: Path, queue: SqliteQueue, clock: Clock
) -> None:
    root = tmp_path / "mail"
    root.mkdir()
    (root / "localhost").write_bytes(b"in the way")  # the domain directory cannot be made
    qid = await queue.enqueue(envelope(Address("dave", "localhost")), BODY)
    delivery = runner(queue, root, clock)
    assert await delivery.run_once() == 1
    [dave] = (await queue.get(qid)).recipients
    assert dave.state is RecipientState.DEFERRED
    assert dave.last_reply is not None and dave.last_reply.startswith("451 4.3.0 ")

    (root / "localhost").unlink()
    clock.advance(3600)
    assert await delivery.run_once() == 1
    [dave] = (await queue.get(qid)).recipients
    assert dave.state is RecipientState.DELIVERED
    assert len(new_files(root, "localhost", "dave")) == 1


async def test_expired_remote_recipient_fails(tmp_path: Path, queue: SqliteQueue, clock: Clock) -> None:
    qid = await queue.enqueue(envelope(Address("erin", "remote.test")), BODY)
    clock.advance(6 * 86400)  # older than the 5-day maximum time in the queue
    assert await runner(queue, tmp_path / "mail", clock).run_once() == 1
    [erin] = (await queue.get(qid)).recipients
    assert erin.state is RecipientState.FAILED
    assert erin.last_reply is not None and erin.last_reply.startswith("554 5.4.7 ")


async def test_run_forever_delivers_after_wake(tmp_path: Path, queue: SqliteQueue, clock: Clock) -> None:
    root = tmp_path / "mail"
    delivery = runner(queue, root, clock, poll_s=3600)  # only wake() can start the delivery in time
    task = asyncio.create_task(delivery.run_forever())
    try:
        await asyncio.sleep(0)
        qid = await queue.enqueue(envelope(Address("frank", "localhost")), BODY)
        delivery.wake()
        while (await queue.get(qid)).recipients[0].state is not RecipientState.DELIVERED:
            await asyncio.sleep(0.01)
    finally:
        await delivery.stop()
        await task
    assert len(new_files(root, "localhost", "frank")) == 1
