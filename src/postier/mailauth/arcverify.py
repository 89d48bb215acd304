"""ARC (RFC 8617): verify the chain of ARC sets a message arrived with.

Theory of operation: the keys of every ARC-Seal and ARC-Message-Signature (at most ``max_sets`` sets,
RFC 8617 §4.2.1 allows 50) are fetched concurrently through the resolver (``domainkeys``), then dkimpy
validates the chain in a worker thread. The result is the chain validation status (§4.4): ``none``
(no ARC sets), ``pass`` or ``fail``; a key that could not be fetched now makes it ``temperror`` rather
than a fail. ``sealers`` are the d= of the ARC-Seals of a passing chain, newest first (local policy
may trust some of them to vouch for a forwarded message that fails DMARC, RFC 8617 §7.2.1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dkim

from postier.mailauth.dkimverify import header_fields
from postier.mailauth.domainkeys import TEMPFAIL, KeyAnswers, fetch_keys, key_name, tags
from postier.mailauth.lookup import RecordLookup

__all__ = ["ArcResult", "check_arc"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str
    """none, pass, fail or temperror."""
    sealers: tuple[str, ...] = ()
    """The d= of each ARC-Seal, the newest (highest i=) first."""
    instances: int = 0
    reason: str = ""


def _instance(t: dict[str, str]) -> int:
    text = t.get("i", "")
    return int(text) if text.isdigit() else 0


async def check_arc(
    lookup: RecordLookup, data: bytes, *, max_sets: int = 50, min_rsa_bits: int = 1024
) -> ArcResult:
    seals = [tags(v) for v in header_fields(data, "ARC-Seal")]
    signatures = [tags(v) for v in header_fields(data, "ARC-Message-Signature")]
    if not seals and not signatures:
        return ArcResult("none")
    instances = max((_instance(t) for t in seals + signatures), default=0)
    if instances > max_sets or len(seals) > max_sets:
        return ArcResult("fail", instances=instances, reason=f"more than {max_sets} ARC sets")
    names = [key_name(t.get("s", ""), t.get("d", "")) for t in seals + signatures]
    keys = await fetch_keys(lookup, [n for n in names if n is not None])
    sealers = tuple(t.get("d", "").lower() for t in sorted(seals, key=_instance, reverse=True))
    status, reason = await asyncio.to_thread(_verify, data, keys, min_rsa_bits)
    if status != "pass" and any(v == TEMPFAIL for v in keys.records.values()):
        return ArcResult("temperror", sealers, instances, "a sealer's key could not be fetched")
    return ArcResult(status, sealers if status == "pass" else (), instances, reason)


class _Quiet:
    def error(self, msg: object, *args: object) -> None:
        pass

    debug = info = warning = error


def _verify(data: bytes, keys: KeyAnswers, min_rsa_bits: int) -> tuple[str, str]:
    try:
        cv, _results, reason = dkim.ARC(data, logger=_Quiet(), minkey=min_rsa_bits).verify(
            dnsfunc=keys.dnsfunc
        )
    except dkim.DKIMException as exc:
        return "fail", str(exc)
    status = cv.decode() if isinstance(cv, bytes) else "fail"
    return (status if status in ("none", "pass", "fail") else "fail"), str(reason)
