"""DKIM signing end to end, checked by independent verifiers (dkimpy and OpenDKIM) that look the keys
up in the test DNS responder, where the records ``postier dkim keygen`` / ``rotate`` printed are
served: mail submitted on 587 with AUTH and relayed to smtp-sink carries an Ed25519 and an RSA
signature that verify; a message through a second Postier hop still verifies and an altered one
fails; rotation works end to end; a reload picks up a new key and an unreadable one is reported;
DSNs are signed with the key of server.hostname's domain; a stranger's mail is not signed."""

from __future__ import annotations

import asyncio
import email
import logging
import re
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tomli_w

from postier.mailauth.dkim import DkimSigner
from postier.observe.logs import FIELDS_ATTR
from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dkimcheck import dkimpy_verify, dnsfunc_for, opendkim_verify
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer, add_users
from tests.integration.outbound import ALICE, send, start, wait_bounces, wait_final
from tests.integration.peers import loopback_address
from tests.integration.smtpsink import SmtpSink

pytestmark = pytest.mark.integration

PASSWORD = "pw"  # tests.integration.outbound.start makes alice with it
MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@far.test>\r\n"
    b"Subject: a signed message with a subject long enough that it is folded over\r\n"
    b"\ttwo lines, and 8-bit text: caf\xc3\xa9\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <dkim-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello Bob,   spaces  and\ttabs \t\r\n"
    b".a line that starts with a dot\r\n" + b"long line " * 95 + b"\r\n"
    b"caf\xc3\xa9\r\n"
    b"\r\n\r\n\r\n"
)


