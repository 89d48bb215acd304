"""DNSBL/DNSWL, pregreet and greylisting against a real server: zones served by the test DNS
responder, clients on chosen loopback addresses (127.0.0.N) as strangers, the pregreet over a raw
socket, greylisting with its SQLite store (the fake-clock cases are in tests/unit/test_greylist.py)."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.observe.maillog import subscribe
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer

pytestmark = pytest.mark.integration

STRANGERS = {"trusted_networks": [], "local_domains": ["localhost", "example.test"]}
RECORDS = {
    "2.0.0.127.bl.test": {"A": ["127.0.0.2"]},  # listed
    "3.0.0.127.bl.test": {"A": ["127.255.255.254"]},  # the operator refused the query: ignored
    "4.0.0.127.bl.test": {"A": ["127.0.0.2"]},  # listed on the block list …
    "4.0.0.127.wl.test": {"A": ["127.0.0.10"]},  # … and on the allow list, which outweighs it
    "5.0.0.127.bl.test": {"A": ["127.0.0.9"]},  # an answer the zone's codes do not count
}
ZONES = [{"zone": "bl.test", "weight": 1.0, "codes": ["127.0.0.2"]}, {"zone": "wl.test", "weight": -5.0}]


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer(RECORDS) as server:
        yield server


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, object]]]]:
    seen: list[tuple[str, dict[str, object]]] = []
    unsubscribe = subscribe(lambda event, f: seen.append((event, dict(f))))
    yield seen
    unsubscribe()


def _transaction(port: int, source: str, rcpt: str = "postmaster@example.test") -> tuple[int, bytes]:
    """EHLO, MAIL, RCPT (and a message when the recipient is taken) from ``source``; the refusal or
    the reply to the data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.example")
        assert client.mail("someone@example.org")[0] == 250
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(b"Subject: hello\r\nFrom: someone@example.org\r\n\r\nhi\r\n")


async def test_dnsbl_refuses_a_listed_client_at_rcpt_and_takes_the_others(
    start_server: StartServer, dns: DnsServer, events: list[tuple[str, dict[str, object]]]
) -> None:
    server = await start_server(
        relay=STRANGERS,
        dns={"nameservers": [f"127.0.0.1:{dns.port}"]},
        antispam={"dnsbl": ZONES, "dnsbl_threshold": 1.0},
    )
    port = server.smtp_port
    code, text = await asyncio.to_thread(_transaction, port, "127.0.0.2")
    assert (code, text) == (554, b"5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test")
    for clean in ("127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
        code, _ = await asyncio.to_thread(_transaction, port, clean)
        assert code == 250, clean
    # Logged with the envelope: the sender at MAIL, the recipient and the check on the refusal.
    reject = next(f for e, f in events if e == "reject" and f.get("check") == "dnsbl")
    assert reject["stage"] == "rcpt" and reject["rcpt"] == "<postmaster@example.test>"
    assert "bl.test=1" in str(reject["reason"])
    noted = [f for e, f in events if e == "verdict" and f.get("check") == "dnsbl"]
    assert any("refused the query (127.255.255.254), ignored" in str(f["reason"]) for f in noted)
    # One query per name: the RCPT stage read the connect stage's answers from the cache.
    assert dns.count("2.0.0.127.bl.test", "A") == 1
    assert dns.count("4.0.0.127.wl.test", "A") == 1


async def test_an_unanswered_zone_counts_nothing(start_server: StartServer) -> None:
    with DnsServer(RECORDS, drop=["bl.test"]) as dns:
        server = await start_server(
            relay=STRANGERS,
            dns={"nameservers": [f"127.0.0.1:{dns.port}"]},
            antispam={"dnsbl": ZONES, "dnsbl_timeout_s": 0.5},
        )
        code, _ = await asyncio.to_thread(_transaction, server.smtp_port, "127.0.0.2")
    assert code == 250


def _read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


async def test_pregreet_refuses_a_client_that_talks_after_the_first_line(
    start_server: StartServer, events: list[tuple[str, dict[str, object]]]
) -> None:
    server = await start_server(relay=STRANGERS, antispam={"pregreet_s": 1.0})

    def talker() -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30) as sock:
            first = _read_line(sock)
            sock.sendall(b"EHLO bot.example\r\n")  # before the greeting's last line
            return first, _read_all(sock)

    first, rest = await asyncio.to_thread(talker)
    assert first == b"220-mx.test ESMTP\r\n"
    assert rest.startswith(b"220 ") and rest.endswith(
        b"554 5.5.0 Protocol error: data sent before the greeting\r\n"
    )
    reject = next(f for e, f in events if e == "reject" and f.get("check") == "pregreet")
    assert reject["stage"] == "connect"


