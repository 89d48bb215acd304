"""``[antispam]``, ``[[antispam.dnsbl]]`` and ``[[milter]]``: the anti-spam checks (docs/antispam.md).

Every check is off by default: no zones, no pregreet delay, no greylisting, no rspamd, no milters.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["AntispamConfig", "DnsblZoneConfig", "MilterConfig"]

FailureMode = Literal["accept", "tempfail"]


class DnsblZoneConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    zone: str
    """The list's DNS zone, e.g. "zen.spamhaus.org" (a block list) or "list.dnswl.org" (an allow list)."""
    weight: float = 1.0
    """Added to the client's score when the zone lists it; negative for an allow list."""
    codes: tuple[str, ...] = ()
    """The A answers that count, e.g. ["127.0.0.2", "127.0.0.3"]. Empty: any 127.0.0.0/8 answer.
    Answers in 127.255.255.0/24 (the operator refused the query) are logged and never counted."""


class AntispamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dnsbl: tuple[DnsblZoneConfig, ...] = ()
    """[[antispam.dnsbl]] tables: the DNS block and allow lists asked at connect. Empty: none."""
    dnsbl_threshold: float = 1.0
    """A client whose score (the sum of the weights of the zones listing it) reaches this is refused at
    RCPT with 554 5.7.1, after the sender and recipient are logged (postscreen's default)."""
    dnsbl_timeout_s: float = 5.0
    """Deadline for all the zones together, in seconds; a zone that has not answered counts nothing."""
    pregreet_s: float = 0.0
    """Pregreet test on smtp listeners: the greeting's first line ("220-") goes out at once, the last
    ("220 ") after this many seconds; a client that talks in between is refused (554 5.5.0). 0: off."""
    pregreet_pass_ttl_s: float = 86400.0
    """A client address that passed the pregreet test skips it for this long, in seconds. Default a day."""
    greylist: bool = False
    """Greylisting at RCPT: a new (client network, sender, recipient) triplet gets 451 4.7.1 until it
    retries after greylist_delay_s. Trusted, authenticated and allow-listed clients are exempt."""
    greylist_delay_s: float = 300.0
    """How long a new triplet is refused, in seconds. Default 5 minutes."""
    greylist_retry_window_s: float = 2 * 86400.0
    """How long a refused triplet waits for its retry before it counts as new again. Default 2 days."""
    greylist_ttl_s: float = 36 * 86400.0
    """How long a triplet that passed is accepted without delay since it was last seen. Default 36 days."""
    greylist_auto_allow: int = 5
    """After this many triplets of a client network passed, the whole network skips greylisting (for
    greylist_ttl_s). 0: never."""
    greylist_ipv4_prefix: int = 24
    """IPv4 clients are greylisted by network of this prefix length (a sender's outbound pool)."""
    greylist_ipv6_prefix: int = 64
    """IPv6 clients are greylisted by network of this prefix length."""
    greylist_exempt_networks: tuple[str, ...] = ()
    """CIDR networks never greylisted (beside relay.trusted_networks and allow-listed clients)."""
    greylist_exempt_spf_domains: tuple[str, ...] = ()
    """Sender domains whose mail skips greylisting when SPF passes for them (known good senders)."""
    rspamd_url: str = ""
    """rspamd's normal worker, e.g. "http://127.0.0.1:11333" (the message goes to /checkv2 at the end
    of data). Empty: rspamd is not asked."""
    rspamd_timeout_s: float = 15.0
    """Deadline for rspamd's answer, in seconds."""
    rspamd_failure: FailureMode = "accept"
    """When rspamd times out or cannot be reached: accept the message unscanned, or tempfail it
    (451 4.3.0, the client retries)."""
    rspamd_scan_ours: bool = False
    """Also scan mail of trusted and authenticated clients (outbound spam)."""
    rspamd_max_bytes: int = 20 * 1024 * 1024
    """Larger messages are not sent to rspamd (accepted unscanned), in octets."""


class MilterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    address: str
    """Where the filter listens: "unix:/path/to/socket" or "host:port"."""
    name: str = ""
    """The name in the log and the metrics. Empty: "milter:" and the address."""
    connect_timeout_s: float = 10.0
    """Deadline to connect and negotiate, in seconds."""
    timeout_s: float = 30.0
    """Deadline for each answer of the filter, in seconds (a progress reply restarts it)."""
    failure: FailureMode = "tempfail"
    """When the filter cannot be reached, times out or breaks the protocol: accept the message without
    it, or tempfail it (451 4.3.0)."""
    scan_ours: bool = True
    """Also filter mail of trusted and authenticated clients (a DKIM signer needs exactly that mail)."""
