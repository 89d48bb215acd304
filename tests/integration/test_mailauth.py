"""Mail authentication end to end: smtplib → a real Postier (``mailauth`` enforcing SPF and DMARC) whose
DNS is the test responder, with messages signed by dkimpy and OpenDKIM and sealed (ARC) by dkimpy.

The client is 127.0.0.1 and no network is trusted here, so every check applies. Each domain's records
say what the test needs: bank.test rejects (p=reject; its subdomains quarantine, sp=quarantine),
evil.test passes SPF for anyone on 127.0.0.1 (a forger's own domain), example.co.uk sits under a
public suffix, broken.test's DNS fails, list.test is a forwarder whose ARC seals we trust."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import smtplib
from collections.abc import Callable
from pathlib import Path

import parsedmarc
import pytest

from postier.dns import DnsPythonResolver
from postier.mailauth.arcverify import check_arc
from postier.mailauth.dmarc.aggregate import ReportRow
from postier.observe.logs import FIELDS_ATTR
from postier.queue.model import RecipientState
from tests.dkimkeys import ed25519_key, rsa_key
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer
from tests.integration.mailcheck import queue_id_from_reply, queued_body, queued_envelope
from tests.integration.outbound import ALICE, start, wait_final
from tests.integration.signers import arc_seal, dkimpy_sign, opendkim_sign
from tests.integration.test_dkim import _cli_config, keygen

pytestmark = pytest.mark.integration

RSA, ED, ODK, LIST = rsa_key(), ed25519_key(), rsa_key(), rsa_key()
RECORDS = {
    "bank.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"], "A": ["192.0.2.1"]},
    "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@bank.test"]},
    "sel._domainkey.bank.test": {"TXT": [RSA.record]},
    "ed._domainkey.bank.test": {"TXT": [ED.record]},
    "odk._domainkey.bank.test": {"TXT": [ODK.record]},
    "news.bank.test": {"A": ["192.0.2.5"]},
    "evil.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
    "strict.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=reject"]},
    "list.test": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
    "arc._domainkey.list.test": {"TXT": [LIST.record]},
    "_dmarc.relaxed.test": {"TXT": ["v=DMARC1; p=none"]},
}
MAILAUTH = {"spf": "enforce", "dmarc": "enforce", "arc_trusted_sealers": ["list.test"]}


def _message(from_: str, subject: str = "quarterly figures") -> bytes:
    return (
        f"From: {from_}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <figures@bank.test>\r\n\r\n"
        "Please find the figures attached.\r\n"
    ).encode()


def _send(port: int, sender: str, message: bytes, rcpt: str = ALICE) -> tuple[int, bytes]:
    """MAIL, RCPT, DATA: the first refusal, or the end-of-data reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.evil.test")
        code, text = client.mail(sender)
        if code != 250:
            return code, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        return client.data(message)


async def send(server: RunningServer, sender: str, message: bytes) -> tuple[int, bytes]:
    return await asyncio.to_thread(_send, server.smtp_port, sender, message)


