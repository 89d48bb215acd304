"""SmtpCourier against real SMTP peers on 127.0.0.N:25: smtp-sink and aiosmtpd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Destination, DestinationKind, Hop, OutboundMessage, TlsPolicy
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Notify, Recipient
from postier.smtp.client_events import ClientTimeouts
from tests.integration.peers import SmtpSink, StaticResolver, loopback_address

BODY = b"From: a@sender.test\r\nTo: x@dest.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"

SinkFactory = Callable[..., SmtpSink]


def rcpt(text: str, notify: frozenset[Notify] | None = None) -> Recipient:
    local, domain = text.split("@")
    return Recipient(Address(local, domain), notify=notify)


def message(*recipients: Recipient, body: bytes = BODY, sender: str = "a@sender.test") -> OutboundMessage:
    local, domain = sender.split("@")
    return OutboundMessage("Q1", Envelope(Address(local, domain), tuple(recipients)), body)


def mx(*hosts: str, tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC, domain: str = "dest.test") -> Destination:
    return Destination(f"mx:{domain}", DestinationKind.MX, domain, tuple(Hop(h) for h in hosts), tls=tls)


@pytest.fixture
async def make_courier() -> AsyncIterator[Callable[..., SmtpCourier]]:
    couriers: list[SmtpCourier] = []

    def make(resolver: StaticResolver | None = None, **kwargs: Any) -> SmtpCourier:
        kwargs.setdefault("timeouts", ClientTimeouts(*([20.0] * 7)))
        kwargs.setdefault("connect_timeout_s", 10.0)
        courier = SmtpCourier(resolver or StaticResolver(), helo_name="out.test", **kwargs)
        couriers.append(courier)
        return courier

    yield make
    for courier in couriers:
        await courier.close()


async def test_delivers_to_smtp_sink(
    smtp_sink: SinkFactory, make_courier: Callable[..., SmtpCourier]
) -> None:
    sink = smtp_sink()
    courier = make_courier(StaticResolver({"mx1.dest.test": [sink.address]}))
    recipients = [rcpt("x@dest.test"), rcpt("y@dest.test")]
    attempts = await courier.deliver(mx("mx1.dest.test"), message(*recipients), recipients)
    assert [a.recipient for a in attempts] == recipients
    assert [a.reply.code for a in attempts] == [250, 250]
    assert {a.remote_mta for a in attempts} == {f"mx1.dest.test [{sink.address}]:25"}
    assert attempts[0].tls is None and not attempts[0].dsn_relayed  # smtp-sink offers DSN, not STARTTLS
    (received,) = await sink.wait_messages(1)
    assert received.recipients == ("x@dest.test", "y@dest.test")
    assert received.sender == "a@sender.test"
    assert received.helo == "out.test"
    assert received.body == BODY


async def test_next_host_when_nothing_listens(
    smtp_sink: SinkFactory, make_courier: Callable[..., SmtpCourier]
) -> None:
    sink = smtp_sink()
    dead = loopback_address()
    courier = make_courier(StaticResolver({"mx1.dest.test": [dead], "mx2.dest.test": [sink.address]}))
    (attempt,) = await courier.deliver(
        mx("mx1.dest.test", "mx2.dest.test"), message(rcpt("x@dest.test")), [rcpt("x@dest.test")]
    )
    assert attempt.reply.code == 250
    assert attempt.remote_mta == f"mx2.dest.test [{sink.address}]:25"
    assert len(await sink.wait_messages(1)) == 1


async def test_all_hosts_down_defers_with_4_4_1(make_courier: Callable[..., SmtpCourier]) -> None:
    dead = loopback_address()
    courier = make_courier(StaticResolver({"mx1.dest.test": [dead]}))
    (attempt,) = await courier.deliver(
        mx("mx1.dest.test"), message(rcpt("x@dest.test")), [rcpt("x@dest.test")]
    )
    assert (attempt.reply.code, str(attempt.reply.status)) == (421, "4.4.1")
    assert "Connection refused" in attempt.reply.text and dead in attempt.reply.text
    assert attempt.remote_mta is None
