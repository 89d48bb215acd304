"""AUTH under attack (issue 14, finding 6 and 11), against a real listening server with the real
argon2 ``Authenticator``: the lockout asked again right before each password check (parallel sessions
no longer get a guess each once the client is locked), a bounded verification queue (454 4.7.0), a
per-account failure budget that slows guesses from any address yet lets the owner in, and PLAIN's
authzid refused."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from postier.config import parse_config
from postier.policy import build_policy
from postier.server.listener import Listener, Live, SmtpServer, listener_settings
from postier.smtp.server.settings import EngineSettings
from postier.users import Authenticator, AuthThrottle, UserStore, users_path

pytestmark = pytest.mark.integration


class NullSink:
    def new_id(self) -> str:
        raise AssertionError("no message is sent in these tests")

    async def enqueue(
        self, envelope: object, body: bytes, *, queue_id: str | None = None, held: bool = False
    ) -> str:
        raise AssertionError("no message is sent in these tests")


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    # Slower than the unit tests' hashes, so that concurrent checks really wait for their turn.
    store = UserStore(users_path(tmp_path), time_cost=2, memory_cost=16384, parallelism=1)
    store.add("alice@example.test", "s3cret")
    return store


@pytest.fixture
async def servers() -> AsyncIterator[list[SmtpServer]]:
    started: list[SmtpServer] = []
    yield started
    for server in started:
        await server.shutdown(0.5)


async def start(
    servers: list[SmtpServer], authenticator: Authenticator, throttle: AuthThrottle
) -> tuple[SmtpServer, int]:
    policy = build_policy(parse_config({"relay": {"local_domains": ["localhost"], "trusted_networks": []}}))
    live = Live(policy=policy, authenticator=authenticator, auth_throttle=throttle)
    server = SmtpServer(hostname="mx.test", queue=NullSink(), live=live)
    settings = replace(
        listener_settings("smtp", EngineSettings(hostname="mx.test"), has_tls=False, has_auth=True),
        auth_requires_tls=False,
    )
    await server.start([Listener("127.0.0.1", 0, "smtp", settings)])
    servers.append(server)
    return server, server.sockets[0][1]


async def read_reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), 30)).decode()
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


def plain(user: str, password: str, authzid: str = "") -> bytes:
    token = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
    return f"AUTH PLAIN {token}\r\n".encode()


async def auth_once(port: int, command: bytes, *, source: str = "127.0.0.1") -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        await read_reply(reader)
        writer.write(b"EHLO c.example\r\n")
        await read_reply(reader)
        writer.write(command)
        return await read_reply(reader)
    finally:
        writer.close()


async def test_parallel_sessions_get_no_guess_once_locked(
    servers: list[SmtpServer], store: UserStore
) -> None:
    """Twelve sessions send a wrong password at once. Before the fix, the lockout was asked only at AUTH:
    all twelve passed it and all twelve passwords were checked. Now it is asked again when a check's
    turn comes, so after the third failure locks the client the waiting ones are answered 421 unchecked."""
    throttle = AuthThrottle(max_failures=3, window_s=60, lockout_s=60, max_delay_s=0)
    _, port = await start(servers, Authenticator(store, max_concurrent=1), throttle)
    replies = await asyncio.gather(
        *(auth_once(port, plain("alice@example.test", "guess")) for _ in range(12))
    )
    codes = sorted(r[:9] for r in replies)
    assert codes.count("535 5.7.8") == 2 and codes.count("421 4.7.0") == 10, codes
    assert store.verifies <= 3 + 1  # the locking one, and at most one already in its thread


async def test_verification_queue_is_bounded(servers: list[SmtpServer], store: UserStore) -> None:
    """One check at a time and two waiting: of eight AUTH at once, the ones beyond get 454 4.7.0 at once,
    without a password check; the ones admitted are answered as usual."""
    throttle = AuthThrottle(max_failures=100, window_s=60, lockout_s=60, max_delay_s=0)
    _, port = await start(servers, Authenticator(store, max_concurrent=1, max_waiting=2), throttle)
    replies = await asyncio.gather(
        *(auth_once(port, plain("alice@example.test", "s3cret")) for _ in range(8))
    )
    codes = sorted(r[:9] for r in replies)
    assert codes.count("235 2.7.0") == 3 and codes.count("454 4.7.0") == 5, codes
    assert store.verifies == 3


async def test_account_budget_slows_guesses_from_any_address_but_lets_the_owner_in(
    servers: list[SmtpServer], store: UserStore
) -> None:
    """Two failures at alice from 127.0.0.1; from another address (127.0.0.2, which the per-client
    throttle has never seen) the next attempt at alice waits the account's delay before its check — and
    with the right password it gets in, and clears the account's failures."""
    throttle = AuthThrottle(
        max_failures=100, window_s=60, lockout_s=60, max_delay_s=0, max_account_delay_s=1.5
    )
    _, port = await start(servers, Authenticator(store), throttle)
    for _ in range(2):
        assert (await auth_once(port, plain("alice@example.test", "guess")))[:9] == "535 5.7.8"
    started = time.monotonic()
    assert (await auth_once(port, plain("alice@example.test", "guess"), source="127.0.0.2"))[:3] == "535"
    assert time.monotonic() - started >= 1.5  # min(1.5, 2 ** (2 - 1)) s: the account's, not the address's
    started = time.monotonic()
    reply = await auth_once(port, plain("alice@EXAMPLE.test", "s3cret"), source="127.0.0.2")
    assert reply[:9] == "235 2.7.0" and time.monotonic() - started >= 1.5
    started = time.monotonic()
    assert (await auth_once(port, plain("alice@example.test", "s3cret"), source="127.0.0.3"))[:3] == "235"
    assert time.monotonic() - started < 1.0  # the success cleared the account's failures


@pytest.mark.parametrize("authzid", ["bob@example.test", "admin"])
async def test_plain_authzid_other_than_the_login_is_refused(
    servers: list[SmtpServer], store: UserStore, authzid: str
) -> None:
    """Finding 11: "bob\\0alice\\0alice's password" used to log in as alice, the authzid ignored. Now it
    is refused with 535 5.7.8 before any password check; an authzid equal to the login is accepted."""
    throttle = AuthThrottle(max_failures=100, window_s=60, lockout_s=60, max_delay_s=0)
    _, port = await start(servers, Authenticator(store), throttle)
    reply = await auth_once(port, plain("alice@example.test", "s3cret", authzid))
    assert reply == "535 5.7.8 Authorization identity must be empty or the same as the login"
    assert store.verifies == 0
    same = await auth_once(port, plain("alice@example.test", "s3cret", "Alice@Example.test"))
    assert same[:9] == "235 2.7.0"
