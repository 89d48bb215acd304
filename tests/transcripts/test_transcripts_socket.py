"""The same transcript scenarios, played over a real TCP socket against the asyncio server
(``server.SmtpServer`` with the session driver), with a queue fake that names every message TESTID.

Scenarios that need a TLS handshake mid-script or SASL credentials are played against the engine only
(test_transcripts.py); the TLS and AUTH paths over sockets are covered by
tests/integration/test_server_behaviour.py with real TLS clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from transcript import Transcript, load_transcripts

from postier.config import parse_config
from postier.mail.envelope import Envelope
from postier.policy import build_policy
from postier.server.listener import Listener, Live, SmtpServer
from postier.smtp.server.settings import EngineSettings

_NEEDS_TLS_OR_AUTH = ("is_tls", "can_starttls", "auth_mechanisms", "mail_requires_auth")


def _plays_over_socket(scenario: Transcript) -> bool:
    return (
        bool(scenario.steps)
        and scenario.steps[0].kind == "S"
        and not any(key in scenario.settings for key in _NEEDS_TLS_OR_AUTH)
        and not any(step.kind == "!" and step.text == "tls" for step in scenario.steps)
        and not any(
            step.kind in "CB" and step.text.upper().startswith(("AUTH", "STARTTLS"))
            for step in scenario.steps
        )
    )


SCENARIOS = [s for s in load_transcripts(Path(__file__).parent) if _plays_over_socket(s)]


class FixedIdSink:
    def new_id(self) -> str:
        return "TESTID"

    async def enqueue(
        self, envelope: Envelope, body: bytes, *, queue_id: str | None = None, held: bool = False
    ) -> str:
        return queue_id or "TESTID"


@pytest.fixture
async def servers() -> AsyncIterator[list[SmtpServer]]:
    started: list[SmtpServer] = []
    yield started
    for server in started:
        await server.shutdown(0.5)


async def _start(scenario: Transcript, started: list[SmtpServer]) -> int:
    config = parse_config({"relay": {"local_domains": ["localhost"], "trusted_networks": ["127.0.0.0/8"]}})
    server = SmtpServer(hostname="localhost", queue=FixedIdSink(), live=Live(policy=build_policy(config)))
    settings = scenario.engine_settings(EngineSettings(hostname="localhost"))
    await server.start([Listener("127.0.0.1", 0, "smtp", settings)])
    started.append(server)
    return server.sockets[0][1]


def test_most_scenarios_play_over_a_socket() -> None:
    assert len(SCENARIOS) >= 20


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario_over_socket(scenario: Transcript, servers: list[SmtpServer]) -> None:
    port = await _start(scenario, servers)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pending: list[bytes] = []
    try:
        for step in scenario.steps:
            where = f"{scenario}: line {step.line}"
            if step.kind in ("C", "B"):
                pending.append(step.data)
                continue
            if pending:
                writer.write(b"".join(pending))
                pending.clear()
            if step.kind == "S":
                line = await asyncio.wait_for(reader.readline(), 10)
                got = line.decode("utf-8").removesuffix("\r\n")
                assert step.matches(got), f"{where}: expected {step.text!r}, got {got!r}"
            elif step.text == "close":
                assert await asyncio.wait_for(reader.read(), 10) == b"", f"{where}: still open"
    finally:
        writer.close()
