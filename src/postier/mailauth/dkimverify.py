"""DKIM verification (RFC 6376, Ed25519 per RFC 8463) of every signature of a message, one result each.

Theory of operation: the DKIM-Signature fields are read in order (the topmost first, dkimpy's index);
at most ``max_signatures`` are checked and any beyond get ``policy`` (RFC 8601 §2.7.1: not checked by
local policy). Their keys are fetched concurrently through the resolver (``domainkeys``); then dkimpy
checks the signatures in a worker thread (hashing a large body is CPU work). Each signature gets:

- ``pass``: it verified;
- ``fail``: it did not (bad signature, body hash mismatch, expired, or an RSA key shorter than
  ``min_rsa_bits``, RFC 8301 §3.2);
- ``permerror``: it cannot be checked (a malformed signature, no key published, a malformed key);
- ``temperror``: its key could not be fetched now (DNS failure).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dkim

from postier.mailauth.domainkeys import MISSING, TEMPFAIL, KeyAnswers, fetch_keys, key_name, tags
from postier.mailauth.lookup import RecordLookup

__all__ = ["DkimResult", "check_dkim", "header_fields"]

_FAILS = ("body hash mismatch", "public key too small", "x= value is past", "expired")


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str
    """pass, fail, permerror, temperror or policy (RFC 8601 §2.7.1)."""
    domain: str
    """The signing domain (d=), lowercased; "" when the signature has none."""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    """The agent or user identifier (i=), when given."""
    b: str = ""
    """The first 12 characters of the signature (b=), to tell signatures apart (RFC 6008)."""
    reason: str = ""


def header_fields(data: bytes, name: str) -> list[str]:
    """The values of the ``name`` fields of ``data``'s header section, in order, folding kept."""
    wanted = name.lower()
    fields: list[tuple[str, str]] = []
    for line in _header(data).split(b"\r\n"):
        text = line.decode("utf-8", "replace")
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + "\r\n" + text)
            continue
        field, colon, value = text.partition(":")
        if colon:
            fields.append((field.strip().lower(), value))
    return [value for field, value in fields if field == wanted]


async def check_dkim(
    lookup: RecordLookup, data: bytes, *, max_signatures: int = 5, min_rsa_bits: int = 1024
) -> list[DkimResult]:
    """One result per DKIM-Signature field of ``data`` (the message as received, CRLF line ends)."""
    fields = header_fields(data, "DKIM-Signature")
    checked, extra = fields[:max_signatures], fields[max_signatures:]
    parsed = [tags(f) for f in checked]
    names = [key_name(t.get("s", ""), t.get("d", "")) for t in parsed]
    keys = await fetch_keys(lookup, [n for n in names if n is not None])
    results = await asyncio.to_thread(_verify_all, data, parsed, names, keys, min_rsa_bits)
    for field in extra:
        results.append(_result(tags(field), "policy", "over the limit of signatures checked"))
    return results


def _header(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _result(t: dict[str, str], result: str, reason: str) -> DkimResult:
    return DkimResult(
        result,
        t.get("d", "").lower().rstrip("."),
        t.get("s", ""),
        t.get("a", "").lower(),
        t.get("i", ""),
        t.get("b", "")[:12],
        reason,
    )


def _verify_all(
    data: bytes, parsed: list[dict[str, str]], names: list[str | None], keys: KeyAnswers, min_rsa_bits: int
) -> list[DkimResult]:
    results = []
    for index, (t, name) in enumerate(zip(parsed, names, strict=True)):
        if name is None:
            results.append(_result(t, "permerror", "no valid d= and s="))
            continue
        record = keys.records.get(name, MISSING)
        if record == TEMPFAIL:
            results.append(_result(t, "temperror", f"key {name}: DNS failure"))
        elif record == MISSING:
            results.append(_result(t, "permerror", f"no key at {name}"))
        else:
            result, reason = _verify_one(data, index, keys, min_rsa_bits)
            results.append(_result(t, result, reason))
    return results


class _Notes:
    """A logger for dkimpy that keeps its errors (the reason a signature could not be checked)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, msg: object, *args: object) -> None:
        self.errors.append(str(msg))

    def debug(self, msg: object, *args: object) -> None:
        pass

    info = warning = debug


def _verify_one(data: bytes, index: int, keys: KeyAnswers, min_rsa_bits: int) -> tuple[str, str]:
    notes = _Notes()
    try:
        verifier = dkim.DKIM(data, logger=notes, minkey=min_rsa_bits)
        ok = verifier.verify(index, dnsfunc=keys.dnsfunc)
    except dkim.DKIMException as exc:
        reason = str(exc)
        if "body hash mismatch" in reason:
            reason = "body hash mismatch"
        return ("fail" if any(f in reason for f in _FAILS) else "permerror"), reason
    if ok:
        return "pass", ""
    if notes.errors:
        return "permerror", notes.errors[-1]
    return "fail", "signature did not verify"
