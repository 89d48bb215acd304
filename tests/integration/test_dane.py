"""DANE end to end: a real unbound validating a zone signed with ldns-signzone (its key the only
trust anchor), a Postier with ``dns.dnssec = true`` asking it, aiosmtpd MX peers on 127.0.0.N:25
whose certificates do or do not match the TLSA records."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest
import tomli_w
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postier.observe.maillog import subscribe
from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer
from tests.integration.outbound import ALICE, FAST, Peer, send, wait_final
from tests.integration.peers import AiosmtpdPeer
from tests.integration.unbound import SignedZone, Unbound, unbound_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def leaf_context(ca: trustme.CA, host: str) -> tuple[ssl.SSLContext, x509.Certificate]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert(host)
    leaf.configure_cert(context)
    return context, x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())


def ee_record(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def ta_record(ca: trustme.CA) -> str:
    der = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).public_bytes(Encoding.DER)
    return f"2 0 1 {hashlib.sha256(der).hexdigest()}"


@pytest.fixture
def deliveries() -> Iterator[list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    unsubscribe = subscribe(lambda event, f: seen.append(dict(f)) if event == "delivery" else None)
    yield seen
    unsubscribe()


async def start_postier(start_server: StartServer, resolver: Unbound) -> RunningServer:
    server: RunningServer = await start_server(
        dns={"nameservers": [f"{resolver.host}:{resolver.port}"], "dnssec": True},
        delivery={**FAST, "mta_sts": False},
    )
    await asyncio.to_thread(server.app.users.add, ALICE, "pw")
    return server


async def resolver_for(
    records: dict[str, dict[str, list[str]]],
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    insecure: dict[str, dict[str, list[str]]] | None = None,
    tamper: dict[str, str] | None = None,
) -> Unbound:
    zone = await asyncio.to_thread(SignedZone, "dane.test", records, tmp_path / "zone", tamper)
    plain = dns_server_factory(insecure or {})
    zones = sorted({".".join(name.split(".")[-2:]) for name in insecure or {}})
    return await asyncio.to_thread(
        unbound_factory, [zone], forward_to=(plain.host, plain.port), forward_zones=zones
    )


async def last_reply(server: RunningServer, qid: str) -> str:
    for _ in range(400):
        r = (await server.app.queue.get(qid)).recipients[0]
        if r.attempts >= 1 and r.last_reply:
            return r.last_reply
        await asyncio.sleep(0.05)
    pytest.fail("no attempt recorded")


async def test_unbound_validates_the_signed_zone(
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
) -> None:
    records = {"mx1.dane.test": {"A": ["127.0.0.9"]}, "bad.dane.test": {"A": ["127.0.0.10"]}}
    insecure = {"plain.test": {"A": ["127.0.0.11"]}}
    resolver = await resolver_for(
        records, tmp_path, dns_server_factory, unbound_factory, insecure, {"bad.dane.test": "127.0.0.12"}
    )
    good = await asyncio.to_thread(resolver.ask, "mx1.dane.test", "A")
    assert good.flags & dns.flags.AD and good.rcode() == dns.rcode.NOERROR
    bogus = await asyncio.to_thread(resolver.ask, "bad.dane.test", "A")
    assert bogus.rcode() == dns.rcode.SERVFAIL
    plain = await asyncio.to_thread(resolver.ask, "plain.test", "A")
    assert plain.rcode() == dns.rcode.NOERROR and not plain.flags & dns.flags.AD


async def test_delivered_only_to_the_server_whose_key_matches(
    start_server: StartServer,
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    deliveries: list[dict[str, object]],
) -> None:
    context1, _ = leaf_context(tls_ca, "mx1.dane.test")
    context2, cert2 = leaf_context(tls_ca, "mx2.dane.test")
    _, other = leaf_context(tls_ca, "mx1.dane.test")  # the key mx1's TLSA record names: not its own
    mx1: AiosmtpdPeer = await aiosmtpd_peer(starttls=context1)
    mx2: AiosmtpdPeer = await aiosmtpd_peer(starttls=context2)
    records = {
        "dane.test": {"MX": ["10 mx1.dane.test.", "20 mx2.dane.test."]},
        "mx1.dane.test": {"A": [mx1.address]},
        "mx2.dane.test": {"A": [mx2.address]},
        "_25._tcp.mx1.dane.test": {"TLSA": [ee_record(other)]},
        "_25._tcp.mx2.dane.test": {"TLSA": [ee_record(cert2)]},
    }
    resolver = await resolver_for(records, tmp_path, dns_server_factory, unbound_factory)
    server = await start_postier(start_server, resolver)
    qid = await send(server, "bob@dane.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert mx1.messages == [] and mx1.connections == 1  # connected, TLS, refused by the TLSA check
    assert [m.recipients for m in mx2.messages] == [("bob@dane.test",)] and mx2.messages[0].is_tls
    [line] = [d for d in deliveries if d["id"] == qid]
    assert (line["tls_policy"], line["source"]) == ("dane", "dnssec:_25._tcp.mx2.dane.test")


async def test_dane_ta_matches_an_issuer_in_the_chain(
    start_server: StartServer,
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
) -> None:
    intermediate = tls_ca.create_child_ca()
    context, _ = leaf_context(intermediate, "mx1.dane.test")  # sends leaf + intermediate
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=context)
    records = {
        "dane.test": {"MX": ["10 mx1.dane.test."]},
        "mx1.dane.test": {"A": [peer.address]},
        "_25._tcp.mx1.dane.test": {"TLSA": [ta_record(intermediate)]},
    }
    resolver = await resolver_for(records, tmp_path, dns_server_factory, unbound_factory)
    server = await start_postier(start_server, resolver)
    qid = await send(server, "bob@dane.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert peer.messages[0].is_tls


@pytest.mark.parametrize("case", ["no-starttls", "no-usable-record", "wrong-name-for-ta"])
async def test_never_clear_text_and_never_unauthenticated(
    start_server: StartServer,
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    case: str,
) -> None:
    intermediate = tls_ca.create_child_ca()
    context, cert = leaf_context(
        intermediate, "elsewhere.test" if case == "wrong-name-for-ta" else "mx1.dane.test"
    )
    peer: AiosmtpdPeer = await aiosmtpd_peer(**({} if case == "no-starttls" else {"starttls": context}))
    tlsa = {
        "no-starttls": ee_record(cert),
        "no-usable-record": "1 1 1 " + "00" * 32,  # PKIX-EE: unusable for SMTP (RFC 7672 §3.1.3)
        "wrong-name-for-ta": ta_record(intermediate),
    }[case]
    records = {
        "dane.test": {"MX": ["10 mx1.dane.test."]},
        "mx1.dane.test": {"A": [peer.address]},
        "_25._tcp.mx1.dane.test": {"TLSA": [tlsa]},
    }
    resolver = await resolver_for(records, tmp_path, dns_server_factory, unbound_factory)
    server = await start_postier(start_server, resolver)
    qid = await send(server, "bob@dane.test")
    reply = await last_reply(server, qid)
    expected = {
        "no-starttls": "451 4.7.4 ",
        "no-usable-record": "451 4.7.5 ",
        "wrong-name-for-ta": "421 4.7.5 ",
    }
    assert reply.startswith(expected[case]), reply
    assert (await server.app.queue.get(qid)).recipients[0].state is RecipientState.DEFERRED
    assert peer.messages == []


async def test_insecure_domains_keep_the_configured_policy(
    start_server: StartServer,
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    aiosmtpd_peer: Peer,
    deliveries: list[dict[str, object]],
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    insecure = {
        "plain.test": {"MX": ["10 mx.plain.test"]},
        "mx.plain.test": {"A": [peer.address]},
        "_25._tcp.mx.plain.test": {"TLSA": ["3 1 1 " + "00" * 32]},  # not signed: ignored
    }
    resolver = await resolver_for({}, tmp_path, dns_server_factory, unbound_factory, insecure)
    server = await start_postier(start_server, resolver)
    qid = await send(server, "bob@plain.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [line] = [d for d in deliveries if d["id"] == qid]
    assert (line["tls_policy"], line["source"]) == ("opportunistic", "config:delivery.tls")


async def test_explain_tls_shows_the_dane_decision(
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    unbound_factory: Callable[..., Unbound],  # noqa: F811
    tls_ca: trustme.CA,
) -> None:
    _, cert = leaf_context(tls_ca, "mx1.dane.test")
    records = {
        "dane.test": {"MX": ["10 mx1.dane.test.", "20 mx2.dane.test."]},
        "mx1.dane.test": {"A": ["127.0.0.210"]},
        "mx2.dane.test": {"A": ["127.0.0.211"]},
        "_25._tcp.mx1.dane.test": {"TLSA": [ee_record(cert)]},
        "_25._tcp.mx2.dane.test": {"TLSA": ["0 0 1 " + "00" * 32]},  # PKIX-TA only: unusable
    }
    resolver = await resolver_for(records, tmp_path, dns_server_factory, unbound_factory)
    config = {
        "dns": {"nameservers": [f"{resolver.host}:{resolver.port}"], "dnssec": True},
        "delivery": {"mta_sts": False},
    }
    path = tmp_path / "explain.toml"
    path.write_text(tomli_w.dumps(config))
    argv = [sys.executable, "-m", "postier", "explain", "tls", "dane.test", "-c", str(path)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "DNSSEC: the MX records are DNSSEC-secure" in out
    mx1, mx2 = out.split("  mx1.dane.test [")[1], out.split("  mx2.dane.test [")[1]
    assert "policy: dane (source dnssec:_25._tcp.mx1.dane.test)" in mx1
    assert f"TLSA: {ee_record(cert).lower()}" in mx1
    assert "a certificate chain matching one of the TLSA records" in mx1
    assert "not usable: 451 4.7.5 DANE: no usable TLSA record" in mx2
    assert "broken: no usable TLSA record at _25._tcp.mx2.dane.test" in mx2
