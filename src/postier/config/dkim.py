"""``[dkim]``: DKIM signing of outgoing mail (docs/dkim.md). Keys under ``data_dir/dkim/`` are used
without any configuration; this section lists keys kept elsewhere, pins selectors, turns signing off
per domain and sets the signature lifetime and the rotation grace period."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from postier.mail.errors import ConfigError

__all__ = ["DkimConfig", "DkimKeyConfig", "check_dkim"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # RFC 6376 §3.1: sub-domain syntax


class DkimKeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    domain: str
    """Domain the key signs for (the signature's d=)."""
    selector: str
    """Selector (s=): the public key is published as TXT at SELECTOR._domainkey.DOMAIN."""
    file: str
    """PEM private key, RSA or Ed25519; a relative path is under data_dir."""


class DkimConfig(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename={"keys": "key"}
):
    enabled: bool = True
    """Sign mail from authenticated users and trusted networks, and the mail Postier writes (DSNs),
    when the signing domain has a key whose DNS record matches. false: sign nothing."""
    sign_by: Literal["from", "sender"] = "from"
    """Which domain's key signs: "from" (the From: header's domain, what DMARC aligns with) or
    "sender" (the envelope sender's domain)."""
    keys: tuple[DkimKeyConfig, ...] = ()
    """[[dkim.key]] tables: keys kept outside data_dir/dkim (those under it need no entry)."""
    selectors: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    """Per domain, the selectors that sign (at most one per algorithm), e.g. { "example.org" =
    ["mail2026"] }. Absent: the newest key of each algorithm whose record is published."""
    disabled_domains: tuple[str, ...] = ()
    """Domains never signed for, whatever keys they have."""
    expire_s: float = 0.0
    """Signature lifetime, in seconds: x= is t= plus this. 0: no x= (signatures do not expire)."""
    rotation_grace_s: float = 7 * 86400.0
    """After a rotation, how long the old key's record must stay published once the new key signs
    (mail signed with the old key may still be in queues or be verified late). Default 7 days."""
    check_interval_s: float = 600.0
    """How often the keys' DNS records are looked up (a new key signs once its record is seen; a key
    whose record stops matching stops signing). Also on every reload (SIGHUP). Default 10 minutes."""


def check_dkim(config: DkimConfig) -> None:
    """Values msgspec cannot check by type. ConfigError names the key."""
    if config.expire_s < 0:
        raise ConfigError("dkim.expire_s", "must be 0 (no x=) or positive")
    if config.rotation_grace_s < 0:
        raise ConfigError("dkim.rotation_grace_s", "must not be negative")
    if config.check_interval_s <= 0:
        raise ConfigError("dkim.check_interval_s", "must be positive")
    for i, key in enumerate(config.keys):
        if not _SELECTOR.fullmatch(key.selector):
            raise ConfigError(f"dkim.key[{i}].selector", f"{key.selector!r} is not a valid selector")
        if not key.file:
            raise ConfigError(f"dkim.key[{i}].file", "a key file is needed")
    for domain, selectors in config.selectors.items():
        for selector in selectors:
            if not _SELECTOR.fullmatch(selector):
                raise ConfigError(f"dkim.selectors.{domain}", f"{selector!r} is not a valid selector")
