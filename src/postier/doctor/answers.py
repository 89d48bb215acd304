"""Every DNS answer the doctor used, kept for ``--verbose``: a ``RecordLookup`` and ``Resolver`` over
another ``RecordLookup`` (``DnsPythonResolver`` in the command, the test responder in tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from postier.dns import DnsError, MxRecord, NoData, NxDomain
from postier.mailauth.lookup import RecordLookup

__all__ = ["Answer", "RecordingLookup", "reverse_name"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One lookup: the records, or the error (``no such domain``, ``no record of this type`` …)."""

    name: str
    rdtype: str
    records: tuple[str, ...]
    error: str = ""

    def to_text(self) -> str:
        shown = self.error or " | ".join(self.records)
        return f"{self.name} {self.rdtype}: {shown}"


def reverse_name(ip: str) -> str:
    """``10.2.0.192.in-addr.arpa`` / the nibble name under ip6.arpa (RFC 1035 §3.5, RFC 3596 §2.5)."""
    return ipaddress.ip_address(ip).reverse_pointer


class RecordingLookup:
    """Asks ``lookup`` and remembers each answer once, in the order asked (and the same answer is
    given again without asking when a check repeats a question)."""

    def __init__(self, lookup: RecordLookup) -> None:
        self._lookup = lookup
        self._answers: dict[tuple[str, str], Answer] = {}
        self._errors: dict[tuple[str, str], DnsError] = {}

    @property
    def answers(self) -> list[Answer]:
        return list(self._answers.values())

    async def records(self, name: str, rdtype: str) -> list[str]:
        key = (name.lower().rstrip("."), rdtype.upper())
        if key in self._errors:
            raise self._errors[key]
        if key in self._answers:
            return list(self._answers[key].records)
        try:
            found = await self._lookup.records(*key)
        except DnsError as exc:
            self._errors[key] = exc
            self._answers[key] = Answer(*key, (), exc.describe)
            raise
        self._answers[key] = Answer(*key, tuple(found))
        return found

    # --- the Resolver protocol, for the code that takes one (DKIM records, MX) ----------------------

    async def txt(self, name: str) -> list[str]:
        return await self.records(name, "TXT")

    async def mx(self, domain: str) -> list[MxRecord]:
        out = []
        for text in await self.records(domain, "MX"):
            preference, _, host = text.partition(" ")
            out.append(MxRecord(int(preference), host.rstrip(".").lower() or "."))
        return out

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        missing: DnsError | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found += await self.records(host, rdtype)
            except (NxDomain, NoData) as exc:
                missing = exc
        if not found:
            raise missing or NoData(host, "A")
        return found
