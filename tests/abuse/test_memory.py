"""Memory and time an unauthenticated client can make the server spend (issue 14: 1, 2, 7 and the
data deadline), played against a real ``postier serve``.

One server for the module, with a short data timeout (2 s) and a data rate floor of 1000 octets/s,
so the trickling client is cut in seconds; the other clients send at full speed, which neither
bound touches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.abuse.conftest import (
    AbuseServer,
    Sampler,
    expect,
    good_client,
    raw_session,
    read_replies,
    start_abuse_server,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
TRANSACTION = b"MAIL FROM:<bot@example.net>\r\nRCPT TO:<erin@example.test>\r\n"


@pytest.fixture(scope="module")
def server(module_tmp: Path) -> Iterator[AbuseServer]:
    yield from start_abuse_server(
        module_tmp,
        server={
            "data_timeout_s": 2.0,
            "min_data_bytes_per_s": 1000.0,
            "max_connections_per_ip": 200,
            "bdat_max_small_chunks": 1000,  # to play 1000 per session (the default is 100)
            "error_delay_s": 0.2,
        },
    )


def _warm(server: AbuseServer) -> int:
    """A few messages first (imports, the queue's first batches), then the RSS baseline, KiB."""
    for _ in range(3):
        good_client(server.port)
    server.wait_delivered()
    return server.rss_kib


def _bdat_zero(port: int, count: int) -> list[bytes]:
    with raw_session(port) as sock:
        sock.sendall(TRANSACTION)
        expect(sock, b"250 2.1.5")
        sock.sendall(b"BDAT 0\r\n" * count + b"QUIT\r\n")
        return read_replies(sock, count + 1)


def test_100k_bdat_0_cost_no_memory(server: AbuseServer) -> None:
    """Finding 1: a loop of ``BDAT 0`` grew a list without bound. 100 sessions x 1000 (the most
    small chunks a message may have): RSS grows by less than 5 MB."""
    before = _warm(server)
    fds = server.fds
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _bdat_zero(server.port, 1000), range(100)))
    for replies in results:
        assert replies.count(b"250 2.0.0 0 octets received") == 1000, replies[-3:]
    assert server.rss_kib - before < 5 * 1024
    assert server.settle(fds_at_most=fds) <= fds
    good_client(server.port)


def test_a_bdat_0_flood_is_cut_after_the_small_chunk_cap(server: AbuseServer) -> None:
    """Finding 1: past 1000 small chunks the message fails (552 5.3.4) and each further chunk counts
    as an error: max_errors (10) ends the session with 421, the last five errors each 0.2 s late
    (``error_delay_s``: a tarpit)."""
    started = time.monotonic()
    with raw_session(server.port) as sock:
        sock.sendall(TRANSACTION)
        expect(sock, b"250 2.1.5")
        sock.sendall(b"BDAT 0\r\n" * 5000)
        replies = read_replies(sock, 5000)
        assert sock.recv(100) == b""  # closed
    assert replies[:1000] == [b"250 2.0.0 0 octets received"] * 1000
    assert replies[1000].startswith(b"552 5.3.4")
    assert replies[-1].startswith(b"421 4.7.0") and len(replies) == 1011
    assert time.monotonic() - started > 1.0
    good_client(server.port)


