"""Two Postiers in a chain, as on the Internet: swaks → Postier A (127.0.0.1) → the MX found through
the test DNS responder → Postier B on 127.0.0.N:25 → B's Maildir. And an MX that leads back to
Postier A itself, by another name, must fail instead of looping."""

from __future__ import annotations

import asyncio
import email
import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from postier.mail.envelope import Notify, Ret
from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer, add_users, free_port
from tests.integration.outbound import send, start, wait_final
from tests.integration.peers import loopback_address

pytestmark = pytest.mark.integration

BODY = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@far.test>\r\n"
    b"Subject: two hops\r\n"
    b"Message-ID: <chain-1@example.test>\r\n"
    b"\r\n"
    b"First line.\r\n"
    b".A line that starts with a dot, stuffed twice and unstuffed twice.\r\n"
    b"..Two dots.\r\n"
    b"\r\n"
    b"Last line.\r\n"
)


async def _maildir_files(directory: Path, count: int = 1) -> list[Path]:
    async with asyncio.timeout(30):
        while len(files := sorted(directory.glob("*")) if directory.is_dir() else []) < count:
            await asyncio.sleep(0.05)
    return files


def _swaks(port: int, data: Path, *extra: str) -> str:
    argv = ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test"]
    argv += ["--from", "alice@example.test", "--to", "bob@far.test", "--data", f"@{data}", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _postier_b(start_server: StartServer) -> tuple[RunningServer, str]:
    address = loopback_address(25)
    b: RunningServer = await start_server(
        server={"hostname": "mx.far.test"},
        relay={"local_domains": ["far.test"]},
        listener=[{"address": f"{address}:25", "mode": "smtp"}],
    )
    await asyncio.to_thread(add_users, b.data_dir, "bob@far.test")
    return b, address


async def test_swaks_to_postier_to_postier_maildir(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    b, b_address = await _postier_b(start_server)
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": [b_address]}})
    a = await start(start_server, dns)
    data = tmp_path / "message.eml"
    data.write_bytes(BODY + b".\r\n")  # swaks: with its own closing dot, the data is sent as it is
    await asyncio.to_thread(_swaks, a.smtp_port, data)
    (stored,) = await _maildir_files(b.data_dir / "mail" / "far.test" / "bob" / "new")
    raw = stored.read_bytes()
    assert raw.endswith(BODY)  # the exact bytes, after two rounds of dot-stuffing
    message = email.message_from_bytes(raw)
    assert message["Return-Path"] == "<alice@example.test>"
    first, second = message.get_all("Received") or []  # B's, then A's: newest on top
    assert first.startswith("from mx.test ([127.0.0.1])")  # A's EHLO name and address
    assert "by mx.far.test (Postier) with ESMTPS" in first and "(using TLSv1.3" in first  # STARTTLS
    assert second.startswith("from client.test ([127.0.0.1])")
    assert "by mx.test (Postier) with ESMTP " in second
    assert "for <bob@far.test>" in first and "for <bob@far.test>" in second
    (record,) = await a.app.queue.list_messages()
    assert await wait_final(a, record.id) == [RecipientState.DELIVERED]
    a_reply = (await a.app.queue.get(record.id)).recipients[0].last_reply or ""
    assert a_reply.startswith("250 2.0.0") and "queued as" in a_reply  # B's own reply, logged by A


def _send_with_dsn(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail("alice@example.test", options=["RET=HDRS", "ENVID=chain+2Benvid"])
        code, text = client.rcpt(
            "bob@far.test", options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob.original@far.test"]
        )
        assert code == 250, text
        client.data(BODY)


async def test_dsn_parameters_reach_a_dsn_capable_next_hop(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    """RET, ENVID, NOTIFY and ORCPT go on to a next hop that offers DSN (RFC 3461 §4), so it can
    report to the sender as asked; no "relayed" notice is due then."""
    b, b_address = await _postier_b(start_server)
    dns = dns_server_factory({"far.test": {"MX": ["10 mx.far.test"]}, "mx.far.test": {"A": [b_address]}})
    a = await start(start_server, dns)
    await asyncio.to_thread(_send_with_dsn, a.smtp_port)
    await _maildir_files(b.data_dir / "mail" / "far.test" / "bob" / "new")
    (summary,) = [m for m in await b.app.queue.list_messages() if m.sender == "alice@example.test"]
    envelope = (await b.app.queue.get(summary.id)).envelope
    (bob,) = envelope.recipients
    assert bob.notify == frozenset({Notify.SUCCESS, Notify.FAILURE})
    assert bob.orcpt == "rfc822;bob.original@far.test"
    assert (envelope.envid, envelope.ret) == ("chain+envid", Ret.HDRS)
    (sent,) = await a.app.queue.list_messages()
    assert await wait_final(a, sent.id) == [RecipientState.DELIVERED]
    assert len(await a.app.queue.list_messages()) == 1  # no "relayed" DSN: B speaks DSN


async def test_an_mx_that_is_this_server_by_another_name_fails_5_4_6(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    """The MX's name is not ours, but its address is where we listen: delivering there would hand the
    message back to ourselves, again and again (RFC 5321 §5.1). It fails with 554 5.4.6."""
    address = loopback_address(25)
    dns = dns_server_factory({"loop.test": {"MX": ["10 mail.loop.test"]}, "mail.loop.test": {"A": [address]}})
    listeners = [
        {"address": f"{address}:25", "mode": "smtp"},
        {"address": f"127.0.0.1:{free_port()}", "mode": "smtp"},  # last: the one `send` uses
    ]
    a = await start(start_server, dns, listener=listeners)
    qid = await send(a, "x@loop.test")
    assert await wait_final(a, qid) == [RecipientState.FAILED]
    reply = (await a.app.queue.get(qid)).recipients[0].last_reply or ""
    assert reply.startswith("554 5.4.6") and f"[{address}]:25" in reply
    others = [m for m in await a.app.queue.list_messages() if m.id != qid and m.sender]
    assert others == []  # the message never came back in
