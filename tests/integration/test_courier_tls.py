"""SmtpCourier TLS policies, implicit TLS and AUTH against aiosmtpd peers on 127.0.0.N."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from postier.delivery.courier import SmtpCourier
from postier.delivery.transport import Credentials, Destination, DestinationKind, Hop, TlsPolicy
from postier.smtp.client.events import ClientTimeouts
from tests.integration.peers import AiosmtpdPeer, StaticResolver, outbound, rcpt, server_context

BODY = b"Subject: tls\r\n\r\nSecret.\r\n"
X = rcpt("x@dest.test")
PeerFactory = Callable[..., Any]
CourierFactory = Callable[..., SmtpCourier]


def mx(tls: TlsPolicy, host: str = "mx1.dest.test") -> Destination:
    return Destination("mx:dest.test", DestinationKind.MX, "dest.test", (Hop(host),), tls=tls)


def relay(
    tls: TlsPolicy, *, credentials: Credentials | None = None, implicit_tls: bool = False, port: int = 25
) -> Destination:
    return Destination(
        "relay:smarthost.test",
        DestinationKind.RELAY,
        "dest.test",
        (Hop("smarthost.test", port),),
        tls=tls,
        implicit_tls=implicit_tls,
        credentials=credentials,
    )


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def make_courier(ca_file: str) -> AsyncIterator[Callable[..., SmtpCourier]]:
    couriers: list[SmtpCourier] = []

    def make(address: str, **kwargs: Any) -> SmtpCourier:
        hosts = {"mx1.dest.test": [address], "smarthost.test": [address]}
        kwargs.setdefault("ca_file", ca_file)
        courier = SmtpCourier(
            StaticResolver(hosts),
            helo_name="out.test",
            connect_timeout_s=10.0,
            timeouts=ClientTimeouts(*([20.0] * 7)),
            **kwargs,
        )
        couriers.append(courier)
        return courier

    yield make
    for courier in couriers:
        await courier.close()


def _no_handshake_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context that offers STARTTLS but can never complete a handshake with the courier:
    at most TLS 1.1, below the client's TLS 1.2 minimum (RFC 8996)."""
    context = server_context(ca, "mx1.dest.test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def status(attempt: Any) -> tuple[int, str]:
    return attempt.reply.code, str(attempt.reply.status)


# --- STARTTLS policies -----------------------------------------------------------------------------


async def test_verify_with_a_trusted_certificate(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.VERIFY), outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    assert attempt.tls is not None and attempt.tls.startswith("TLSv1.")
    assert peer.messages[0].is_tls


async def test_verify_refuses_a_certificate_for_another_name(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "other.test"))
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.VERIFY), outbound([X], BODY), [X])
    assert status(attempt) == (421, "4.7.5")
    assert "not verified" in attempt.reply.text
    assert peer.messages == []


async def test_verify_refuses_an_unknown_ca(aiosmtpd_peer: PeerFactory, make_courier: CourierFactory) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(trustme.CA(), "mx1.dest.test"))
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.VERIFY), outbound([X], BODY), [X])
    assert status(attempt) == (421, "4.7.5")
    assert peer.messages == []


