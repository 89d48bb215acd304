"""The client side of AUTH (RFC 4954): the command line of a mechanism and the responses it sends,
one after each ``334`` challenge. Credentials stay out of every ``repr``."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

__all__ = ["AuthExchange", "login", "plain"]


@dataclass(slots=True)
class AuthExchange:
    mechanism: str
    line: str  # the AUTH command, with the initial response if the mechanism has one
    steps: list[bytes] = field(repr=False)  # responses, one per 334: secrets, never in a repr

    def respond(self) -> bytes:
        """The response to the next challenge; more challenges than steps: cancel (``*``)."""
        return self.steps.pop(0) if self.steps else b"*"


def plain(user: str, password: str) -> AuthExchange:
    """AUTH PLAIN with the initial response (RFC 4616 §2: ``\\0user\\0password``, UTF-8)."""
    if "\0" in user or "\0" in password:
        raise ValueError("NUL in AUTH PLAIN credentials")
    token = _b64(f"\0{user}\0{password}").decode("ascii")
    return AuthExchange("PLAIN", f"AUTH PLAIN {token or '='}", [])


def login(user: str, password: str) -> AuthExchange:
    """AUTH LOGIN: the user name and the password, each after its 334 challenge."""
    return AuthExchange("LOGIN", "AUTH LOGIN", [_b64(user), _b64(password)])


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))
