"""rspamd (a real one, tests/integration/rspamd_peer.py) and milters (a real OpenDKIM; a scripted
milter for the other actions) at the end of data, against a real server; what arrives in the mailbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import smtplib
import struct
import time
from pathlib import Path

import pytest

from postier.antispam.milter.protocol import encode
from tests.integration.conftest import StartServer
from tests.integration.fakemilter import FakeMilter
from tests.integration.harness import free_port
from tests.integration.milter_peer import OpenDkim
from tests.integration.rspamd_peer import GTUBE, RspamdServer

pytestmark = pytest.mark.integration

STRANGERS = {"trusted_networks": [], "local_domains": ["localhost", "example.test"]}
MAILBOX = ("mail", "example.test", "postmaster", "new")


def _send(
    port: int, subject: str, body: str = "Hello, an ordinary message.", sender: str = "a@example.org"
) -> tuple[int, bytes]:
    message = (
        f"Subject: {subject}\r\nFrom: <{sender}>\r\nTo: <postmaster@example.test>\r\n"
        f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{time.time_ns()}@example.org>\r\n"
        f"\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example")
        client.mail(sender)
        client.rcpt("postmaster@example.test")
        return client.data(message.encode())


async def _delivered(data_dir: Path, count: int = 1) -> list[bytes]:
    maildir = data_dir.joinpath(*MAILBOX)
    deadline = time.monotonic() + 30
    while len(files := sorted(maildir.glob("*")) if maildir.is_dir() else []) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(files)} of {count} messages delivered into {maildir}")
        await asyncio.sleep(0.05)
    return [f.read_bytes() for f in files]


def _header(message: bytes, name: str) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    return [
        line.split(":", 1)[1].strip()
        for line in unfolded.split("\r\n")
        if line.lower().startswith(name.lower() + ":")
    ]


# --- rspamd ------------------------------------------------------------------------------------------


async def test_rspamd_actions(start_server: StartServer, rspamd_server: RspamdServer) -> None:
    server = await start_server(relay=STRANGERS, antispam={"rspamd_url": rspamd_server.url})
    port = server.smtp_port
    assert await asyncio.to_thread(_send, port, "gtube", GTUBE) == (554, b"5.7.1 Message rejected as spam")
    code, text = await asyncio.to_thread(_send, port, "[soft-reject] later")
    assert (code, text) == (451, b"4.7.1 Message deferred, try again later")
    forged = "minutes of the meeting\r\nX-Spam: No\r\nX-Spam-Score: -100"  # fields a sender forged
    assert (await asyncio.to_thread(_send, port, forged))[0] == 250
    assert (await asyncio.to_thread(_send, port, "[rewrite-me] cheap pills"))[0] == 250
    assert (await asyncio.to_thread(_send, port, "[add-header] offer"))[0] == 250
    messages = await _delivered(server.data_dir, 3)
    by_subject = {_header(m, "Subject")[0]: m for m in messages}
    ham = by_subject["minutes of the meeting"]
    assert _header(ham, "X-Spam-Action") == ["no action"] and not _header(ham, "X-Spam")  # forged one gone
    assert len(_header(ham, "X-Spam-Score")) == 1
    assert re.fullmatch(r"-?\d+\.\d\d / 150\.00", _header(ham, "X-Spam-Score")[0])
    rewritten = by_subject["[SPAM] [rewrite-me] cheap pills"]
    assert _header(rewritten, "X-Spam") == ["Yes"] and len(_header(rewritten, "Subject")) == 1
    assert "POSTIER_REWRITE" in _header(rewritten, "X-Spam-Symbols")[0]
    assert _header(by_subject["[add-header] offer"], "X-Spam-Action") == ["add header"]


async def test_rspamd_unreachable_follows_the_failure_mode(start_server: StartServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    server = await start_server(relay=STRANGERS, antispam={"rspamd_url": url, "rspamd_failure": "tempfail"})
    code, text = await asyncio.to_thread(_send, server.smtp_port, "hello")
    assert code == 451 and text.startswith(b"4.3.0")
    server = await start_server(relay=STRANGERS, antispam={"rspamd_url": url, "rspamd_failure": "accept"})
    assert (await asyncio.to_thread(_send, server.smtp_port, "hello"))[0] == 250


# --- milters -----------------------------------------------------------------------------------------


def _body_hash(message: bytes) -> str:
    """RFC 6376 §3.4.4 relaxed body canonicalisation, sha256, base64."""
    body = message.split(b"\r\n\r\n", 1)[1]
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" \t") for line in body.split(b"\r\n")]
    canonical = b"\r\n".join(lines).rstrip(b"\r\n") + b"\r\n"
    return base64.b64encode(hashlib.sha256(canonical).digest()).decode()


async def test_opendkim_signs_through_the_milter(start_server: StartServer, opendkim: OpenDkim) -> None:
    server = await start_server(milter=[{"address": opendkim.address}])
    code, _ = await asyncio.to_thread(
        _send, server.smtp_port, "signed", "A body\r\n  to sign.", "me@example.test"
    )
    assert code == 250
    (message,) = await _delivered(server.data_dir)
    (signature,) = _header(message, "DKIM-Signature")
    tags = dict(t.strip().split("=", 1) for t in signature.split(";") if "=" in t)
    assert tags["d"] == "example.test" and tags["s"] == "test"
    assert tags["bh"].replace(" ", "") == _body_hash(message)  # the body OpenDKIM saw is the one queued


async def test_a_milter_that_is_down_tempfails_or_is_skipped(start_server: StartServer) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = await start_server(relay=STRANGERS, milter=[{"address": address, "connect_timeout_s": 2}])
    code, text = await asyncio.to_thread(_send, server.smtp_port, "hello")
    assert (code, text[:5]) == (451, b"4.3.0")
    server = await start_server(relay=STRANGERS, milter=[{"address": address, "failure": "accept"}])
    assert (await asyncio.to_thread(_send, server.smtp_port, "hello"))[0] == 250


def _index(i: int) -> bytes:
    return struct.pack("!I", i)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ((encode("r"),), (550, b"5.7.1 Message content rejected")),
        ((encode("t"),), (451, b"4.7.1 Message content deferred, try again later")),
        ((encode("y", "554 5.7.0 Virus found: EICAR"),), (554, b"5.7.0 Virus found: EICAR")),
        ((encode("y", "452 4.3.1 No room"),), (452, b"4.3.1 No room")),
    ],
)
async def test_milter_refusals(
    start_server: StartServer, fake_milter: FakeMilter, script: tuple[bytes, ...], expected: tuple[int, bytes]
) -> None:
    fake_milter.script = script
    server = await start_server(relay=STRANGERS, milter=[{"address": fake_milter.address}])
    assert await asyncio.to_thread(_send, server.smtp_port, "hello") == expected


async def test_milter_modifications_arrive_in_the_mailbox(
    start_server: StartServer, fake_milter: FakeMilter
) -> None:
    fake_milter.script = (
        encode("p"),
        encode("h", "X-Filtered", "yes"),
        encode("i", _index(0), "X-Folded", "one\n\ttwo"),
        encode("m", _index(1), "Subject", "[filtered] hello"),
        encode("m", _index(1), "Date", ""),  # deleted
        encode("b", b"A new body\r\n"),
        encode("c"),
    )
    server = await start_server(relay=STRANGERS, milter=[{"address": fake_milter.address, "name": "fake"}])
    assert (await asyncio.to_thread(_send, server.smtp_port, "hello"))[0] == 250
    (message,) = await _delivered(server.data_dir)
    assert _header(message, "Subject") == ["[filtered] hello"] and not _header(message, "Date")
    assert _header(message, "X-Filtered") == ["yes"] and _header(message, "X-Folded") == ["one two"]
    assert b"\r\nX-Folded: one\r\n\ttwo\r\n" in message
    assert message.endswith(b"\r\n\r\nA new body\r\n")
    commands = [c for c, _ in fake_milter.seen]
    assert "H" not in commands  # the filter declined HELO in the negotiation
    assert commands[:2] == ["O", "D"] and commands[-2:] == ["E", "Q"]
    assert ("R", b"<postmaster@example.test>\0") in fake_milter.seen


async def test_milter_discard_and_quarantine(start_server: StartServer, fake_milter: FakeMilter) -> None:
    server = await start_server(relay=STRANGERS, milter=[{"address": fake_milter.address}])
    fake_milter.script = (encode("d"),)
    assert (await asyncio.to_thread(_send, server.smtp_port, "dropped"))[0] == 250
    fake_milter.script = (encode("q", "looks odd"), encode("a"))
    code, text = await asyncio.to_thread(_send, server.smtp_port, "held")
    assert code == 250
    queue_id = text.decode().rsplit(" ", 1)[1]
    record = await server.app.queue.get(queue_id)  # held: kept in the queue for an operator
    assert record.status.value == "held"


async def test_milter_skip_ends_the_body_chunks(start_server: StartServer, fake_milter: FakeMilter) -> None:
    fake_milter.body_reply = "s"
    server = await start_server(relay=STRANGERS, milter=[{"address": fake_milter.address}])
    body = ("x" * 998 + "\r\n") * 200  # 200 kB: four chunks of 64 KiB
    assert (await asyncio.to_thread(_send, server.smtp_port, "big", body))[0] == 250
    assert [c for c, _ in fake_milter.seen].count("B") == 1
