"""The courier's driver on uvloop (what ``postier serve`` runs on): plain delivery with reuse and a
refused address, STARTTLS with verification and AUTH, implicit TLS, LMTP over a unix socket.

These tests run their own uvloop (``asyncio.Runner(loop_factory=uvloop.new_event_loop)``) instead of
pytest-asyncio's loop, so the aiosmtpd peers are started inside them (``start_aiosmtpd``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvloop

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Attempt, Credentials, Destination, DestinationKind, Hop, TlsPolicy
from postier.smtp.client.events import ClientTimeouts
from tests.integration.dovecot import DovecotLmtp
from tests.integration.peers import (
    AiosmtpdPeer,
    SmtpSink,
    StaticResolver,
    loopback_address,
    outbound,
    rcpt,
    server_context,
    start_aiosmtpd,
)

BODY = b"Subject: uvloop\r\n\r\nHello.\r\n"
X = rcpt("x@dest.test")
T = TypeVar("T")


def on_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def courier(hosts: dict[str, list[str]], **kwargs: Any) -> SmtpCourier:
    return SmtpCourier(
        StaticResolver(hosts), helo_name="out.test", timeouts=ClientTimeouts(*([20.0] * 7)), **kwargs
    )


def relay(host: str, port: int, **kwargs: Any) -> Destination:
    return Destination(
        f"relay:{host}:{port}", DestinationKind.RELAY, "dest.test", (Hop(host, port),), **kwargs
    )


async def deliver_via(peer: AiosmtpdPeer, c: SmtpCourier, destination: Destination) -> Attempt:
    try:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        (attempt,) = await c.deliver(destination, outbound([X], BODY), [X])
        return attempt
    finally:
        await c.close()
        peer.server.close()
        await peer.server.wait_closed()


def test_plain_reuse_and_refused_address(smtp_sink: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink()
    c = courier({"mx1.test": [loopback_address(), sink.address]})

    async def run() -> list[int]:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        codes = []
        for _ in range(2):
            (attempt,) = await c.deliver(relay("mx1.test", 25), outbound([X], BODY), [X])
            codes.append(attempt.reply.code)
        await c.close()
        await sink.wait_messages(2)
        return codes

    assert on_uvloop(run()) == [250, 250]
    assert sink.connections() == 1 and len(sink.messages()) == 2


def test_starttls_verify_and_auth(tls_ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    destination = relay(
        "smarthost.test", 587, tls=TlsPolicy.VERIFY, credentials=Credentials("alice", "pw", "LOGIN")
    )

    async def run() -> tuple[Attempt, AiosmtpdPeer]:
        peer = await start_aiosmtpd(
            starttls=server_context(tls_ca, "smarthost.test"),
            users={"alice": "pw"},
            require_auth=True,
            port=587,
        )
        c = courier({"smarthost.test": [peer.address]}, ca_file=str(ca_file))
        return await deliver_via(peer, c, destination), peer

    attempt, peer = on_uvloop(run())
    assert attempt.reply.code == 250 and attempt.tls is not None
    assert peer.messages[0].is_tls and peer.messages[0].auth_login == "alice"


def test_implicit_tls(tls_ca: trustme.CA) -> None:
    destination = relay("smarthost.test", 465, tls=TlsPolicy.REQUIRED, implicit_tls=True)

    async def run() -> Attempt:
        peer = await start_aiosmtpd(implicit_tls=server_context(tls_ca, "smarthost.test"), port=465)
        return await deliver_via(peer, courier({"smarthost.test": [peer.address]}), destination)

    attempt = on_uvloop(run())
    assert attempt.reply.code == 250 and attempt.tls is not None


def test_lmtp_unix_socket(dovecot: Callable[..., DovecotLmtp]) -> None:
    server = dovecot(users=["alice@example.test"])
    alice = rcpt("alice@example.test")
    destination = Destination(
        "lmtp:dovecot", DestinationKind.LMTP, "example.test", (Hop("dovecot", unix_path=server.lmtp_path),)
    )

    async def run() -> Attempt:
        c = courier({})
        (attempt,) = await c.deliver(destination, outbound([alice], BODY), [alice])
        await c.close()
        return attempt

    assert on_uvloop(run()).reply.code == 250
    (stored,) = server.delivered("alice@example.test")
    assert stored.replace(b"\n", b"\r\n").endswith(BODY)
