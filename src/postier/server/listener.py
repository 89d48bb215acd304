"""Listening sockets and the set of live sessions: connection limits and graceful shutdown.

Modes (RFC 6409, RFC 8314):
- ``smtp``: port-25 style. STARTTLS offered when a certificate is available; AUTH offered only under TLS;
  mail for local domains from anyone, relay only for trusted networks or authenticated clients.
- ``submission``: port-587 style. STARTTLS offered; AUTH only after it; MAIL before AUTH gets 530 5.7.0.
- ``submissions``: port-465 style. TLS from the first byte; AUTH required before MAIL.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from postier.antispam.pregreet import Pregreet
from postier.mail.envelope import Envelope
from postier.mail.reply import Reply
from postier.mailauth.dkim import DkimSigner
from postier.observe import get_logger
from postier.policy import Policy
from postier.policy.admission import Admission
from postier.server.budget import MemoryBudget
from postier.server.sasl import MECHANISMS, Authenticator
from postier.server.session import Session
from postier.server.tlsaccept import ImplicitTlsAcceptor
from postier.smtp.server.settings import EngineSettings
from postier.spool import MessageBody
from postier.users.throttle import AuthThrottle

__all__ = ["Listener", "Live", "MessageSink", "SmtpServer"]

_log = get_logger("postier.server")


class MessageSink(Protocol):
    """What the server needs of the queue: an id to name the message, and a durable enqueue."""

    def new_id(self) -> str: ...

    async def enqueue(
        self,
        envelope: Envelope,
        body: bytes | MessageBody,
        *,
        queue_id: str | None = None,
        held: bool = False,
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

    _under_tls: EngineSettings | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: every connection asks (replace() costs more than the rest of a session's set-up).
        under_tls = replace(self.settings, is_tls=True, can_starttls=False)
        object.__setattr__(self, "_under_tls", under_tls)

    def engine_settings(self, *, is_tls: bool) -> EngineSettings:
        if not is_tls:
            return self.settings if not self.settings.is_tls else replace(self.settings, is_tls=False)
        assert self._under_tls is not None
        return self._under_tls


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


@dataclass(frozen=True, slots=True)
class Live:
    """Everything a configuration reload may change for the receiving side, swapped as one reference
    (``SmtpServer.live``): no attribute of a live object changes during a reload. A session takes the
    ``Live`` of the moment at connect and again at each MAIL FROM (policy/policy.py)."""

    policy: Policy
    tls_context: Callable[[], ssl.SSLContext | None] = lambda: None
    authenticator: Authenticator | None = None
    auth_throttle: AuthThrottle | None = None
    command_timeout_s: float = 300.0
    data_timeout_s: float = 180.0
    handshake_timeout_s: float = 30.0
    dkim: DkimSigner = field(default_factory=DkimSigner)
    """Signs our own users' mail at the end of data; swapped (as a new ``Live``) by the key checks."""
    arc_seal: bool = False
    """Seal strangers' mail an alias forwards to another domain (``[mailauth] arc_seal``, arcsealing.py)."""
    pregreet: Pregreet | None = None
    """The pregreet test of ``smtp`` listeners (``antispam.pregreet_s``), None when off."""


