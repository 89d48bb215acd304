"""SmtpCourier delivering to a second Postier (in this process) listening on 127.0.0.N:25: STARTTLS
with its self-signed certificate, a refused unknown local recipient, the message in its queue and
its Maildir."""

from __future__ import annotations

import asyncio
from pathlib import Path

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Destination, DestinationKind, Hop, TlsPolicy
from postier.smtp.client.events import ClientTimeouts
from tests.integration.conftest import StartServer
from tests.integration.harness import add_users
from tests.integration.peers import StaticResolver, loopback_address, outbound, rcpt

BODY = b"From: a@sender.test\r\nSubject: to another postier\r\n\r\nHello over TLS.\r\n.dot\r\n"


async def _wait_for_files(directory: Path) -> list[Path]:
    async with asyncio.timeout(20):
        while not (files := sorted(directory.glob("*")) if directory.is_dir() else []):
            await asyncio.sleep(0.05)
    return files


async def test_delivers_to_another_postier(start_server: StartServer) -> None:
    address = loopback_address()
    peer = await start_server(listener=[{"address": f"{address}:25", "mode": "smtp"}])
    await asyncio.to_thread(add_users, peer.data_dir, "bob@example.test")
    courier = SmtpCourier(
        StaticResolver({"mx.example.test": [address]}),
        helo_name="out.test",
        timeouts=ClientTimeouts(*([20.0] * 7)),
    )
    bob, nobody = rcpt("bob@example.test"), rcpt("nobody@example.test")
    destination = Destination(
        "mx:example.test",
        DestinationKind.MX,
        "example.test",
        (Hop("mx.example.test"),),
        TlsPolicy.OPPORTUNISTIC,
    )
    try:
        attempts = await courier.deliver(destination, outbound([bob, nobody], BODY), [bob, nobody])
    finally:
        await courier.close()
    assert [(a.reply.code, str(a.reply.status)) for a in attempts] == [(250, "2.0.0"), (550, "5.1.1")]
    assert attempts[0].tls is not None and attempts[0].tls.startswith("TLSv1.3")
    assert attempts[0].remote_mta == f"mx.example.test [{address}]:25"
    assert not attempts[0].dsn_relayed  # Postier offers DSN
    queue_id = attempts[0].reply.text.rsplit(" ", 1)[1]
    record = await peer.app.queue.get(queue_id)
    assert [str(r.address) for r in record.envelope.recipients] == ["bob@example.test"]
    assert record.envelope.client.tls is not None
    (stored,) = await _wait_for_files(peer.data_dir / "mail" / "example.test" / "bob" / "new")
    assert stored.read_bytes().endswith(BODY)


async def test_verify_refuses_another_postiers_self_signed_certificate(start_server: StartServer) -> None:
    """Postier's own made-up certificate (self-signed) is fine for opportunistic TLS (above), but
    under verify the delivery is deferred with 4.7.5 and nothing is sent."""
    address = loopback_address()
    peer = await start_server(listener=[{"address": f"{address}:25", "mode": "smtp"}])
    courier = SmtpCourier(
        StaticResolver({"mx.example.test": [address]}),
        helo_name="out.test",
        timeouts=ClientTimeouts(*([20.0] * 7)),
    )
    bob = rcpt("bob@example.test")
    destination = Destination(
        "mx:example.test", DestinationKind.MX, "example.test", (Hop("mx.example.test"),), TlsPolicy.VERIFY
    )
    try:
        (attempt,) = await courier.deliver(destination, outbound([bob], BODY), [bob])
    finally:
        await courier.close()
    assert (attempt.reply.code, str(attempt.reply.status)) == (421, "4.7.5")
    assert "not verified" in attempt.reply.text and "self-signed" in attempt.reply.text
    assert await peer.app.queue.list_messages() == []
