"""Helpers for end-to-end outbound delivery tests: a Postier (``start_server``) whose
``dns.nameservers`` is the test DNS responder and whose retry schedule is shrunk through
configuration; a local sender, alice@example.test, whose DSNs land in her Maildir; smtplib to send."""

from __future__ import annotations

import asyncio
import email
import smtplib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from flufl.bounce import scan_message

from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer
from tests.integration.harness import RunningServer
from tests.integration.mailcheck import queue_id_from_reply

__all__ = [
    "ALICE",
    "FAST",
    "Peer",
    "bounces",
    "failed_rcpts",
    "send",
    "send_message",
    "start",
    "states",
    "wait_bounces",
    "wait_final",
]

ALICE = "alice@example.test"  # a local user: her bounces land in her Maildir
FAST = {
    "retry_base_s": 0.3,
    "retry_cap_s": 0.3,
    "max_age_s": 60.0,
    "connect_timeout_s": 2.0,
    "delay_notice_s": 0.0,
}
Peer = Callable[..., Any]


def send_message(
    port: int,
    rcpts: Sequence[str],
    *,
    sender: str = ALICE,
    rcpt_options: Sequence[str] = (),
    mail_options: Sequence[str] = (),
) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        code, text = client.mail(sender, options=list(mail_options))
        assert code == 250, text
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt, options=list(rcpt_options))
            assert code == 250, text
        return client.data(b"From: alice@example.test\r\nSubject: outbound\r\n\r\nHello there\r\n")[1]


async def send(server: RunningServer, *rcpts: str, **options: Any) -> str:
    return queue_id_from_reply(await asyncio.to_thread(send_message, server.smtp_port, rcpts, **options))


async def start(
    start_server: StartServer, dns: DnsServer, *, delivery: dict[str, Any] | None = None, **sections: Any
) -> RunningServer:
    server: RunningServer = await start_server(
        dns={"nameservers": [f"{dns.host}:{dns.port}"]},
        delivery={**FAST, **(delivery or {})},
        **sections,
    )
    await asyncio.to_thread(server.app.users.add, ALICE, "pw")
    return server


async def states(server: RunningServer, qid: str) -> list[RecipientState]:
    return [r.state for r in (await server.app.queue.get(qid)).recipients]


async def wait_final(server: RunningServer, qid: str) -> list[RecipientState]:
    for _ in range(400):
        got = await states(server, qid)
        if all(s.is_final for s in got):
            return got
        await asyncio.sleep(0.05)
    pytest.fail(f"{qid} never finished: {await server.app.queue.get(qid)}")


def bounces(server: RunningServer) -> list[email.message.Message]:
    new = server.data_dir / "mail" / "example.test" / "alice" / "new"
    files = sorted(new.iterdir()) if new.is_dir() else []
    return [email.message_from_bytes(f.read_bytes()) for f in files]


async def wait_bounces(server: RunningServer, count: int) -> list[email.message.Message]:
    for _ in range(400):
        found = bounces(server)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    pytest.fail(f"expected {count} DSN(s) in alice's Maildir, found {len(bounces(server))}")


def failed_rcpts(dsn: email.message.Message) -> set[bytes]:
    return set(scan_message(dsn))
