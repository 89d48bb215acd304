"""The results of one message's checks, as an Authentication-Results field (RFC 8601) and as the short
summary on the log line and in the queue record (``spf=pass dkim=pass:example.com dmarc=pass``).

The field is built with ``authres``; its value is one line (the intake adds it as is). ``authserv_id``
reads the authserv-id of a field that arrived with the message, so that fields claiming to be ours
can be removed before ours is added (RFC 8601 §5: anything claiming our name that we did not write
is forged).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import authres
import authres.arc
import authres.dmarc

from postier.mailauth.arcverify import ArcResult
from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.dmarc.evaluate import DmarcResult
from postier.mailauth.spf import SpfResult

__all__ = ["MailauthResults", "Observation", "authentication_results", "authserv_id", "summary"]


@dataclass(frozen=True, slots=True)
class MailauthResults:
    spf: SpfResult | None = None
    """The MAIL FROM identity's result (for ``<>``: the HELO name's, RFC 7208 §2.4)."""
    helo: SpfResult | None = None
    dkim: tuple[DkimResult, ...] = field(default=())
    dmarc: DmarcResult | None = None
    arc: ArcResult | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One checked message, for the DMARC aggregate reports."""

    source_ip: str
    envelope_from: str
    """The domain of the envelope sender (the HELO name for ``<>``)."""
    results: MailauthResults
    disposition: str = ""
    """What was done with a DMARC failure: none, quarantine or reject ("": as the policy said)."""
    override: str = ""
    """Why the policy was not applied (RFC 7489 PolicyOverrideType): local_policy, trusted_forwarder."""


def _text(reason: str) -> str | None:
    """A reason as a safe quoted-string: printable ASCII, no quote or backslash, at most 80 chars."""
    text = "".join(ch for ch in reason if " " <= ch <= "~" and ch not in '"\\')[:80].strip()
    return text or None


def _spf(result: SpfResult) -> authres.AuthenticationResult:
    if result.identity == "helo":
        return authres.SPFAuthenticationResult(result=result.result, smtp_helo=result.domain)
    return authres.SPFAuthenticationResult(result=result.result, smtp_mailfrom=result.sender)


def _dkim(result: DkimResult) -> authres.AuthenticationResult:
    properties = []
    if result.b:
        properties.append(authres.AuthenticationResultProperty("header", "b", result.b))
    return authres.DKIMAuthenticationResult(
        result=result.result,
        reason=_text(result.reason),
        header_d=result.domain or None,
        header_s=result.selector or None,
        header_a=result.algorithm or None,
        properties=properties,
    )


def authentication_results(authserv_id: str, results: MailauthResults) -> str:
    """The value of an Authentication-Results field (without the field name), on one line."""
    parts: list[authres.AuthenticationResult] = []
    for spf in (results.spf, results.helo):
        if spf is not None:
            parts.append(_spf(spf))
    if results.dkim:
        parts.extend(_dkim(d) for d in results.dkim)
    elif results.spf is not None or results.dmarc is not None:
        parts.append(authres.DKIMAuthenticationResult(result="none"))
    if results.dmarc is not None:
        d = results.dmarc
        parts.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=d.result,
                header_from=d.from_domain,
                policy=d.disposition if d.result == "fail" else None,
                reason=_text(d.reason),
            )
        )
    if results.arc is not None:
        parts.append(authres.arc.ARCAuthenticationResult(result=results.arc.result))
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=parts)
    value = str(header).split(":", 1)[1]
    return " ".join(value.split())


def summary(results: MailauthResults) -> str:
    """``spf=pass dkim=pass:example.com dmarc=pass arc=none`` — what the log line and the queue keep."""
    words = []
    if results.spf is not None:
        words.append(f"spf={results.spf.result}")
    if results.dkim:
        words.append("dkim=" + ",".join(f"{d.result}:{d.domain or '-'}" for d in results.dkim))
    elif results.spf is not None or results.dmarc is not None:
        words.append("dkim=none")
    if results.dmarc is not None:
        dmarc = f"dmarc={results.dmarc.result}"
        if results.dmarc.result == "fail":
            dmarc += f":{results.dmarc.disposition}"
        words.append(dmarc)
    if results.arc is not None:
        words.append(f"arc={results.arc.result}")
    return " ".join(words)


def _without_comments(text: str) -> str:
    out, depth, escaped = [], 0, False
    for ch in text:
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value names (RFC 8601 §2.2), lowercased; "" when it
    names none. Comments (CFWS) are skipped; a quoted-string id is unquoted."""
    head = _without_comments(value).split(";", 1)[0].strip()
    if head.startswith('"'):
        end = head.find('"', 1)
        return (head[1:end] if end > 0 else head[1:]).strip().lower()
    words = head.split()
    return words[0].lower() if words else ""
