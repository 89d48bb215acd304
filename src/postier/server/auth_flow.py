"""AUTH in one session (RFC 4954): the SASL exchange, the password check and the brute-force throttle.

Theory of operation. ``SessionAuth`` keeps the session's SASL exchange between ``AuthStart`` and
its ``AuthResponse`` events and turns each step into one reply: ``334`` with a challenge, ``235`` on
success (the session then knows ``user``), ``535 5.7.8`` on bad credentials, ``501`` for a malformed
response, ``421 4.7.0`` for a client the throttle has locked out. A client that keeps failing is
slowed before it learns the result of its next attempt. The password check is slow by design (argon2),
so the session's pending replies are flushed first: a pipelining client is never kept waiting for
replies we already have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.observe import mail_event
from postier.server.sasl import Authenticator, Challenge, Credentials, SaslExchange
from postier.smtp.server.events import AuthResponse, AuthStart
from postier.users.throttle import AuthThrottle

__all__ = ["AuthSource", "SessionAuth"]


class AuthSource(Protocol):
    """Where the password checker and the throttle are read, at each attempt (a configuration reload
    may replace them while the session runs): the ``SmtpServer``."""

    @property
    def authenticator(self) -> Authenticator | None: ...

    @property
    def auth_throttle(self) -> AuthThrottle | None: ...


class SessionAuth:
    """The AUTH state of one session. ``user`` is the canonical user name once AUTH succeeded."""

    def __init__(
        self,
        *,
        source: AuthSource,
        sid: str,
        client_ip: str,
        flush: Callable[[], None],
    ) -> None:
        self._source = source
        self._sid = sid
        self.client_ip = client_ip
        self._flush = flush
        self._sasl: SaslExchange | None = None
        self.user: str | None = None

    async def start(self, event: AuthStart) -> Reply:
        throttle = self._source.auth_throttle
        if throttle is not None and throttle.check(self.client_ip, time.monotonic()) == "locked":
            mail_event("auth", sid=self._sid, mechanism=event.mechanism, result="locked")
            return S.AUTH_LOCKED_OUT
        self._sasl = SaslExchange(event.mechanism)
        return await self._step(self._sasl.start(event.initial_response))

    async def respond(self, event: AuthResponse) -> Reply:
        if self._sasl is None:
            return S.BAD_SEQUENCE
        return await self._step(self._sasl.respond(event.data))

    async def _step(self, step: object) -> Reply:
        if isinstance(step, Challenge):
            return Reply(334, None, step.text)
        mechanism = self._sasl.mechanism if self._sasl is not None else "?"
        self._sasl = None
        if not isinstance(step, Credentials):
            return S.AUTH_MALFORMED
        throttle, ip = self._source.auth_throttle, self.client_ip
        self._flush()
        if throttle is not None and throttle.check(ip, time.monotonic()) == "delay":
            # Slow down a client that keeps failing, before it learns the result of this attempt.
            await asyncio.sleep(throttle.delay_s(ip, time.monotonic()))
        authenticator = self._source.authenticator
        user = (
            None if authenticator is None else await authenticator.authenticate(step.username, step.password)
        )
        if user is None:
            mail_event("auth", sid=self._sid, mechanism=mechanism, user=step.username, result="failed")
            if throttle is not None and throttle.record_failure(ip, time.monotonic()) == "locked":
                return S.AUTH_LOCKED_OUT
            return S.AUTH_FAILED
        if throttle is not None:
            throttle.record_success(ip, time.monotonic())
        self.user = user
        mail_event("auth", sid=self._sid, mechanism=mechanism, user=user, result="ok")
        return S.AUTH_OK
