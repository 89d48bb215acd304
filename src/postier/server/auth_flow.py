"""AUTH in one session (RFC 4954): the SASL exchange, the password check and the brute-force throttle.

Theory of operation. ``SessionAuth`` keeps the session's SASL exchange between ``AuthStart`` and
its ``AuthResponse`` events and turns each step into one reply: ``334`` with a challenge, ``235`` on
success (the session then knows ``user``), ``535 5.7.8`` on bad credentials or an authorization
identity other than the login (PLAIN's authzid: nobody may act for another user here), ``501`` for a
malformed response, ``421 4.7.0`` for a client the throttle has locked out — checked at AUTH and again
right before the password is, ``454 4.7.0`` when too many checks already wait. A client that keeps
failing, and any attempt at an account that keeps failing, is slowed before it learns the result.
The password check is slow by design (argon2),
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
from postier.users.auth import Refused
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
        if step.authzid and step.authzid.casefold() != step.username.casefold():
            # RFC 4616 §2: we authorize no one to act as another identity (issue 14, finding 11).
            mail_event("auth", sid=self._sid, mechanism=mechanism, user=step.username, result="authzid")
            return S.AUTHZID_REFUSED
        self._flush()
        user = await self._verify(step)
        if isinstance(user, Refused):
            result = "busy" if user is Refused.BUSY else "locked"
            mail_event("auth", sid=self._sid, mechanism=mechanism, user=step.username, result=result)
            return S.TEMP_AUTH_FAILURE if user is Refused.BUSY else S.AUTH_LOCKED_OUT
        return self._settle(mechanism, step.username, user)

    async def _verify(self, step: Credentials) -> str | Refused | None:
        """Wait out the client's and the account's delays, then check the password — unless the client
        got locked out meanwhile (in its other sessions): that is asked again when the check's turn comes."""
        throttle, ip = self._source.auth_throttle, self.client_ip
        if throttle is not None:
            now = time.monotonic()
            # Slow down a client, and guesses at an account, before they learn the result of this attempt.
            wait = max(throttle.delay_s(ip, now), throttle.account_delay_s(step.username, now))
            if wait > 0:
                await asyncio.sleep(wait)
        authenticator = self._source.authenticator
        if authenticator is None:
            return None

        def admit() -> bool:
            current = self._source.auth_throttle
            return current is None or current.check(ip, time.monotonic()) != "locked"

        return await authenticator.authenticate(step.username, step.password, admit=admit)

    def _settle(self, mechanism: str, username: str, user: str | None) -> Reply:
        throttle, ip, now = self._source.auth_throttle, self.client_ip, time.monotonic()
        if user is None:
            mail_event("auth", sid=self._sid, mechanism=mechanism, user=username, result="failed")
            if throttle is None:
                return S.AUTH_FAILED
            throttle.record_account_failure(username, now)
            return S.AUTH_LOCKED_OUT if throttle.record_failure(ip, now) == "locked" else S.AUTH_FAILED
        if throttle is not None:
            throttle.record_success(ip, now, username)
        self.user = user
        mail_event("auth", sid=self._sid, mechanism=mechanism, user=user, result="ok")
        return S.AUTH_OK
