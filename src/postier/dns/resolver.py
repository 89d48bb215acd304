"""The ``Resolver`` protocol: the only way Postier asks the DNS.

Everything that needs DNS (MX routing, SPF/DKIM/DMARC, DNSBLs) takes a ``Resolver``, so tests can hand
in a fake that implements the same protocol, and the pure decisions (``postier.dns.mx``) never touch
the network. Names go in as A-labels or U-labels (converted with IDNA2008); answers come back with
host names lowercased and without the trailing dot.

Each method either returns a non-empty list or raises one of the typed errors of
``postier.dns.errors``: ``NxDomain`` (the name does not exist), ``NoData`` (it exists, but has no
record of that type) or ``TemporaryDnsError`` (SERVFAIL, REFUSED, timeout). Callers decide what each
means; they never see a dnspython exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["MxRecord", "Resolver", "SecureAnswer", "SecureResolver"]


@dataclass(frozen=True, slots=True, order=True)
class MxRecord:
    """One MX record (RFC 1035 §3.3.9). ``host`` is ``"."`` for the root (a null MX, RFC 7505)."""

    preference: int
    host: str

    @property
    def is_null(self) -> bool:
        """True for an exchange of ``.``: the domain accepts no mail (RFC 7505 §3)."""
        return self.host == "."


class Resolver(Protocol):
    """Asynchronous DNS lookups with typed errors."""

    async def mx(self, domain: str) -> list[MxRecord]:
        """The MX records of ``domain``, in the order the server gave them."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """The IPv4 (A) then IPv6 (AAAA) addresses of ``host``, as text."""
        ...

    async def txt(self, name: str) -> list[str]:
        """The TXT records of ``name``, each one's strings joined (RFC 7208 §3.3)."""
        ...


@dataclass(frozen=True, slots=True)
class SecureAnswer:
    """Records of one type as text (empty: the name exists without such records, NODATA) and whether
    the validating resolver vouched for them (the AD bit, RFC 4035 §3.2.3; RFC 6840 §5.7)."""

    records: tuple[str, ...]
    is_secure: bool


class SecureResolver(Resolver, Protocol):
    """A resolver that also reports DNSSEC status. ``is_validating`` is the operator's word
    (``dns.dnssec``) that the servers asked validate: when False, nothing is ever secure."""

    @property
    def is_validating(self) -> bool: ...

    async def secure(self, name: str, rdtype: str) -> SecureAnswer:
        """``rdtype`` records of ``name`` (MX, A, AAAA, TLSA …) with their DNSSEC status. Raises
        ``NxDomain`` or ``TemporaryDnsError`` (a bogus answer is a SERVFAIL from a validator)."""
        ...
