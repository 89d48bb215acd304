"""The public keys that DKIM and ARC signatures name (RFC 6376 §3.6.2): ``SELECTOR._domainkey.DOMAIN``
TXT, fetched asynchronously through Postier's resolver before dkimpy verifies anything, so that
dkimpy (synchronous) never touches the network and a slow DNS server never blocks the event loop.

``KeyAnswers`` holds what each name gave: the record text, ``MISSING`` (NXDOMAIN or NODATA: a
permanent error for the signature) or ``TEMPFAIL`` (try again later: a *temperror*).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass

from postier.dns import NoData, NxDomain, TemporaryDnsError
from postier.mailauth.lookup import RecordLookup

__all__ = ["MISSING", "TEMPFAIL", "KeyAnswers", "fetch_keys", "key_name", "tags"]

MISSING = "missing"
TEMPFAIL = "tempfail"

_TAG = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([^;]*?)\s*(?:;|$)")


def tags(value: str) -> dict[str, str]:
    """A tag-list (RFC 6376 §3.2) as a dict, lowercased names, the first of a repeated tag; folding
    whitespace inside values removed. Lenient: what does not parse is left out."""
    found: dict[str, str] = {}
    for name, text in _TAG.findall(value):
        found.setdefault(name.lower(), re.sub(r"\s+", "", text))
    return found


_LABELS = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*"
)


def key_name(selector: str, domain: str) -> str | None:
    """``SELECTOR._domainkey.DOMAIN``, or None when either part is not a domain name."""
    selector, domain = selector.strip(), domain.strip().rstrip(".")
    if not (_LABELS.fullmatch(selector) and _LABELS.fullmatch(domain)):
        return None
    name = f"{selector}._domainkey.{domain}".lower()
    return name if len(name) <= 253 else None


@dataclass(frozen=True, slots=True)
class KeyAnswers:
    records: dict[str, str]
    """Key name → the record (several TXT records: the first that parses as a key), MISSING or TEMPFAIL."""

    def dnsfunc(self, name: bytes | str, timeout: float = 5.0) -> bytes | None:
        """dkimpy's DNS hook: the prefetched record, or None (dkimpy: "missing public key")."""
        key = (name.decode("ascii", "replace") if isinstance(name, bytes) else name).rstrip(".").lower()
        record = self.records.get(key)
        if record is None or record in (MISSING, TEMPFAIL):
            return None
        return record.encode("utf-8", "replace")


async def fetch_keys(lookup: RecordLookup, names: Iterable[str]) -> KeyAnswers:
    unique = sorted(set(names))
    answers = await asyncio.gather(*(_fetch(lookup, n) for n in unique))
    return KeyAnswers(dict(zip(unique, answers, strict=True)))


async def _fetch(lookup: RecordLookup, name: str) -> str:
    try:
        records = await lookup.records(name, "TXT")
    except (NxDomain, NoData):
        return MISSING
    except TemporaryDnsError:
        return TEMPFAIL
    # RFC 6376 §3.6.2.2: one record is expected; take the first that looks like a key.
    keys = [r for r in records if "p=" in r]
    return keys[0] if keys else records[0]
