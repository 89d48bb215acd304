"""``[mailauth]``: checking what comes in — SPF, DKIM, DMARC, ARC — and what is done with the results
(docs/mailauth.md). Mail from trusted networks and authenticated clients is never checked."""

from __future__ import annotations

from typing import Literal

import msgspec

from postier.mail.errors import ConfigError

__all__ = ["MailauthConfig", "check_mailauth"]

Mode = Literal["off", "tag", "enforce"]


class MailauthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    spf: Mode = "tag"
    """SPF (RFC 7208) of the MAIL FROM identity and the HELO name. off: not checked; tag: the result
    goes into Authentication-Results (and DMARC); enforce: a fail (the domain's -all) is refused at
    MAIL FROM with 550 5.7.23, a temporary DNS failure with 451 4.7.24. With off, DMARC can pass by
    DKIM alone."""
    dkim: Literal["off", "tag"] = "tag"
    """DKIM (RFC 6376) verification of every signature. off: not checked (DMARC then passes by SPF
    alone); tag: each signature's result goes into Authentication-Results (and DMARC)."""
    dkim_max_signatures: int = 5
    """How many DKIM-Signature fields of a message are checked, topmost first; the others get
    dkim=policy. Bounds the work a message can ask for."""
    verify_max_bytes: int = 10 * 1024 * 1024
    """Largest message whose DKIM signatures and ARC chain are verified, in octets (verifying reads the
    whole message into memory). A larger one gets dkim=policy, and DMARC then rests on SPF alone.
    Default 10 MiB."""
    verify_memory_bytes: int = 32 * 1024 * 1024
    """Octets of large (spooled) messages read into memory for DKIM and ARC verification at once, over
    all sessions of a process; a message waits its turn (within the data stage's deadline). Bounds
    what many large messages ending together cost (without it: sessions × verify_max_bytes).
    Default 32 MiB."""
    dkim_min_rsa_bits: int = 1024
    """Shortest RSA key accepted, in bits: a signature by a shorter key fails (RFC 8301 §3.2 sets 1024)."""
    dmarc: Mode = "tag"
    """DMARC (RFC 7489 / DMARCbis). off: not checked; tag: the result goes into Authentication-Results;
    enforce: a failure whose policy is p=reject is refused after DATA with 550 5.7.1, p=quarantine is
    delivered marked (dmarc_quarantine), and a policy that cannot be looked up now (DNS failure) is
    answered 451 4.7.1 so the sender tries again."""
    dmarc_quarantine: Literal["header", "hold"] = "header"
    """What enforce does with a p=quarantine failure: header — deliver it with
    "X-Postier-Quarantine: dmarc" (for a Sieve rule or the mail client to file as spam); hold —
    queue it held, for an operator (postier queue release / delete)."""
    arc: Literal["off", "tag"] = "tag"
    """ARC (RFC 8617) chain verification on arrival; the result goes into Authentication-Results."""
    arc_trusted_sealers: tuple[str, ...] = ()
    """Domains whose passing ARC chain vouches for a message that fails DMARC (a mailing list or
    forwarder you trust, RFC 8617 §7.2.1): such a failure is not refused or quarantined. Empty: none."""
    arc_seal: bool = True
    """Seal (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) mail forwarded through an
    alias to another domain, with the DKIM key of server.hostname's domain, so its authentication
    survives the forwarding. Needs a DKIM key for that domain (docs/dkim.md)."""
    dmarc_reports: bool = False
    """Send DMARC aggregate reports (RFC 7489 §7.2): results are kept per day under
    data_dir/dmarc/, and once a day a report (XML, gzip) goes to each rua address of the domains
    seen (an address outside the domain only when it authorizes it, §7.1)."""
    dmarc_report_from: str = ""
    """Sender and From of the reports. Empty: postmaster@ server.hostname's domain."""
    dmarc_report_org: str = ""
    """The org_name in the reports. Empty: server.hostname."""
    dmarc_report_interval_s: float = 86400.0
    """How often reports are sent, in seconds (the reporting period). Default one day."""


def check_mailauth(config: MailauthConfig) -> None:
    if config.dkim_max_signatures < 1:
        raise ConfigError("mailauth.dkim_max_signatures", "must be at least 1")
    if config.verify_max_bytes < 0:
        raise ConfigError("mailauth.verify_max_bytes", "must not be negative")
    if config.verify_memory_bytes < 1:
        raise ConfigError("mailauth.verify_memory_bytes", "must be positive")
    if config.dkim_min_rsa_bits < 1024:
        raise ConfigError("mailauth.dkim_min_rsa_bits", "must be at least 1024 (RFC 8301 §3.2)")
    if config.dmarc_report_interval_s < 60:
        raise ConfigError("mailauth.dmarc_report_interval_s", "must be at least 60")
    if config.dmarc_report_from and "@" not in config.dmarc_report_from:
        raise ConfigError("mailauth.dmarc_report_from", "must be an address")
