"""What mail authentication asks of the DNS: records of one type, as text.

``DnsPythonResolver`` implements it (``records``). Each call returns a non-empty list or raises one of
``postier.dns``'s typed errors: ``NxDomain``, ``NoData`` (both permanent: "no record") or
``TemporaryDnsError`` (SERVFAIL, time-out: a *temperror* in every mailauth result). Caching and
time-outs belong to the resolver, so each evaluation here stays a pure function of the answers.
"""

from __future__ import annotations

from typing import Protocol

from postier.dns import NoData, NxDomain

__all__ = ["RecordLookup", "txt_or_none"]


class RecordLookup(Protocol):
    async def records(self, name: str, rdtype: str) -> list[str]:
        """Records of ``rdtype`` at ``name`` as text: A/AAAA addresses, ``"pref host"`` for MX,
        TXT strings joined (RFC 7208 §3.3), PTR host names."""
        ...


async def txt_or_none(lookup: RecordLookup, name: str) -> list[str]:
    """TXT records at ``name``; ``[]`` when there is none (NXDOMAIN or NODATA). A temporary failure
    is raised as ``TemporaryDnsError``."""
    try:
        return await lookup.records(name, "TXT")
    except (NxDomain, NoData):
        return []