@pytest.fixture
async def server(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> RunningServer:
    dns = dns_server_factory(RECORDS, servfail=["_dmarc.broken.test", "spf-broken.test"])
    return await start(
        start_server,
        dns,
        relay={"local_domains": ["example.test"], "trusted_networks": []},
        mailauth=MAILAUTH,
    )


async def _queued(server: RunningServer, reply: bytes) -> tuple[str, bytes]:
    queue_id = queue_id_from_reply(reply)
    return queue_id, await queued_body(server, queue_id)


def _fields(body: bytes, name: str) -> list[str]:
    """The values of the ``name`` header fields of ``body``, unfolded, whitespace runs made one space."""
    header = body.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = header.replace("\r\n ", " ").replace("\r\n\t", " ")
    prefix = name.lower() + ":"
    return [
        " ".join(line.split(":", 1)[1].split())
        for line in unfolded.split("\r\n")
        if line.lower().startswith(prefix)
    ]


def _auth_results(body: bytes) -> list[str]:
    return _fields(body, "Authentication-Results")


async def test_forged_from_with_p_reject_is_refused(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        code, text = await send(server, "ceo@evil.test", _message("CEO <ceo@bank.test>"))
    assert (code, text.decode()) == (550, "5.7.1 Rejected by the DMARC policy of the From domain")
    [reject] = [getattr(r, FIELDS_ATTR) for r in caplog.records if r.getMessage() == "reject"]
    assert reject["stage"] == "data"
    assert "dmarc=fail:reject" in reject["reason"]


@pytest.mark.parametrize("signer", ["dkimpy-rsa", "dkimpy-ed25519", "opendkim"])
async def test_the_same_message_signed_is_delivered_with_dmarc_pass(
    server: RunningServer, caplog: pytest.LogCaptureFixture, tmp_path: Path, signer: str
) -> None:
    message = _message("CEO <ceo@bank.test>")
    if signer == "dkimpy-rsa":
        signed, selector = dkimpy_sign(message, "sel", "bank.test", RSA), "sel"
    elif signer == "dkimpy-ed25519":
        signed, selector = dkimpy_sign(message, "ed", "bank.test", ED, b"ed25519-sha256"), "ed"
    else:
        signed, selector = opendkim_sign(message, "odk", "bank.test", ODK, tmp_path / "opendkim"), "odk"
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        code, text = await send(server, "ceo@evil.test", signed)
    assert code == 250, text
    queue_id, body = await _queued(server, text)
    [results] = _auth_results(body)
    assert results.startswith("mx.test; spf=pass smtp.mailfrom=ceo@evil.test;")
    assert (
        "dkim=pass header.b=" in results
        and "header.d=bank.test" in results
        and f"header.s={selector}" in results
    )
    assert "dmarc=pass header.from=bank.test" in results
    [queued] = [getattr(r, FIELDS_ATTR) for r in caplog.records if r.getMessage() == "queued"]
    assert queued["mailauth"] == "spf=pass dkim=pass:bank.test dmarc=pass arc=none"
    envelope = await queued_envelope(server, queue_id)
    assert envelope.client.mailauth == "spf=pass dkim=pass:bank.test dmarc=pass arc=none"
    assert await wait_final(server, queue_id) == [RecipientState.DELIVERED]


async def test_subdomain_policy_quarantines_with_a_header(server: RunningServer) -> None:
    code, text = await send(server, "news@evil.test", _message("News <news@news.bank.test>"))
    assert code == 250, text
    _, body = await _queued(server, text)
    assert b"\r\nX-Postier-Quarantine: dmarc\r\n" in body
    assert "dmarc=fail" in _auth_results(body)[0] and "policy.dmarc=quarantine" in _auth_results(body)[0]


async def test_organizational_domain_comes_from_the_public_suffix_list(server: RunningServer) -> None:
    # mail.shop.example.co.uk has no record; its organizational domain is example.co.uk (not co.uk).
    code, text = await send(server, "x@evil.test", _message("Shop <orders@mail.shop.example.co.uk>"))
    assert (code, text.decode()) == (550, "5.7.1 Rejected by the DMARC policy of the From domain")


async def test_dns_failure_for_the_policy_defers(server: RunningServer) -> None:
    code, text = await send(server, "x@evil.test", _message("Someone <someone@broken.test>"))
    assert (code, text.decode()) == (
        451,
        "4.7.1 DMARC policy of the From domain unavailable, try again later",
    )


async def test_spf_fail_is_refused_at_mail_from(server: RunningServer) -> None:
    code, text = await send(server, "someone@strict.test", _message("someone@strict.test"))
    assert (code, text.decode()) == (
        550,
        "5.7.23 SPF validation failed: the sender's domain does not authorize this host",
    )


async def test_spf_dns_failure_is_deferred_at_mail_from(server: RunningServer) -> None:
    code, text = await send(server, "someone@spf-broken.test", _message("someone@spf-broken.test"))
    assert (code, text.decode()) == (451, "4.7.24 SPF validation error (DNS), try again later")


async def test_forged_authentication_results_for_us_are_removed(server: RunningServer) -> None:
    forged = (
        b"Authentication-Results: MX.TEST; dmarc=pass header.from=relaxed.test\r\n"
        b"Authentication-Results: elsewhere.example; spf=pass\r\n" + _message("a@relaxed.test")
    )
    code, text = await send(server, "a@evil.test", forged)
    assert code == 250, text
    _, body = await _queued(server, text)
    results = _auth_results(body)
    assert [r.split(";")[0] for r in results] == ["mx.test", "elsewhere.example"]
    assert "dmarc=fail" in results[0]  # p=none: delivered, and said as it is


async def test_forwarded_mail_passes_arc(server: RunningServer) -> None:
    """bank.test's signed message goes through list.test, which tags the subject (breaking the DKIM
    signature), seals it (ARC) and sends it on from its own envelope: DMARC fails, the ARC chain passes,
    and list.test is a trusted sealer, so the message is delivered."""
    original = dkimpy_sign(_message("CEO <ceo@bank.test>"), "sel", "bank.test", RSA)
    forwarded = original.replace(b"Subject: quarterly figures", b"Subject: [staff] quarterly figures")
    checked = b"Authentication-Results: list.test; dkim=pass header.d=bank.test; dmarc=pass\r\n" + forwarded
    sealed = arc_seal(checked, "arc", "list.test", LIST, "list.test")
    code, text = await send(server, "staff-bounces@list.test", sealed)
    assert code == 250, text
    _, body = await _queued(server, text)
    [ours, _theirs] = _auth_results(body)
    assert "arc=pass" in ours and "dmarc=fail" in ours
    assert b"X-Postier-Quarantine" not in body


async def test_a_slow_dns_server_delays_only_its_own_message(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    """_dmarc.slow.test never answers: that message waits for the resolver's time-out (then 451
    4.7.1), while another session's message goes through meanwhile."""
    dns = dns_server_factory(RECORDS, drop=["_dmarc.slow.test"])
    server = await start(
        start_server,
        dns,
        relay={"local_domains": ["example.test"], "trusted_networks": []},
        mailauth=MAILAUTH,
    )
    slow = asyncio.ensure_future(send(server, "x@evil.test", _message("Slow <someone@slow.test>")))
    code, text = await send(
        server, "ceo@evil.test", dkimpy_sign(_message("ceo@bank.test"), "sel", "bank.test", RSA)
    )
    assert code == 250, text
    assert not slow.done()
    code, text = await slow
    assert (code, text.decode()[:5]) == (451, "4.7.1")


async def test_trusted_clients_are_not_checked(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    server = await start(start_server, dns_server_factory(RECORDS), mailauth=MAILAUTH)  # 127.0.0.1 trusted
    forged = b"Authentication-Results: mx.test; dmarc=pass\r\n" + _message("CEO <ceo@bank.test>")
    code, text = await send(server, "ceo@strict.test", forged)
    assert code == 250, text
    queue_id, body = await _queued(server, text)
    assert _auth_results(body) == ["mx.test; dmarc=pass"]  # ours, as it came: nothing added or removed
    assert (await queued_envelope(server, queue_id)).client.mailauth == ""


async def test_results_are_kept_for_the_aggregate_reports(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    server = await start(
        start_server,
        dns_server_factory(RECORDS),
        relay={"local_domains": ["example.test"], "trusted_networks": []},
        mailauth={**MAILAUTH, "dmarc_reports": True},
    )
    signed = dkimpy_sign(_message("CEO <ceo@bank.test>"), "sel", "bank.test", RSA)
    assert (await send(server, "ceo@evil.test", signed))[0] == 250
    assert (await send(server, "ceo@evil.test", _message("CEO <ceo@bank.test>")))[0] == 550
    [period] = list((server.data_dir / "dmarc").glob("*.jsonl"))
    rows = [json.loads(line) for line in period.read_text().splitlines()]
    assert [(r["policy_domain"], r["dkim"], r["disposition"]) for r in rows] == [
        ("bank.test", "pass", "none"),
        ("bank.test", "fail", "reject"),
    ]


async def test_mail_forwarded_by_an_alias_to_another_domain_is_sealed(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """alias → far.test: the queued message carries our ARC set (sealed with mx.test's RSA key made by
    ``postier dkim keygen``), which validates through the DNS, with our results in its AAR."""
    dns = dns_server_factory(RECORDS)
    data_dir = tmp_path / "var0"
    keygen(_cli_config(tmp_path, data_dir, dns), dns, "mx.test", "rsa")
    aliases = tmp_path / "aliases"
    aliases.write_text("fwd: someone@far.test\n")
    server = await start(
        start_server,
        dns,
        relay={"local_domains": ["example.test"], "trusted_networks": []},
        local={"aliases": str(aliases)},
        mailauth=MAILAUTH,
    )
    assert server.data_dir == data_dir
    signed = dkimpy_sign(_message("CEO <ceo@bank.test>"), "sel", "bank.test", RSA)
    code, text = await asyncio.to_thread(_send, server.smtp_port, "ceo@evil.test", signed, "fwd@example.test")
    assert code == 250, text
    _, body = await _queued(server, text)
    assert body.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=mx.test;")
    [aar] = _fields(body, "ARC-Authentication-Results")
    assert aar.startswith("i=1; mx.test; spf=pass smtp.mailfrom=ceo@evil.test;") and "dmarc=pass" in aar
    result = await check_arc(DnsPythonResolver([(dns.host, dns.port)]), body)
    assert (result.result, result.sealers) == ("pass", ("mx.test",))


async def test_the_report_of_an_ended_period_is_mailed_at_start(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """A period that ended while the server was down is reported when it starts: one message to the
    rua address (the local postmaster here), whose gzip'd XML parsedmarc reads."""
    row = ReportRow(
        policy_domain="example.test",
        header_from="example.test",
        source_ip="192.0.2.1",
        envelope_from="example.test",
        disposition="none",
        dkim="pass",
        spf="fail",
        auth_dkim=(("example.test", "sel", "pass"),),
        auth_spf=("example.test", "mfrom", "fail"),
        published=(
            ("adkim", "r"),
            ("aspf", "r"),
            ("p", "none"),
            ("sp", "none"),
            ("pct", "100"),
            ("np", "none"),
        ),
        rua=("mailto:postmaster@example.test",),
    )
    reports = tmp_path / "var0" / "dmarc"
    reports.mkdir(parents=True)
    (reports / "86400.jsonl").write_text(row.to_json() + "\n" + row.to_json() + "\n")
    server = await start(
        start_server,
        dns_server_factory(RECORDS),
        mailauth={"dmarc_reports": True, "dmarc_report_org": "Test"},
    )
    for _ in range(100):
        listed = await server.app.queue.list_messages()
        if listed:
            break
        await asyncio.sleep(0.1)
    [summary] = [m for m in listed if m.sender == "postmaster@mx.test"]
    assert await wait_final(server, summary.id) == [RecipientState.DELIVERED]
    message = email.message_from_bytes(await queued_body(server, summary.id), policy=email.policy.default)
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "mx.test!example.test!86400!172799.xml.gz"
    report = parsedmarc.parse_report_file(part.get_content(), offline=True)["report"]
    assert report["report_metadata"]["org_name"] == "Test"
    assert [(r["source"]["ip_address"], r["count"]) for r in report["records"]] == [("192.0.2.1", 2)]
    assert not list(reports.glob("*.jsonl"))
