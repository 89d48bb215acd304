"""The bench's empty-session client (bench/clients.py) and its goal rows (bench/report.py)."""

from __future__ import annotations

import asyncio

import pytest
from bench.clients import _EmptySession
from bench.report import _goals
from bench.results import Metric, Results


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


async def _session(chunks: list[bytes], closed: bool = True) -> tuple[str | None, FakeTransport, bool]:
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    transport = FakeTransport()
    session = _EmptySession(done)
    session.connection_made(transport)
    for chunk in chunks:
        session.data_received(chunk)
    if closed:
        session.connection_lost(None)
    return (done.result() if done.done() else "pending"), transport, done.done()


async def test_an_empty_session_sends_ehlo_then_quit_and_ends_at_the_close() -> None:
    why, transport, _ = await _session(
        [b"220 mx ESMTP\r\n", b"250-mx\r\n250-PIPELINING\r", b"\n250 8BITMIME\r\n", b"221 bye\r\n"]
    )
    assert why is None
    assert transport.written == [b"EHLO client.test\r\n", b"QUIT\r\n"]
    assert not transport.aborted


async def test_a_reply_split_anywhere_is_read_whole() -> None:
    data = b"220 mx\r\n250-mx\r\n250 SIZE\r\n221 bye\r\n"
    why, _, _ = await _session([data[i : i + 1] for i in range(len(data))])
    assert why is None


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"554 go away\r\n"], "step 0: unexpected reply"),
        ([b"220 mx\r\n", b"421 busy\r\n"], "step 1: unexpected reply"),
        ([b"220 mx\r\n", b"250 mx\r\n"], "closed after 2 of 3 replies"),
    ],
)
async def test_a_refusal_or_an_early_close_is_a_failure(chunks: list[bytes], expected: str) -> None:
    why, _, _ = await _session(chunks)
    assert why is not None and why.startswith(expected)


async def test_the_session_waits_for_the_close_after_221() -> None:
    _, _, finished = await _session([b"220 mx\r\n", b"250 mx\r\n", b"221 bye\r\n"], closed=False)
    assert not finished


def _idle_results(opened: float, rss: float, p99: float) -> Results:
    results = Results()
    case = "10,000 idle sessions"
    results.add(Metric("idle", case, "sessions open"), "postier", opened)
    results.add(Metric("idle", case, "KiB RSS/conn", False), "postier", rss)
    results.add(Metric("idle", case, "ms to greeting p99", False), "postier", p99)
    return results


def test_the_idle_goals_are_met_only_with_all_10000_held() -> None:
    met = _goals(_idle_results(10_000, 7.0, 1.5))
    short = _goals(_idle_results(9_000, 7.0, 1.5))
    assert [row.endswith("| yes |") for row in met[2:]] == [True, True]
    assert [row.endswith("| no |") for row in short[2:]] == [True, True]
    assert "9,000 held" in short[2]