@pytest.mark.parametrize("policy", [TlsPolicy.OPPORTUNISTIC, TlsPolicy.REQUIRED])
async def test_unverifiable_certificate_is_fine_without_verify(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, policy: TlsPolicy
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(trustme.CA(), "elsewhere.test"))
    (attempt,) = await make_courier(peer.address).deliver(mx(policy), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.tls is not None
    assert peer.messages[0].is_tls


@pytest.mark.parametrize("policy", [TlsPolicy.REQUIRED, TlsPolicy.VERIFY])
async def test_tls_required_but_not_offered_defers(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, policy: TlsPolicy
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    (attempt,) = await make_courier(peer.address).deliver(mx(policy), outbound([X], BODY), [X])
    assert status(attempt) == (451, "4.7.4")
    assert peer.messages == []


async def test_opportunistic_without_starttls_sends_plain(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    (attempt,) = await make_courier(peer.address).deliver(
        mx(TlsPolicy.OPPORTUNISTIC), outbound([X], BODY), [X]
    )
    assert attempt.reply.code == 250 and attempt.tls is None
    assert not peer.messages[0].is_tls


async def test_policy_none_never_starts_tls(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.NONE), outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.tls is None
    assert not peer.messages[0].is_tls


async def test_opportunistic_handshake_failure_retries_in_plain_text(
    aiosmtpd_peer: PeerFactory,
    make_courier: CourierFactory,
    tls_ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = _no_handshake_context(tls_ca)
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=broken)
    (attempt,) = await make_courier(peer.address).deliver(
        mx(TlsPolicy.OPPORTUNISTIC), outbound([X], BODY), [X]
    )
    assert attempt.reply.code == 250 and attempt.tls is None
    assert peer.connections == 2 and not peer.messages[0].is_tls
    assert "retrying the same host without TLS" in caplog.text


async def test_required_handshake_failure_defers(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    broken = _no_handshake_context(tls_ca)
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=broken)
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.REQUIRED), outbound([X], BODY), [X])
    assert status(attempt) == (421, "4.7.5")
    assert peer.connections == 1 and peer.messages == []


async def test_implicit_tls(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(implicit_tls=server_context(tls_ca, "smarthost.test"), port=465)
    destination = relay(TlsPolicy.VERIFY, implicit_tls=True, port=465)
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and attempt.tls is not None
    assert attempt.remote_mta == f"smarthost.test [{peer.address}]:465"
    assert peer.messages[0].is_tls


async def test_implicit_tls_verify_failure(aiosmtpd_peer: PeerFactory, make_courier: CourierFactory) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(
        implicit_tls=server_context(trustme.CA(), "smarthost.test"), port=465
    )
    destination = relay(TlsPolicy.VERIFY, implicit_tls=True, port=465)
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert status(attempt) == (421, "4.7.5") and attempt.remote_mta is None


# --- AUTH ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_after_starttls(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA, mechanism: str
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(
        starttls=server_context(tls_ca, "smarthost.test"), users={"alice": "s3cret"}, require_auth=True
    )
    destination = relay(TlsPolicy.VERIFY, credentials=Credentials("alice", "s3cret", mechanism))
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert attempt.reply.code == 250
    assert peer.messages[0].auth_login == "alice" and peer.messages[0].is_tls
    assert peer.handler.logins == [f"{mechanism} alice"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_bad_password_defers_4_7_8(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA, mechanism: str
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(
        starttls=server_context(tls_ca, "smarthost.test"), users={"alice": "s3cret"}, require_auth=True
    )
    destination = relay(TlsPolicy.VERIFY, credentials=Credentials("alice", "wrong", mechanism))
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert status(attempt) == (454, "4.7.8")
    assert "535" in attempt.reply.text and "wrong" not in attempt.reply.text
    assert peer.messages == []


async def test_no_credentials_over_plain_text(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(users={"alice": "s3cret"}, require_auth=True)
    destination = relay(TlsPolicy.OPPORTUNISTIC, credentials=Credentials("alice", "s3cret"))
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert status(attempt) == (451, "4.7.10")
    assert peer.handler.logins == [] and peer.messages == []


async def test_policy_none_sends_credentials_in_plain_text(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(users={"alice": "s3cret"}, require_auth=True)
    destination = relay(TlsPolicy.NONE, credentials=Credentials("alice", "s3cret"))
    (attempt,) = await make_courier(peer.address).deliver(destination, outbound([X], BODY), [X])
    assert attempt.reply.code == 250 and peer.messages[0].auth_login == "alice"


async def test_reused_connection_stays_authenticated(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(
        starttls=server_context(tls_ca, "smarthost.test"), users={"alice": "s3cret"}, require_auth=True
    )
    courier = make_courier(peer.address)
    destination = relay(TlsPolicy.VERIFY, credentials=Credentials("alice", "s3cret"))
    for _ in range(2):
        (attempt,) = await courier.deliver(destination, outbound([X], BODY), [X])
        assert attempt.reply.code == 250 and attempt.tls is not None
    assert peer.connections == 1 and len(peer.handler.logins) == 1 and len(peer.messages) == 2


async def test_large_message_over_starttls(
    aiosmtpd_peer: PeerFactory, make_courier: CourierFactory, tls_ca: trustme.CA
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    line = b"0123456789" * 7 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (4 * 1024 * 1024 // len(line))
    (attempt,) = await make_courier(peer.address).deliver(mx(TlsPolicy.VERIFY), outbound([X], body), [X])
    assert attempt.reply.code == 250 and attempt.tls is not None
    assert peer.messages[0].body == body
