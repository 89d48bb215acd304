"""The asyncio server around the engine: limits, timeouts, shutdown, TLS, AUTH, and failures of the
queue — each seen from a real socket client. The queue here is a fake that implements the same
``MessageSink`` protocol as the real one (no mocks), so failures can be chosen."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from postier.config import parse_config
from postier.mail.envelope import Envelope
from postier.mail.errors import QueueError, QueueFullError
from postier.policy import build_policy
from postier.server.listener import Listener, Live, SmtpServer, listener_settings
from postier.smtp.server.settings import EngineSettings
from postier.users import AuthThrottle

pytestmark = pytest.mark.integration


@dataclass
class FakeSink:
    """Stores messages in memory; ``fail_with`` makes the next enqueue raise."""

    messages: dict[str, tuple[Envelope, bytes]] = field(default_factory=dict)
    fail_with: Exception | None = None
    counter: int = 0

    def new_id(self) -> str:
        self.counter += 1
        return f"FAKE{self.counter:04d}"

    async def enqueue(
        self, envelope: Envelope, body: bytes, *, queue_id: str | None = None, held: bool = False
    ) -> str:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        qid = queue_id or self.new_id()
        self.messages[qid] = (envelope, body)
        return qid


class Passwords:
    """An Authenticator with one user, as the real user store would answer."""

    async def authenticate(self, username: str, password: str, *, admit: Any = None) -> str | None:
        return "alice@example.test" if (username, password) == ("alice@example.test", "s3cret") else None


@dataclass
class Harness:
    server: SmtpServer
    sink: FakeSink
    ports: dict[str, int]
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
async def make_harness() -> AsyncIterator[Callable[..., Any]]:
    servers: list[SmtpServer] = []

    async def make(*, early_talker_delay_s: float = 0.0, **options: Any) -> Harness:
        ca = trustme.CA()
        cert = ca.issue_cert("mx.test", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        sink = FakeSink()
        timeouts = {k: options.pop(k) for k in ("command_timeout_s", "data_timeout_s") if k in options}
        limits = options.pop("limits", {})
        relay = {"local_domains": ["localhost"], "trusted_networks": ["127.0.0.0/8"]}
        config = parse_config({"relay": relay, "server": options, "limits": limits})
        policy = build_policy(
            config, sender_rule=lambda user, sender: sender is not None and str(sender) == user
        )
        live = Live(
            policy=policy,
            tls_context=lambda: context,
            authenticator=Passwords(),
            auth_throttle=AuthThrottle(max_failures=3, window_s=60, lockout_s=60, max_delay_s=0.05),
            **timeouts,
        )
        server = SmtpServer(hostname="mx.test", queue=sink, live=live)
        base = EngineSettings(hostname="mx.test")
        listeners = [
            Listener(
                "127.0.0.1",
                0,
                mode,
                listener_settings(mode, base, has_tls=True, has_auth=True),
                early_talker_delay_s=early_talker_delay_s if mode == "smtp" else 0.0,
            )
            for mode in ("smtp", "submission", "submissions")
        ]
        await server.start(listeners)
        ports = {
            mode: port
            for mode, (_host, port) in zip(("smtp", "submission", "submissions"), server.sockets, strict=True)
        }
        servers.append(server)
        return Harness(server, sink, ports, ca)

    yield make
    for server in servers:
        await server.shutdown(0.5)


async def _talk(port: int, lines: list[bytes], *, read_greeting: bool = True) -> list[str]:
    """Send each line and read one reply (all its lines) after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await _read_reply(reader)] if read_greeting else []
    for line in lines:
        writer.write(line)
        await writer.drain()
        replies.append(await _read_reply(reader))
    writer.close()
    return replies


async def _read_reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), 10)).decode()
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


