"""Connections an unauthenticated client can hold or make the server work for (issue 14: 4, 5, 10),
played against a real ``postier serve``. The attackers use their own loopback addresses
(127.0.0.2 …), the well-behaved client 127.0.0.1: per-IP limits apply to them as to any stranger."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.abuse.conftest import AbuseServer, good_client, start_abuse_server

pytestmark = pytest.mark.integration

PER_IP = 20


@pytest.fixture(scope="module")
def server(module_tmp: Path) -> Iterator[AbuseServer]:
    yield from start_abuse_server(
        module_tmp,
        server={"max_connections_per_ip": PER_IP},
        relay={"local_domains": ["example.test"], "trusted_networks": ["127.0.0.1/32"]},
        limits={"connections_per_minute_per_ip": 30},
    )


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_unfinished_tls_handshakes_are_counted_by_the_limits(server: AbuseServer) -> None:
    """Finding 4: on the implicit-TLS port a connection was admitted only after its handshake, so
    connections that never send a ClientHello were counted by no limit until descriptors ran out.
    200 of them from one address: the server holds at most max_connections_per_ip, and port 25
    still serves."""
    good_client(server.port)
    fds = server.fds
    sockets: list[socket.socket] = []
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                sockets.append(
                    socket.create_connection(
                        ("127.0.0.1", server.port_of("submissions")),
                        timeout=5,
                        source_address=("127.0.0.2", 0),
                    )
                )
        time.sleep(1.0)
        held = server.fds - fds
        assert held <= PER_IP + 5, f"{held} descriptors for one address"
        assert good_client(server.port) < 10
    finally:
        for sock in sockets:
            sock.close()
    assert server.settle(fds_at_most=fds + 2) <= fds + 2


def test_tls_handshake_floods_are_refused_before_the_handshake(server: AbuseServer) -> None:
    """Finding 4: full handshakes cost the server a signature each. With a limit of 30 new
    connections per minute per address, a flood of 100 gets about 30 handshakes; the rest are
    refused before any TLS work."""
    context = _tls_context()
    done = 0
    for _ in range(100):
        try:
            raw = socket.create_connection(
                ("127.0.0.1", server.port_of("submissions")), timeout=5, source_address=("127.0.0.3", 0)
            )
            with context.wrap_socket(raw) as tls:
                tls.recv(100)
                done += 1
        except (OSError, ssl.SSLError):
            pass
    assert done <= 32
    assert good_client(server.port) < 10


def test_postmaster_without_a_domain_is_accepted_from_anyone(server: AbuseServer) -> None:
    """Finding 10: RFC 5321 §4.5.1 — ``RCPT TO:<Postmaster>`` must be accepted, even from a client
    that may not relay."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=20, source_address=("127.0.0.4", 0)) as client:
        client.ehlo("stranger.example.net")
        assert client.mail("someone@example.net")[0] == 250
        code, text = client.rcpt("<Postmaster>")
        assert code == 250, text
        assert client.rcpt("<someone@elsewhere.example>")[0] == 554  # relaying still refused
        assert client.data(b"Subject: hello postmaster\r\n\r\nhi\r\n")[0] == 250
