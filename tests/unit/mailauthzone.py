"""A ``RecordLookup`` over zone data held in memory: the fake DNS that unit tests of mail authentication
hand to ``postier.mailauth`` (the same protocol as ``DnsPythonResolver.records``; integration tests use
the real test DNS responder instead).

``zone`` maps a name to ``{type: [values]}``; a name mapped to ``TIMEOUT`` fails temporarily for every
type, a type mapped to ``TIMEOUT`` fails for that type alone, and the type ``"*"`` mapped to ``TIMEOUT``
for every type the name does not list. A name with no entry but with names below
it exists (NODATA); any other is NXDOMAIN. CNAMEs are followed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from postier.dns import NoData, NxDomain, TemporaryDnsError

TIMEOUT = "TIMEOUT"

Zone = Mapping[str, Mapping[str, Sequence[str] | str] | str]


class ZoneLookup:
    def __init__(self, zone: Zone) -> None:
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.asked: list[tuple[str, str]] = []

    async def records(self, name: str, rdtype: str) -> list[str]:
        key = name.lower().rstrip(".")
        self.asked.append((key, rdtype))
        if any(len(label) > 63 for label in key.split(".")) or len(key) > 253 or not key:
            raise NxDomain(name, rdtype, "invalid name")
        for _hop in range(8):
            entry = self.zone.get(key)
            if entry is None:
                if any(other.endswith("." + key) for other in self.zone):
                    raise NoData(name, rdtype)
                raise NxDomain(name, rdtype)
            if entry == TIMEOUT:
                raise TemporaryDnsError(name, rdtype, "timeout")
            assert not isinstance(entry, str)
            values = entry.get(rdtype)
            if values is None and entry.get("*") == TIMEOUT:
                raise TemporaryDnsError(name, rdtype, "timeout")
            if values == TIMEOUT:
                raise TemporaryDnsError(name, rdtype, "timeout")
            if values:
                return list(values)
            cname = entry.get("CNAME")
            if not cname:
                raise NoData(name, rdtype)
            key = str(cname[0]).lower().rstrip(".")
        raise TemporaryDnsError(name, rdtype, "CNAME loop")