async def test_connection_limit_per_ip(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(max_connections_per_ip=2)
    held = [await asyncio.open_connection("127.0.0.1", h.ports["smtp"]) for _ in range(2)]
    for reader, _ in held:
        assert (await _read_reply(reader)).startswith("220 ")
    reply = await _talk(h.ports["smtp"], [])
    assert reply == ["421 4.7.0 Too many connections, try again later"]
    for _, writer in held:
        writer.close()


async def test_early_talker_is_refused(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(early_talker_delay_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["smtp"])
    writer.write(b"EHLO hasty.example\r\n")
    assert (await _read_reply(reader)).startswith("554 5.5.0")
    assert await reader.read() == b""  # closed
    writer.close()
    # A patient client gets the greeting.
    assert (await _talk(h.ports["smtp"], []))[0].startswith("220 mx.test")


async def test_idle_client_times_out(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(command_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["smtp"])
    await _read_reply(reader)
    assert (await _read_reply(reader)).startswith("421 4.4.2")
    writer.close()


async def test_shutdown_ends_idle_sessions_with_421(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["smtp"])
    await _read_reply(reader)
    await h.server.shutdown(0.2)
    assert (await _read_reply(reader)).startswith("421 4.3.2")
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", h.ports["smtp"])


TRANSACTION = [
    b"EHLO c.example\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"RCPT TO:<postmaster@localhost>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
]


@pytest.mark.parametrize(
    ("error", "expected"),
    [(QueueFullError("disk full"), "452 4.3.1"), (QueueError("io"), "451 4.3.0")],
)
async def test_queue_failure_is_a_transient_reply_and_the_session_goes_on(
    make_harness: Callable[..., Any], error: Exception, expected: str
) -> None:
    h = await make_harness()
    h.sink.fail_with = error
    replies = await _talk(h.ports["smtp"], [*TRANSACTION, *TRANSACTION[1:]])
    assert replies[5].startswith(expected)
    assert replies[9].startswith("250 2.0.0 Ok: queued as FAKE")
    assert len(h.sink.messages) == 1


async def test_unexpected_error_ends_only_that_session(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    h.sink.fail_with = RuntimeError("a bug")
    replies = await _talk(h.ports["smtp"], TRANSACTION)
    assert replies[-1] == "421 4.3.0 Internal error, closing connection; try again later"
    replies = await _talk(h.ports["smtp"], TRANSACTION)
    assert replies[-1].startswith("250 2.0.0 Ok: queued as")


async def test_starttls_discards_pipelined_commands(make_harness: Callable[..., Any]) -> None:
    """CVE-2011-0411 class: a command pipelined behind STARTTLS must not run inside TLS."""
    h = await make_harness()
    reader, writer = await asyncio.open_connection("127.0.0.1", h.ports["smtp"])
    await _read_reply(reader)
    writer.write(b"EHLO c.example\r\n")
    await _read_reply(reader)
    writer.write(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    assert (await _read_reply(reader)).startswith("220 2.0.0")
    await writer.start_tls(h.client_context(), server_hostname="mx.test")
    writer.write(b"EHLO c.example\r\n")
    ehlo = await _read_reply(reader)
    assert "STARTTLS" not in ehlo and "AUTH PLAIN LOGIN" in ehlo
    writer.write(b"RCPT TO:<postmaster@localhost>\r\n")
    assert (await _read_reply(reader)).startswith("503 5.5.1")  # no MAIL ran
    writer.close()


def _submit(
    port: int, context: ssl.SSLContext, *, implicit: bool, password: str, sender: str = "alice@example.test"
) -> tuple[int, bytes]:
    cls = smtplib.SMTP_SSL if implicit else smtplib.SMTP
    kwargs: dict[str, Any] = {"context": context} if implicit else {}
    with cls("127.0.0.1", port, timeout=10, **kwargs) as client:
        client.ehlo("laptop.example")
        if not implicit:
            client.starttls(context=context)
            client.ehlo("laptop.example")
        client.login("alice@example.test", password)
        code, text = client.mail(sender)
        if code != 250:
            return code, text
        code, text = client.rcpt("friend@far-away.example")
        if code != 250:
            return code, text
        return client.data(b"Subject: from my laptop\r\n\r\nhi\r\n")


@pytest.mark.parametrize("mode", ["submission", "submissions"])
async def test_submission_with_auth(make_harness: Callable[..., Any], mode: str) -> None:
    h = await make_harness()
    code, text = await asyncio.to_thread(
        _submit, h.ports[mode], h.client_context(), implicit=mode == "submissions", password="s3cret"
    )
    assert code == 250, text
    ((envelope, body),) = h.sink.messages.values()
    assert envelope.client.auth_user == "alice@example.test"
    assert envelope.client.protocol == "ESMTPSA"
    assert b"with ESMTPSA id FAKE" in body


async def test_submission_wrong_password(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        await asyncio.to_thread(
            _submit, h.ports["submission"], h.client_context(), implicit=False, password="wrong"
        )
    assert info.value.smtp_code == 535
    assert h.sink.messages == {}


async def test_submission_requires_auth_before_mail(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    replies = await _talk(h.ports["submission"], [b"EHLO c.example\r\n", b"MAIL FROM:<a@example.org>\r\n"])
    assert "STARTTLS" in replies[1] and "AUTH" not in replies[1]  # AUTH only after TLS
    assert replies[2].startswith("530 5.7.0")


async def test_authenticated_user_may_only_send_as_their_own_address(
    make_harness: Callable[..., Any],
) -> None:
    h = await make_harness()
    code, text = await asyncio.to_thread(
        _submit,
        h.ports["submission"],
        h.client_context(),
        implicit=False,
        password="s3cret",
        sender="ceo@example.test",
    )
    assert (code, text[:5]) == (553, b"5.7.1")
    assert h.sink.messages == {}


async def test_brute_force_is_locked_out(make_harness: Callable[..., Any]) -> None:
    """Three failures from one address lock it out: the third gets 421 4.7.0, and so does the next
    attempt, even with the right password."""
    h = await make_harness()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", h.ports["submissions"], ssl=h.client_context(), server_hostname="mx.test"
    )
    await _read_reply(reader)
    writer.write(b"EHLO c.example\r\n")
    await _read_reply(reader)
    wrong = base64.b64encode(b"\0alice@example.test\0guess").decode()
    replies = []
    for _ in range(3):
        writer.write(f"AUTH PLAIN {wrong}\r\n".encode())
        replies.append(await _read_reply(reader))
    writer.close()
    assert [r[:9] for r in replies] == ["535 5.7.8", "535 5.7.8", "421 4.7.0"]
    with pytest.raises(smtplib.SMTPException):
        await asyncio.to_thread(
            _submit, h.ports["submissions"], h.client_context(), implicit=True, password="s3cret"
        )
    assert h.sink.messages == {}


async def test_messages_per_hour_per_user(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(limits={"messages_per_hour_per_user": 1, "exempt_trusted_networks": False})
    results = [
        await asyncio.to_thread(
            _submit, h.ports["submission"], h.client_context(), implicit=False, password="s3cret"
        )
        for _ in range(2)
    ]
    assert [code for code, _ in results] == [250, 450]
    assert results[1][1].startswith(b"4.7.1")
    assert len(h.sink.messages) == 1
