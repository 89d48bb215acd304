"""LMTP delivery end to end (RFC 2033): swaks → a running Postier (``local.lmtp``) → a real Dovecot.

example.test is delivered by LMTP; localhost stays in Maildir, so the local sender's bounces can be
read back (flufl.bounce). Postier checks example.test's recipients at RCPT against its own user
store (docs/delivery.md, "LMTP domains"); a recipient Postier knows but Dovecot does not is refused
by Dovecot per recipient and bounced, while the other recipient of the same transaction is
delivered. Also over TCP (Dovecot on 127.0.0.N), and with Dovecot down: deferred 4.4.1, delivered
once it is back."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flufl.bounce import scan_message

from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dovecot import DovecotLmtp
from tests.integration.harness import RunningServer, add_users
from tests.integration.loopback import loopback_address
from tests.integration.mailcheck import queue_id_from_reply

pytestmark = pytest.mark.integration

SENDER = "sender@localhost"  # a Maildir user: bounces land in data_dir/mail/localhost/sender
FAST = {"retry_base_s": 0.3, "retry_cap_s": 0.3, "max_age_s": 60.0, "delay_notice_s": 0.0}
BODY = "Hello, Dovecot.\n.a line that starts with a dot (stuffed on both hops)\nlast line"


async def _swaks(port: int, *rcpts: str) -> tuple[int, str]:
    to = ",".join(rcpts)
    proc = await asyncio.create_subprocess_exec(
        *("swaks", "--server", f"127.0.0.1:{port}", "--from", SENDER, "--to", to),
        *("--header", "Subject: over lmtp", "--body", BODY),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def _queue_id(swaks_output: str) -> str:
    return swaks_output.rsplit("Ok: queued as ", 1)[1].split()[0]


async def _start(start_server: StartServer, lmtp: str, *users: str, **local: Any) -> RunningServer:
    server: RunningServer = await start_server(local={"lmtp": {"example.test": lmtp}, **local}, delivery=FAST)
    await asyncio.to_thread(add_users, server.data_dir, SENDER, *users)
    return server


async def _wait(server: RunningServer, qid: str, done: Callable[[list[RecipientState]], bool]) -> list[Any]:
    for _ in range(600):
        record = await server.app.queue.get(qid)
        if done([r.state for r in record.recipients]):
            return list(record.recipients)
        await asyncio.sleep(0.05)
    pytest.fail(f"{qid}: {await server.app.queue.get(qid)}")


def _all_final(states: list[RecipientState]) -> bool:
    return all(s.is_final for s in states)


async def _bounces(server: RunningServer, count: int) -> list[email.message.Message]:
    new = server.data_dir / "mail" / "localhost" / "sender" / "new"
    for _ in range(400):
        files = sorted(new.iterdir()) if new.is_dir() else []
        if len(files) >= count:
            return [email.message_from_bytes(f.read_bytes(), policy=email.policy.compat32) for f in files]
        await asyncio.sleep(0.05)
    pytest.fail(f"expected {count} bounce(s) in {new}")


def _body_of(stored: bytes) -> bytes:
    """The body Dovecot stored (LF line endings in its Maildir), after the header block."""
    return stored.split(b"\n\n", 1)[1]


async def test_one_transaction_one_delivered_one_refused_and_bounced(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["alice@example.test"])
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "alice@example.test", "carol@example.test")
    sessions = lmtp.log().count("Connect from local")  # the fixture's readiness probes
    rc, out = await _swaks(server.smtp_port, "alice@example.test", "carol@example.test")
    assert rc == 0, out
    qid = _queue_id(out)
    alice, carol = await _wait(server, qid, _all_final)
    assert (alice.state, alice.last_reply[:9]) == (RecipientState.DELIVERED, "250 2.0.0")
    assert (carol.state, carol.last_reply[:9]) == (RecipientState.FAILED, "550 5.1.1")

    [stored] = lmtp.delivered("alice@example.test")
    body = await server.app.queue.read_body(qid)
    assert _body_of(stored) == body.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
    assert b"\n.a line that starts with a dot (stuffed on both hops)\n" in _body_of(stored)
    assert b"Return-Path: <sender@localhost>" in stored
    assert lmtp.delivered("carol@example.test") == []
    # One LMTP session, one transaction: MAIL, both RCPTs, one DATA (Dovecot logs each session).
    log = lmtp.log()
    assert log.count("Connect from local") == sessions + 1, log

    [dsn] = await _bounces(server, 1)
    assert dsn["From"].startswith("Mail Delivery System") or "MAILER-DAEMON" in dsn["From"]
    assert scan_message(dsn) == {b"carol@example.test"}
    assert b"550 5.1.1" in dsn.as_bytes()


async def test_lmtp_over_tcp(start_server: StartServer, dovecot: Callable[..., DovecotLmtp]) -> None:
    lmtp = dovecot(users=["alice@example.test", "bob@example.test"], tcp=loopback_address(24))
    server = await _start(start_server, lmtp.tcp_address, "alice@example.test", "bob@example.test")
    rc, out = await _swaks(server.smtp_port, "alice+tag@example.test", "bob@example.test")
    assert rc == 0, out
    alice, bob = await _wait(server, _queue_id(out), _all_final)
    assert [alice.state, bob.state] == [RecipientState.DELIVERED] * 2
    assert alice.last_reply.startswith("250 2.0.0")
    assert "Connect from 127.0.0." in lmtp.log()  # over TCP, not the unix socket
    [a] = lmtp.delivered("alice@example.test")
    [b] = lmtp.delivered("bob@example.test")
    assert _body_of(a) == _body_of(b) and b"Hello, Dovecot.\n" in _body_of(a)
    # The tag is resolved by Postier: Dovecot is given the mailbox, the original is the ORCPT.
    assert (str(alice.recipient.address), alice.recipient.orcpt) == (
        "alice@example.test",
        "rfc822;alice+tag@example.test",
    )


async def test_unknown_recipient_of_an_lmtp_domain_is_refused_at_rcpt(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["alice@example.test", "dora@example.test"])
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "alice@example.test")
    # dora exists in Dovecot only: Postier's user store decides, so she is refused too.
    for rcpt in ("nobody@example.test", "dora@example.test"):
        rc, out = await _swaks(server.smtp_port, rcpt)
        assert rc != 0 and "<** 550 5.1.1 No such user here" in out, out
    assert await server.app.queue.list_messages() == []


async def test_catch_all_of_an_lmtp_domain_goes_to_one_mailbox(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["info@example.test", "dora@example.test"])
    catch_all = {"example.test": "info@example.test"}
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "info@example.test", catch_all=catch_all)
    # The documented alternative for users that live only in Dovecot: a catch-all accepts any
    # name, and its mail goes to the catch-all's mailbox (not to dora's own: Postier rewrites).
    rc, out = await _swaks(server.smtp_port, "dora@example.test")
    assert rc == 0, out
    [dora] = await _wait(server, _queue_id(out), _all_final)
    assert str(dora.recipient.address) == "info@example.test"
    assert dora.recipient.orcpt == "rfc822;dora@example.test"
    assert dora.state is RecipientState.DELIVERED
    assert len(lmtp.delivered("info@example.test")) == 1
    assert lmtp.delivered("dora@example.test") == []


async def test_lmtp_server_down_defers_441_then_delivers(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["alice@example.test"], tcp=loopback_address(24))
    server = await _start(start_server, lmtp.tcp_address, "alice@example.test")
    lmtp.stop()
    rc, out = await _swaks(server.smtp_port, "alice@example.test")
    assert rc == 0, out  # accepted: the user is known, the LMTP server's state is delivery's business
    qid = _queue_id(out)

    def tried(states: list[RecipientState]) -> bool:
        return states == [RecipientState.DEFERRED]

    [alice] = await _wait(server, qid, tried)
    assert alice.last_reply.startswith("421 4.4.1 "), alice.last_reply
    assert lmtp.delivered("alice@example.test") == []
    await asyncio.to_thread(lmtp.start)
    [alice] = await _wait(server, qid, _all_final)
    assert alice.state is RecipientState.DELIVERED
    assert len(lmtp.delivered("alice@example.test")) == 1
    assert await _bounces_now(server) == 0


async def test_lmtp_unix_socket_down_defers_then_delivers(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["alice@example.test"])
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "alice@example.test")
    lmtp.stop()
    Path(lmtp.lmtp_path).unlink(missing_ok=True)  # as after a clean shutdown or before the first start
    rc, out = await _swaks(server.smtp_port, "alice@example.test")
    assert rc == 0, out
    qid = _queue_id(out)
    [alice] = await _wait(server, qid, lambda s: s == [RecipientState.DEFERRED])
    assert alice.last_reply.startswith("421 4.4.1 "), alice.last_reply
    await asyncio.to_thread(lmtp.start)
    [alice] = await _wait(server, qid, _all_final)
    assert alice.state is RecipientState.DELIVERED
    assert len(lmtp.delivered("alice@example.test")) == 1


async def _bounces_now(server: RunningServer) -> int:
    new = server.data_dir / "mail" / "localhost" / "sender" / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


async def test_per_recipient_replies_after_data(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    # Both RCPTs are accepted by Dovecot; after DATA it answers once per recipient (RFC 2033 §4.2):
    # 250 for alice, a quota refusal for bob, whose mailbox is too small for the message.
    lmtp = dovecot(users=["alice@example.test", "bob@example.test"], quota={"bob@example.test": "100B"})
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "alice@example.test", "bob@example.test")
    rc, out = await _swaks(server.smtp_port, "alice@example.test", "bob@example.test")
    assert rc == 0, out
    alice, bob = await _wait(server, _queue_id(out), _all_final)
    assert alice.state is RecipientState.DELIVERED
    assert (bob.state, bob.last_reply[:9]) == (RecipientState.FAILED, "552 5.2.2"), bob.last_reply
    assert len(lmtp.delivered("alice@example.test")) == 1 and lmtp.delivered("bob@example.test") == []
    [dsn] = await _bounces(server, 1)
    assert scan_message(dsn) == {b"bob@example.test"}


async def test_every_recipient_refused_by_dovecot_then_the_next_message_delivers(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    lmtp = dovecot(users=["alice@example.test"])
    server = await _start(start_server, f"unix:{lmtp.lmtp_path}", "alice@example.test", "carol@example.test")
    rc, out = await _swaks(server.smtp_port, "carol@example.test")  # Dovecot refuses its only RCPT
    assert rc == 0, out
    [carol] = await _wait(server, _queue_id(out), _all_final)
    assert (carol.state, carol.last_reply[:9]) == (RecipientState.FAILED, "550 5.1.1")
    rc, out = await _swaks(server.smtp_port, "alice@example.test")  # the next one (a reused connection)
    assert rc == 0, out
    [alice] = await _wait(server, _queue_id(out), _all_final)
    assert alice.state is RecipientState.DELIVERED
    assert len(lmtp.delivered("alice@example.test")) == 1
    [dsn] = await _bounces(server, 1)
    assert scan_message(dsn) == {b"carol@example.test"}


def _send_smtputf8(port: int, rcpt: str, body: bytes) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, text = client.mail(SENDER, options=["SMTPUTF8"])
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        code, text = client.data(body)
        assert code == 250, text
        return text


async def test_smtputf8_message_with_ascii_envelope_and_headers_reaches_dovecot(
    start_server: StartServer, dovecot: Callable[..., DovecotLmtp]
) -> None:
    """Dovecot's LMTP does not offer SMTPUTF8. A client must use SMTPUTF8 to write a U-label
    recipient, but after expansion the envelope is ASCII (the A-label mailbox) and so is the message:
    nothing needs SMTPUTF8 (RFC 6531 §3.4), so it must be delivered, not accepted and then bounced."""
    lmtp = dovecot(users=["alice@xn--bcher-kva.example"])
    server: RunningServer = await start_server(
        relay={"local_domains": ["localhost", "bücher.example"]},
        local={"lmtp": {"bücher.example": f"unix:{lmtp.lmtp_path}"}},
        delivery=FAST,
    )
    await asyncio.to_thread(add_users, server.data_dir, SENDER, "alice@bücher.example")
    body = b"To: alice@xn--bcher-kva.example\r\nSubject: hello\r\n\r\nall ASCII\r\n"
    reply = await asyncio.to_thread(_send_smtputf8, server.smtp_port, "alice@bücher.example", body)
    [alice] = await _wait(server, queue_id_from_reply(reply), _all_final)
    assert alice.state is RecipientState.DELIVERED, alice.last_reply
    assert len(lmtp.delivered("alice@xn--bcher-kva.example")) == 1
