"""Never an open relay: every classic relay trick, sent by swaks from an untrusted, unauthenticated
client to an `smtp` listener, is refused at RCPT — and a plain local recipient is still accepted."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import StartServer
from tests.integration.harness import add_users

pytestmark = pytest.mark.integration

TRICKS = {
    "plain remote": "user@remote.example",
    "percent hack": "user%remote.example@example.test",
    "quoted at": '"user@remote.example"@example.test',
    "double at": "user@remote.example@example.test",
    "source route": "@example.test:user@remote.example",
    "address literal": "user@[192.0.2.1]",
    "bang path": "remote.example!user@example.test",
    "suffix look-alike": "user@example.test.remote.example",
    "idn look-alike": "user@exаmple.test",  # Cyrillic а
    "uppercase remote": "USER@REMOTE.EXAMPLE",
    "trailing dot": "user@remote.example.",  # not RFC 5321 syntax: 501 5.1.3
    "local trailing dot": "user@example.test.",
}


async def _rcpt_reply(port: int, rcpt: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"127.0.0.1:{port}",
        "--to",
        rcpt,
        "--quit-after",
        "RCPT",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    transcript = out.decode(errors="replace").splitlines()
    sent = [i for i, line in enumerate(transcript) if line.startswith(" -> RCPT TO:")]
    assert sent, "\n".join(transcript)
    reply = transcript[sent[0] + 1]
    assert reply.startswith(("<-", "<**")), "\n".join(transcript)
    return reply.split(" ", 1)[1].strip()


@pytest.fixture
async def untrusted(start_server: StartServer) -> int:
    server = await start_server(relay={"trusted_networks": [], "local_domains": ["example.test"]})
    await asyncio.to_thread(add_users, server.data_dir, "bob@example.test")
    return server.smtp_port


@pytest.mark.parametrize("rcpt", TRICKS.values(), ids=TRICKS.keys())
async def test_relay_trick_is_refused(untrusted: int, rcpt: str) -> None:
    reply = await _rcpt_reply(untrusted, rcpt)
    assert reply.startswith(("554 5.7.1", "501 5.1.3", "553 5.6.7")), reply


@pytest.mark.parametrize("rcpt", ["bob@example.test", "bob@EXAMPLE.TEST", "Bob@Example.Test"])
async def test_local_recipients_are_accepted(untrusted: int, rcpt: str) -> None:
    assert (await _rcpt_reply(untrusted, rcpt)).startswith("250 2.1.5")
