"""Several nodes on one PostgreSQL queue, and the database failing under them (issue 21).

Each test runs a PostgreSQL of its own (tests/pgcluster.py) so it can stop and restart it without
touching the shared server other tests use. Mail goes to one Postfix ``smtp-sink`` (the relay every
node sends through); each message carries a token in its Subject, so the sink's dumps say which
messages arrived and how many times.

- A database restart: new mail gets ``451 4.3.0`` while it is down, deliveries pause, everything
  resumes on its own, and every acknowledged message is delivered.
- Three ``postier serve`` nodes behind the sink: load on all three, SIGKILL one mid-delivery,
  restart the database; every acknowledged message is delivered, and duplicates are at most the
  recipients the killed node held leases on when it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.conftest import StartServer
from tests.integration.harness import PostierProcess, free_port, make_config
from tests.integration.peers import SmtpSink
from tests.pgcluster import PrivateCluster, postgres_bin, private_cluster

pytestmark = pytest.mark.integration

_TOKEN = re.compile(rb"Subject: cluster (\S+)")


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries")
    with private_cluster(free_port()) as pg:
        yield pg


def _sections(pg: PrivateCluster, sink: SmtpSink, node: str, **queue: Any) -> dict[str, Any]:
    return {
        "server": {"node": node},
        "queue": {"backend": "postgres", "dsn": pg.dsn, "timeout_s": 3.0, **queue},
        "relay": {
            "local_domains": ["localhost"],
            "smarthost": f"{sink.address}:{sink.port}",
            "smarthost_tls": "none",
        },
        "log": {"level": "warning"},
    }


async def _send(port: int, tokens: list[str], acked: dict[str, str], refused: list[str]) -> None:
    """One connection; one message per token. A 250 is recorded in ``acked`` (token → queue id), a
    4xx in ``refused``; a broken connection (the node killed) ends the loop."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(b"EHLO load.example\r\n")
        while (line := await reader.readline())[3:4] != b" ":
            if not line:
                return
        for token in tokens:
            writer.write(b"MAIL FROM:<load@example.org>\r\nRCPT TO:<user@far.test>\r\nDATA\r\n")
            replies = [await reader.readline() for _ in range(3)]
            if not all(replies) or not replies[2].startswith(b"354"):
                return
            writer.write(f"Subject: cluster {token}\r\n\r\nbody of {token}\r\n.\r\n".encode())
            reply = await reader.readline()
            if reply.startswith(b"250 "):
                acked[token] = reply.decode().rsplit(" ", 1)[1].strip()
            elif reply[:1] == b"4":
                refused.append(reply.decode().strip())
                await asyncio.sleep(
                    0.1
                )  # as a client's retry would: not a tight loop while the database is down
            else:
                return
    except (OSError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def _delivered(sink: SmtpSink) -> Counter[str]:
    counts: Counter[str] = Counter()
    for message in sink.messages():
        found = _TOKEN.search(message.body)
        if found:
            counts[found[1].decode()] += 1
    return counts


async def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_database_restart_refuses_new_mail_with_451_and_resumes(
    cluster: PrivateCluster, smtp_sink: Callable[..., SmtpSink], start_server: StartServer
) -> None:
    sink = smtp_sink()
    # A delivery whose body read failed when the database went away is tried again when its lease
    # ends (lease_s): short here, so the test need not wait the default two minutes.
    server = await start_server(**_sections(cluster, sink, "solo", lease_s=4.0))
    acked: dict[str, str] = {}
    refused: list[str] = []
    await _send(server.smtp_port, ["before-1", "before-2"], acked, refused)
    assert set(acked) == {"before-1", "before-2"}
    await asyncio.to_thread(cluster.stop, "fast")
    await _send(server.smtp_port, ["down-1"], acked, refused)
    assert "down-1" not in acked and refused and refused[0].startswith("451 4.3.0"), refused
    await asyncio.to_thread(cluster.start)
    deadline = time.monotonic() + 30
    n = 0
    while "after" not in " ".join(acked) and time.monotonic() < deadline:
        n += 1
        await _send(server.smtp_port, [f"after-{n}"], acked, refused)
        await asyncio.sleep(0.2)
    assert any(t.startswith("after") for t in acked), "no 250 after the database came back"
    await _wait_for(lambda: set(_delivered(sink)) >= set(acked), 60, "every acknowledged message delivered")
    assert "down-1" not in _delivered(sink)


async def _pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM postier.recipients WHERE state IN ('queued', 'deferred')"
        )
        return count
    finally:
        await conn.close()


async def _leases(dsn: str, node: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM postier.recipients WHERE lease_node = $1"
            " AND state IN ('queued', 'deferred') AND lease_until > extract(epoch FROM now())",
            node,
        )
        return count
    finally:
        await conn.close()


async def test_three_nodes_survive_a_killed_node_and_a_database_restart(
    cluster: PrivateCluster, smtp_sink: Callable[..., SmtpSink], tmp_path: Path
) -> None:
    sink = smtp_sink()
    nodes = []
    for name in ("n1", "n2", "n3"):
        (tmp_path / name).mkdir()
        # lease_s: long enough that the survivors' own leases outlive the database restart on a slow
        # machine (a lease that ran out while its delivery went on would be a duplicate not due to the
        # kill), short enough that n2's recipients are taken over within the test.
        data = make_config(tmp_path / name / "var", **_sections(cluster, sink, name, lease_s=20.0))
        nodes.append(PostierProcess(tmp_path / name, data))
    acked: dict[str, str] = {}
    refused: list[str] = []
    try:
        for process in nodes:
            await asyncio.to_thread(process.start)
        per_client = 150
        loads = [
            asyncio.create_task(
                _send(
                    p.ports["smtp"],
                    [f"{p.config.server.node}-{c}-{i}" for i in range(per_client)],
                    acked,
                    refused,
                )
            )
            for p in nodes
            for c in range(4)
        ]
        await _wait_for(lambda: len(acked) >= 300, 120, "300 messages acknowledged")
        nodes[1].kill()  # SIGKILL: its leases run out; n1 and n3 take its recipients over
        in_flight = await _leases(cluster.dsn, "n2")  # what it held when it died (lease_s is 20 s)
        killed_at = len(acked)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.stop, "immediate")  # as a crash: the WAL is replayed at start
        await asyncio.sleep(1.0)
        await asyncio.to_thread(cluster.start)
        await asyncio.gather(*loads)
        assert len(acked) > killed_at, "the surviving nodes took mail after the restart"

        async def drained() -> bool:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                return await _pending(cluster.dsn) == 0
            return False

        deadline = time.monotonic() + 120
        while not await drained():
            assert time.monotonic() < deadline, "the queue did not drain"
            await asyncio.sleep(0.5)
        delivered = _delivered(sink)
        lost = set(acked) - set(delivered)
        assert not lost, f"{len(lost)} acknowledged messages never delivered: {sorted(lost)[:5]}"
        duplicates = sum(n - 1 for n in delivered.values())
        print(
            f"acked={len(acked)} refused={len(refused)} delivered={len(delivered)}"
            f" duplicates={duplicates} in_flight_at_kill={in_flight}"
        )
        assert duplicates <= in_flight, (duplicates, in_flight)
    finally:
        for process in nodes:
            process.kill()
