"""MTA-STS end to end: a real Postier whose DNS is the test responder, a real HTTPS server with a
trustme certificate serving the policy on 127.0.0.N:443 (resolved through Postier's resolver: the
name exists nowhere else), aiosmtpd MX peers with and without STARTTLS and with wrong certificates."""

from __future__ import annotations

import asyncio
import email
import gzip
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trustme

from postier.delivery.security.tlsrpt_reporter import TlsReporter
from postier.dns import DnsPythonResolver
from postier.observe.maillog import subscribe
from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer
from tests.integration.outbound import Peer, send, start, wait_final
from tests.integration.peers import AiosmtpdPeer, server_context
from tests.integration.stsserver import PolicyServer, http_response, policy_server  # noqa: F401

pytestmark = pytest.mark.integration

ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: mx1.dest.test\r\nmax_age: 86400\r\n"


@pytest.fixture
def deliveries() -> Iterator[list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    unsubscribe = subscribe(lambda event, f: seen.append(dict(f)) if event == "delivery" else None)
    yield seen
    unsubscribe()


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


async def setup(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    tls_ca: trustme.CA,
    ca_file: str,
    peer: AiosmtpdPeer,
    policy: str = ENFORCE,
    mx: str = "mx1.dest.test",
) -> tuple[RunningServer, PolicyServer, DnsServer]:
    sts: PolicyServer = await policy_server(tls_ca, "dest.test", policy)
    dns = dns_server_factory(
        {
            "dest.test": {"MX": [f"10 {mx}"]},
            mx: {"A": [peer.address]},
            "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=20261207"]},
            "mta-sts.dest.test": {"A": [sts.address]},
        }
    )
    server = await start(start_server, dns, delivery={"ca_file": ca_file})
    return server, sts, dns


async def last_reply(server: RunningServer, qid: str) -> str:
    for _ in range(400):
        r = (await server.app.queue.get(qid)).recipients[0]
        if r.attempts >= 1 and r.last_reply:
            return r.last_reply
        await asyncio.sleep(0.05)
    pytest.fail("no attempt recorded")


