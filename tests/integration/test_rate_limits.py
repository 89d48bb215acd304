"""Rate limits seen from real clients: per-IP connections and messages, per-user messages, and the
exemption of trusted networks."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from tests.integration.conftest import StartServer

pytestmark = pytest.mark.integration


def _send(port: int) -> tuple[int, bytes]:
    """One message; the RCPT reply when it is refused, else the end-of-data reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        code, text = client.rcpt("postmaster@example.test")
        if code != 250:
            return code, text
        return client.data(b"Subject: rate\r\n\r\nx\r\n")


async def test_messages_per_hour_per_ip(start_server: StartServer) -> None:
    server = await start_server(relay={"trusted_networks": []}, limits={"messages_per_hour_per_ip": 2})
    results = [await asyncio.to_thread(_send, server.smtp_port) for _ in range(3)]
    assert [code for code, _ in results] == [250, 250, 450]
    assert results[2][1].startswith(b"4.7.1")


async def test_trusted_networks_are_exempt_by_default(start_server: StartServer) -> None:
    server = await start_server(limits={"messages_per_hour_per_ip": 1, "connections_per_minute_per_ip": 1})
    results = [await asyncio.to_thread(_send, server.smtp_port) for _ in range(3)]
    assert [code for code, _ in results] == [250, 250, 250]


async def test_connections_per_minute_per_ip(start_server: StartServer) -> None:
    server = await start_server(relay={"trusted_networks": []}, limits={"connections_per_minute_per_ip": 2})
    greetings = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.smtp_port)
        greetings.append((await reader.readline()).decode())
        writer.close()
    assert greetings[0].startswith("220 ") and greetings[1].startswith("220 ")
    assert greetings[2].startswith("421 4.7.0")
