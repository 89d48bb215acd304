"""``DnsPythonResolver``: the ``Resolver`` protocol on dnspython's asyncio stub resolver, with a cache.

DNSSEC: with ``dnssec=True`` (``dns.dnssec``: the servers are validating resolvers on a trusted path)
``secure()`` asks with the DO and AD bits and reports the answer's AD bit (RFC 6840 §5.7); its answers
are cached apart, with their status. Postier does not validate signatures itself: like Postfix, it
relies on a local validating resolver (unbound), which answers SERVFAIL for bogus data.

Theory of operation: one query per ``(name, type)``; dnspython's own cache and search list are off
(names are always absolute) so the only cache is ``AnswerCache``, which respects TTLs on an injected
clock. dnspython's exceptions are mapped once, here, onto the typed errors: NXDOMAIN → ``NxDomain``;
an empty NOERROR answer → ``NoData`` (RFC 2308 §2.2); SERVFAIL / REFUSED from every server, a timeout,
or a network error → ``TemporaryDnsError``. Negative answers are cached for the SOA negative TTL
(RFC 2308 §5); temporary failures never are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from postier.dns.cache import AnswerCache, Clock
from postier.dns.errors import DnsError, NoData, NxDomain, TemporaryDnsError
from postier.dns.resolver import MxRecord, SecureAnswer
from postier.mail.domain import to_ascii

__all__ = ["DnsPythonResolver"]


class DnsPythonResolver:
    """``nameservers`` are ``(address, port)`` pairs; None reads the system's /etc/resolv.conf.

    ``timeout_s`` bounds one whole lookup (all servers, all retries)."""

    def __init__(
        self,
        nameservers: list[tuple[str, int]] | None = None,
        *,
        timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
        cache: AnswerCache | None = None,
        dnssec: bool = False,
    ) -> None:
        self._resolver = self._make(nameservers, timeout_s)
        self._cache = cache if cache is not None else AnswerCache(clock)
        self._dnssec = dnssec
        self._secure_resolver = self._make(nameservers, timeout_s)
        self._secure_resolver.use_edns(0, dns.flags.DO, 1232)
        self._secure_resolver.flags = dns.flags.RD | dns.flags.AD

    @staticmethod
    def _make(nameservers: list[tuple[str, int]] | None, timeout_s: float) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers is not None:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers]
        resolver.cache = None
        resolver.lifetime = timeout_s
        resolver.timeout = timeout_s
        return resolver

    @property
    def is_validating(self) -> bool:
        return self._dnssec

    async def secure(self, name: str, rdtype: str) -> SecureAnswer:
        """See ``SecureResolver.secure``; cached under ``rdtype + "/ad"`` with the status first."""
        try:
            result = await self._lookup(name, f"{rdtype}/ad")
        except NoData:
            return SecureAnswer((), False)
        return SecureAnswer(result[1:], self._dnssec and result[0] == "ad")

    async def mx(self, domain: str) -> list[MxRecord]:
        texts = await self._lookup(domain, "MX")
        records = []
        for text in texts:
            preference, host = text.split(" ", 1)
            records.append(MxRecord(int(preference), host))
        return records

    async def addresses(self, host: str) -> list[str]:
        if _is_ip(host):
            return [host]
        results = await asyncio.gather(
            self._lookup(host, "A"), self._lookup(host, "AAAA"), return_exceptions=True
        )
        found = [a for r in results if isinstance(r, tuple) for a in r]
        if found:
            return found
        errors = [r for r in results if isinstance(r, BaseException)]
        for kind in (NxDomain, TemporaryDnsError, NoData):
            for error in errors:
                if isinstance(error, kind):
                    raise kind(error.name, "A/AAAA", error.detail)
        raise errors[0]  # not a DnsError: a bug, let it show

    async def txt(self, name: str) -> list[str]:
        return list(await self._lookup(name, "TXT"))

    async def records(self, name: str, rdtype: str) -> list[str]:
        """The records of one type as text (A, AAAA, MX "pref host", TXT joined, PTR host), for
        callers that need a type the ``Resolver`` protocol does not name (SPF: A alone, PTR)."""
        return list(await self._lookup(name, rdtype.upper()))

    async def _lookup(self, name: str, rdtype: str) -> tuple[str, ...]:
        try:
            key = to_ascii(name)
            qname = dns.name.from_text(key)
        except (ValueError, dns.exception.DNSException) as exc:
            raise NxDomain(name, rdtype, f"invalid name: {exc}") from None
        result: tuple[str, ...] | DnsError | None = self._cache.get(key, rdtype)
        if result is None:
            result = await self._query(qname, key, rdtype)
        if isinstance(result, DnsError):
            raise type(result)(name, rdtype, result.detail)
        return result

    async def _query(self, qname: dns.name.Name, key: str, rdtype: str) -> tuple[str, ...] | DnsError:
        qtype, _, ad = rdtype.partition("/")
        resolver = self._secure_resolver if ad else self._resolver
        try:
            answer = await resolver.resolve(qname, qtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            error = NxDomain(key, rdtype)
            response = exc.response(qname)  # type: ignore[no-untyped-call]
            self._cache.put(key, rdtype, error, _negative_ttl(response))
            return error
        except dns.exception.Timeout:
            return TemporaryDnsError(key, rdtype, "timeout")
        except dns.resolver.NoNameservers as exc:
            return TemporaryDnsError(key, rdtype, _server_failure(exc))
        except (dns.exception.DNSException, OSError) as exc:
            return TemporaryDnsError(key, rdtype, type(exc).__name__)
        if answer.rrset is None and not ad:
            no_data = NoData(key, rdtype)
            self._cache.put(key, rdtype, no_data, _negative_ttl(answer.response))
            return no_data
        texts = tuple(_to_text(rdata) for rdata in answer.rrset or ())
        if ad:  # the status first; a NODATA is an empty answer here, its denial secure or not
            texts = ("ad" if answer.response.flags & dns.flags.AD else "", *texts)
            if answer.rrset is None:
                self._cache.put(key, rdtype, texts, _negative_ttl(answer.response))
                return texts
        # The TTL of a CNAME chain is that of its shortest-lived link.
        ttl = min(rrset.ttl for rrset in answer.response.answer)
        self._cache.put(key, rdtype, texts, ttl)
        return texts


def _to_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        exchange = rdata.exchange
        host = exchange.to_text(omit_final_dot=True).lower() if exchange != dns.name.root else "."
        return f"{rdata.preference} {host}"
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        # RFC 7208 §3.3: the character-strings of one record are concatenated without spaces.
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    if isinstance(rdata, dns.rdtypes.ANY.PTR.PTR):
        return str(rdata.target.to_text(omit_final_dot=True).lower())
    return str(rdata.to_text())


def _negative_ttl(response: dns.message.Message | None) -> float:
    """RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); without a SOA, not at all."""
    if response is None:
        return 0.0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


def _server_failure(exc: dns.resolver.NoNameservers) -> str:
    """ "SERVFAIL" / "REFUSED" … as the servers said, for the log."""
    errors = exc.kwargs.get("errors") or []
    rcodes = sorted({str(e[3]) for e in errors if len(e) > 3 and isinstance(e[3], str)})
    return ", ".join(rcodes) or "no server answered"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
