"""Outbound delivery end to end: a real Postier (``start_server``) whose ``dns.nameservers`` is the
test DNS responder, delivering to aiosmtpd and smtp-sink peers on 127.0.0.N:25; bounces come back to
the local sender's Maildir and flufl.bounce reads them. The retry schedule is shrunk through
configuration (``outbound.FAST``). Relays and smarthosts: test_delivery_relays.py."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable, Sequence

import pytest

from postier.queue.model import QueueFilter, RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.mailcheck import queue_id_from_reply
from tests.integration.outbound import (
    ALICE,
    Peer,
    bounces,
    failed_rcpts,
    send,
    start,
    wait_bounces,
    wait_final,
)
from tests.integration.peers import AiosmtpdPeer, SmtpSink, loopback_address

pytestmark = pytest.mark.integration


async def test_mx_preference_fallback_and_implicit_mx(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    dead = loopback_address(25)  # nothing listens there: connection refused
    backup: AiosmtpdPeer = await aiosmtpd_peer()
    dns = dns_server_factory(
        {
            "pref.test": {"MX": ["10 mx1.pref.test", "20 mx2.pref.test"]},
            "mx1.pref.test": {"A": [peer.address]},
            "mx2.pref.test": {"A": [backup.address]},
            "fallback.test": {"MX": ["10 down.fallback.test", "20 up.fallback.test"]},
            "down.fallback.test": {"A": [dead]},
            "up.fallback.test": {"A": [backup.address]},
            "implicit.test": {"A": [peer.address]},
        }
    )
    server = await start(start_server, dns)
    qid = await send(server, "bob@pref.test", "carol@fallback.test", "dave@implicit.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED] * 3
    got = {r: p for p in (peer, backup) for m in p.messages for r in m.recipients}
    assert got == {"bob@pref.test": peer, "carol@fallback.test": backup, "dave@implicit.test": peer}
    assert bounces(server) == []


async def test_dns_failures_null_mx_nxdomain_servfail(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    dns = dns_server_factory({"null.test": {"MX": ["0 ."]}}, servfail=["broken.test"])
    server = await start(start_server, dns)
    qid = await send(server, "a@null.test", "b@nowhere.test", "c@broken.test")
    for _ in range(400):
        record = await server.app.queue.get(qid)
        if record.recipients[0].state.is_final and record.recipients[1].state.is_final:
            break
        await asyncio.sleep(0.05)
    null, nx, broken = record.recipients
    assert (null.state, (null.last_reply or "")[:10]) == (RecipientState.FAILED, "556 5.1.10")
    assert (nx.state, (nx.last_reply or "")[:9]) == (RecipientState.FAILED, "550 5.1.2")
    assert broken.state in (RecipientState.DEFERRED, RecipientState.QUEUED)
    dsns = await wait_bounces(server, 2)  # one per destination domain
    assert [failed_rcpts(d) for d in dsns] in (
        [{b"a@null.test"}, {b"b@nowhere.test"}],
        [{b"b@nowhere.test"}, {b"a@null.test"}],
    )
    assert "451 4.4.3" in ((await server.app.queue.get(qid)).recipients[2].last_reply or "")


async def test_greylisted_then_delivered_on_retry(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={"bob@grey.test": "451 4.7.1 Greylisted"})
    dns = dns_server_factory(
        {"grey.test": {"MX": ["10 mx.grey.test"]}, "mx.grey.test": {"A": [peer.address]}}
    )
    server = await start(start_server, dns)
    qid = await send(server, "bob@grey.test")
    for _ in range(400):
        record = await server.app.queue.get(qid)
        if record.recipients[0].attempts >= 1:
            break
        await asyncio.sleep(0.05)
    assert record.recipients[0].state is RecipientState.DEFERRED
    peer.handler.refuse_rcpt.clear()
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [message] = peer.messages
    assert message.recipients == ("bob@grey.test",)
    assert bounces(server) == []


async def test_partial_refusal_bounces_only_the_refused(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={"nobody@part.test": "550 5.1.1 No such user"})
    dns = dns_server_factory(
        {"part.test": {"MX": ["10 mx.part.test"]}, "mx.part.test": {"A": [peer.address]}}
    )
    server = await start(start_server, dns)
    qid = await send(server, "bob@part.test", "nobody@part.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED, RecipientState.FAILED]
    [dsn] = await wait_bounces(server, 1)
    assert failed_rcpts(dsn) == {b"nobody@part.test"}
    text = dsn.as_string()
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in text and "Remote-MTA: dns; mx.part.test" in text


async def test_expiry_bounces_and_notify_never_and_null_sender_do_not(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    refuse = {"late@slow.test": "451 4.3.2 Try again", "never@slow.test": "550 5.1.1 Gone"}
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={**refuse, "bounce@slow.test": "550 5.1.1 Gone"})
    dns = dns_server_factory(
        {"slow.test": {"MX": ["10 mx.slow.test"]}, "mx.slow.test": {"A": [peer.address]}}
    )
    server = await start(start_server, dns, delivery={"max_age_s": 1.0})
    late = await send(server, "late@slow.test")
    never = await send(server, "never@slow.test", rcpt_options=["NOTIFY=NEVER"])
    null = await send(server, "bounce@slow.test", sender="")
    for qid in (late, never, null):
        assert await wait_final(server, qid) == [RecipientState.FAILED]
    [dsn] = await wait_bounces(server, 1)
    assert failed_rcpts(dsn) == {b"late@slow.test"}
    assert "Status: 5.4.7" in dsn.as_string()
    late_reply = (await server.app.queue.get(late)).recipients[0].last_reply or ""
    assert late_reply.startswith("554 5.4.7 delivery time expired; last reply: 451 4.3.2")
    # Nothing more is on its way: a DSN is queued before the outcomes it reports are recorded, so
    # with every message final, every DSN there will be is in the queue — one.
    null_sender = await server.app.queue.list_messages(QueueFilter(sender=""))
    assert len([m for m in null_sender if m.id != null]) == 1  # the null sender's own message aside
    assert len(bounces(server)) == 1


async def test_delay_notice_once(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={"slow@delay.test": "451 4.4.5 Busy"})
    dns = dns_server_factory(
        {"delay.test": {"MX": ["10 mx.delay.test"]}, "mx.delay.test": {"A": [peer.address]}}
    )
    server = await start(start_server, dns, delivery={"delay_notice_s": 0.5})
    qid = await send(server, "slow@delay.test", rcpt_options=["NOTIFY=DELAY,FAILURE"])
    [notice] = await wait_bounces(server, 1)
    assert "Action: delayed" in notice.as_string() and "Will-Retry-Until:" in notice.as_string()
    peer.handler.refuse_rcpt.clear()
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert len(bounces(server)) == 1


async def test_a_bounce_to_an_alias_reaches_its_mailbox_and_an_mx_loop_fails(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    dns = dns_server_factory({"loop.test": {"MX": ["10 mx.test"]}})  # mx.test is our server.hostname
    server = await start(start_server, dns)
    (server.data_dir / "aliases").write_text("sales: alice\n")
    qid = await send(server, "x@loop.test", sender="sales@example.test")
    assert await wait_final(server, qid) == [RecipientState.FAILED]
    assert ((await server.app.queue.get(qid)).recipients[0].last_reply or "").startswith("554 5.4.6")
    [dsn] = await wait_bounces(server, 1)  # expanded to alice's mailbox, as mail from outside would be
    assert failed_rcpts(dsn) == {b"x@loop.test"} and dsn["To"] == "<sales@example.test>"


async def test_dsn_envid_orcpt_ret_hdrs_and_relayed(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    """The sender's ENVID and ORCPT come back in the DSN (RFC 3464 §2.2.1, §2.3.1); RET=HDRS returns
    the headers only (RFC 3461 §4.3); NOTIFY=SUCCESS to a next hop without DSN gives "relayed"."""
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt={"nobody@dsn.test": "550 5.1.1 No such user"})
    dns = dns_server_factory({"dsn.test": {"MX": ["10 mx.dsn.test"]}, "mx.dsn.test": {"A": [peer.address]}})
    server = await start(start_server, dns)
    qid = queue_id_from_reply(
        await asyncio.to_thread(_send_dsn, server.smtp_port, mail_options=["RET=HDRS", "ENVID=QQ+2B314"])
    )
    assert await wait_final(server, qid) == [RecipientState.FAILED, RecipientState.DELIVERED]
    [dsn] = await wait_bounces(server, 1)  # one DSN for the transaction: failed and relayed
    assert failed_rcpts(dsn) == {b"lost@example.test"}  # flufl.bounce reads the address the sender used
    text = dsn.as_string()
    text = dsn.as_string()
    assert "Original-Envelope-Id: QQ+314" in text  # ENVID=QQ+2B314 decoded from xtext, as Postfix does
    assert "Original-Recipient: rfc822;lost@example.test" in text
    assert "Final-Recipient: rfc822; nobody@dsn.test" in text and "Action: failed" in text
    assert "Original-Recipient: rfc822;bob.original@example.test" in text and "Action: relayed" in text
    [returned] = [p for p in dsn.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert "Subject: outbound" in returned.as_string() and "Hello there" not in text
    [message] = peer.messages
    assert message.recipients == ("bob@dsn.test",)


def _send_dsn(port: int, *, mail_options: Sequence[str]) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(ALICE, options=list(mail_options))[0] == 250
        for rcpt, orcpt, notify in (
            ("nobody@dsn.test", "lost@example.test", "FAILURE"),
            ("bob@dsn.test", "bob.original@example.test", "SUCCESS"),
        ):
            code, text = client.rcpt(rcpt, options=[f"NOTIFY={notify}", f"ORCPT=rfc822;{orcpt}"])
            assert code == 250, text
        return client.data(b"From: alice@example.test\r\nSubject: outbound\r\n\r\nHello there\r\n")[1]


async def test_smtputf8_message_to_a_peer_without_smtputf8_bounces_5_6_7(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    """RFC 6531 §3.5: a message that needs SMTPUTF8 is not sent to a server without it: 553 5.6.7,
    bounced to the sender, and nothing reaches the peer."""
    peer: AiosmtpdPeer = await aiosmtpd_peer(smtputf8=False)
    dns = dns_server_factory({"utf.test": {"MX": ["10 mx.utf.test"]}, "mx.utf.test": {"A": [peer.address]}})
    server = await start(start_server, dns)
    qid = await send(server, "josé@utf.test", mail_options=["SMTPUTF8"])
    assert await wait_final(server, qid) == [RecipientState.FAILED]
    reply = (await server.app.queue.get(qid)).recipients[0].last_reply or ""
    assert reply.startswith("553 5.6.7")
    await wait_bounces(server, 1)
    [raw] = [f.read_bytes() for f in (server.data_dir / "mail/example.test/alice/new").iterdir()]
    # RFC 6533: a report about a UTF-8 address is message/global-delivery-status, in UTF-8.
    assert b"report-type=global-delivery-status" in raw
    assert "Final-Recipient: utf-8; josé@utf.test\r\n".encode() in raw and b"Status: 5.6.7\r\n" in raw
    assert peer.messages == [] and peer.connections == 1


async def test_mx_hosts_without_addresses(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    """An MX host that has no address: bounced (550 5.4.4, as Postfix) only when no other MX answers;
    a backup that takes the mail delivers it; a backup that is down defers it."""
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    down = loopback_address(25)  # nothing listens there
    dns = dns_server_factory(
        {
            "only.test": {"MX": ["10 ghost.only.test"]},  # ghost.only.test does not exist
            "backup.test": {"MX": ["10 ghost.backup.test", "20 mx2.backup.test"]},
            "mx2.backup.test": {"A": [peer.address]},
            "down.test": {"MX": ["10 ghost.down.test", "20 mx2.down.test"]},
            "mx2.down.test": {"A": [down]},
            "noaddr.test": {"MX": ["10 txt.noaddr.test"]},
            "txt.noaddr.test": {"TXT": ["no A, no AAAA: NODATA"]},
        }
    )
    server = await start(start_server, dns)
    qid = await send(server, "a@only.test", "b@backup.test", "c@down.test", "d@noaddr.test")
    for _ in range(400):
        record = await server.app.queue.get(qid)
        if all(r.attempts >= 1 for r in record.recipients):
            break
        await asyncio.sleep(0.05)
    only, backup, down_rcpt, noaddr = record.recipients
    assert (only.state, (only.last_reply or "")[:9]) == (RecipientState.FAILED, "550 5.4.4")
    assert "ghost.only.test" in (only.last_reply or "")
    assert backup.state is RecipientState.DELIVERED and peer.messages[0].recipients == ("b@backup.test",)
    assert (down_rcpt.state, (down_rcpt.last_reply or "")[:9]) == (RecipientState.DEFERRED, "421 4.4.1")
    assert (noaddr.state, (noaddr.last_reply or "")[:9]) == (RecipientState.FAILED, "550 5.4.4")
    dsns = await wait_bounces(server, 2)  # one per destination domain
    assert set().union(*(failed_rcpts(d) for d in dsns)) == {b"a@only.test", b"d@noaddr.test"}


async def test_a_hundred_recipients_many_transactions_one_bounce(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
) -> None:
    """100 recipients of one domain go in transactions of 30; the 50 the server refuses are
    reported in one DSN, not one per transaction."""
    refused = {f"r{i}@many.test": "550 5.1.1 No such user" for i in range(0, 100, 2)}
    peer: AiosmtpdPeer = await aiosmtpd_peer(refuse_rcpt=refused)
    dns = dns_server_factory(
        {"many.test": {"MX": ["10 mx.many.test"]}, "mx.many.test": {"A": [peer.address]}}
    )
    server = await start(start_server, dns, delivery={"max_recipients_per_transaction": 30})
    qid = await send(server, *(f"r{i}@many.test" for i in range(100)))
    got = await wait_final(server, qid)
    assert got == [RecipientState.FAILED, RecipientState.DELIVERED] * 50
    assert sorted(len(m.recipients) for m in peer.messages) == [5, 15, 15, 15]  # 30, 30, 30, 10: half taken
    [dsn] = await wait_bounces(server, 1)
    assert failed_rcpts(dsn) == {k.encode() for k in refused}


async def test_connection_reuse_through_the_scheduler(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    smtp_sink: Callable[..., SmtpSink],
) -> None:
    """Messages to one MX one after the other ride one connection (counted at smtp-sink); after
    reuse_max_messages it is closed and a new one opened."""
    sink = smtp_sink()
    dns = dns_server_factory(
        {"reuse.test": {"MX": ["10 mx.reuse.test"]}, "mx.reuse.test": {"A": [sink.address]}}
    )
    server = await start(start_server, dns, delivery={"reuse_idle_s": 60.0, "reuse_max_messages": 3})
    for i in range(4):
        qid = await send(server, f"u{i}@reuse.test")
        assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert len(await sink.wait_messages(4)) == 4
    assert sink.connections() == 2  # three messages on the first, the fourth on a second
