"""Typed DNS errors. "No such domain" bounces, "the DNS is broken right now" defers: the two are
different types so that no caller can blur them.

    PostierError
     └── DnsError
          ├── NxDomain           the name does not exist (RCODE 3, RFC 1035 §4.1.1)
          ├── NoData             the name exists but has no record of the asked type (RFC 2308 §2.2)
          └── TemporaryDnsError  SERVFAIL, REFUSED, timeout, no reachable server: try again later
"""

from __future__ import annotations

from postier.mail.errors import PostierError

__all__ = ["DnsError", "NoData", "NxDomain", "TemporaryDnsError"]


class DnsError(PostierError):
    """A lookup of ``name`` for ``rdtype`` gave no usable answer."""

    def __init__(self, name: str, rdtype: str, detail: str = "") -> None:
        text = f"{name} {rdtype}: {self.describe}"
        super().__init__(f"{text} ({detail})" if detail else text)
        self.name = name
        self.rdtype = rdtype
        self.detail = detail

    describe = "DNS lookup failed"


class NxDomain(DnsError):
    """The domain name does not exist (authoritative NXDOMAIN). Permanent."""

    describe = "no such domain"


class NoData(DnsError):
    """The name exists but holds no record of this type. Permanent for this type."""

    describe = "no record of this type"


class TemporaryDnsError(DnsError):
    """SERVFAIL, REFUSED, a timeout or an unreachable server. The answer may come later."""

    describe = "temporary DNS failure"
