"""User records, login-name normalisation and sender rules. Pure: no disk, no clock.

A login name is an address. Its local part is kept exactly as given (RFC 5321 §2.4: local parts are
case-sensitive, and we never guess otherwise); its domain is compared in IDNA A-label form, lowercased,
without a trailing dot (``postier.mail.domain.normalize_domain``). So ``User@EXAMPLE.test`` logs in as
``User@example.test`` and ``user@example.test`` is somebody else.

Sender rules say which envelope senders (MAIL FROM) a user may use after AUTH: a full address, or
``@domain`` for any address in that domain (not its subdomains). The default is the user's own address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from postier.mail.address import Address, parse_mailbox
from postier.mail.domain import normalize_domain
from postier.mail.errors import AddressError, PostierError

__all__ = [
    "InvalidAddressError",
    "InvalidPasswordError",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserStoreError",
    "canonical_local",
    "normalize_login",
    "normalize_sender_rule",
    "sender_matches",
]


class UserStoreError(PostierError):
    """The user store cannot be read or written, or an operation on it cannot go on."""


class UnknownUserError(UserStoreError):
    """No user with that address."""


class UserExistsError(UserStoreError):
    """A user with that address already exists."""


class InvalidAddressError(UserStoreError):
    """A login name or sender rule is not a valid address (or ``@domain``)."""


class InvalidPasswordError(UserStoreError):
    """A password is empty or holds characters SASLprep prohibits (RFC 4013 §2.3)."""


@dataclass(frozen=True, slots=True, repr=False)
class User:
    """One account. ``password_hash`` is an argon2id PHC string; it never appears in ``repr``."""

    address: str
    password_hash: str
    senders: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    disabled: bool = False

    def __repr__(self) -> str:
        state = " disabled" if self.disabled else ""
        return f"User({self.address!r}, senders={self.senders!r}{state})"


def normalize_login(address: str) -> str:
    """The canonical login name for ``address``; raises InvalidAddressError when it is not a mailbox.

    UTF-8 local parts and U-label domains are accepted (RFC 6531 users exist); the domain is stored as
    its A-label so the same account is found whichever form the client types.
    """
    try:
        mailbox = parse_mailbox(address.strip(), allow_utf8=True)
        if mailbox.is_literal:
            raise InvalidAddressError(f"not a login name (address literal): {address!r}")
        return f"{canonical_local(mailbox.local_part)}@{normalize_domain(mailbox.domain)}"
    except (AddressError, ValueError):
        raise InvalidAddressError(f"not a valid address: {address!r}") from None


def normalize_sender_rule(rule: str) -> str:
    """``@domain`` → ``@a-label-domain``; anything else must be an address and is normalised like a login."""
    rule = rule.strip()
    if rule.startswith("@"):
        try:
            mailbox = parse_mailbox("x" + rule, allow_utf8=True)
            if mailbox.is_literal:
                raise InvalidAddressError(f"not a sender domain (address literal): {rule!r}")
            return "@" + normalize_domain(mailbox.domain)
        except (AddressError, ValueError):
            raise InvalidAddressError(f"not a valid sender domain: {rule!r}") from None
    return normalize_login(rule)


# RFC 5321 §4.1.2 Dot-string, widened to UTF-8 by RFC 6531 §3.3.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")


def canonical_local(local_part: str) -> str:
    """``"john"`` and ``john`` are one mailbox (RFC 5321 §4.1.2): drop quotes that quote nothing special."""
    if not (local_part.startswith('"') and local_part.endswith('"')):
        return local_part
    inner = re.sub(r"\\(.)", r"\1", local_part[1:-1])
    if _DOT_STRING.fullmatch(inner):
        return inner
    return local_part


def sender_matches(rules: tuple[str, ...], sender: Address) -> bool:
    """True when ``sender`` (a parsed MAIL FROM address) is allowed by one of the normalised ``rules``.

    Address literals and the domain-less ``<Postmaster>`` never match: they are not anyone's address.
    """
    if not sender.domain or sender.is_literal:
        return False
    try:
        domain = sender.domain_key
    except ValueError:
        return False
    address = f"{canonical_local(sender.local_part)}@{domain}"
    return any(rule == address or rule == "@" + domain for rule in rules)
