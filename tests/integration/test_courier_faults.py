"""SmtpCourier against peers that misbehave in the middle of a transaction — hanging after the data,
no longer reading the data, hanging up after MAIL, answering RCPT with garbage — and against old or
dual-stack peers (HELO only; A and AAAA addresses). Each fault is a site failure: the next host is
tried, and when none takes the message the recipient is deferred with the reason."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Destination, DestinationKind, Hop, TlsPolicy
from postier.smtp.client.events import ClientTimeouts
from tests.integration.harness import free_port
from tests.integration.loopback import is_free
from tests.integration.peers import AiosmtpdPeer, SmtpSink, StaticResolver, loopback_address, outbound, rcpt

BODY = b"From: a@sender.test\r\nSubject: faults\r\n\r\nHello.\r\n"
X = rcpt("x@dest.test")
SinkFactory = Callable[..., SmtpSink]
PeerFactory = Callable[..., Any]


def mx(*hosts: str, port: int = 25) -> Destination:
    return Destination(
        "mx:dest.test", DestinationKind.MX, "dest.test", tuple(Hop(h, port) for h in hosts), TlsPolicy.NONE
    )


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def status(attempt: Any) -> tuple[int, str]:
    return attempt.reply.code, str(attempt.reply.status)


@pytest.fixture
async def courier_for() -> AsyncIterator[Callable[..., SmtpCourier]]:
    couriers: list[SmtpCourier] = []

    def make(hosts: dict[str, list[str]], **timeouts: float) -> SmtpCourier:
        base = dict.fromkeys(
            ("greeting_s", "mail_s", "rcpt_s", "data_init_s", "data_block_s", "data_end_s", "command_s"), 20.0
        )
        courier = SmtpCourier(
            StaticResolver(hosts),
            helo_name="out.test",
            connect_timeout_s=10.0,
            timeouts=ClientTimeouts(**{**base, **timeouts}),
        )
        couriers.append(courier)
        return courier

    yield make
    for courier in couriers:
        await courier.close()


class _Scripted(asyncio.Protocol):
    """A small SMTP server; ``after_354`` decides what happens once DATA is accepted: "silent"
    (reads the data, never answers), "stop-reading" (reads nothing more); ``rcpt_reply`` is sent
    as the answer to RCPT."""

    after_354 = "answer"
    rcpt_reply = b"250 2.1.5 ok\r\n"
    transports: list[asyncio.Transport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transports.append(transport)
        self.transport, self.buffer, self.in_data = transport, b"", False
        transport.write(b"220 scripted.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        if self.in_data and self.after_354 == "stop-reading":
            return  # what the kernel still had for us: not looked at
        self.buffer += data
        while not self.in_data and b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self._line(line[:4].upper())
        if self.in_data and self.after_354 == "answer" and self.buffer.endswith(b"\r\n.\r\n"):
            self.in_data, self.buffer = False, b""
            self.transport.write(b"250 2.0.0 queued\r\n")

    def _line(self, verb: bytes) -> None:
        if verb == b"EHLO":
            self.transport.write(b"250-scripted.test\r\n250 8BITMIME\r\n")
        elif verb == b"RCPT":
            self.transport.write(self.rcpt_reply)
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go\r\n")
            if self.after_354 == "stop-reading":
                self.transport.pause_reading()
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"250 2.0.0 ok\r\n")


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.Server] = []
    transports: list[asyncio.Transport] = []

    async def start(**behaviour: Any) -> tuple[str, type[_Scripted]]:
        protocol = type("Peer", (_Scripted,), {"transports": transports, **behaviour})
        address = loopback_address()
        servers.append(await asyncio.get_running_loop().create_server(protocol, address, 25))
        return address, protocol

    yield start
    for transport in transports:  # a peer that stopped reading never notices the client is gone
        transport.abort()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_peer_silent_after_the_data_times_out_then_next_host(
    scripted: Callable[..., Any], smtp_sink: SinkFactory, courier_for: Callable[..., SmtpCourier]
) -> None:
    silent, _ = await scripted(after_354="silent")
    good = smtp_sink()
    courier = courier_for({"mx1.dest.test": [silent], "mx2.dest.test": [good.address]}, data_end_s=0.3)
    (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert status(alone) == (421, "4.4.2") and "Timed out waiting" in alone.reply.text
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"


async def test_peer_that_stops_reading_the_data_times_out(
    scripted: Callable[..., Any], courier_for: Callable[..., SmtpCourier]
) -> None:
    stuck, peer = await scripted(after_354="stop-reading")
    courier = courier_for({"mx1.dest.test": [stuck]}, data_block_s=0.5)
    big = BODY + (b"x" * 76 + b"\r\n") * (16 * 1024 * 1024 // 78)  # more than the socket buffers hold
    before = _open_fds()
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], big), [X])
    assert status(attempt) == (421, "4.4.2") and "Timed out sending" in attempt.reply.text
    assert courier.pool.idle_count() == 0  # never reused
    # Given up means closed: a graceful close would keep our socket (and what is still buffered)
    # until the peer reads again, which it never does. Only the peer's own socket is left.
    for _ in range(100):
        if _open_fds() - before == {peer.transports[0].get_extra_info("socket").fileno()}:
            break
        await asyncio.sleep(0)
    assert _open_fds() - before == {peer.transports[0].get_extra_info("socket").fileno()}


async def test_peer_hanging_up_after_mail_then_next_host(
    smtp_sink: SinkFactory, courier_for: Callable[..., SmtpCourier]
) -> None:
    rude = smtp_sink(hang_up=["MAIL"])
    good = smtp_sink()
    courier = courier_for({"mx1.dest.test": [rude.address], "mx2.dest.test": [good.address]})
    (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert status(alone) == (421, "4.4.2") and "closed" in alone.reply.text
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and len(await good.wait_messages(1)) == 1


async def test_garbage_for_a_rcpt_reply_is_a_4_5_0_site_failure(
    scripted: Callable[..., Any], smtp_sink: SinkFactory, courier_for: Callable[..., SmtpCourier]
) -> None:
    garbage, _ = await scripted(rcpt_reply=b"\x00\xffthis is no reply\r\n")
    good = smtp_sink()
    courier = courier_for({"mx1.dest.test": [garbage], "mx2.dest.test": [good.address]})
    (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert status(alone) == (451, "4.5.0")
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250


async def test_helo_when_ehlo_is_refused(
    smtp_sink: SinkFactory, courier_for: Callable[..., SmtpCourier]
) -> None:
    old = smtp_sink(esmtp=False)
    courier = courier_for({"mx1.dest.test": [old.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    (received,) = await old.wait_messages(1)
    assert received.body == BODY and received.mail_args == "<a@sender.test>"  # no ESMTP parameters
    verbs = [c.split(" ", 1)[0].upper() for c in old.commands()]
    assert verbs[:3] == ["EHLO", "HELO", "MAIL"]


@pytest.mark.parametrize("live", ["ipv4", "ipv6"])
async def test_a_and_aaaa_addresses_are_both_tried(
    aiosmtpd_peer: PeerFactory, courier_for: Callable[..., SmtpCourier], live: str
) -> None:
    """A host with an A and an AAAA record: when one address refuses, the other is tried, whichever
    family comes first (``Resolver.addresses`` gives A then AAAA)."""
    port = 0
    while not port:  # one port free on both ::1 and a fresh 127.0.0.N
        candidate = free_port("::1")  # below the ephemeral range: see harness.free_port
        v4 = loopback_address(candidate)
        port = candidate if is_free(v4, candidate) else 0
    peer: AiosmtpdPeer = await aiosmtpd_peer(address="::1" if live == "ipv6" else v4, port=port)
    courier = courier_for({"mx1.dest.test": [v4, "::1"]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", port=port), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    assert attempt.remote_mta == f"mx1.dest.test [{peer.address}]:{port}"
    assert len(peer.messages) == 1
