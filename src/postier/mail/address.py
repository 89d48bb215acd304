"""Envelope addresses (RFC 5321 §4.1.2 Mailbox) as values.

``Address.local_part`` keeps the local part in its wire form (quoted when it was quoted: ``"john doe"``),
so ``str(address)`` is what goes back on the wire. ``Address.domain`` keeps the domain as received
(a dot-domain, a U-label domain under SMTPUTF8, or an address literal ``[192.0.2.1]`` /
``[IPv6:2001:db8::1]``); ``domain_key`` is the form to compare and route on.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Address"]


@dataclass(frozen=True, slots=True)
class Address:
    local_part: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def is_utf8(self) -> bool:
        """True when the address needs SMTPUTF8 (RFC 6531) to travel."""
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def is_literal(self) -> bool:
        """True for an address-literal domain such as ``[192.0.2.1]``."""
        return self.domain.startswith("[")

    @property
    def domain_key(self) -> str:
        """The domain lowercased, without a trailing dot, IDNA A-label form: the key to route on."""
        domain = self.domain.rstrip(".").lower()
        if self.is_literal or domain.isascii():
            return domain
        from postier.mail.domain import to_ascii

        return to_ascii(domain)