def _big_message(size: int) -> bytes:
    line = b"y" * 998 + b"\r\n"
    return b"From: <bot@example.net>\r\nSubject: big\r\n\r\n" + line * (size // len(line))


def _send_big(port: int, body: bytes, *, bdat: bool) -> str:
    with raw_session(port) as sock:
        sock.sendall(TRANSACTION)
        expect(sock, b"250 2.1.5")
        if bdat:
            sock.sendall(b"BDAT %d LAST\r\n" % len(body))
        else:
            sock.sendall(b"DATA\r\n")
            expect(sock, b"354")
        sock.sendall(body)
        if not bdat:
            sock.sendall(b".\r\n")
        reply = expect(sock, b"250 2.0.0").decode()
        sock.sendall(b"QUIT\r\n")
        return reply


def test_concurrent_large_messages_do_not_stay_in_memory(server: AbuseServer) -> None:
    """Finding 2: DATA was buffered whole (plus copies). 16 clients each send 16 MB at full speed,
    half by DATA, half by one BDAT chunk: the server's RSS grows by far less than one message per
    client (256 MB in all), every message is queued, no spool file is left open."""
    before = _warm(server)
    fds = server.fds
    body = _big_message(16 * MIB)
    with Sampler(lambda: server.rss_kib) as rss, ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: _send_big(server.port, body, bdat=i % 2 == 1), range(16)))
        late = good_client(server.port)  # a well-behaved client meanwhile
    assert all(r.startswith("250 2.0.0 Ok: queued as") for r in replies)
    growth_mib = (rss.peak - before) / 1024
    assert growth_mib < 80, f"RSS grew by {growth_mib:.0f} MiB"
    assert late < 20
    # No spool file left open (one more descriptor at most: the queue's new body-log segment).
    assert server.settle(fds_at_most=fds + 1) <= fds + 1


def test_a_50_mb_header_section_is_refused_without_stalling_others(server: AbuseServer) -> None:
    """Finding 7: a header section of 50 MB was scanned line by line on the event loop. It is refused
    with 552 5.3.4 after the end of the data; a well-behaved client is served meanwhile."""
    before = _warm(server)
    header = (b"X-Filler: " + b"h" * 80 + b"\r\n") * (50 * MIB // 92)
    done: list[str] = []

    def attack() -> None:
        with raw_session(server.port) as sock:
            sock.sendall(TRANSACTION + b"DATA\r\n")
            expect(sock, b"354")
            sock.sendall(header + b"\r\nbody\r\n.\r\nNOOP\r\n")
            done.append(expect(sock, b"250 2.0.0").decode())

    thread = threading.Thread(target=attack)
    with Sampler(lambda: server.rss_kib) as rss:
        thread.start()
        times = []
        while thread.is_alive():
            times.append(good_client(server.port))
        thread.join()
    assert done and done[0].startswith("552 5.3.4"), done
    assert max(times) < 5
    assert (rss.peak - before) / 1024 < 40


def test_a_trickling_client_is_cut_by_the_data_deadline(server: AbuseServer) -> None:
    """Finding 2 (time): the data timeout was per read, so one byte every 179 s held a session (and
    its memory) for ever. Here the timeout is 2 s and the floor 1000 octets/s: a client sending
    10 octets every 0.2 s (50/s), never idle for 2 s, is cut with 421 4.4.2 within seconds."""
    with raw_session(server.port) as sock:
        sock.sendall(TRANSACTION + b"DATA\r\n")
        expect(sock, b"354")
        started = time.monotonic()
        sock.settimeout(0.2)
        reply = b""
        while time.monotonic() - started < 15:
            try:
                sock.sendall(b"trickle..\r\n"[:10])
                reply += sock.recv(1000)
            except TimeoutError:
                continue
            except OSError:
                break
            if b"\r\n" in reply:
                break
        elapsed = time.monotonic() - started
    assert reply.startswith(b"421 4.4.2"), reply
    assert 1.5 < elapsed < 6


def test_a_fast_client_is_not_cut_by_the_deadline(server: AbuseServer) -> None:
    """The same bounds let a client sending 2 MB in pieces over about 3 s through."""
    body = _big_message(2 * MIB)
    with raw_session(server.port) as sock:
        sock.sendall(TRANSACTION + b"DATA\r\n")
        expect(sock, b"354")
        for i in range(0, len(body), len(body) // 10):
            sock.sendall(body[i : i + len(body) // 10])
            time.sleep(0.3)
        sock.sendall(b".\r\n")
        assert expect(sock, b"250").startswith(b"250 2.0.0")
