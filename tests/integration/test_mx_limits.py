"""Caps on one delivery attempt (issue 14, finding 8), end to end: a real Postier whose DNS is the test
responder, and smtp-sink peers on 127.0.0.N:25 that count their connections. A domain may publish
many MX hosts; Postier tries at most delivery.mx_address_limit addresses (default 5, connected to or
not) and delivery.mx_session_limit sessions that got through their set-up (default 2) per attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer
from tests.integration.outbound import send, start, states, wait_final
from tests.integration.peers import SmtpSink

pytestmark = pytest.mark.integration


def _records(domain: str, sinks: list[SmtpSink]) -> dict[str, dict[str, list[str]]]:
    """One MX host per sink, in the order given (preferences 10, 20, …)."""
    records: dict[str, dict[str, list[str]]] = {
        domain: {"MX": [f"{10 * (i + 1)} mx{i}.{domain}" for i in range(len(sinks))]}
    }
    for i, sink in enumerate(sinks):
        records[f"mx{i}.{domain}"] = {"A": [sink.address]}
    return records


async def _after_attempts(server: RunningServer, qid: str, count: int) -> int:
    """Wait until the recipient has had ``count`` attempts; its attempts then."""
    for _ in range(600):
        [r] = (await server.app.queue.get(qid)).recipients
        if r.attempts >= count:
            return r.attempts
        await asyncio.sleep(0.05)
    raise AssertionError(f"{qid}: fewer than {count} attempts")


async def test_at_most_five_addresses_per_attempt(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    smtp_sink: Callable[..., SmtpSink],
) -> None:
    """Six hosts whose greeting is 421 (a refused set-up is no session, but an address tried), then a
    good one: it is never reached, attempt after attempt — and with the cap raised, it is."""
    refusing = [smtp_sink(reject_soft=["CONNECT"]) for _ in range(6)]
    good = smtp_sink()
    dns = dns_server_factory(_records("many.test", [*refusing, good]))
    server = await start(start_server, dns)
    qid = await send(server, "bob@many.test")
    await _after_attempts(server, qid, 2)
    assert await states(server, qid) == [RecipientState.DEFERRED]
    assert all(s.connections() >= 1 for s in refusing[:5])
    assert refusing[5].connections() == 0 and good.connections() == 0


async def test_the_address_cap_is_configuration(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    smtp_sink: Callable[..., SmtpSink],
) -> None:
    refusing = [smtp_sink(reject_soft=["CONNECT"]) for _ in range(6)]
    good = smtp_sink()
    dns = dns_server_factory(_records("many.test", [*refusing, good]))
    server = await start(start_server, dns, delivery={"mx_address_limit": 7, "mx_session_limit": 1})
    qid = await send(server, "bob@many.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert len(good.messages()) == 1


async def test_at_most_two_sessions_per_attempt(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    smtp_sink: Callable[..., SmtpSink],
) -> None:
    """Three hosts that take a session and then answer MAIL with 4xx (a site failure: next host), then
    a good one: only the first two are given the message per attempt."""
    deferring = [smtp_sink(reject_soft=["MAIL"]) for _ in range(3)]
    good = smtp_sink()
    dns = dns_server_factory(_records("busy.test", [*deferring, good]))
    server = await start(start_server, dns, delivery={"reuse_idle_s": 0.0})
    qid = await send(server, "bob@busy.test")
    await _after_attempts(server, qid, 2)
    assert await states(server, qid) == [RecipientState.DEFERRED]
    assert deferring[0].connections() >= 2 and deferring[1].connections() >= 2
    assert deferring[2].connections() == 0 and good.connections() == 0
