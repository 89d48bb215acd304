"""REQUIRETLS (RFC 8689) through two Postiers: A relays, B is the recipient domain's MX on
127.0.0.N:25 with a trustme certificate; A's DNS is the test responder, with an MTA-STS policy served
by a real HTTPS server — or none. A REQUIRETLS message never leaves over an unverified connection."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer, free_port
from tests.integration.mailcheck import queue_id_from_reply
from tests.integration.outbound import ALICE, Peer, start, wait_bounces, wait_final
from tests.integration.peers import AiosmtpdPeer, loopback_address, server_context
from tests.integration.stsserver import PolicyServer, policy_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: mx1.dest.test\r\nmax_age: 86400\r\n"


def submit(port: int, rcpt: str, *, requiretls: bool, header: bytes = b"") -> str:
    """Over STARTTLS to A (its self-signed certificate is not checked), MAIL … [REQUIRETLS]."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("client.test")
        assert client.has_extn("requiretls")
        code, text = client.mail(ALICE, options=["REQUIRETLS"] if requiretls else [])
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        body = b"From: alice@example.test\r\n" + header + b"Subject: secret\r\n\r\nSecret.\r\n"
        return queue_id_from_reply(client.data(body)[1])


def pem_files(ca: trustme.CA, tmp_path: Path, host: str) -> tuple[str, str, str]:
    leaf = ca.issue_cert(host)
    cert, key, ca_file = tmp_path / "b-cert.pem", tmp_path / "b-key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert), str(key), str(ca_file)


async def start_b(start_server: StartServer, tls_ca: trustme.CA, tmp_path: Path) -> tuple[RunningServer, str]:
    cert, key, _ = pem_files(tls_ca, tmp_path, "mx1.dest.test")
    address = loopback_address(25)
    b: RunningServer = await start_server(
        server={"hostname": "mx1.dest.test"},
        listener=[
            {"address": f"{address}:25", "mode": "smtp"},
            {"address": f"127.0.0.1:{free_port()}", "mode": "submission"},
        ],
        tls={"cert": cert, "key": key},
        relay={"local_domains": ["dest.test"]},
    )
    await asyncio.to_thread(b.app.users.add, "bob@dest.test", "pw")
    return b, address


async def start_a(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    tls_ca: trustme.CA,
    tmp_path: Path,
    mx_address: str,
    *,
    sts: bool,
) -> RunningServer:
    records: dict[str, dict[str, list[str]]] = {
        "dest.test": {"MX": ["10 mx1.dest.test"]},
        "mx1.dest.test": {"A": [mx_address]},
    }
    if sts:
        server: PolicyServer = await policy_server(tls_ca, "dest.test", ENFORCE)
        records["_mta-sts.dest.test"] = {"TXT": ["v=STSv1; id=1"]}
        records["mta-sts.dest.test"] = {"A": [server.address]}
    dns = dns_server_factory(records)
    ca_file = str(tmp_path / "ca.pem")
    tls_ca.cert_pem.write_to_path(ca_file)
    return await start(start_server, dns, delivery={"ca_file": ca_file})


async def test_requiretls_relayed_over_mta_sts_to_a_postier_that_offers_it(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    b, address = await start_b(start_server, tls_ca, tmp_path)
    a = await start_a(start_server, dns_server_factory, policy_server, tls_ca, tmp_path, address, sts=True)
    qid = await asyncio.to_thread(submit, a.smtp_port, "bob@dest.test", requiretls=True)
    assert await wait_final(a, qid) == [RecipientState.DELIVERED]
    new = b.data_dir / "mail" / "dest.test" / "bob" / "new"
    for _ in range(200):
        if new.is_dir() and any(new.iterdir()):
            break
        await asyncio.sleep(0.05)
    [stored] = list(new.iterdir())
    assert b"Secret." in stored.read_bytes()
    records = [r async for r in _all(b)]
    assert [r.envelope.requiretls for r in records] == [True]  # B got MAIL … REQUIRETLS


async def _all(server: RunningServer) -> Any:
    for summary in await server.app.queue.list_messages(limit=None):
        yield await server.app.queue.get(summary.id)


async def test_requiretls_without_an_authenticated_mx_bounces_5_7_30(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    b, address = await start_b(start_server, tls_ca, tmp_path)
    a = await start_a(start_server, dns_server_factory, policy_server, tls_ca, tmp_path, address, sts=False)
    qid = await asyncio.to_thread(submit, a.smtp_port, "bob@dest.test", requiretls=True)
    assert await wait_final(a, qid) == [RecipientState.FAILED]
    reply = (await a.app.queue.get(qid)).recipients[0].last_reply or ""
    assert reply.startswith("550 5.7.30 "), reply
    [dsn] = await wait_bounces(a, 1)
    assert b"Secret." not in dsn.as_bytes()  # RFC 8689 §5: headers only
    assert [p.get_content_type() for p in dsn.walk()][-1] == "text/rfc822-headers"
    dsn_ids = [m.id for m in await a.app.queue.list_messages(limit=None) if m.id != qid]
    assert [(await a.app.queue.get(i)).envelope.requiretls for i in dsn_ids] == [True]
    assert await b.app.queue.list_messages(limit=None) == []  # nothing reached B


async def test_requiretls_never_to_a_server_that_does_not_offer_it(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    a = await start_a(
        start_server, dns_server_factory, policy_server, tls_ca, tmp_path, peer.address, sts=True
    )
    qid = await asyncio.to_thread(submit, a.smtp_port, "bob@dest.test", requiretls=True)
    assert await wait_final(a, qid) == [RecipientState.FAILED]
    reply = (await a.app.queue.get(qid)).recipients[0].last_reply or ""
    assert reply.startswith("550 5.7.30 ") and "does not offer REQUIRETLS" in reply, reply
    assert peer.messages == []


async def test_tls_required_no_lifts_mta_sts(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()  # no STARTTLS: enforce alone would defer
    a = await start_a(
        start_server, dns_server_factory, policy_server, tls_ca, tmp_path, peer.address, sts=True
    )
    qid = await asyncio.to_thread(
        submit, a.smtp_port, "bob@dest.test", requiretls=False, header=b"TLS-Required: No\r\n"
    )
    assert await wait_final(a, qid) == [RecipientState.DELIVERED]
    assert not peer.messages[0].is_tls
