"""Listening sockets and the set of live sessions: connection limits and graceful shutdown.

Modes (RFC 6409, RFC 8314):
- ``smtp``: port-25 style. STARTTLS offered when a certificate is available; AUTH offered only under TLS;
  mail for local domains from anyone, relay only for trusted networks or authenticated clients.
- ``submission``: port-587 style. STARTTLS offered; AUTH only after it; MAIL before AUTH gets 530 5.7.0.
- ``submissions``: port-465 style. TLS from the first byte; AUTH required before MAIL.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from postier.mail.address import Address
from postier.mail.envelope import Envelope
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.mailauth.dkim import DkimSigner
from postier.observe import get_logger
from postier.policy.ratelimit import RateLimits
from postier.policy.relay import RelayPolicy
from postier.recipients.directory import LocalDirectory
from postier.server.budget import MemoryBudget
from postier.server.sasl import MECHANISMS, Authenticator
from postier.server.session import Session
from postier.smtp.server.settings import EngineSettings
from postier.spool import MessageBody
from postier.users.throttle import AuthThrottle

__all__ = ["Listener", "MessageSink", "SmtpServer"]

_log = get_logger("postier.server")


class MessageSink(Protocol):
    """What the server needs of the queue: an id to name the message, and a durable enqueue."""

    def new_id(self) -> str: ...

    async def enqueue(
        self, envelope: Envelope, body: bytes | MessageBody, *, queue_id: str | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int
    mode: str
    settings: EngineSettings
    early_talker_delay_s: float = 0.0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def implicit_tls(self) -> bool:
        return self.mode == "submissions"

    def engine_settings(self, *, is_tls: bool) -> EngineSettings:
        return replace(self.settings, is_tls=is_tls, can_starttls=self.settings.can_starttls and not is_tls)


def listener_settings(mode: str, base: EngineSettings, *, has_tls: bool, has_auth: bool) -> EngineSettings:
    """Engine settings for a listener mode."""
    mechanisms = MECHANISMS if has_auth else ()
    submission = mode in ("submission", "submissions")
    return replace(
        base,
        can_starttls=has_tls and mode != "submissions",
        auth_mechanisms=mechanisms,
        auth_requires_tls=True,
        mail_requires_auth=submission,
    )


class SmtpServer:
    def __init__(
        self,
        *,
        hostname: str,
        queue: MessageSink,
        relay: RelayPolicy,
        tls_context: Callable[[], ssl.SSLContext | None],
        authenticator: Authenticator | None = None,
        auth_throttle: AuthThrottle | None = None,
        sender_rule: Callable[[str, Address | None], bool] | None = None,
        limits: RateLimits | None = None,
        directory: LocalDirectory | None = None,
        dkim: DkimSigner | None = None,
        max_connections: int = 1000,
        max_connections_per_ip: int = 50,
        command_timeout_s: float = 300.0,
        data_timeout_s: float = 180.0,
        handshake_timeout_s: float = 30.0,
        min_data_bytes_per_s: float = 500.0,
        error_delay_s: float = 0.0,
        memory_budget_bytes: int = 64 << 20,
        spool_dir: Path | None = None,
    ) -> None:
        self.hostname = hostname
        self.queue = queue
        self.relay = relay
        self.tls_context = tls_context
        self.authenticator = authenticator
        self.auth_throttle = auth_throttle
        self.sender_rule = sender_rule  # may this authenticated user send as this sender?
        self.limits = limits or RateLimits()
        self.directory = directory  # local recipients checked at RCPT and expanded; None: no checks
        self.dkim = dkim or DkimSigner()  # swapped whole when keys or their records change
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.command_timeout_s = command_timeout_s
        self.data_timeout_s = data_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.min_data_bytes_per_s = min_data_bytes_per_s  # the data deadline (budget.DataDeadline)
        self.error_delay_s = error_delay_s  # the tarpit past half of max_errors
        self.memory = MemoryBudget(memory_budget_bytes)  # client input held by all sessions
        self.spool_dir = spool_dir or Path(tempfile.gettempdir())  # large messages being received
        self._servers: list[asyncio.Server] = []
        self._sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()

    async def start(self, listeners: list[Listener], sockets: Sequence[socket.socket] = ()) -> None:
        """Listen on each listener's address; or, with ``sockets`` (one per listener, in order,
        already bound and listening: several worker processes share them), accept from those."""
        if sockets and len(sockets) != len(listeners):
            raise ValueError(f"{len(sockets)} listening sockets for {len(listeners)} listeners")
        loop = asyncio.get_running_loop()
        for i, listener in enumerate(listeners):
            context = self._implicit_tls_context() if listener.implicit_tls else None
            where: dict[str, Any] = (
                {"sock": sockets[i]}
                if sockets
                else {"host": listener.host, "port": listener.port, "reuse_address": True}
            )
            server = await loop.create_server(
                lambda listener=listener: Session(self, listener),
                ssl=context,
                ssl_handshake_timeout=self.handshake_timeout_s if context else None,
                backlog=1024,
                **where,
            )
            self._servers.append(server)

    def _implicit_tls_context(self) -> ssl.SSLContext:
        """The context for implicit-TLS listeners. asyncio binds one context per listening socket, so
        each handshake switches to the current one (SIGHUP reload) from the SNI callback, which OpenSSL
        calls for every ClientHello, with or without a server name."""
        base = self.tls_context()
        if base is None:
            raise RuntimeError("a submissions listener needs a TLS certificate")

        def use_current(ssl_object: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            current = self.tls_context()
            if current is not None and current is not ssl_object.context:
                ssl_object.context = current

        base.sni_callback = use_current
        return base

    @property
    def sockets(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for server in self._servers for s in server.sockets]

    def admit(self, session: Session) -> Reply | None:
        """Count a new connection in; the refusal reply when a limit is reached."""
        if len(self._sessions) >= self.max_connections:
            return S.TOO_MANY_CONNECTIONS
        if self._per_ip[session.client_ip] >= self.max_connections_per_ip:
            return S.TOO_MANY_CONNECTIONS
        window = self.limits.connections_per_ip
        if window is not None and self.is_rate_limited(session.client_ip):
            now = time.monotonic()
            if not window.allows(session.client_ip, now):
                return S.CONNECTION_RATE_LIMITED
            window.record(session.client_ip, now)
        self._sessions.add(session)
        self._per_ip[session.client_ip] += 1
        return None

    def is_rate_limited(self, client_ip: str) -> bool:
        """Rate limits apply to this client (trusted networks are exempt unless configured otherwise)."""
        return not (self.limits.exempt_trusted and self.relay.is_trusted(client_ip))

    def release(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self._per_ip[session.client_ip] -= 1
            if self._per_ip[session.client_ip] <= 0:
                del self._per_ip[session.client_ip]

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting; let sessions finish for ``grace_s``; then end the rest with 421 4.3.2."""
        for server in self._servers:
            server.close()
        sessions = list(self._sessions)
        if sessions:
            _log.info("shutdown: waiting up to %.0fs for %d sessions", grace_s, len(sessions))
            waiters = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
            _done, pending = await asyncio.wait(waiters, timeout=grace_s)
            for session in list(self._sessions):
                session.stop()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
            for waiter in pending:
                waiter.cancel()