async def test_pregreet_a_patient_client_passes_once_and_is_remembered(start_server: StartServer) -> None:
    server = await start_server(relay=STRANGERS, antispam={"pregreet_s": 0.5})

    def greeting() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30) as sock:
            lines = [_read_line(sock)]
            while lines[-1][3:4] == b"-":
                lines.append(_read_line(sock))
            sock.sendall(b"QUIT\r\n")
            _read_all(sock)
            return lines

    first = await asyncio.to_thread(greeting)
    assert first[0] == b"220-mx.test ESMTP\r\n" and first[-1].startswith(b"220 ")
    again = await asyncio.to_thread(greeting)
    assert len(again) == 1 and again[0].startswith(b"220 ")  # remembered: greeted at once
    code, _ = await asyncio.to_thread(_transaction, server.smtp_port, "127.0.0.1")
    assert code == 250


async def test_greylisting_defers_a_new_triplet_and_takes_its_retry(
    start_server: StartServer, events: list[tuple[str, dict[str, object]]]
) -> None:
    server = await start_server(relay=STRANGERS, antispam={"greylist": True, "greylist_delay_s": 0.0})
    port = server.smtp_port
    code, text = await asyncio.to_thread(_transaction, port, "127.0.0.7")
    assert (code, text) == (451, b"4.7.1 Greylisted, please try again later")
    code, _ = await asyncio.to_thread(_transaction, port, "127.0.0.8")  # same /24: the retry passes
    assert code == 250
    assert (Path(server.data_dir) / "greylist.sqlite").is_file()
    reject = next(f for e, f in events if e == "reject" and f.get("check") == "greylist")
    assert reject["stage"] == "rcpt" and reject["reply"].startswith("451 4.7.1")  # type: ignore[union-attr]


async def test_greylisting_leaves_trusted_clients_alone(start_server: StartServer) -> None:
    server = await start_server(antispam={"greylist": True, "greylist_delay_s": 3600.0})
    code, _ = await asyncio.to_thread(_transaction, server.smtp_port, "127.0.0.1")
    assert code == 250


async def test_verdicts_are_counted_per_check_and_action(start_server: StartServer, dns: DnsServer) -> None:
    from prometheus_client import CollectorRegistry

    from postier.observe.metrics import MailMetrics

    metrics = MailMetrics(CollectorRegistry())
    unsubscribe = subscribe(metrics.on_event)
    try:
        server = await start_server(
            relay=STRANGERS,
            dns={"nameservers": [f"127.0.0.1:{dns.port}"]},
            antispam={"dnsbl": ZONES, "greylist": True, "greylist_delay_s": 3600.0},
        )
        assert (await asyncio.to_thread(_transaction, server.smtp_port, "127.0.0.2"))[0] == 554
        assert (await asyncio.to_thread(_transaction, server.smtp_port, "127.0.0.9"))[0] == 451
    finally:
        unsubscribe()
    value = metrics.registry.get_sample_value
    assert value("postier_policy_verdicts_total", {"check": "dnsbl", "action": "reject"}) == 1
    assert value("postier_policy_verdicts_total", {"check": "greylist", "action": "defer"}) == 1
    assert value("postier_policy_verdicts_total", {"check": "dnsbl", "action": "accept"}) == 1  # noted


async def test_a_reload_keeps_the_greylisting_store_and_the_pregreet_memory(
    start_server: StartServer,
) -> None:
    from postier.config import parse_config
    from tests.integration.harness import make_config

    antispam = {"greylist": True, "greylist_delay_s": 0.0, "pregreet_s": 0.2}
    server = await start_server(relay=STRANGERS, antispam=antispam)
    port = server.smtp_port
    assert (await asyncio.to_thread(_transaction, port, "127.0.0.7"))[0] == 451
    store, passes = server.app.antispam.greylist, server.app.antispam.pregreet
    assert passes.has_passed("127.0.0.7")
    new = make_config(server.data_dir, relay=STRANGERS, antispam={**antispam, "greylist_auto_allow": 9})
    new["listener"] = [{"address": lc.address, "mode": lc.mode} for lc in server.config.listeners]
    assert server.app.reload(parse_config(new))
    assert server.app.antispam.greylist is store and server.app.antispam.pregreet is passes
    assert (await asyncio.to_thread(_transaction, port, "127.0.0.7"))[0] == 250  # the triplet was kept
