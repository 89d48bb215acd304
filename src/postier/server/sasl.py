"""Server side of SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), as used by SMTP AUTH
(RFC 4954). Pure: it turns the client's base64 lines into either a challenge to send or the credentials
to check. The credentials are never logged.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postier.users.auth import Refused

__all__ = ["MECHANISMS", "Authenticator", "Challenge", "Credentials", "Malformed", "SaslExchange"]

MECHANISMS = ("PLAIN", "LOGIN")


class Authenticator(Protocol):
    """Checks a username and password; returns the canonical user name, or None when they are wrong, or
    ``Refused`` when it did not check them (too many waiting; ``admit()`` false when the turn came)."""

    async def authenticate(
        self, username: str, password: str, *, admit: Callable[[], bool] = ...
    ) -> str | Refused | None: ...


@dataclass(frozen=True, slots=True)
class Challenge:
    text: str  # base64, sent as "334 <text>"


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    authzid: str
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class Malformed:
    """The exchange broke the mechanism's rules: answer 501 5.5.2."""


Step = Challenge | Credentials | Malformed

_USERNAME = b64encode(b"Username:").decode()
_PASSWORD = b64encode(b"Password:").decode()


def _decode(text: str) -> bytes | None:
    if text == "=":  # RFC 4954 §4: "=" is an empty initial response
        return b""
    try:
        return b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class SaslExchange:
    def __init__(self, mechanism: str) -> None:
        if mechanism not in MECHANISMS:
            raise ValueError(f"unsupported mechanism {mechanism}")
        self.mechanism = mechanism
        self._username: str | None = None

    def start(self, initial_response: str | None) -> Step:
        if initial_response is None:
            return Challenge("") if self.mechanism == "PLAIN" else Challenge(_USERNAME)
        return self.respond(initial_response)

    def respond(self, line: str) -> Step:
        raw = _decode(line.strip())
        if raw is None:
            return Malformed()
        if self.mechanism == "PLAIN":
            return self._plain(raw)
        text = _utf8(raw)
        if text is None:
            return Malformed()
        if self._username is None:
            self._username = text
            return Challenge(_PASSWORD)
        return Credentials("", self._username, text)

    @staticmethod
    def _plain(raw: bytes) -> Step:
        # RFC 4616 §2: [authzid] NUL authcid NUL passwd
        parts = raw.split(b"\x00")
        if len(parts) != 3 or not parts[1]:
            return Malformed()
        decoded = [_utf8(p) for p in parts]
        if any(d is None for d in decoded):
            return Malformed()
        authzid, username, password = (d or "" for d in decoded)
        return Credentials(authzid, username, password)
