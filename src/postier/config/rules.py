"""Configuration sections of the receiving side's rules: the policy pipeline and its user checks,
AUTH and the rate limits. Every field documents meaning, unit and default where it is defined (the
public shape of the file is described in ``model.py``)."""

from __future__ import annotations

import msgspec

__all__ = ["AuthConfig", "CheckConfig", "LimitsConfig", "PolicyConfig"]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class AuthConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_failures: int = 5
    """Failed AUTH attempts from one client (IPv4 address, IPv6 /64) within window_s before it is locked
    out; each failure after the first delays the next attempt (1, 2, 4, 8 s)."""
    window_s: float = 300.0
    """The window in which failures are counted, in seconds."""
    lockout_s: float = 900.0
    """How long a locked-out client's AUTH attempts get 421 4.7.0, in seconds."""
    max_concurrent_verifies: int = 2
    """Password checks (argon2id, about 150 ms of CPU each) run at once; others wait."""
    max_waiting_verifies: int = 32
    """Password checks that may wait for a turn beyond max_concurrent_verifies; one more AUTH gets
    454 4.7.0 at once, without a check. Bounds the wait (32 x 150 ms / 2 = 2.4 s at the defaults) and the
    work a burst of AUTH commands can queue up. Whether the client got locked out meanwhile is asked
    again when a check's turn comes."""
    max_account_delay_s: float = 20.0
    """Per-account failure budget: each failed login at one account (from any client address) within
    window_s delays the next attempt at that account by 1, 2, 4 ... s, up to this many seconds, before its
    password is checked. Slows guessing spread over many addresses without ever locking the owner out
    (a right password still gets in, after at most this delay, and clears the account's failures).
    0: off."""


class LimitsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    connections_per_minute_per_ip: int = 0
    """New connections one client IP may open per minute; beyond, 421 4.7.0. 0: no limit."""
    messages_per_hour_per_ip: int = 0
    """Messages one client IP may send per hour; beyond, 450 4.7.1 at RCPT. 0: no limit."""
    messages_per_hour_per_user: int = 0
    """Messages one authenticated user may send per hour; beyond, 450 4.7.1 at RCPT. 0: no limit."""
    exempt_trusted_networks: bool = True
    """Clients in relay.trusted_networks are not rate-limited."""


class PolicyConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    connect_timeout_s: float = 10.0
    """Deadline for the asynchronous checks (DNS, network) of the connect stage; a check that has not
    answered by then gives its failure verdict (by default 421 4.3.0 at connect, 451 4.3.0 later)."""
    helo_timeout_s: float = 10.0
    """Deadline for the asynchronous checks of the HELO/EHLO stage."""
    mail_timeout_s: float = 20.0
    """Deadline for the asynchronous checks of the MAIL FROM stage (SPF, say)."""
    rcpt_timeout_s: float = 20.0
    """Deadline for the asynchronous checks of each RCPT TO."""
    data_timeout_s: float = 60.0
    """Deadline for the asynchronous checks at the end of data (DKIM, DMARC, rspamd, milters). RFC 5321
    §4.5.3.2.6 gives the client 10 minutes for the end-of-data reply."""
    ipv6_prefix: int = 64
    """IPv6 clients are counted per network of this prefix length for the per-address connection and
    rate limits (one host usually holds a whole /64). 128 counts each address."""


class CheckConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    module: str
    """The check's class or factory, ``"package.module:Name"``, importable by the server's Python;
    called with the ``options`` table as keyword arguments (docs/policy.md)."""
    options: dict[str, object] = msgspec.field(default_factory=dict)
    """Keyword arguments for the check's constructor."""
