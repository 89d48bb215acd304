"""The loopback peers of ``peers.py`` behave as documented (checked with smtplib)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import trustme

from tests.integration.peers import SmtpSink, server_context


def _send(
    host: str,
    port: int,
    rcpts: list[str],
    *,
    starttls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(host, port, timeout=20) as client:
        client.ehlo("client.test")
        if starttls is not None:
            client.starttls(context=starttls)
            client.ehlo("client.test")
        if login is not None:
            client.login(*login)
        return client.sendmail("a@client.test", rcpts, b"Subject: t\r\n\r\nhello\r\n")


async def test_smtp_sink_records_messages_and_connections(smtp_sink: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink()
    await asyncio.to_thread(_send, sink.address, sink.port, ["x@one.test", "y@two.test"])
    await asyncio.to_thread(_send, sink.address, sink.port, ["z@one.test"])
    first, second = await sink.wait_messages(2)
    assert sorted([first.recipients, second.recipients]) == [("x@one.test", "y@two.test"), ("z@one.test",)]
    assert first.sender == "a@client.test"
    assert first.body.endswith(b"hello\r\n")
    assert sink.connections() == 2
    assert any(c.upper().startswith("MAIL FROM:<A@CLIENT.TEST>") for c in sink.commands())


async def test_smtp_sink_soft_rejects_rcpt(smtp_sink: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink(reject_soft=["RCPT"])
    try:
        await asyncio.to_thread(_send, sink.address, sink.port, ["x@one.test"])
    except smtplib.SMTPRecipientsRefused as exc:
        assert exc.recipients["x@one.test"][0] == 450
    else:
        raise AssertionError("RCPT was not refused")


async def test_aiosmtpd_peer_starttls_auth_and_refusal(
    aiosmtpd_peer: Callable[..., Any], tls_ca: trustme.CA
) -> None:
    peer = await aiosmtpd_peer(
        starttls=server_context(tls_ca, "peer.test"),
        users={"alice": "s3cret"},
        require_auth=True,
        refuse_rcpt={"no@peer.test": "550 5.1.1 No such user"},
    )
    client = ssl.create_default_context()
    tls_ca.configure_trust(client)
    client.check_hostname = False
    refused = await asyncio.to_thread(
        _send,
        peer.address,
        peer.port,
        ["yes@peer.test", "no@peer.test"],
        starttls=client,
        login=("alice", "s3cret"),
    )
    assert refused == {"no@peer.test": (550, b"5.1.1 No such user")}
    (message,) = peer.messages
    assert message.recipients == ("yes@peer.test",)
    assert message.is_tls and message.auth_login == "alice"
    assert message.body.endswith(b"hello\r\n")
    assert peer.connections == 1
