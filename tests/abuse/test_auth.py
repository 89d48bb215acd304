"""Password guessing against a real ``postier serve`` (issue 14: 6 and 11): what a guesser gets checked,
what it costs the server, and whether the account's owner still gets in.

One server for the module. The guesser opens many sessions, brings each to the point of AUTH (TLS
and EHLO done) and then sends every AUTH at the same instant: before, the lockout was asked only
when AUTH began, so every session's password was checked (one guess per session); now it is asked
again when each check's turn comes."""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.abuse.conftest import AbuseServer, expect, start_abuse_server

pytestmark = pytest.mark.integration

OWNER, PASSWORD = "erin@example.test", "mailbox only"  # made by start_abuse_server
MAX_FAILURES, CONCURRENT, WAITING = 5, 2, 8


@pytest.fixture(scope="module")
def server(module_tmp: Path) -> Iterator[AbuseServer]:
    yield from start_abuse_server(
        module_tmp,
        server={"max_connections_per_ip": 200},
        auth={
            "max_failures": MAX_FAILURES,
            "max_concurrent_verifies": CONCURRENT,
            "max_waiting_verifies": WAITING,
            "max_account_delay_s": 2.0,
        },
    )


def _plain(user: str, password: str, authzid: str = "") -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"{authzid}\0{user}\0{password}".encode()) + b"\r\n"


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _ready_session(port: int, source: str) -> ssl.SSLSocket:
    """Implicit TLS, greeting and EHLO done: the next line is AUTH."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    sock = _context().wrap_socket(raw, server_hostname="mx.test")
    expect(sock, b"220")
    sock.sendall(b"EHLO guesser.example.net\r\n")
    expect(sock, b"250 ")
    return sock


def _guess_at_once(port: int, sessions: int, source: str, command: bytes) -> list[bytes]:
    """``sessions`` sessions, each sending ``command`` at the same instant; each one's reply line."""
    socks = [_ready_session(port, source) for _ in range(sessions)]
    barrier = threading.Barrier(sessions)

    def one(sock: ssl.SSLSocket) -> bytes:
        barrier.wait()
        sock.sendall(command)
        return _line(sock)

    try:
        with ThreadPoolExecutor(sessions) as pool:
            return list(pool.map(one, socks))
    finally:
        for sock in socks:
            sock.close()


def _line(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data.strip()


def _checked(log: str, source: str) -> int:
    """Password checks that failed, from the log: one ``auth … result=failed`` line per check."""
    sids = set(re.findall(rf"event=connect sid=(\S+) remote={re.escape(source)}:", log))
    failed = re.findall(r"event=auth sid=(\S+) .*result=failed", log)
    return sum(1 for sid in failed if sid in sids)


def test_parallel_guesses_are_not_all_checked(server: AbuseServer) -> None:
    """40 sessions from one address guess at once: at most max_failures + max_concurrent_verifies
    passwords are checked; the rest are answered 421 (locked out meanwhile) or 454 (too many waiting),
    unchecked. Meanwhile the owner, from another address, still logs in and sends."""
    fds_before = server.fds
    replies = _guess_at_once(server.port_of("submissions"), 40, "127.0.0.5", _plain(OWNER, "guess"))
    codes = [r[:9] for r in replies]
    assert set(codes) <= {b"535 5.7.8", b"421 4.7.0", b"454 4.7.0"}, codes
    checked = _checked(server.log(), "127.0.0.5")
    assert checked <= MAX_FAILURES + CONCURRENT, (checked, codes)  # before: 40
    assert codes.count(b"535 5.7.8") <= checked  # the check that locks, and any after it, answer 421
    # The owner, elsewhere: the account's failures delay its login (at most max_account_delay_s), never
    # refuse it.
    started = time.monotonic()
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        server.port_of("submissions"),
        context=_context(),
        source_address=("127.0.0.6", 0),
        timeout=60,
    ) as client:
        client.login(OWNER, PASSWORD)
        client.sendmail(OWNER, ["erin@example.test"], b"Subject: still here\r\n\r\nhi\r\n")
    assert time.monotonic() - started < 30
    assert server.settle(fds_at_most=fds_before + 2) <= fds_before + 2


def test_a_burst_beyond_the_waiting_room_gets_454_unchecked(server: AbuseServer) -> None:
    """From fresh addresses (one session each, so no per-address lockout), 30 AUTH at once: at most
    max_concurrent_verifies + max_waiting_verifies are checked, the others get 454 4.7.0 at once."""
    replies: list[bytes] = []
    sources = [f"127.0.1.{i}" for i in range(1, 31)]
    socks = [_ready_session(server.port_of("submissions"), s) for s in sources]
    barrier = threading.Barrier(len(socks))

    def one(sock: ssl.SSLSocket) -> bytes:
        barrier.wait()
        sock.sendall(_plain(f"nobody{sock.fileno()}@example.test", "guess"))
        return _line(sock)

    try:
        with ThreadPoolExecutor(len(socks)) as pool:
            replies = list(pool.map(one, socks))
    finally:
        for sock in socks:
            sock.close()
    codes = [r[:9] for r in replies]
    assert codes.count(b"535 5.7.8") <= CONCURRENT + WAITING, codes
    assert codes.count(b"454 4.7.0") >= len(codes) - (CONCURRENT + WAITING), codes


def test_authzid_of_another_user_is_refused(server: AbuseServer) -> None:
    """Finding 11: the right password with someone else's authorization identity is refused."""
    [reply] = _guess_at_once(
        server.port_of("submissions"), 1, "127.0.0.7", _plain(OWNER, PASSWORD, "postmaster@example.test")
    )
    assert reply == b"535 5.7.8 Authorization identity must be empty or the same as the login"
