"""Domain names: IDNA2008/UTS-46 conversion (via the ``idna`` package; the stdlib codec is IDNA2003)."""

from __future__ import annotations

import idna

__all__ = ["normalize_domain", "to_ascii"]


def to_ascii(domain: str) -> str:
    """A-label form of ``domain``, lowercased; raises ValueError when it is not a valid IDN."""
    domain = domain.rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise ValueError(f"invalid internationalized domain name: {exc}") from None


def normalize_domain(domain: str) -> str:
    """The key to compare domains on: A-label, lowercase, no trailing dot. Literals are kept."""
    if domain.startswith("["):
        return domain.lower()
    return to_ascii(domain)
