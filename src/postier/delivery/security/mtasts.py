"""MTA-STS (RFC 8461), the pure half: the ``_mta-sts`` TXT record, the policy file, and which MX
names a policy allows.

Theory of operation. A domain publishes ``_mta-sts.DOMAIN TXT "v=STSv1; id=…"`` (§3.1) and serves
its policy at ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` (§3.2)::

    version: STSv1
    mode: enforce              enforce | testing | none
    mx: mail.example.org       one line per allowed MX name; "*.example.org" matches one label
    max_age: 604800            seconds the policy may be cached (at most 31557600, §3.2)

``parse_record`` and ``parse_policy`` never raise: bad input is a ``Broken`` value carrying why, so
``postier explain tls`` can show it and TLS-RPT can count it. ``mx_matches`` is §4.1: a pattern is a
host name, or ``*.`` and a domain standing for exactly one more label on the left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MAX_AGE_LIMIT_S",
    "MAX_POLICY_BYTES",
    "Broken",
    "StsMode",
    "StsPolicy",
    "StsRecord",
    "allowed_hosts",
    "mx_matches",
    "parse_policy",
    "parse_record",
    "policy_url",
    "record_name",
]

MAX_AGE_LIMIT_S = 31_557_600  # RFC 8461 §3.2: max_age is at most about one year
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: "a reasonable limit … 64 kilobytes"
_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # §3.1 sts-id
_FIELD = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class StsMode(StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Broken:
    """Why a record or a policy cannot be used (for logs, ``explain tls`` and TLS-RPT)."""

    reason: str


@dataclass(frozen=True, slots=True)
class StsRecord:
    """The ``_mta-sts`` TXT record: its ``id`` changes whenever the policy does (§3.1)."""

    id: str


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """A parsed policy file. ``mx`` are the patterns (lowercase, no trailing dot)."""

    mode: StsMode
    max_age_s: int
    mx: tuple[str, ...]

    def to_text(self) -> str:
        """The policy as a file (CRLF lines): for the cache and for serving our own."""
        lines = ["version: STSv1", f"mode: {self.mode.value}", *(f"mx: {m}" for m in self.mx)]
        lines.append(f"max_age: {self.max_age_s}")
        return "".join(f"{line}\r\n" for line in lines)


def record_name(domain: str) -> str:
    return f"_mta-sts.{domain.rstrip('.')}"


def policy_url(domain: str) -> tuple[str, str]:
    """(host, path) of the policy: ``mta-sts.DOMAIN``, ``/.well-known/mta-sts.txt`` (§3.3)."""
    return f"mta-sts.{domain.rstrip('.').lower()}", "/.well-known/mta-sts.txt"


def parse_record(texts: Sequence[str]) -> StsRecord | Broken | None:
    """The STS record among the TXT ``texts`` of ``_mta-sts.DOMAIN``; None when there is none.
    §3.1: records not starting with ``v=STSv1`` are discarded; more than one left, or one that
    does not parse, means "no policy available" (here ``Broken``, with why)."""
    candidates = [t for t in texts if t.startswith("v=STSv1")]
    if not candidates:
        return None
    if len(candidates) > 1:
        return Broken(f"{len(candidates)} TXT records start with v=STSv1")
    fields: dict[str, str] = {}
    for i, part in enumerate(candidates[0].split(";")):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not _FIELD.fullmatch(key) or any(c in value for c in "; =") or not value.isprintable():
            return Broken(f"bad field {part!r} in the TXT record")
        if i == 0 and (key, value) != ("v", "STSv1"):
            return Broken("the TXT record does not start with v=STSv1")
        fields.setdefault(key, value)
    sts_id = fields.get("id")
    if sts_id is None or not _ID.fullmatch(sts_id):
        return Broken("the TXT record has no valid id (1 to 32 letters and digits)")
    return StsRecord(sts_id)


def parse_policy(text: str) -> StsPolicy | Broken:
    """The policy file (§3.2): ``key: value`` lines, CRLF or LF; unknown keys ignored, the first of a
    repeated key counts (``mx`` may repeat). version, mode and max_age are required, and ``mx`` unless
    the mode is none."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        return Broken(f"the policy is larger than {MAX_POLICY_BYTES} octets")
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not _FIELD.fullmatch(key):
            return Broken(f"bad line {line[:80]!r} in the policy")
        value = value.strip(" \t")
        if key == "mx":
            pattern = value.lower().rstrip(".")
            if not _is_pattern(pattern):
                return Broken(f"bad mx pattern {value[:80]!r}")
            mx.append(pattern)
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        return Broken("the policy has no 'version: STSv1'")
    try:
        mode = StsMode(fields.get("mode", ""))
    except ValueError:
        return Broken(f"bad mode {fields.get('mode', '')[:40]!r} (enforce, testing or none)")
    max_age = fields.get("max_age", "")
    if not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        return Broken(f"bad max_age {max_age[:40]!r}")
    if not mx and mode is not StsMode.NONE:
        return Broken("the policy names no mx")
    return StsPolicy(mode, min(int(max_age), MAX_AGE_LIMIT_S), tuple(dict.fromkeys(mx)))


def _is_pattern(pattern: str) -> bool:
    labels = pattern.removeprefix("*.").split(".")
    return len(labels) >= 1 and all(_LABEL.fullmatch(label) for label in labels)


def mx_matches(host: str, pattern: str) -> bool:
    """§4.1: ``host`` is ``pattern``, or ``pattern`` is ``*.rest`` and ``host`` is one label + ``.rest``."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def allowed_hosts(policy: StsPolicy, hosts: Iterable[str]) -> list[str]:
    """The hosts, in order, that some ``mx`` pattern of ``policy`` matches."""
    return [h for h in hosts if any(mx_matches(h, p) for p in policy.mx)]