class SmtpServer:
    def __init__(
        self,
        *,
        hostname: str,
        queue: MessageSink,
        live: Live,
        min_data_bytes_per_s: float = 500.0,
        error_delay_s: float = 0.0,
        memory_budget_bytes: int = 64 << 20,
        spool_dir: Path | None = None,
    ) -> None:
        self.hostname = hostname
        self.queue = queue
        self.live = live
        self.admission = Admission()
        # Restart-only: the data deadline (budget.DataDeadline), the client input held by all
        # sessions, and where large messages being received are spooled.
        self.min_data_bytes_per_s = min_data_bytes_per_s
        self.error_delay_s = error_delay_s  # the tarpit past half of max_errors
        self.memory = MemoryBudget(memory_budget_bytes)
        self.spool_dir = spool_dir or Path(tempfile.gettempdir())
        self._servers: list[asyncio.Server] = []
        self._acceptors: list[ImplicitTlsAcceptor] = []
        self._sessions: set[Session] = set()

    # AuthSource (server/auth_flow.py): read at each attempt, so a reload applies to the next one.
    @property
    def authenticator(self) -> Authenticator | None:
        return self.live.authenticator

    @property
    def auth_throttle(self) -> AuthThrottle | None:
        return self.live.auth_throttle

    def tls_context(self) -> ssl.SSLContext | None:
        return self.live.tls_context()

    async def start(self, listeners: list[Listener], sockets: Sequence[socket.socket] = ()) -> None:
        """Listen on each listener's address; or, with ``sockets`` (one per listener, in order,
        already bound and listening: the primary's set for this worker, ``postier.supervisor``),
        accept from those."""
        if sockets and len(sockets) != len(listeners):
            raise ValueError(f"{len(sockets)} listening sockets for {len(listeners)} listeners")
        if any(listener.implicit_tls for listener in listeners) and self.tls_context() is None:
            raise RuntimeError("a submissions listener needs a TLS certificate")
        for i, listener in enumerate(listeners):
            await self._serve_on(listener, sockets[i] if sockets else None)

    async def serve_also(
        self, listeners: list[Listener], sockets: Sequence[socket.socket]
    ) -> Callable[[], Awaitable[None]]:
        """Accept from ``sockets`` too (one per listener, bound and listening: the set of a worker
        that is down, ``postier.supervisor``), through duplicates of them. The function returned
        stops that and leaves the sockets themselves open (the worker started again takes them);
        ``shutdown`` stops it too."""
        handles = [
            await self._serve_on(listener, sock.dup())
            for listener, sock in zip(listeners, sockets, strict=True)
        ]

        async def stop() -> None:
            for handle in handles:
                if isinstance(handle, ImplicitTlsAcceptor):
                    if handle in self._acceptors:
                        self._acceptors.remove(handle)
                        await handle.close()
                elif handle in self._servers:
                    self._servers.remove(handle)
                    handle.close()

        return stop

    async def _serve_on(
        self, listener: Listener, sock: socket.socket | None
    ) -> asyncio.Server | ImplicitTlsAcceptor:
        if listener.implicit_tls:
            return self._start_implicit_tls(listener, sock or _listening_socket(listener))
        where: dict[str, Any] = (
            {"sock": sock}
            if sock is not None
            else {"host": listener.host, "port": listener.port, "reuse_address": True}
        )
        server = await asyncio.get_running_loop().create_server(
            functools.partial(Session, self, listener),
            backlog=1024,
            **where,
        )
        self._servers.append(server)
        return server

    def _start_implicit_tls(self, listener: Listener, sock: socket.socket) -> ImplicitTlsAcceptor:
        def admit(ip: str) -> tuple[str, Reply | None]:
            policy = self.live.policy
            return self.admission.admit(ip, policy.connections, rate_limited=policy.is_rate_limited(ip))

        acceptor = ImplicitTlsAcceptor(
            sock,
            admit=admit,
            release=self.admission.release,
            protocol=lambda key: Session(self, listener, admission_key=key),
            context=self.tls_context,
            handshake_timeout_s=lambda: self.live.handshake_timeout_s,
        )
        acceptor.start()
        self._acceptors.append(acceptor)
        return acceptor

    @property
    def sockets(self) -> list[tuple[str, int]]:
        servers = [s.getsockname()[:2] for server in self._servers for s in server.sockets]
        return servers + [a.sock.getsockname()[:2] for a in self._acceptors]

    def admit(self, session: Session, policy: Policy) -> Reply | None:
        """Count a new connection in; the refusal reply at a limit. A session admitted before its TLS
        handshake (``tlsaccept.py``) is only registered."""
        if session.is_admitted:
            self._sessions.add(session)
            return None
        key, refusal = self.admission.admit(
            session.client_ip, policy.connections, rate_limited=policy.is_rate_limited(session.client_ip)
        )
        session.admission_key = key
        if refusal is None:
            self._sessions.add(session)
        return refusal

    def release(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self.admission.release(session.admission_key)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting; let sessions finish for ``grace_s``; then end the rest with 421 4.3.2."""
        for server in self._servers:
            server.close()
        for acceptor in self._acceptors:
            await acceptor.close()
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


def _listening_socket(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    return socket.create_server((listener.host, listener.port), family=family, backlog=1024)
