"""The spam run, against a real ``postier serve`` process with every anti-spam check on and the real
third-party components: a DNS block list (the test DNS responder), pregreet, greylisting, a real
rspamd and a real OpenDKIM as a milter. GTUBE, a listed client and a pregreeting bot are refused;
ordinary mail from a clean client — after its greylisting retry — is delivered, scanned and signed."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from pathlib import Path

import pytest

from tests.integration.dnsserver import DnsServer
from tests.integration.harness import PostierProcess, make_config
from tests.integration.milter_peer import OpenDkim
from tests.integration.rspamd_peer import GTUBE, RspamdServer

pytestmark = pytest.mark.integration

LISTED, CLEAN = "127.0.0.2", "127.0.0.3"


def _send(port: int, source: str, subject: str, body: str) -> tuple[int, bytes]:
    """One message; the refusal at RCPT or the reply to the data."""
    message = (
        f"Subject: {subject}\r\nFrom: <me@example.test>\r\nTo: <postmaster@example.test>\r\n"
        f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{time.time_ns()}@example.test>\r\n"
        f"\r\n{body}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as client:
        client.ehlo("client.example")
        client.mail("me@example.test")
        code, text = client.rcpt("postmaster@example.test")
        if code != 250:
            return code, text
        return client.data(message.encode())


def _pregreet(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=("127.0.0.4", 0)) as sock:
        first = sock.recv(100)
        sock.sendall(b"EHLO bot.example\r\n")
        data = first
        while chunk := sock.recv(4096):
            data += chunk
        return data


async def test_spam_is_refused_and_ordinary_mail_is_delivered(
    tmp_path: Path, rspamd_server: RspamdServer
) -> None:
    opendkim = OpenDkim(tmp_path / "opendkim", internal_hosts="127.0.0.0/8")  # signs our clients' mail
    opendkim.start()
    try:
        await _run(tmp_path, rspamd_server, opendkim)
    finally:
        opendkim.stop()


async def _run(tmp_path: Path, rspamd_server: RspamdServer, opendkim: OpenDkim) -> None:
    with DnsServer({"2.0.0.127.bl.test": {"A": ["127.0.0.2"]}}) as dns:
        data_dir = tmp_path / "var"
        config = make_config(
            data_dir,
            relay={"trusted_networks": [], "local_domains": ["localhost", "example.test"]},
            dns={"nameservers": [f"127.0.0.1:{dns.port}"]},
            antispam={
                "dnsbl": [{"zone": "bl.test", "weight": 2}],
                "dnsbl_threshold": 2,
                "pregreet_s": 0.5,
                "greylist": True,
                "greylist_delay_s": 0,
                "rspamd_url": rspamd_server.url,
            },
            milter=[{"address": opendkim.address, "name": "opendkim"}],
        )
        process = PostierProcess(tmp_path, config)
        try:
            await asyncio.to_thread(process.start)
            port = process.ports["smtp"]
            bot = await asyncio.to_thread(_pregreet, port)
            assert bot.startswith(b"220-") and bot.endswith(
                b"554 5.5.0 Protocol error: data sent before the greeting\r\n"
            )
            listed = await asyncio.to_thread(_send, port, LISTED, "hello", "ordinary")
            assert listed == (554, b"5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test")
            first = await asyncio.to_thread(_send, port, CLEAN, "minutes", "Ordinary minutes of the meeting.")
            assert first == (451, b"4.7.1 Greylisted, please try again later")
            retry = await asyncio.to_thread(_send, port, CLEAN, "minutes", "Ordinary minutes of the meeting.")
            assert retry[0] == 250
            gtube = await asyncio.to_thread(_send, port, CLEAN, "minutes", GTUBE)
            assert gtube == (554, b"5.7.1 Message rejected as spam")
            maildir = data_dir / "mail" / "example.test" / "postmaster" / "new"
            deadline = time.monotonic() + 30
            while not (files := sorted(maildir.glob("*")) if maildir.is_dir() else []):
                assert time.monotonic() < deadline, "nothing delivered"
                await asyncio.sleep(0.05)
            (message,) = [f.read_bytes() for f in files]
            assert b"Ordinary minutes of the meeting." in message
            assert b"\r\nX-Spam-Action: no action\r\n" in message
            assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;" in message
            log = process.log()
            for check in ("pregreet", "dnsbl", "greylist", "rspamd"):
                assert f"check={check}" in log, check
        finally:
            process.stop()
