"""Which keys sign: the DNS check of each key's record, and the pure decision that follows.

Theory of operation. A key signs only when its published record matches it (``keys.record_problem``):
a key whose record is missing or holds another key is never used. Per domain and algorithm:

- the signing key is the newest key whose record matches (``[dkim] selectors`` pins others instead);
  while the DNS fails for a moment (SERVFAIL, timeout) a key whose record was seen before keeps
  signing, so an outage does not turn signing off;
- a newer key whose record is not seen yet is ``next``: rotation (``postier dkim rotate``) makes one,
  and it takes over on the first check that sees its record;
- an older key is ``retiring`` for ``rotation_grace_s`` after its successor's record was first seen
  (its record must stay published: signed mail may still be in queues), then ``retired`` — its
  record and file can go; ``note`` says so, with the date.

``decide`` is pure (keys, lookups, configuration, now); ``check_records`` does the lookups.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from postier.config.dkim import DkimConfig
from postier.dns.errors import DnsError, NoData, NxDomain
from postier.dns.resolver import Resolver
from postier.mail.domain import normalize_domain
from postier.mailauth.dkim.keys import record_name, record_problem
from postier.mailauth.dkim.keystore import KeyFile
from postier.mailauth.dkim.signer import DkimSigner, SigningKey

__all__ = ["Lookup", "Published", "State", "Status", "build_signer", "check_records", "decide"]


class Published(enum.Enum):
    MATCHES = "matches"
    MISSING = "missing"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"  # the DNS did not answer (temporary failure)


@dataclass(frozen=True, slots=True)
class Lookup:
    published: Published
    detail: str = ""


class State(enum.Enum):
    ACTIVE = "active"  # signs
    NEXT = "next"  # newer than the signing key, waiting for its record
    RETIRING = "retiring"  # replaced; its record stays published until the grace period ends
    RETIRED = "retired"  # replaced and past the grace period: record and file can go
    UNPUBLISHED = "unpublished"  # no record, and nothing to take over from
    MISMATCH = "mismatch"  # a record is published but does not match: never used
    UNUSED = "unused"  # another selector is pinned in [dkim] selectors
    DISABLED = "disabled"  # [dkim] enabled = false, or the domain is in disabled_domains


@dataclass(frozen=True, slots=True)
class Status:
    key: KeyFile
    lookup: Lookup
    state: State
    note: str = ""


async def _lookup(resolver: Resolver, key: KeyFile) -> Lookup:
    try:
        texts = await resolver.txt(record_name(key.selector, key.domain))
    except (NxDomain, NoData):
        return Lookup(Published.MISSING, "no TXT record")
    except DnsError as exc:
        return Lookup(Published.UNKNOWN, str(exc))
    problems = [record_problem(key.key, text) for text in texts]
    if None in problems:
        return Lookup(Published.MATCHES)
    return Lookup(Published.MISMATCH, "; ".join(p for p in problems if p))


async def check_records(resolver: Resolver, keys: Sequence[KeyFile]) -> dict[Path, Lookup]:
    """Look up every key's record at once; by key path."""
    results = await asyncio.gather(*(_lookup(resolver, k) for k in keys))
    return {k.path: r for k, r in zip(keys, results, strict=True)}


def _usable(key: KeyFile, lookup: Lookup) -> bool:
    return lookup.published is Published.MATCHES or (
        lookup.published is Published.UNKNOWN and key.seen_at is not None
    )


def _group(
    keys: Sequence[KeyFile], lookups: Mapping[Path, Lookup], config: DkimConfig, now: datetime
) -> list[Status]:
    """One domain's keys of one algorithm, oldest first."""
    missing = Lookup(Published.UNKNOWN, "not looked up")
    usable = [k for k in keys if _usable(k, lookups.get(k.path, missing))]
    active = usable[-1] if usable else None
    out = []
    for key in keys:
        lookup = lookups.get(key.path, missing)
        name = record_name(key.selector, key.domain)
        if key is active:
            out.append(Status(key, lookup, State.ACTIVE))
        elif lookup.published is Published.MISMATCH:
            out.append(Status(key, lookup, State.MISMATCH, f"the record at {name} does not match"))
        elif active is not None and key.created_at <= active.created_at:
            until = (active.seen_at or now) + timedelta(seconds=config.rotation_grace_s)
            if now < until:
                note = f"keep {name} published until {until:%Y-%m-%d %H:%M} UTC"
                out.append(Status(key, lookup, State.RETIRING, note))
            else:
                note = f"remove the record {name} and the file {key.path}"
                out.append(Status(key, lookup, State.RETIRED, note))
        elif active is not None:
            note = f"publish {name}; it signs once seen (then {active.selector} retires)"
            out.append(Status(key, lookup, State.NEXT, note))
        else:
            out.append(Status(key, lookup, State.UNPUBLISHED, f"publish {name} to sign with it"))
    return out


def _pinned(keys: Sequence[KeyFile], lookups: Mapping[Path, Lookup], pinned: Iterable[str]) -> list[Status]:
    chosen = set(pinned)
    missing = Lookup(Published.UNKNOWN, "not looked up")
    out = []
    for key in keys:
        lookup = lookups.get(key.path, missing)
        if key.selector not in chosen:
            out.append(Status(key, lookup, State.UNUSED, "another selector is pinned in [dkim] selectors"))
        elif _usable(key, lookup):
            out.append(Status(key, lookup, State.ACTIVE))
        elif lookup.published is Published.MISMATCH:
            out.append(Status(key, lookup, State.MISMATCH, "pinned, but its record does not match"))
        else:
            out.append(Status(key, lookup, State.UNPUBLISHED, "pinned, but its record is not seen"))
    return out


def decide(
    keys: Iterable[KeyFile], lookups: Mapping[Path, Lookup], config: DkimConfig, now: datetime
) -> list[Status]:
    """Every key's state (see the module docstring), by domain, algorithm and age."""
    disabled = {normalize_domain(d) for d in config.disabled_domains}
    pins = {normalize_domain(d): s for d, s in config.selectors.items()}
    groups: dict[tuple[str, str], list[KeyFile]] = {}
    for key in sorted(keys, key=lambda k: (k.domain, k.algorithm, k.created_at, k.selector)):
        groups.setdefault((key.domain, key.algorithm), []).append(key)
    out: list[Status] = []
    for (domain, _), group in groups.items():
        if not config.enabled or domain in disabled:
            out += [Status(k, lookups.get(k.path, Lookup(Published.UNKNOWN)), State.DISABLED) for k in group]
        elif domain in pins:
            out += _pinned(group, lookups, pins[domain])
        else:
            out += _group(group, lookups, config, now)
    return out


def build_signer(statuses: Iterable[Status], config: DkimConfig) -> DkimSigner:
    """The signer for the active keys: per domain, Ed25519 first, then RSA."""
    statuses = list(statuses)
    table: dict[str, list[SigningKey]] = {}
    for status in sorted(statuses, key=lambda s: s.key.algorithm != "ed25519"):
        if status.state is State.ACTIVE:
            k = status.key
            table.setdefault(k.domain, []).append(SigningKey(k.domain, k.selector, k.key))
    return DkimSigner(
        {d: tuple(keys) for d, keys in table.items()},
        keyed={s.key.domain for s in statuses},
        expire_s=config.expire_s,
        sign_by=config.sign_by,
    )
