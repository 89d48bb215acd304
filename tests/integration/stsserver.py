"""A real HTTPS server for MTA-STS policies (RFC 8461 §3.3) on 127.0.0.N:443, on the test's loop.

``server = await policy_server(ca, "dest.test", POLICY)`` serves ``https://mta-sts.dest.test/
.well-known/mta-sts.txt`` with a certificate from ``ca`` (trustme) for ``mta-sts.dest.test``.
``server.response`` is the raw HTTP response sent to every request (change it to serve another
policy, a redirect, a 404 …); ``server.requests`` counts requests; ``server.address`` is the
127.0.0.N to publish as the A record of ``mta-sts.dest.test`` in the test DNS responder.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from tests.integration.loopback import loopback_address

__all__ = ["PolicyServer", "http_response", "policy_server"]


def http_response(body: str, status: str = "200 OK", content_type: str = "text/plain") -> bytes:
    raw = body.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(raw)}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + raw


@dataclass
class PolicyServer:
    address: str
    response: bytes
    requests: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # request bodies (a TLS-RPT POST)
    server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.requests.append(lines[0])
            length = [
                int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"
            ]
            if length:
                self.bodies.append(await reader.readexactly(length[0]))
            writer.write(self.response)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def policy_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[PolicyServer] = []

    async def start(ca: trustme.CA, domain: str, policy: str, *, cert_for: str = "") -> PolicyServer:
        """Serves ``policy``; the certificate names ``cert_for`` (default ``mta-sts.DOMAIN``)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(cert_for or f"mta-sts.{domain}").configure_cert(context)
        server = PolicyServer(loopback_address(443), http_response(policy))
        server.server = await asyncio.start_server(server._handle, server.address, 443, ssl=context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()
