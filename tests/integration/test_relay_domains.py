"""Relay domains end to end: a stranger's mail for a relay domain is taken and carried to the
domain's [[route]] (a Postfix smtp-sink); a recipient not on the domain's list gets 550 5.1.1 at
RCPT; other domains are still refused; a bad list file stops the start."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest

from postier.config import parse_config
from postier.mail.errors import ConfigError
from postier.policy.relaydomains import parse_recipient_list
from tests.integration.conftest import StartServer
from tests.integration.harness import make_config
from tests.integration.smtpsink import SmtpSink, smtp_sink  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def _rcpt_replies(port: int, *recipients: str) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail("someone@example.org")
        replies = [client.rcpt(r) for r in recipients]
        if not any(code == 250 for code, _ in replies):
            return replies, None
        return replies, client.data(b"Subject: for the gateway\r\nFrom: someone@example.org\r\n\r\nhi\r\n")


async def test_a_relay_domain_is_taken_from_anyone_and_carried_to_its_route(
    start_server: StartServer,
    smtp_sink: Callable[..., SmtpSink],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    sink = smtp_sink()
    listed = tmp_path / "relay.test.txt"
    listed.write_text("# the valid recipients of relay.test\nalice@relay.test\nBob\n")
    server = await start_server(
        relay={
            "trusted_networks": [],
            "relay_domains": ["relay.test", "open.test"],
            "relay_recipients": {"relay.test": str(listed)},
        },
        route=[{"domains": ["relay.test", "open.test"], "host": f"{sink.address}:25", "tls": "none"}],
    )
    replies, data = await asyncio.to_thread(
        _rcpt_replies,
        server.smtp_port,
        "alice@relay.test",
        "bob@RELAY.test",
        "mallory@relay.test",
        "anyone@open.test",
        "zoe@elsewhere.test",
    )
    assert [code for code, _ in replies] == [250, 250, 550, 250, 554]
    assert replies[2][1] == b"5.1.1 No such user here"
    assert replies[4][1] == b"5.7.1 Relay access denied"
    assert data is not None and data[0] == 250
    messages = await sink.wait_messages(2)  # one transaction per domain
    recipients = sorted(r for m in messages for r in m.recipients)
    assert recipients == ["alice@relay.test", "anyone@open.test", "bob@RELAY.test"]


def test_recipient_lists() -> None:
    assert parse_recipient_list("a@x.test\nB\n# c\nd@other.test\n", "x.test") == frozenset({"a", "b"})
    assert parse_recipient_list("a@x.test\n@\n", "x.test") is None


def test_a_list_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    from postier.app import Application

    relay = {"relay_domains": ["relay.test"], "relay_recipients": {"relay.test": str(tmp_path / "missing")}}
    config = parse_config(make_config(tmp_path / "var", relay=relay))
    with pytest.raises(ConfigError, match="relay_recipients"):
        Application(config)
    with pytest.raises(ConfigError, match=r"not one of relay\.relay_domains"):
        parse_config(make_config(tmp_path / "var", relay={"relay_recipients": {"x.test": "f"}}))
