"""SmtpCourier against real SMTP peers on 127.0.0.N:25 (smtp-sink, aiosmtpd): delivery, host
fallback, failure scopes, PIPELINING, connection reuse."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Destination, DestinationKind, Hop, TlsPolicy
from postier.mail.envelope import Notify
from postier.smtp.client.events import ClientTimeouts
from tests.integration.harness import free_port
from tests.integration.peers import AiosmtpdPeer, SmtpSink, StaticResolver, loopback_address, outbound, rcpt

BODY = b"From: a@sender.test\r\nTo: x@dest.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"
X, Y = rcpt("x@dest.test"), rcpt("y@dest.test")

SinkFactory = Callable[..., SmtpSink]
PeerFactory = Callable[..., Any]
CourierFactory = Callable[..., SmtpCourier]


def mx(*hosts: str, tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC, port: int = 25) -> Destination:
    return Destination(
        "mx:dest.test", DestinationKind.MX, "dest.test", tuple(Hop(h, port) for h in hosts), tls=tls
    )


def statuses(attempts: list[Any]) -> list[tuple[int, str]]:
    return [(a.reply.code, str(a.reply.status)) for a in attempts]


@pytest.fixture
async def make_courier() -> AsyncIterator[CourierFactory]:
    couriers: list[SmtpCourier] = []

    def make(hosts: dict[str, list[str]] | None = None, **kwargs: Any) -> SmtpCourier:
        kwargs.setdefault("timeouts", ClientTimeouts(*([20.0] * 7)))
        kwargs.setdefault("connect_timeout_s", 10.0)
        courier = SmtpCourier(StaticResolver(hosts), helo_name="out.test", **kwargs)
        couriers.append(courier)
        return courier

    yield make
    for courier in couriers:
        await courier.close()


async def test_delivers_to_smtp_sink(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]})
    attempts = await courier.deliver(mx("mx1.dest.test"), outbound([X, Y], BODY), [X, Y])
    assert [a.recipient for a in attempts] == [X, Y]
    assert statuses(attempts) == [(250, "2.0.0"), (250, "2.0.0")]
    assert {a.remote_mta for a in attempts} == {f"mx1.dest.test [{sink.address}]:25"}
    assert attempts[0].tls is None and not attempts[0].dsn_relayed  # smtp-sink offers DSN, not STARTTLS
    (received,) = await sink.wait_messages(1)
    assert received.recipients == ("x@dest.test", "y@dest.test")
    assert received.sender == "a@sender.test"
    assert received.helo == "out.test"
    assert received.body == BODY


async def test_next_host_when_nothing_listens(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    dead = loopback_address()
    courier = make_courier({"mx1.dest.test": [dead], "mx2.dest.test": [sink.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    assert attempt.remote_mta == f"mx2.dest.test [{sink.address}]:25"
    assert len(await sink.wait_messages(1)) == 1


async def test_next_address_of_the_same_host(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [loopback_address(), sink.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx1.dest.test [{sink.address}]:25"


async def test_all_hosts_down_defers_with_4_4_1(make_courier: CourierFactory) -> None:
    dead = loopback_address()
    courier = make_courier({"mx1.dest.test": [dead]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert statuses([attempt]) == [(421, "4.4.1")]
    assert "Connection refused" in attempt.reply.text and dead in attempt.reply.text
    assert attempt.remote_mta is None


@pytest.mark.parametrize("option", ["reject_soft", "reject_hard"])
async def test_refused_greeting_moves_to_next_host(
    smtp_sink: SinkFactory, make_courier: CourierFactory, option: str
) -> None:
    refusing = smtp_sink(**{option: ["CONNECT"]})
    good = smtp_sink()
    courier = make_courier({"mx1.dest.test": [refusing.address], "mx2.dest.test": [good.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"
    assert refusing.connections() == 1


async def test_5xx_greeting_from_the_only_host_defers(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    refusing = smtp_sink(reject_hard=["CONNECT"])
    courier = make_courier({"mx1.dest.test": [refusing.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 451 and attempt.reply.status is not None and attempt.reply.status.klass == 4
    assert "500" in attempt.reply.text  # the server's own reply is kept in the text


async def test_mail_4xx_tries_the_next_host(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    busy = smtp_sink(reject_soft=["MAIL"])
    good = smtp_sink()
    courier = make_courier({"mx1.dest.test": [busy.address], "mx2.dest.test": [good.address]})
    attempts = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X, Y], BODY), [X, Y])
    assert statuses(attempts) == [(250, "2.0.0"), (250, "2.0.0")]
    assert (await good.wait_messages(1))[0].recipients == ("x@dest.test", "y@dest.test")


async def test_all_hosts_4xx_keeps_the_servers_reply(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    busy = smtp_sink(reject_soft=["MAIL"])
    dead = loopback_address()
    courier = make_courier({"mx1.dest.test": [busy.address], "mx2.dest.test": [dead]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    # The server's 450 says more than the backup's "connection refused".
    assert statuses([attempt]) == [(450, "4.3.0")]
    assert attempt.remote_mta == f"mx1.dest.test [{busy.address}]:25"


async def test_mail_5xx_fails_every_recipient_without_next_host(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    refusing = smtp_sink(reject_hard=["MAIL"])
    backup = smtp_sink()
    courier = make_courier({"mx1.dest.test": [refusing.address], "mx2.dest.test": [backup.address]})
    attempts = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X, Y], BODY), [X, Y])
    assert statuses(attempts) == [(500, "5.3.0"), (500, "5.3.0")]
    assert backup.connections() == 0


async def test_rcpt_4xx_is_final_for_this_attempt(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    greylisting = smtp_sink(reject_soft=["RCPT"])
    backup = smtp_sink()
    courier = make_courier({"mx1.dest.test": [greylisting.address], "mx2.dest.test": [backup.address]})
    attempts = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X, Y], BODY), [X, Y])
    assert statuses(attempts) == [(450, "4.3.0"), (450, "4.3.0")]
    assert backup.connections() == 0


async def test_data_end_4xx_tries_the_next_host(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    failing = smtp_sink(reject_soft=["."])
    good = smtp_sink()
    courier = make_courier({"mx1.dest.test": [failing.address], "mx2.dest.test": [good.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"


async def test_421_at_rcpt_tries_the_next_host(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    closing = smtp_sink(disconnect_421=["RCPT"])
    good = smtp_sink()
    courier = make_courier({"mx1.dest.test": [closing.address], "mx2.dest.test": [good.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"


async def test_peer_hanging_up_defers_with_4_4_2(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    rude = smtp_sink(hang_up=["DATA"])
    courier = make_courier({"mx1.dest.test": [rude.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert statuses([attempt]) == [(421, "4.4.2")]


async def test_partial_recipient_refusal(aiosmtpd_peer: PeerFactory, make_courier: CourierFactory) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={"y@dest.test": "550 5.1.1 No such user"})
    courier = make_courier({"mx1.dest.test": [peer.address]})
    attempts = await courier.deliver(mx("mx1.dest.test"), outbound([X, Y], BODY), [X, Y])
    assert statuses(attempts) == [(250, "2.0.0"), (550, "5.1.1")]
    assert attempts[0].dsn_relayed  # aiosmtpd offers no DSN
    (received,) = peer.messages
    assert received.recipients == ("x@dest.test",) and received.body == BODY


async def test_size_over_the_peers_limit_fails_5_3_4(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(size_limit=64)
    courier = make_courier({"mx1.dest.test": [peer.address]})
    attempts = await courier.deliver(
        mx("mx1.dest.test"), outbound([X, Y], BODY + b"x" * 100 + b"\r\n"), [X, Y]
    )
    assert statuses(attempts) == [(552, "5.3.4"), (552, "5.3.4")]
    assert peer.messages == []


async def test_dsn_parameters_go_to_a_dsn_peer(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]})
    notify = rcpt("x@dest.test", frozenset({Notify.SUCCESS, Notify.FAILURE}))
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([notify], BODY), [notify])
    assert attempt.reply.code == 250 and not attempt.dsn_relayed
    (received,) = await sink.wait_messages(1)
    assert received.rcpt_args == ("<x@dest.test> NOTIFY=SUCCESS,FAILURE",)


async def test_ipv6_address(aiosmtpd_peer: PeerFactory, make_courier: CourierFactory) -> None:
    port = free_port("::1")  # not a released ephemeral port: anything may take one of those
    peer: AiosmtpdPeer = await aiosmtpd_peer(address="::1", port=port)
    courier = make_courier({"mx6.dest.test": ["::1"]})
    (attempt,) = await courier.deliver(mx("mx6.dest.test", port=port), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx6.dest.test [::1]:{port}"
    assert len(peer.messages) == 1


async def test_ip_literal_hop_needs_no_dns(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({})
    (attempt,) = await courier.deliver(mx(f"[{sink.address}]"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"{sink.address} [{sink.address}]:25"


# --- PIPELINING and reuse --------------------------------------------------------------------------


class _PipeliningOnly(asyncio.Protocol):
    """Offers PIPELINING and answers MAIL only once RCPT and DATA have arrived with it: a client that
    waits for the MAIL reply before sending RCPT never gets one (RFC 2920 §3.1)."""

    flights: list[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer, self.in_data = transport, b"", False
        transport.write(b"220 strict.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.in_data:
            if self.buffer.endswith(b"\r\n.\r\n"):
                self.in_data, self.buffer = False, b""
                self.transport.write(b"250 2.0.0 queued\r\n")
            return
        if self.buffer.startswith(b"EHLO") and self.buffer.endswith(b"\r\n"):
            self.buffer = b""
            self.transport.write(b"250-strict.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif self.buffer.startswith(b"MAIL") and self.buffer.endswith(b"DATA\r\n"):
            self.flights.append(self.buffer)
            lines = self.buffer.count(b"\r\n")
            self.buffer, self.in_data = b"", True
            self.transport.write(b"250 2.1.0 ok\r\n" + b"250 2.1.5 ok\r\n" * (lines - 2) + b"354 go\r\n")
        elif self.buffer.startswith(b"QUIT"):
            self.transport.write(b"221 bye\r\n")
            self.transport.close()


async def test_pipelining_sends_mail_rcpt_data_in_one_flight(make_courier: CourierFactory) -> None:
    flights: list[bytes] = []
    protocol = type("Strict", (_PipeliningOnly,), {"flights": flights})
    address = loopback_address()
    server = await asyncio.get_running_loop().create_server(protocol, address, 25)
    try:
        courier = make_courier({"mx1.dest.test": [address]}, timeouts=ClientTimeouts(*([10.0] * 7)))
        attempts = await courier.deliver(mx("mx1.dest.test"), outbound([X, Y], BODY), [X, Y])
        await courier.close()
    finally:
        server.close()
        await server.wait_closed()
    assert statuses(attempts) == [(250, "2.0.0"), (250, "2.0.0")]
    assert flights == [
        b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<x@dest.test>\r\nRCPT TO:<y@dest.test>\r\nDATA\r\n"
    ]


async def test_connection_reused_for_the_next_message(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]})
    for _ in range(3):
        (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
        assert attempt.reply.code == 250
    await courier.close()
    assert len(await sink.wait_messages(3)) == 3
    assert sink.connections() == 1
    assert [c.split(" ")[0] for c in sink.commands()].count("RSET") == 0


async def test_no_reuse_when_idle_time_is_zero(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]}, reuse_idle_s=0)
    for _ in range(2):
        (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
        assert attempt.reply.code == 250
    await courier.close()
    assert sink.connections() == 2


async def test_reuse_stops_after_max_messages(smtp_sink: SinkFactory, make_courier: CourierFactory) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]}, reuse_max_messages=2)
    for _ in range(3):
        await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    await courier.close()
    assert sink.connections() == 2


async def test_dead_pooled_connection_is_replaced(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    first = smtp_sink()
    courier = make_courier({"mx1.dest.test": [first.address]})
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and courier.pool.idle_count() == 1
    first.stop()  # the pooled connection's peer is gone
    second = smtp_sink(address=first.address)
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    assert second.connections() == 1 and len(await second.wait_messages(1)) == 1


async def test_concurrent_deliveries_never_share_a_connection(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]})
    results = await asyncio.gather(
        *(courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X]) for _ in range(4))
    )
    assert [r[0].reply.code for r in results] == [250] * 4
    results = await asyncio.gather(
        *(courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X]) for _ in range(4))
    )
    assert [r[0].reply.code for r in results] == [250] * 4
    await courier.close()
    assert len(await sink.wait_messages(8)) == 8
    assert sink.connections() == 4  # the second round reused the first round's four


# --- misbehaving peers -----------------------------------------------------------------------------


class _Silent(asyncio.Protocol):
    """Accepts the connection and never says a word."""


class _Garbage(asyncio.Protocol):
    """Greets with something that is no SMTP reply."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"hello, this is not smtp\r\n")


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.Server] = []

    async def start(protocol: type[asyncio.Protocol]) -> str:
        address = loopback_address()
        servers.append(await asyncio.get_running_loop().create_server(protocol, address, 25))
        return address

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_silent_peer_times_out_then_next_host(
    raw_peer: Callable[..., Any], smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    silent = await raw_peer(_Silent)
    good = smtp_sink()
    timeouts = ClientTimeouts(greeting_s=0.2)
    courier = make_courier({"mx1.dest.test": [silent], "mx2.dest.test": [good.address]}, timeouts=timeouts)
    (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert statuses([alone]) == [(421, "4.4.2")] and "Timed out" in alone.reply.text
    assert alone.remote_mta == f"mx1.dest.test [{silent}]:25"
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"


async def test_protocol_error_is_a_4_5_0_site_failure(
    raw_peer: Callable[..., Any], smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    garbage = await raw_peer(_Garbage)
    good = smtp_sink()
    courier = make_courier({"mx1.dest.test": [garbage], "mx2.dest.test": [good.address]})
    (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert statuses([alone]) == [(451, "4.5.0")]
    (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250


async def test_cancelled_delivery_closes_its_connection(make_courier: CourierFactory) -> None:
    connected, lost = asyncio.Event(), asyncio.Event()

    class Watched(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            connected.set()

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set()

    address = loopback_address()
    server = await asyncio.get_running_loop().create_server(Watched, address, 25)
    try:
        courier = make_courier({"mx1.dest.test": [address]})
        task = asyncio.create_task(courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X]))
        await connected.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(10):
            await lost.wait()
    finally:
        server.close()
        await server.wait_closed()


async def test_utf8_address_to_a_peer_without_smtputf8_fails_5_6_7(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    sink = smtp_sink()
    courier = make_courier({"mx1.dest.test": [sink.address]})
    jose = rcpt("josé@dest.test")
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([jose], BODY), [jose])
    assert statuses([attempt]) == [(553, "5.6.7")]
    assert attempt.remote_mta == f"mx1.dest.test [{sink.address}]:25"


async def test_utf8_address_to_an_smtputf8_peer(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    courier = make_courier({"mx1.dest.test": [peer.address]})
    jose = rcpt("josé@dest.test")
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([jose], BODY), [jose])
    assert attempt.reply.code == 250
    assert peer.messages[0].recipients == ("josé@dest.test",) and "SMTPUTF8" in peer.messages[0].mail_options


async def test_8bit_body_to_a_7bit_peer_fails_5_6_3(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    sink = smtp_sink(eight_bit=False)
    courier = make_courier({"mx1.dest.test": [sink.address]})
    body = "Subject: café\r\n\r\nDéjà vu.\r\n".encode()
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], body), [X])
    assert statuses([attempt]) == [(554, "5.6.3")]
    # The connection is still good: the next message reuses it.
    (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    await courier.close()
    assert sink.connections() == 1


async def test_connect_timeout_defers_4_4_1_then_next_host(
    smtp_sink: SinkFactory, make_courier: CourierFactory
) -> None:
    # A listener whose accept queue is full: Linux drops further SYNs, so connecting hangs.
    address = loopback_address()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 25))
    listener.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((address, 25))
        good = smtp_sink()
        courier = make_courier(
            {"mx1.dest.test": [address], "mx2.dest.test": [good.address]}, connect_timeout_s=0.3
        )
        (alone,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
        (attempt,) = await courier.deliver(mx("mx1.dest.test", "mx2.dest.test"), outbound([X], BODY), [X])
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert statuses([alone]) == [(421, "4.4.1")] and "timed out" in alone.reply.text
    assert alone.remote_mta is None
    assert attempt.reply.code == 250 and attempt.remote_mta == f"mx2.dest.test [{good.address}]:25"


class _OneMessagePerConnection(asyncio.Protocol):
    """A minimal SMTP server (no PIPELINING) that takes one message, then says 421 and hangs up —
    while the client holds the connection idle for reuse."""

    connections: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.connections.append(1)
        self.transport, self.buffer, self.in_data = transport, b"", False
        transport.write(b"220 oneshot.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.transport.write(b"250 2.0.0 queued\r\n421 4.3.2 Shutting down\r\n")
                self.transport.close()
            return
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.transport.write(b"250-oneshot.test\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"250 2.0.0 ok\r\n")


async def test_pooled_connection_closed_with_421_is_replaced(make_courier: CourierFactory) -> None:
    connections: list[int] = []
    protocol = type("OneShot", (_OneMessagePerConnection,), {"connections": connections})
    address = loopback_address()
    server = await asyncio.get_running_loop().create_server(protocol, address, 25)
    try:
        courier = make_courier({"mx1.dest.test": [address]})
        codes = []
        for _ in range(3):
            (attempt,) = await courier.deliver(mx("mx1.dest.test"), outbound([X], BODY), [X])
            codes.append(attempt.reply.code)
        await courier.close()
    finally:
        server.close()
        await server.wait_closed()
    assert codes == [250, 250, 250]
    assert len(connections) == 3
