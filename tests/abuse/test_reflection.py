"""DSN reflection against a real ``postier serve`` (issue 14: 3): a stranger forging its victim's
address as the sender tries to make Postier mail the victim — success and delay notices on request,
and failure notices carrying the stranger's payload. What the victim can receive is counted in the
server's own queue (``postier queue list --sender ""``)."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.abuse.conftest import AbuseServer, start_abuse_server
from tests.integration.harness import add_users

pytestmark = pytest.mark.integration

VICTIM = "victim@victim.example"  # not ours: a DSN to it would leave for its MX


@pytest.fixture(scope="module")
def server(module_tmp: Path) -> Iterator[AbuseServer]:
    yield from start_abuse_server(
        module_tmp,
        relay={"local_domains": ["localhost", "example.test"], "trusted_networks": []},
        local={"quota_bytes": 200_000},
    )


def _send(port: int, rcpt: str, body: bytes, *, mail_options: list[str], rcpt_options: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("bot.example.net")
        assert client.mail(VICTIM, options=mail_options)[0] == 250
        assert client.rcpt(rcpt, options=rcpt_options)[0] == 250
        code, text = client.data(body)
        assert code == 250, text


def _bounces(server: AbuseServer) -> list[dict[str, object]]:
    data_dir = server.proc.config.server.data_dir
    done = subprocess.run(
        [sys.executable, "-m", "postier", "queue", "list", "--data-dir", data_dir, "--sender", "", "--json"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    messages: list[dict[str, object]] = json.loads(done.stdout)["messages"]
    return messages


def _wait_for(server: AbuseServer, text: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.1)


def test_no_success_or_delay_notice_for_a_stranger(server: AbuseServer) -> None:
    for _ in range(10):
        _send(
            server.port,
            "erin@example.test",
            b"Subject: hi\r\n\r\nbuy now\r\n",
            mail_options=["RET=FULL"],
            rcpt_options=["NOTIFY=SUCCESS,DELAY"],
        )
    _wait_for(server, "rcpt=<erin@example.test> result=delivered", 10)
    _wait_for(server, "action=delivered result=withheld", 10)
    assert _bounces(server) == []  # before: ten "delivered" notices to the victim, the message inside


def test_a_failure_notice_returns_at_most_100_kB(server: AbuseServer) -> None:
    """A message that fails after acceptance (over frank's quota: 552 5.2.2 at delivery) bounces to the
    forged sender — as RFC 3461 wants — but with at most delivery.dsn_max_returned_bytes of it, even
    with RET=HDRS and 900 kB of "header" lines and no blank line."""
    add_users(Path(server.proc.config.server.data_dir), "frank@example.test")
    payload = b"Subject: payload\r\n" + b"X-Payload: " + b"A" * 70 + b"\r\n" * 1
    payload += b"X-More: " + b"B" * 70 + b"\r\n"
    payload += (b"X-Line: " + b"C" * 70 + b"\r\n") * 11_000  # ~880 kB, under max_header_bytes
    for ret in ("RET=HDRS", "RET=FULL"):
        _send(server.port, "frank@example.test", payload, mail_options=[ret], rcpt_options=[])
    _wait_for(server, "rcpt=<frank@example.test> result=failed", 2)
    bounces = _bounces(server)
    assert len(bounces) == 2
    assert all(isinstance(b["size"], int) and b["size"] < 110_000 for b in bounces), bounces