async def test_enforce_delivers_over_verified_tls_and_caches_the_policy(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    deliveries: list[dict[str, object]],
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    server, sts, _ = await setup(start_server, dns_server_factory, policy_server, tls_ca, ca_file, peer)
    qid = await send(server, "bob@dest.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert peer.messages[0].is_tls
    assert sts.requests == ["GET /.well-known/mta-sts.txt HTTP/1.1"]
    [line] = [d for d in deliveries if d["id"] == qid]
    assert (line["tls_policy"], line["source"]) == ("mta-sts", "mta-sts:id=20261207")
    cached = json.loads((server.data_dir / "mta-sts.json").read_text())
    assert cached["dest.test"]["id"] == "20261207"
    qid2 = await send(server, "carol@dest.test")  # the cache serves the second message
    assert await wait_final(server, qid2) == [RecipientState.DELIVERED]
    assert len(sts.requests) == 1


async def test_enforce_never_delivers_in_clear_when_starttls_disappears(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    deliveries: list[dict[str, object]],
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()  # no STARTTLS (stripped)
    server, _, _ = await setup(start_server, dns_server_factory, policy_server, tls_ca, ca_file, peer)
    qid = await send(server, "bob@dest.test")
    reply = await last_reply(server, qid)
    assert reply.startswith("451 4.7.4 "), reply
    assert (await server.app.queue.get(qid)).recipients[0].state is RecipientState.DEFERRED
    assert peer.messages == []
    line = next(d for d in deliveries if d["id"] == qid)
    assert (line["result"], line["tls_policy"]) == ("deferred", "mta-sts")


@pytest.mark.parametrize("case", ["wrong-certificate", "mx-not-in-policy"])
async def test_enforce_defers_with_4_7_5(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    case: str,
) -> None:
    name = "other.test" if case == "wrong-certificate" else "evil.attacker.test"
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, name))
    mx = "mx1.dest.test" if case == "wrong-certificate" else "evil.attacker.test"
    server, _, _ = await setup(start_server, dns_server_factory, policy_server, tls_ca, ca_file, peer, mx=mx)
    qid = await send(server, "bob@dest.test")
    reply = await last_reply(server, qid)
    assert reply.startswith(("421 4.7.5 ", "451 4.7.5 ")), reply
    assert peer.messages == []


@pytest.mark.parametrize(
    ("starttls_for", "failure"),
    [
        (None, "starttls-not-supported"),
        ("other.test", "certificate-host-mismatch"),
        ("mx1.dest.test", None),
    ],
    ids=["no-starttls", "wrong-name", "good"],
)
async def test_testing_mode_delivers_and_records_what_enforce_would_refuse(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    deliveries: list[dict[str, object]],
    starttls_for: str | None,
    failure: str | None,
) -> None:
    options = {} if starttls_for is None else {"starttls": server_context(tls_ca, starttls_for)}
    peer: AiosmtpdPeer = await aiosmtpd_peer(**options)
    policy = ENFORCE.replace("enforce", "testing")
    server, _, _ = await setup(
        start_server, dns_server_factory, policy_server, tls_ca, ca_file, peer, policy=policy
    )
    qid = await send(server, "bob@dest.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert peer.messages[0].is_tls is (starttls_for is not None)
    line = next(d for d in deliveries if d["id"] == qid)
    assert (line["tls_policy"], line["source"]) == ("mta-sts-testing", "mta-sts:id=20261207")
    assert line.get("tls_failure") == failure


@pytest.mark.parametrize(
    "response",
    [
        http_response("", "301 Moved Permanently").replace(
            b"\r\n\r\n", b"\r\nLocation: https://x.test/\r\n\r\n"
        ),
        http_response(ENFORCE, content_type="text/html"),
        http_response("version: STSv1\r\nmode: enforce\r\n"),
    ],
    ids=["redirect", "not-text-plain", "no-max-age"],
)
async def test_a_policy_that_cannot_be_had_is_no_policy(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    deliveries: list[dict[str, object]],
    response: bytes,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    server, sts, _ = await setup(start_server, dns_server_factory, policy_server, tls_ca, ca_file, peer)
    sts.response = response
    qid = await send(server, "bob@dest.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    line = next(d for d in deliveries if d["id"] == qid)
    assert (line["tls_policy"], line["source"]) == ("opportunistic", "config:delivery.tls")
    assert len(sts.requests) == 1


async def test_policy_server_certificate_must_name_the_policy_host(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    sts: PolicyServer = await policy_server(tls_ca, "dest.test", ENFORCE, cert_for="www.dest.test")
    dns = dns_server_factory(
        {
            "dest.test": {"MX": ["10 mx1.dest.test"]},
            "mx1.dest.test": {"A": [peer.address]},
            "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=1"]},
            "mta-sts.dest.test": {"A": [sts.address]},
        }
    )
    server = await start(start_server, dns, delivery={"ca_file": ca_file})
    qid = await send(server, "bob@dest.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]  # no policy: opportunistic
    assert sts.requests == []  # the handshake failed before any request


def explain_tls(tmp_path: Path, domain: str, config: dict[str, Any]) -> str:
    path = tmp_path / "explain.toml"
    path.write_text(tomli_w.dumps(config))
    argv = [sys.executable, "-m", "postier", "explain", "tls", domain, "-c", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_explain_tls_tells_enforce_testing_and_none_apart(
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    tls_ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
) -> None:
    sts: PolicyServer = await policy_server(tls_ca, "dest.test", ENFORCE)
    dns = dns_server_factory(
        {
            "dest.test": {"MX": ["10 mx1.dest.test", "20 rogue.dest.test"]},
            "mx1.dest.test": {"A": ["127.0.0.200"]},
            "rogue.dest.test": {"A": ["127.0.0.201"]},
            "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=20261207"]},
            "mta-sts.dest.test": {"A": [sts.address]},
            "plain.test": {"MX": ["10 mx.plain.test"]},
            "mx.plain.test": {"A": ["127.0.0.202"]},
            "_mta-sts.plain.test": {"TXT": ["v=STSv1; id=a", "v=STSv1; id=b"]},
        }
    )
    config = {"dns": {"nameservers": [f"{dns.host}:{dns.port}"]}, "delivery": {"ca_file": ca_file}}
    out = await asyncio.to_thread(explain_tls, tmp_path, "dest.test", config)
    assert "MTA-STS policy: mode enforce, mx mx1.dest.test, max_age 86400 s, id 20261207" in out
    mx1, rogue = out.split("  mx1.dest.test [")[1], out.split("  rogue.dest.test [")[1]
    assert "policy: mta-sts (source mta-sts:id=20261207)" in mx1
    assert "a delivery needs: STARTTLS, and a certificate for mx1.dest.test from a trusted CA" in mx1
    assert "a REQUIRETLS message: yes, if the server offers REQUIRETLS" in mx1
    assert "not usable: 451 4.7.5 MTA-STS: rogue.dest.test is not an MX host the policy" in rogue
    plain = await asyncio.to_thread(explain_tls, tmp_path, "plain.test", config)
    assert "MTA-STS problem: 2 TXT records start with v=STSv1" in plain
    assert "policy: opportunistic (source config:delivery.tls)" in plain
    assert "a REQUIRETLS message: no: bounced 5.7.30" in plain


async def test_tls_reports_by_mail_and_https(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    sts: PolicyServer = await policy_server(tls_ca, "dest.test", ENFORCE)
    dns = dns_server_factory(
        {
            "dest.test": {"MX": ["10 mx1.dest.test"]},
            "mx1.dest.test": {"A": [peer.address]},
            "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=20261207"]},
            "mta-sts.dest.test": {"A": [sts.address]},
            "_smtp._tls.dest.test": {
                "TXT": ["v=TLSRPTv1; rua=mailto:tlsrpt@example.test,https://mta-sts.dest.test/tlsrpt"]
            },
        }
    )
    server = await start(start_server, dns, delivery={"ca_file": ca_file}, tlsrpt={"enabled": True})
    await asyncio.to_thread(server.app.users.add, "tlsrpt@example.test", "pw")
    qid = await send(server, "bob@dest.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [recorded] = list((server.data_dir / "tlsrpt").glob("*.jsonl"))
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    reporter = TlsReporter(
        server.data_dir / "tlsrpt",
        DnsPythonResolver(dns.nameservers),
        server.app.queue,
        organization="mx.test",
        contact="mailto:postmaster@mx.test",
        sender="postmaster@example.test",
        ca_file=ca_file,
        clock=lambda: tomorrow,
    )
    assert await reporter.send_due() == 2
    assert not recorded.exists() and recorded.with_suffix(".sent").exists()
    [posted] = sts.bodies
    report = json.loads(gzip.decompress(posted))
    [policy] = report["policies"]
    assert policy["policy"] == {"policy-type": "sts", "policy-domain": "dest.test"}
    assert policy["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 0}
    new = server.data_dir / "mail" / "example.test" / "tlsrpt" / "new"
    for _ in range(400):
        if new.is_dir() and any(new.iterdir()):
            break
        await asyncio.sleep(0.05)
    [stored] = list(new.iterdir())
    message = email.message_from_bytes(stored.read_bytes())
    [part] = [p for p in message.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert json.loads(gzip.decompress(part.get_payload(decode=True)))["policies"] == report["policies"]


async def test_explain_tls_probe_tells_a_stripped_starttls_from_a_good_server(
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811
    policy_server: Callable[..., Any],  # noqa: F811
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
) -> None:
    good: AiosmtpdPeer = await aiosmtpd_peer(starttls=server_context(tls_ca, "mx1.dest.test"))
    stripped: AiosmtpdPeer = await aiosmtpd_peer()
    sts: PolicyServer = await policy_server(tls_ca, "dest.test", ENFORCE.replace("mx: mx1", "mx: *"))
    dns = dns_server_factory(
        {
            "dest.test": {"MX": ["10 mx1.dest.test", "20 mx2.dest.test"]},
            "mx1.dest.test": {"A": [good.address]},
            "mx2.dest.test": {"A": [stripped.address]},
            "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=1"]},
            "mta-sts.dest.test": {"A": [sts.address]},
        }
    )
    path = tmp_path / "explain.toml"
    config = {"dns": {"nameservers": [f"{dns.host}:{dns.port}"]}, "delivery": {"ca_file": ca_file}}
    path.write_text(tomli_w.dumps(config))
    argv = [sys.executable, "-m", "postier", "explain", "tls", "dest.test", "--probe", "-c", str(path)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mx1, mx2 = done.stdout.split("  mx1.dest.test [")[1], done.stdout.split("  mx2.dest.test [")[1]
    assert "probe: TLSv1" in mx1 and "the certificate is valid for mx1.dest.test" in mx1
    assert "does not offer REQUIRETLS" in mx1
    assert "probe: STARTTLS not offered: a delivery needing TLS is deferred (4.7.4)" in mx2
    assert good.messages == [] and stripped.messages == []
