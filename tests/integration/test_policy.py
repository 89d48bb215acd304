"""The policy pipeline against a real server: the example user check in a real `postier serve`;
a transaction keeps the policy of its MAIL FROM across a reload; the bare <Postmaster> is taken
from anyone; admission counts implicit-TLS connections before their handshake."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from postier.config import parse_config
from tests.integration.conftest import StartServer
from tests.integration.harness import PostierProcess, make_config

pytestmark = pytest.mark.integration

STRANGER = {"trusted_networks": []}  # 127.0.0.1 is a stranger: no relay, checks apply


def _send(port: int, rcpt: str, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail("someone@example.org")
        client.rcpt(rcpt)
        code, text = client.data(f"Subject: {subject}\r\nFrom: someone@example.org\r\n\r\nhi\r\n".encode())
        return code, text


async def _delivered(maildir: Path) -> list[Path]:
    deadline = time.monotonic() + 30
    while not (files := sorted(maildir.glob("*")) if maildir.is_dir() else []):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing delivered into {maildir}")
        await asyncio.sleep(0.05)
    return files


async def test_the_example_user_check_runs_in_a_real_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    check = {"module": "examples.postier_checks:SubjectFilter", "options": {"words": ["lottery"]}}
    process = PostierProcess(tmp_path, make_config(data_dir, relay=STRANGER, check=[check]))
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        code, text = await asyncio.to_thread(_send, port, "postmaster@example.test", "You won the LOTTERY")
        assert (code, text) == (550, b"5.7.1 Message content rejected")
        code, _ = await asyncio.to_thread(_send, port, "postmaster@example.test", "minutes of the meeting")
        assert code == 250
        files = await _delivered(data_dir / "mail" / "example.test" / "postmaster" / "new")
        assert b"minutes of the meeting" in files[0].read_bytes() and len(files) == 1
        assert "event=reject" in process.log() and "check=subject-filter" in process.log()
    finally:
        process.kill()


async def test_a_transaction_keeps_the_policy_of_its_mail_from_across_a_reload(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(relay={**STRANGER, "local_domains": ["localhost", "example.test"]})
    port, loop = server.smtp_port, asyncio.get_running_loop()

    async def reload() -> bool:
        new = make_config(server.data_dir, relay={**STRANGER, "local_domains": ["localhost"]})
        new["listener"] = [{"address": lc.address, "mode": lc.mode} for lc in server.config.listeners]
        return server.app.reload(parse_config(new))

    def transaction_across_reload() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            client.mail("someone@example.org")
            assert asyncio.run_coroutine_threadsafe(reload(), loop).result(timeout=30)
            during = client.rcpt("postmaster@example.test")[0]  # the old policy: a local domain
            client.rset()
            client.mail("someone@example.org")
            after = client.rcpt("postmaster@example.test")[0]  # the next transaction: the new one
            return during, after

    during, after = await asyncio.to_thread(transaction_across_reload)
    assert (during, after) == (250, 554)


async def test_the_bare_postmaster_is_taken_from_a_stranger(start_server: StartServer) -> None:
    server = await start_server(relay=STRANGER)

    def rcpt() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
            client.ehlo("client.example")
            client.mail("someone@example.org")
            return client.rcpt("<Postmaster>")[0], client.rcpt("someone@elsewhere.example")[0]

    assert await asyncio.to_thread(rcpt) == (250, 554)  # RFC 5321 §4.5.1; still no relay


async def test_unfinished_implicit_tls_handshakes_count_against_the_per_address_limit(
    start_server: StartServer,
) -> None:
    server = await start_server(server={"max_connections_per_ip": 2})
    port = server.ports["submissions"]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # no ClientHello
    try:
        deadline = time.monotonic() + 10
        while server.app.server.admission.total < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refusal = await asyncio.wait_for(reader.readline(), 10)  # plain text: before any handshake
        assert refusal.startswith(b"421 4.7.0")
        writer.close()
        for _, w in idle:
            w.close()
        while server.app.server.admission.total and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")  # slots free again
        writer.close()
    finally:
        for _, w in idle:
            w.close()


@pytest.mark.parametrize("action", ["tag", "quarantine"])
async def test_a_tagging_or_quarantining_check_adds_its_header_and_holds_when_asked(
    start_server: StartServer, action: str
) -> None:
    check = {
        "module": "examples.postier_checks:SubjectFilter",
        "options": {"words": ["lottery"], "action": action},
    }
    server = await start_server(relay=STRANGER, check=[check])
    code, text = await asyncio.to_thread(_send, server.smtp_port, "postmaster@example.test", "lottery win")
    assert code == 250
    qid = text.decode().rsplit(" ", 1)[-1]
    stored = await server.app.queue.get(qid)
    body = await server.app.queue.read_body(qid)
    header, _, _ = body.partition(b"\r\n\r\n")
    assert header.startswith(b"Received: ") and b"\r\nX-Subject-Filter: matched 'lottery'\r\n" in header
    if action == "quarantine":
        assert stored.status == "held"  # nothing delivered until an operator releases it
    else:
        await _delivered(server.data_dir / "mail" / "example.test" / "postmaster" / "new")
