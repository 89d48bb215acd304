"""What the PostgreSQL queue adds to the contract (tests/unit/test_queue_contract.py runs on it too):
several nodes on one schema, leases carrying the node, LISTEN/NOTIFY, versioned migrations, the tools,
and failures of the database."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import tomli_w

from postier.cli import queue_cmd
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import QueueError, RecipientResult, RecipientState
from postier.queue.postgres import SCHEMA_VERSION, PostgresQueue, safe_dsn
from tests import pgtest
from tests.integration.harness import free_port
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def envelope(*rcpts: str) -> Envelope:
    return Envelope(Address("a", "x.test"), tuple(Recipient(Address(*r.split("@"))) for r in rcpts))


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    await pgtest.require_pg()
    name = pgtest.new_schema()
    yield name
    await pgtest.drop_schema(name)


async def node(
    schema: str, name: str, *, wake: Callable[[], None] | None = None, **kw: object
) -> PostgresQueue:
    q = PostgresQueue(pgtest.DSN, schema=schema, node=name, **kw)  # type: ignore[arg-type]
    if wake is not None:
        q.subscribe(wake)  # before open: the first wake-up says the node listens
    await q.open()
    return q


async def test_two_nodes_claiming_at_once_never_take_the_same_recipient(schema: str) -> None:
    a, b = await node(schema, "a"), await node(schema, "b")
    try:
        await asyncio.gather(*(a.enqueue(envelope("u@d1.test", "v@d2.test"), b"m") for _ in range(300)))
        now = datetime.now(UTC) + timedelta(seconds=1)
        seen: list[tuple[str, int]] = []

        async def drain(q: PostgresQueue) -> None:
            while claims := await q.claim(now, 60, 7):
                seen.extend((r.message_id, r.index) for c in claims for r in c.recipients)

        await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
        assert len(seen) == 600 and len(set(seen)) == 600
        leases = await a.leases(now)
        assert set(leases) == {"a", "b"} and sum(leases.values()) == 600
    finally:
        await a.close()
        await b.close()


async def test_a_lease_taken_over_stays_with_the_new_node(schema: str) -> None:
    a, b = await node(schema, "a"), await node(schema, "b")
    try:
        qid = await a.enqueue(envelope("u@d.test"), b"m")
        t0 = datetime.now(UTC) + timedelta(seconds=1)
        assert await a.claim(t0, 10, 10)
        assert await b.claim(t0, 10, 10) == []  # leased by a
        assert await a.renew([(qid, 0)], t0 + timedelta(seconds=20)) == 1
        assert await b.claim(t0 + timedelta(seconds=15), 10, 10) == []  # the renewal holds
        later = t0 + timedelta(seconds=25)  # a died and stopped renewing: b takes over
        [claim] = await b.claim(later, 10, 10)
        assert claim.recipients[0].message_id == qid
        assert await a.renew([(qid, 0)], later + timedelta(seconds=60)) == 0  # not a's any more
        assert await a.unlease([(qid, 0)], later) == 0
        assert await b.leases(later) == {"b": 1}
        # a's late outcome still counts (that attempt happened); delivered stays delivered
        assert await a.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 ok")]) == 1
        assert await b.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 ok")]) == 0
    finally:
        await a.close()
        await b.close()


async def test_an_enqueue_on_one_node_wakes_the_others(schema: str) -> None:
    woken = {"a": asyncio.Event(), "b": asyncio.Event()}
    a = await node(schema, "a", wake=woken["a"].set)
    b = await node(schema, "b", wake=woken["b"].set)
    try:
        for name in ("a", "b"):  # both LISTEN: each wakes itself once when it starts listening
            await asyncio.wait_for(woken[name].wait(), 30)
        woken["a"].clear()
        woken["b"].clear()
        await a.enqueue(envelope("u@d.test"), b"m")
        await asyncio.wait_for(woken["b"].wait(), 5)
        assert not woken["a"].is_set()  # its own enqueue: its scheduler was woken by the server
        woken["b"].clear()
        await a.retry(await a.list_messages() and (await a.list_messages())[0].id)
        await asyncio.wait_for(woken["b"].wait(), 5)  # a tool's retry wakes every node
    finally:
        await a.close()
        await b.close()


async def test_migrations_are_versioned_and_tools_need_a_queue(schema: str) -> None:
    tool = PostgresQueue(pgtest.DSN, schema=schema, create=False)
    with pytest.raises(QueueError, match="no queue"):
        await tool.open()
    q = await node(schema, "a")  # the first node creates it
    await q.close()
    conn = await asyncpg.connect(pgtest.DSN)
    try:
        await conn.execute(f'UPDATE "{schema}".schema_info SET version = $1', SCHEMA_VERSION + 1)  # noqa: S608
    finally:
        await conn.close()
    with pytest.raises(QueueError, match="version"):
        await node(schema, "a")


async def test_database_unreachable_is_a_queue_error() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    q = PostgresQueue(dsn, schema="nothing", timeout_s=2)
    with pytest.raises(QueueError):
        await q.open()


async def test_dead_connections_fail_the_batch_then_the_queue_recovers(schema: str) -> None:
    """The server ends every connection of the queue (as a restart does): the enqueue in flight
    fails with QueueError (no 250 for it) or succeeds; the next ones go through new connections."""
    q = await node(schema, "a", pool_size=3)
    admin = await asyncpg.connect(pgtest.DSN)
    try:
        await q.enqueue(envelope("u@d.test"), b"before")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'postier a'"
            " AND pid <> pg_backend_pid()"
        )
        results = await asyncio.gather(
            *(q.enqueue(envelope("u@d.test"), b"during") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, (str, QueueError)) for r in results)
        for _ in range(50):
            try:
                qid = await q.enqueue(envelope("u@d.test"), b"after")
                break
            except QueueError:
                await asyncio.sleep(0.1)
        assert await q.read_body(qid) == b"after"
    finally:
        await admin.close()
        await q.close()


def test_safe_dsn_hides_the_password() -> None:
    assert safe_dsn("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert safe_dsn("postgresql://u@db/x") == "postgresql://u@db/x"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="postier")
    queue_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_tools_on_a_cluster_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(pgtest.require_pg())
    name = pgtest.new_schema()
    config = tmp_path / "postier.toml"
    queue = {"backend": "postgres", "dsn": pgtest.DSN, "schema": name}
    config.write_text(tomli_w.dumps({"server": {"data_dir": str(tmp_path / "var")}, "queue": queue}))
    try:
        assert run("queue", "list", "--config", str(config)) == 1  # no queue yet: not made by a tool
        assert run("queue", "migrate", "--config", str(config)) == 0
        assert f"migrated from version 0 to version {SCHEMA_VERSION}" in capsys.readouterr().out
        assert run("queue", "migrate", "--config", str(config)) == 0
        assert "already at" in capsys.readouterr().out

        async def fill() -> str:
            q = await node(name, "n1")
            qid = await q.enqueue(envelope("u@d.test", "w@e.test"), b"Subject: hi\r\n\r\nbody\r\n")
            await q.claim(datetime.now(UTC) + timedelta(seconds=1), 600, 1)
            await q.close()
            return qid

        qid = asyncio.run(fill())
        assert run("queue", "list", "--config", str(config), "--json") == 0
        assert [m["id"] for m in json.loads(capsys.readouterr().out)["messages"]] == [qid]
        assert run("queue", "stats", "--config", str(config)) == 0
        assert "delivering by node: n1=1" in capsys.readouterr().out
        assert run("queue", "hold", qid, "--config", str(config)) == 0
        assert "hold: 1 message" in capsys.readouterr().out
        assert run("queue", "show", qid, "--config", str(config), "--json") == 0
        assert json.loads(capsys.readouterr().out)["status"] == "held"
    finally:
        asyncio.run(pgtest.drop_schema(name))


async def test_connection_slots_are_shared_by_every_node_and_freed_when_one_dies(schema: str) -> None:
    a, b = await node(schema, "a", slot_keep_s=0), await node(schema, "b", slot_keep_s=0)
    try:
        first = await a.take_slot("mx.far.test", 2)
        second = await b.take_slot("mx.far.test", 2)
        assert first is not None and second is not None and first[0] != second[0]
        assert await a.take_slot("mx.far.test", 2) is None  # two in all, whichever node asks
        assert await b.take_slot("mx.far.test", 2) is None
        assert await a.take_slot("other.test", 2) is not None  # each destination its own
        await a.give_slot("mx.far.test", first)
        again = await b.take_slot("mx.far.test", 2)
        assert again is not None and again[0] == first[0]
        await b.close()  # a node gone (its connection closed): its slots are free at once
        assert await a.take_slot("mx.far.test", 2) is not None
        assert await a.take_slot("mx.far.test", 2) is not None
    finally:
        await a.close()
        await b.close()


async def test_a_slot_given_back_is_kept_a_moment_for_the_same_node(schema: str) -> None:
    # A keep of 3 s: the first look by b comes well within it even on a loaded machine.
    a, b = await node(schema, "a", slot_keep_s=3.0), await node(schema, "b", slot_keep_s=3.0)
    try:
        slot = await a.take_slot("mx.far.test", 1)
        assert slot is not None
        await a.give_slot("mx.far.test", slot)
        assert await b.take_slot("mx.far.test", 1) is None  # still a's, for its next transaction
        assert await a.take_slot("mx.far.test", 1) == slot  # taken again without asking the database
        await a.give_slot("mx.far.test", slot)
        taken: list[object] = []

        async def b_takes_it() -> bool:  # not wanted again by a: unlocked once the keep is over
            taken.append(await b.take_slot("mx.far.test", 1))
            return taken[-1] is not None

        await eventually(b_takes_it, "b taking the slot a no longer keeps")
    finally:
        await a.close()
        await b.close()
