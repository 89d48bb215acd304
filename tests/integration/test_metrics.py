"""The Prometheus endpoint of a running Postier: mail accepted, a refusal, a local delivery and the
queue sizes show in /metrics as an operator would read them; the endpoint binds only the configured
address and goes away with the application."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from postier.app import Application
from postier.config import parse_config
from tests.integration.harness import free_port, make_config

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= got)


def _session(port: int) -> tuple[bytes, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        client.rcpt("postmaster@example.test")
        accepted = client.data(b"Subject: counted\r\n\r\nhello\r\n")[1]
        client.mail("a@example.org")
        refused = client.rcpt("eve@elsewhere.example")  # trusted_networks is empty: no relay
        return accepted, refused


async def _until(port: int, ready: Mapping[str, float]) -> Samples:
    """Scrape until every named total reaches its value (delivery runs in the background)."""
    samples: Samples = {}
    for _ in range(1200):  # up to a minute on a loaded machine; returns as soon as all are there
        samples = await asyncio.to_thread(scrape, port)
        if all(total(samples, name) >= want for name, want in ready.items()):
            return samples
        await asyncio.sleep(0.05)
    return samples


async def test_metrics_count_what_the_server_did(tmp_path: Path) -> None:
    metrics_port = free_port()
    data = make_config(
        tmp_path / "var",
        metrics={"address": f"127.0.0.1:{metrics_port}"},
        relay={"trusted_networks": []},
    )
    config = parse_config(data)
    smtp_port = int(config.listeners[0].address.rsplit(":", 1)[1])
    app = Application(config)
    await app.start()
    try:
        accepted, refused = await asyncio.to_thread(_session, smtp_port)
        assert accepted.startswith(b"2.0.0 Ok: queued as")
        assert refused[0] == 554
        samples = await _until(
            metrics_port,
            {"postier_delivery_attempts_total": 1, "postier_connections_total": 1},
        )
    finally:
        await app.stop()

    smtp = {"listener": "smtp"}
    assert sample(samples, "postier_messages_accepted_total", **smtp) == 1
    assert sample(samples, "postier_recipients_accepted_total", **smtp) == 1
    assert (sample(samples, "postier_received_bytes_total", **smtp) or 0) >= len(b"Subject: counted\r\n")
    assert sample(samples, "postier_smtp_rejects_total", stage="rcpt", code="554", status="5.7.1") == 1
    assert sample(samples, "postier_policy_verdicts_total", check="relay", action="reject") == 1
    assert total(samples, "postier_connections_total", **smtp) == 1
    assert sample(samples, "postier_smtp_transaction_duration_seconds_count", **smtp) == 1
    assert total(samples, "postier_delivery_attempts_total", result="delivered") == 1
    # The queue gauges are read from the queue at start and every few seconds after.
    assert sample(samples, "postier_queue_messages", status="active") is not None
    assert sample(samples, "postier_queue_recipients", state="deferred") is not None
    # The connection has ended (QUIT) by the time it was delivered: none open.
    assert total(samples, "postier_connections_open", **smtp) == 0


async def test_the_endpoint_binds_only_its_address_and_stops_with_the_app(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = parse_config(make_config(tmp_path / "var", metrics={"address": f"127.0.0.1:{metrics_port}"}))
    app = Application(config)
    await app.start()
    try:
        assert await asyncio.to_thread(scrape, metrics_port)
        with pytest.raises(ConnectionRefusedError):  # 127.0.0.2 is loopback too, but not bound
            socket.create_connection(("127.0.0.2", metrics_port), timeout=5).close()
    finally:
        await app.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", metrics_port), timeout=5).close()


async def test_metrics_off_serves_nothing(tmp_path: Path) -> None:
    config = parse_config(make_config(tmp_path / "var"))
    app = Application(config)
    assert app.metrics is None


async def test_a_busy_metrics_address_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = parse_config(make_config(tmp_path / "var", metrics={"address": f"127.0.0.1:{port}"}))
        app = Application(config)
        with pytest.raises(OSError, match=f"metrics endpoint 127.0.0.1:{port}"):
            await app.start()
    smtp_port = int(config.listeners[0].address.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # nothing else was left listening
        socket.create_connection(("127.0.0.1", smtp_port), timeout=5).close()
