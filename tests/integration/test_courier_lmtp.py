"""SmtpCourier over LMTP (RFC 2033) to a real Dovecot, on a unix socket."""

from __future__ import annotations

from collections.abc import Callable

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Destination, DestinationKind, Hop, OutboundMessage
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from tests.integration.dovecot import DovecotLmtp
from tests.integration.peers import StaticResolver

BODY = b"From: a@sender.test\r\nTo: alice@example.test\r\nSubject: lmtp\r\n\r\nHello, Dovecot.\r\n..dot\r\n"


def rcpt(local: str, domain: str = "example.test") -> Recipient:
    return Recipient(Address(local, domain))


async def test_lmtp_one_accepted_one_unknown(dovecot: Callable[..., DovecotLmtp]) -> None:
    server = dovecot(users=["alice@example.test"])
    courier = SmtpCourier(StaticResolver(), helo_name="out.test", reuse_idle_s=0)
    destination = Destination(
        f"lmtp:{server.lmtp_path}",
        DestinationKind.LMTP,
        "example.test",
        (Hop("dovecot", unix_path=server.lmtp_path),),
    )
    recipients = [rcpt("alice"), rcpt("nobody")]
    message = OutboundMessage("Q1", Envelope(Address("a", "sender.test"), tuple(recipients)), BODY)
    try:
        attempts = await courier.deliver(destination, message, recipients)
    finally:
        await courier.close()
    assert [(a.reply.code, str(a.reply.status)) for a in attempts] == [(250, "2.0.0"), (550, "5.1.1")]
    assert all(a.remote_mta == f"dovecot [unix:{server.lmtp_path}]" for a in attempts)
    assert attempts[0].tls is None and not attempts[0].dsn_relayed
    (stored,) = server.delivered("alice@example.test")
    assert stored.replace(b"\n", b"\r\n").endswith(BODY)
    assert b"Return-Path: <a@sender.test>" in stored
