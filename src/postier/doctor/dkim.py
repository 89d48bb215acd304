"""DKIM for our domains: every key of the key store (``postier dkim list``'s keys and states, decided by
``mailauth.dkim.table.decide`` from live lookups) published and matching, sizes that receivers
accept, and no stale selector left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from postier.config.dkim import DkimConfig
from postier.doctor.answers import RecordingLookup
from postier.doctor.findings import Finding, Level, fail, ok, warn
from postier.mailauth.dkim import key_root
from postier.mailauth.dkim.keys import record_name, zone_line
from postier.mailauth.dkim.keystore import load_keys
from postier.mailauth.dkim.table import Published, State, Status, check_records, decide

__all__ = ["DkimData", "gather_dkim", "judge_dkim", "judge_key"]

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must not consider keys below 1024 bits valid
GOOD_RSA_BITS = 2048  # RFC 8301 §3.2: signers should use at least 2048 bits


@dataclass(frozen=True, slots=True)
class DkimData:
    statuses: Sequence[Status]
    unreadable: Sequence[tuple[Path, str]]


async def gather_dkim(lookup: RecordingLookup, config: DkimConfig, data_dir: Path, now: datetime) -> DkimData:
    """The key store read (without writing: ``seen_at`` notes are the server's) and every record
    looked up, then the states ``postier dkim list`` shows."""
    keys, problems = await asyncio.to_thread(load_keys, key_root(data_dir), config.keys, data_dir)
    lookups = await check_records(lookup, keys)
    return DkimData(decide(keys, lookups, config, now), [(p.path, p.reason) for p in problems])


def _size(status: Status) -> str:
    key = status.key.key
    return f"rsa {key.key_size}" if isinstance(key, rsa.RSAPrivateKey) else status.key.algorithm


def judge_key(status: Status) -> Finding | None:
    """One key's finding; None for a key that needs nothing said."""
    k, lookup = status.key, status.lookup
    name, line = record_name(k.selector, k.domain), zone_line(k.selector, k.domain, k.key)
    subject = f"{k.domain} {k.selector}"
    if isinstance(k.key, rsa.RSAPrivateKey) and k.key.key_size < GOOD_RSA_BITS:
        bits = k.key.key_size
        grade = fail if bits < MIN_RSA_BITS else warn
        return grade("dkim", subject, f"RSA key of {bits} bits (use 2048)", f"postier dkim rotate {k.domain}")
    if status.state is State.ACTIVE and lookup.published is Published.MATCHES:
        return ok("dkim", subject, f"signs ({_size(status)}); {name} matches the key")
    if status.state is State.ACTIVE:
        return warn("dkim", subject, f"signs, but {name} could not be checked now ({lookup.detail})")
    if status.state is State.MISMATCH or lookup.published is Published.MISMATCH:
        return fail("dkim", subject, f"{name} does not match the key ({lookup.detail})", line)
    if status.state is State.UNPUBLISHED:
        return fail("dkim", subject, f"{name} is not published: the key cannot sign", line)
    if status.state is State.NEXT:
        return warn("dkim", subject, f"next key waiting for {name}", line)
    if status.state is State.RETIRED:
        return warn("dkim", subject, f"stale selector: {status.note}", f"; remove {name}. TXT")
    if status.state is State.RETIRING:
        return ok("dkim", subject, status.note)
    if status.state is State.DISABLED:
        return warn("dkim", subject, "signing is off for this domain ([dkim] enabled, disabled_domains)")
    return None


def judge_dkim(domain: str, data: DkimData) -> list[Finding]:
    mine = [s for s in data.statuses if s.key.domain == domain]
    out = [f for f in (judge_key(s) for s in mine) if f is not None]
    for path, reason in data.unreadable:
        if path.parent.name == domain:
            out.append(fail("dkim", domain, f"unreadable key {path}: {reason}"))
    active = [s for s in mine if s.state is State.ACTIVE]
    if not mine:
        out.append(
            fail("dkim", domain, "no DKIM key: mail from it goes unsigned", f"postier dkim keygen {domain}")
        )
    elif not active and not any(f.level is Level.FAIL for f in out):
        out.append(fail("dkim", domain, "no key signs: publish a key's record (above)"))
    elif active and all(s.key.algorithm == "ed25519" for s in active):
        fix = f"postier dkim keygen {domain} --algorithm rsa"
        out.append(warn("dkim", domain, "Ed25519 only: many receivers verify RSA alone", fix))
    return out
