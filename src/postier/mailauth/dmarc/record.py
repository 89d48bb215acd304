"""The DMARC record (RFC 7489 §6.3, DMARCbis §4.7): ``parse_record(text)`` → ``DmarcRecord`` or None.

Rules: the record starts with ``v=DMARC1`` (the first tag, exact); tags are ``name=value`` separated by
``;``, whitespace around them ignored, names case-insensitive, unknown tags ignored (§6.3), a repeated
tag keeps its first value. A missing or invalid ``p=`` makes the record invalid unless it has a valid
``rua=``, when it counts as ``p=none`` (RFC 7489 §6.6.3 / DMARCbis). Other invalid values fall back to
their defaults. ``pct=`` (RFC 7489) and ``t=`` (DMARCbis: ``t=y`` is testing, like ``pct=0``) both
apply; ``np=`` (DMARCbis) is the policy for non-existent subdomains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["DmarcRecord", "ReportUri", "parse_record", "parse_uris"]

Policy = Literal["none", "quarantine", "reject"]
_POLICIES: tuple[Policy, ...] = ("none", "quarantine", "reject")
_SIZE = re.compile(r"^(\d+)([kmgt]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class ReportUri:
    """One ``rua``/``ruf`` destination (RFC 7489 §6.2): a URI and an optional size limit in bytes."""

    uri: str
    max_bytes: int | None = None

    @property
    def mailto(self) -> str | None:
        """The address of a ``mailto:`` URI (no query part), else None."""
        if not self.uri.lower().startswith("mailto:"):
            return None
        address = self.uri[7:].split("?", 1)[0].strip()
        return address if "@" in address else None


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    p: Policy
    sp: Policy
    np: Policy
    adkim: Literal["r", "s"] = "r"
    aspf: Literal["r", "s"] = "r"
    pct: int = 100
    testing: bool = False
    """DMARCbis ``t=y``."""
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    fo: str = "0"
    ri: int = 86400
    psd: Literal["y", "n", "u"] = "u"
    text: str = ""


def _tags(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            found.setdefault(name.strip().lower(), value.strip())
    return found


def _policy(value: str | None) -> Policy | None:
    value = (value or "").lower()
    return next((p for p in _POLICIES if p == value), None)


def parse_uris(value: str | None) -> tuple[ReportUri, ...]:
    """A comma-separated list of DMARC URIs (``mailto:a@example.com!10m``); invalid items are left out."""
    uris = []
    for item in (value or "").split(","):
        item = item.strip()
        uri, bang, size = item.rpartition("!") if "!" in item else (item, "", "")
        limit = None
        if bang:
            m = _SIZE.match(size)
            if m is None:
                continue
            limit = int(m.group(1)) * _UNITS[m.group(2).lower()]
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", uri):
            uris.append(ReportUri(uri, limit))
    return tuple(uris)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    if value is None or not value.isdigit():
        return default
    number = int(value)
    return number if low <= number <= high else default


def parse_record(text: str) -> DmarcRecord | None:
    """The record, or None when ``text`` is not a valid DMARC record."""
    first, _, _ = text.partition(";")
    name, eq, version = first.partition("=")
    if not eq or name.strip().lower() != "v" or version.strip() != "DMARC1":
        return None
    t = _tags(text)
    rua = parse_uris(t.get("rua"))
    p = _policy(t.get("p"))
    if p is None:
        if not rua:
            return None
        p = "none"
    sp = _policy(t.get("sp")) or p
    adkim: Literal["r", "s"] = "s" if t.get("adkim", "").lower() == "s" else "r"
    aspf: Literal["r", "s"] = "s" if t.get("aspf", "").lower() == "s" else "r"
    psd_tag = t.get("psd", "u").lower()
    psd: Literal["y", "n", "u"] = "y" if psd_tag == "y" else "n" if psd_tag == "n" else "u"
    return DmarcRecord(
        p=p,
        sp=sp,
        np=_policy(t.get("np")) or sp,
        adkim=adkim,
        aspf=aspf,
        pct=_int(t.get("pct"), 100, 0, 100),
        testing=t.get("t", "n").lower() == "y",
        rua=rua,
        ruf=parse_uris(t.get("ruf")),
        fo=t.get("fo", "0"),
        ri=_int(t.get("ri"), 86400, 1, 2**31 - 1),
        psd=psd,
        text=text,
    )
