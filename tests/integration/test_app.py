"""The composed application: retention purge runs on its own, and implicit-TLS listeners pick up a
reloaded certificate (SIGHUP) without a restart."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable

import pytest

from postier.mail.errors import UnknownMessageError
from postier.queue import Queue, RecipientResult, RecipientState
from postier.server.tls import ensure_self_signed
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import add_users, peer_certificate
from tests.integration.mailcheck import queue_id_from_reply
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def _send(port: int, rcpt: str = "postmaster@localhost") -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        client.rcpt(rcpt)
        return client.data(b"Subject: purge me\r\n\r\nbye\r\n")[1]


async def test_finished_messages_are_purged(start_server: StartServer) -> None:
    server = await start_server(queue={"keep_history_s": 0.0, "keep_body_s": 0.0, "purge_interval_s": 0.05})
    qid = queue_id_from_reply(await asyncio.to_thread(_send, server.smtp_port))
    queue = server.app.queue
    await queue.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 2.0.0 ok")])
    await eventually(lambda: _purged(queue, qid), "the purge of the delivered message", timeout_s=60)


async def _purged(queue: Queue, qid: str) -> bool:
    try:
        await queue.get(qid)
    except UnknownMessageError:
        return True
    return False


async def test_queued_messages_are_never_purged(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    dns = dns_server_factory(servfail=["remote.example"])
    server = await start_server(
        queue={"keep_history_s": 0.0, "keep_body_s": 0.0, "purge_interval_s": 0.05},
        dns={"nameservers": [f"{dns.host}:{dns.port}"]},
    )
    queue = server.app.queue
    # A remote recipient stays deferred (its DNS fails: 451 4.4.3): not finished, never purged.
    qid = queue_id_from_reply(await asyncio.to_thread(_send, server.smtp_port, "bob@remote.example"))
    witness = queue_id_from_reply(await asyncio.to_thread(_send, server.smtp_port, "bob@remote.example"))

    async def deferred(message_id: str) -> bool:
        return (await queue.get(message_id)).recipients[0].state is RecipientState.DEFERRED

    await eventually(lambda: deferred(qid), "the deferral")
    await eventually(lambda: deferred(witness), "the witness's deferral")
    # The witness, finished now, is purged by a pass that also sees the deferred message.
    await queue.record([RecipientResult(witness, 0, RecipientState.DELIVERED, "250 2.0.0 ok")])

    await eventually(lambda: _purged(queue, witness), "the purge of the finished witness", timeout_s=60)
    assert (await queue.read_body(qid)).endswith(b"bye\r\n")


async def test_implicit_tls_listener_uses_a_reloaded_certificate(start_server: StartServer) -> None:
    server = await start_server()
    port = server.ports["submissions"]
    before = await asyncio.to_thread(peer_certificate, port)
    tls_dir = server.data_dir / "tls"
    (tls_dir / "cert.pem").unlink()
    (tls_dir / "key.pem").unlink()
    ensure_self_signed(server.data_dir, "mx.test")
    server.app.reload_tls()
    after = await asyncio.to_thread(peer_certificate, port)
    assert before != after


async def test_local_mail_lands_in_the_maildir(start_server: StartServer) -> None:
    server = await start_server()
    await asyncio.to_thread(add_users, server.data_dir, "bob@example.test")
    await asyncio.to_thread(_send, server.smtp_port, "bob@example.test")
    new = server.data_dir / "mail" / "example.test" / "bob" / "new"
    await eventually(lambda: new.is_dir() and any(new.iterdir()), "the delivery", timeout_s=60)
    files = list(new.iterdir())
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.startswith(b"Return-Path: <a@example.org>\r\nDelivered-To: bob@example.test\r\n")
    assert content.endswith(b"Subject: purge me\r\n\r\nbye\r\n")