def _postier(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "postier", *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _cli_config(tmp_path: Path, data_dir: Path, dns: DnsServer) -> Path:
    """The configuration file ``postier dkim`` reads: the data_dir and the DNS server to look in."""
    path = tmp_path / f"dkim-{data_dir.name}.toml"
    data = {"server": {"data_dir": str(data_dir)}, "dns": {"nameservers": [f"{dns.host}:{dns.port}"]}}
    path.write_text(tomli_w.dumps(data))
    return path


def publish(dns: DnsServer, output: str) -> list[str]:
    """Serve every record ``postier dkim keygen|rotate`` printed, exactly as printed; the selectors."""
    selectors = []
    for name, value in re.findall(r"^\s*(\S+)\. IN TXT (.+)$", output, re.M):
        dns.set(name, "TXT", [value])
        selectors.append(name.split(".", 1)[0])
    return selectors


def keygen(config: Path, dns: DnsServer, domain: str, algorithm: str, *, published: bool = True) -> str:
    output = _postier("dkim", "keygen", domain, "--algorithm", algorithm, "--config", str(config))
    [selector] = publish(dns, output) if published else re.findall(r"^\s*(\S+?)\._domainkey", output, re.M)
    return selector


def _tags(message: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature of ``message``, top to bottom."""
    parsed = email.message_from_bytes(message)
    out = []
    for value in parsed.get_all("DKIM-Signature") or []:
        text = re.sub(r"\s+", "", str(value))
        out.append(dict(part.split("=", 1) for part in text.split(";") if part))
    return out


def _submit(port: int, message: bytes, rcpt: str = "bob@far.test") -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, [rcpt], message)


async def _signed_server(
    start_server: StartServer, dns: DnsServer, tmp_path: Path, *algorithms: str, **sections: Any
) -> tuple[RunningServer, Path]:
    """A Postier whose data_dir already holds published keys of example.test (alice's domain)."""
    data_dir = tmp_path / "var0"  # the start_server fixture's first data_dir
    config = _cli_config(tmp_path, data_dir, dns)
    for algorithm in algorithms:
        keygen(config, dns, "example.test", algorithm)
    server = await start(start_server, dns, **sections)
    assert server.data_dir == data_dir
    return server, config


async def test_submission_on_587_relayed_to_smtp_sink_verifies_with_dkimpy_and_opendkim(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    smtp_sink: Callable[..., SmtpSink],
    tmp_path: Path,
) -> None:
    sink = smtp_sink()
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": [sink.address]}})
    server, _ = await _signed_server(
        start_server, dns, tmp_path, "ed25519", "rsa", relay={"trusted_networks": []}
    )
    await asyncio.to_thread(_submit, server.ports["submission"], MESSAGE)
    [received] = await sink.wait_messages(1)
    message = received.body
    tags = _tags(message)
    assert [t["a"] for t in tags] == ["ed25519-sha256", "rsa-sha256"]
    assert {t["d"] for t in tags} == {"example.test"} and all("t" in t and "x" not in t for t in tags)
    assert dkimpy_verify(message, dnsfunc_for(dns.host, dns.port)) == [True, True]
    verdicts, text = await asyncio.to_thread(opendkim_verify, message, dns.host, dns.port, tmp_path / "odk")
    assert verdicts == {"ed25519-sha256": "pass", "rsa-sha256": "pass"}, text
    altered = message.replace(b"Hello Bob", b"Hello Eve")
    assert dkimpy_verify(altered, dnsfunc_for(dns.host, dns.port)) == [False, False]
    verdicts, text = await asyncio.to_thread(opendkim_verify, altered, dns.host, dns.port, tmp_path / "odk2")
    assert verdicts == {"ed25519-sha256": "fail", "rsa-sha256": "fail"}, text


async def test_a_second_postier_hop_keeps_the_signatures_valid(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    dns = dns_server_factory()
    server, _ = await _signed_server(start_server, dns, tmp_path, "ed25519", "rsa", dkim={"expire_s": 3600})
    b_address = loopback_address(25)
    b: RunningServer = await start_server(
        server={"hostname": "mx.far.test"},
        relay={"local_domains": ["far.test"]},
        listener=[{"address": f"{b_address}:25", "mode": "smtp"}],
    )
    await asyncio.to_thread(add_users, b.data_dir, "bob@far.test")
    dns.set("far.test", "MX", ["10 mx.far.test"])
    dns.set("mx.far.test", "A", [b_address])
    await asyncio.to_thread(_submit, server.ports["submission"], MESSAGE)
    maildir = b.data_dir / "mail" / "far.test" / "bob" / "new"
    async with asyncio.timeout(60):
        while not (files := sorted(maildir.glob("*")) if maildir.is_dir() else []):
            await asyncio.sleep(0.05)
    stored = files[0].read_bytes()
    assert stored.count(b"\nReceived: ") + stored.startswith(b"Received: ") >= 2  # two hops
    assert [int(t["x"]) - int(t["t"]) for t in _tags(stored)] == [3600, 3600]
    dnsfunc = dnsfunc_for(dns.host, dns.port)
    assert dkimpy_verify(stored, dnsfunc) == [True, True]
    added = stored.replace(b"\r\n\r\n", b"\r\nFrom: Mallory <m@evil.test>\r\n\r\n", 1)
    assert dkimpy_verify(added, dnsfunc) == [False, False]  # From: is oversigned


async def test_rotation_end_to_end(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No negative caching: the record published below is seen at the next check, not minutes later.
    dns = dns_server_factory(
        {"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": ["127.0.0.1"]}}, soa_minimum=0
    )
    server, config = await _signed_server(start_server, dns, tmp_path, "ed25519")
    dnsfunc = dnsfunc_for(dns.host, dns.port)
    [old] = [t["s"] for t in _tags(await _queued(server))]

    output = await asyncio.to_thread(_postier, "dkim", "rotate", "example.test", "--config", str(config))
    assert f"{old} signs until this record is seen" in output
    [new] = re.findall(r"^\s*(\S+?)\._domainkey", output, re.M)
    assert new != old
    await _refreshed(server)  # a check before the record is published: the old key goes on signing
    assert [t["s"] for t in _tags(await _queued(server))] == [old]

    publish(dns, output)
    await _refreshed(server)  # the next check (a reload here) sees the record: the new key signs
    message = await _queued(server)
    assert [t["s"] for t in _tags(message)] == [new]
    assert dkimpy_verify(message, dnsfunc) == [True]

    listing = await asyncio.to_thread(_postier, "dkim", "list", "--config", str(config))
    retiring = (
        rf"example.test  {old}  ed25519 .* retiring\n.*\n\s+keep {old}._domainkey.example.test published"
    )
    assert re.search(retiring + r" until 20\d\d-\d\d-\d\d", listing), listing
    assert re.search(rf"example.test  {new}  ed25519 .* active", listing)
    again = subprocess.run(
        [sys.executable, "-m", "postier", "dkim", "rotate", "example.test", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0  # the last rotation is done: a new one may start


def _queued_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The fields of the ``queued`` mail events logged."""
    records = [r for r in caplog.records if r.name == "postier.mail" and r.getMessage() == "queued"]
    return [dict(getattr(r, FIELDS_ATTR)) for r in records]


async def _queued(server: RunningServer) -> bytes:
    """Send alice's message through the smtp listener (a trusted network) and read back what was queued."""
    qid = await send(server, "bob@far.test")
    return await server.app.queue.read_body(qid)


async def _refreshed(server: RunningServer) -> DkimSigner:
    """Reload (SIGHUP's path) and wait for the key check it starts to publish a new signer."""
    before = server.app.server.live.dkim
    assert server.app.reload(server.app.config)
    async with asyncio.timeout(30):
        while server.app.server.live.dkim is before:
            await asyncio.sleep(0.02)
    return server.app.server.live.dkim


async def test_reload_picks_up_a_new_key_and_an_unreadable_one_is_reported(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": ["127.0.0.1"]}})
    server, config = await _signed_server(start_server, dns, tmp_path, "ed25519")
    assert [t["a"] for t in _tags(await _queued(server))] == ["ed25519-sha256"]
    keygen(config, dns, "example.test", "rsa")
    junk = server.data_dir / "dkim" / "example.test" / "broken.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with caplog.at_level(logging.ERROR, logger="postier.dkim"):
        await _refreshed(server)
    assert any("broken.pem cannot be used" in r.getMessage() for r in caplog.records)
    message = await _queued(server)
    assert [t["a"] for t in _tags(message)] == ["ed25519-sha256", "rsa-sha256"]
    assert dkimpy_verify(message, dnsfunc_for(dns.host, dns.port)) == [True, True]


async def test_a_key_whose_record_does_not_match_never_signs(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": ["127.0.0.1"]}})
    data_dir = tmp_path / "var0"
    config = _cli_config(tmp_path, data_dir, dns)
    selector = keygen(config, dns, "example.test", "ed25519", published=False)
    other = tmp_path / "other"
    output = _postier(
        "dkim", "keygen", "x.test", "--algorithm", "ed25519", "--selector", selector, "--data-dir", str(other)
    )
    record = re.search(r"IN TXT (.+)$", output, re.M)
    assert record is not None
    dns.set(f"{selector}._domainkey.example.test", "TXT", [record.group(1)])  # someone else's key
    with caplog.at_level(logging.INFO):
        server = await start(start_server, dns)
        qid = await send(server, "bob@far.test")
    assert _tags(await server.app.queue.read_body(qid)) == []
    assert any("mismatch (p= is another key)" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    [queued] = _queued_events(caplog)
    assert (queued["dkim"], queued["dkim_reason"]) == (
        "unsigned",
        "no key of the domain can sign (see postier dkim list)",
    )
    listing = await asyncio.to_thread(_postier, "dkim", "list", "--config", str(config))
    assert "mismatch" in listing and "p= is another key" in listing


async def test_dsns_are_signed_with_the_hostname_domain_key_and_strangers_mail_is_not(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = dns_server_factory({"nowhere.test": {"TXT": ["v=spf1 -all"]}})
    data_dir = tmp_path / "var0"
    config = _cli_config(tmp_path, data_dir, dns)
    keygen(config, dns, "mx.test", "ed25519")  # the test server's hostname
    keygen(config, dns, "example.test", "ed25519")
    server = await start(start_server, dns)
    qid = await send(server, "nobody@nowhere.test")  # no MX, no A: fails, alice gets a DSN
    assert await wait_final(server, qid) == [RecipientState.FAILED]
    await wait_bounces(server, 1)
    [path] = (server.data_dir / "mail" / "example.test" / "alice" / "new").iterdir()
    stored = path.read_bytes()
    assert b"From: Mail Delivery System <MAILER-DAEMON@mx.test>" in stored
    assert [(t["d"], t["a"]) for t in _tags(stored)] == [("mx.test", "ed25519-sha256")]
    assert dkimpy_verify(stored, dnsfunc_for(dns.host, dns.port)) == [True]

    untrusted = msgspec.structs.replace(server.app.config.relay, trusted_networks=())
    assert server.app.reload(msgspec.structs.replace(server.app.config, relay=untrusted))
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        qid = await send(server, ALICE)  # not trusted, not authenticated: a stranger's mail
    assert _tags(await server.app.queue.read_body(qid)) == []
    [queued] = _queued_events(caplog)
    assert (
        queued["dkim"] == "unsigned"
        and queued["dkim_reason"] == "not from an authenticated or trusted client"
    )


UTF8_MESSAGE = (
    "From: Jörg Müller <alice@example.test>\r\n"
    "To: Zoë <zoe@far.test>\r\n"
    "Subject: Grüße aus Köln — ein Betreff mit UTF-8 ohne Kodierung, lang genug\r\n"
    " dass er gefaltet ist\r\n"
    "Message-ID: <utf8-1@example.test>\r\n"
    "\r\n"
    "Schöne Grüße   \r\n"
    "\r\n"
).encode()


def _submit_utf8(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, ["zoe@far.test"], UTF8_MESSAGE, mail_options=["SMTPUTF8", "BODY=8BITMIME"])


async def test_smtputf8_headers_relayed_to_aiosmtpd_verify(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """UTF-8 header fields (RFC 6532) in an SMTPUTF8 transaction, signed as octets, verified by both."""
    peer = await aiosmtpd_peer()
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": [peer.address]}})
    server, _ = await _signed_server(start_server, dns, tmp_path, "ed25519", "rsa")
    await asyncio.to_thread(_submit_utf8, server.ports["submission"])
    async with asyncio.timeout(60):
        while not peer.messages:
            await asyncio.sleep(0.05)
    [received] = peer.messages
    assert "SMTPUTF8" in received.mail_options
    message = received.body
    assert "Grüße".encode() in message
    assert dkimpy_verify(message, dnsfunc_for(dns.host, dns.port)) == [True, True]
    verdicts, text = await asyncio.to_thread(opendkim_verify, message, dns.host, dns.port, tmp_path / "odk")
    assert verdicts == {"ed25519-sha256": "pass", "rsa-sha256": "pass"}, text


async def test_a_new_key_signs_once_the_periodic_check_sees_its_record(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    dns = dns_server_factory(
        {"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": ["127.0.0.1"]}}, soa_minimum=0
    )
    config = _cli_config(tmp_path, tmp_path / "var0", dns)
    output = _postier("dkim", "keygen", "example.test", "--algorithm", "ed25519", "--config", str(config))
    server = await start(start_server, dns, dkim={"check_interval_s": 0.2})
    assert _tags(await _queued(server)) == []  # not published yet: not used
    [selector] = publish(dns, output)
    async with asyncio.timeout(30):  # no reload: the periodic check finds it
        while not server.app.server.live.dkim.keys_for("example.test"):
            await asyncio.sleep(0.05)
    message = await _queued(server)
    assert [t["s"] for t in _tags(message)] == [selector]
    assert dkimpy_verify(message, dnsfunc_for(dns.host, dns.port)) == [True]
