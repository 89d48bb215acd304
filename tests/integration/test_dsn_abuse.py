"""DSN reflection (issue 14, finding 3), end to end: a client on port 25 that is neither trusted nor
authenticated forges a sender and asks for notices; Postier delivers (or fails) locally and must not
turn itself into a reflector. Each DSN that is queued is read back from the real queue."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from postier.queue import QueueFilter, RecipientState
from tests.integration.conftest import StartServer
from tests.integration.harness import RunningServer, add_users
from tests.integration.mailcheck import queue_id_from_reply

pytestmark = pytest.mark.integration

FORGED = "victim@example.test"
STRANGER = {"local_domains": ["example.test"], "trusted_networks": ["127.0.0.2/32"]}


def _send(
    port: int,
    body: bytes,
    *,
    rcpt_options: list[str],
    mail_options: list[str] = (),
    source: str = "127.0.0.1",
) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as client:
        client.ehlo("bot.example.net")
        assert client.has_extn("dsn")  # advertised to everyone: the parameters are taken, not all honoured
        code, text = client.mail(FORGED, options=list(mail_options))
        assert code == 250, text
        code, text = client.rcpt("erin@example.test", options=rcpt_options)
        assert code == 250, text
        code, text = client.data(body)
        assert code == 250, text
        return text


async def _settled(server: RunningServer, qid: str) -> RecipientState:
    for _ in range(400):
        [r] = (await server.app.queue.get(qid)).recipients
        if r.state is not RecipientState.QUEUED:
            return r.state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{qid} still queued")


async def _bounces(server: RunningServer) -> list[bytes]:
    """The bodies of the DSNs in the queue (messages from <>). A DSN is queued before the outcome it
    reports is recorded, so once the recipient is settled, every DSN about it is here."""
    listed = await server.app.queue.list_messages(QueueFilter(sender=""))
    return [await server.app.queue.read_body(m.id) for m in listed]


async def _start(start_server: StartServer, **local: object) -> RunningServer:
    # Header sections of a few MB: over server.max_header_bytes (1 MiB) they would be refused at the
    # door (552 5.3.4) before any DSN; what is tested here is the DSN's own cap.
    server: RunningServer = await start_server(
        relay=STRANGER, local=local, server={"max_header_bytes": 8 << 20}
    )
    await asyncio.to_thread(add_users, server.data_dir, "erin@example.test", FORGED)
    return server


async def test_notify_success_and_delay_from_a_stranger_are_not_honoured(start_server: StartServer) -> None:
    server = await _start(start_server)
    body = b"Subject: hi\r\n\r\nhello\r\n"
    reply = await asyncio.to_thread(_send, server.smtp_port, body, rcpt_options=["NOTIFY=SUCCESS,DELAY"])
    assert await _settled(server, queue_id_from_reply(reply)) is RecipientState.DELIVERED
    assert await _bounces(server) == []  # before: a "delivered" notice to the forged sender
    # The same request from a trusted network is honoured.
    reply = await asyncio.to_thread(
        _send, server.smtp_port, body, rcpt_options=["NOTIFY=SUCCESS"], source="127.0.0.2"
    )
    assert await _settled(server, queue_id_from_reply(reply)) is RecipientState.DELIVERED
    [dsn] = await _bounces(server)
    assert b"Action: delivered" in dsn


@pytest.mark.parametrize(
    ("ret", "body"),
    [
        # RET=HDRS and a body with no blank line: before, every line came back as "headers".
        ("RET=HDRS", b"Subject: big\r\n" + b"x" * 900 + b"\r\n" + b"y: z\r\n" * 100_000),
        # Header-looking lines only (under server.max_header_bytes, 1 MiB): before, ~900 kB came back.
        (
            "RET=HDRS",
            b"Subject: big\r\n" + b"X-Filler: " + b"a" * 80 + b"\r\n" * 1 + b"X-More: 1\r\n" * 80_000,
        ),
        # RET=FULL over the limit: headers only, themselves capped.
        ("RET=FULL", b"Subject: big\r\n" + b"X-Filler: 1\r\n" * 50_000 + b"\r\n" + b"body\r\n" * 100_000),
    ],
)
async def test_the_returned_part_is_capped_whatever_the_body(
    start_server: StartServer, ret: str, body: bytes
) -> None:
    """The message does not fit erin's quota: 552 5.2.2 at delivery, a failure DSN to the (forged)
    sender. It must carry at most delivery.dsn_max_returned_bytes of the original."""
    server = await _start(start_server, quota_bytes=4000)
    reply = await asyncio.to_thread(_send, server.smtp_port, body, rcpt_options=[], mail_options=[ret])
    assert await _settled(server, queue_id_from_reply(reply)) is RecipientState.FAILED
    [dsn] = await _bounces(server)
    assert b"Action: failed" in dsn and b"Status: 5.2.2" in dsn
    assert len(dsn) < 100_000 + 8_000, len(dsn)
    assert b"Subject: big" in dsn and b"x" * 900 not in dsn and b"\r\nbody\r\n" not in dsn
