"""The configuration as frozen, validated structs. Every field documents meaning, unit and default
where it is defined; docs/configuration.md is checked against these definitions by a test.

The shape ``[server] hostname, data_dir``, ``[[listener]] address, mode``, ``[tls] cert, key``,
``[queue] backend``, ``[relay] local_domains, trusted_networks, smarthost`` and ``[dns] nameservers``
is a public interface: keys may be added, never renamed.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AuthConfig",
    "Config",
    "DnsConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "QueueConfig",
    "RelayConfig",
    "ServerConfig",
    "TlsConfig",
]

ListenerMode = Literal["smtp", "submission", "submissions"]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hostname: str = "localhost"
    """Name this server gives in the greeting, EHLO reply and Received headers."""
    data_dir: str = "var"
    """Directory for the queue, the self-signed certificate and mailboxes; relative to the working dir."""
    max_message_bytes: int = 50 * 1024 * 1024
    """Largest message accepted, in octets (advertised as SIZE). Default 50 MiB."""
    max_recipients: int = 1000
    """Recipients accepted per message; beyond, 452 4.5.3. RFC 5321 requires at least 100."""
    max_line_octets: int = 1000
    """Longest message line, CRLF included (RFC 5321 §4.5.3.1.6: 1000). A message with a longer line is
    read to its end and refused with 550 5.6.0. Raise it only for legacy senders that cannot fold lines."""
    max_errors: int = 10
    """Protocol errors tolerated in one session before 421 4.7.0 and close."""
    max_connections: int = 1000
    """Concurrent SMTP connections over all listeners; beyond, 421 4.7.0."""
    max_connections_per_ip: int = 50
    """Concurrent connections from one client IP address; beyond, 421 4.7.0."""
    command_timeout_s: float = 300.0
    """Idle time allowed while waiting for a command (RFC 5321 §4.5.3.2.7: 5 minutes)."""
    data_timeout_s: float = 180.0
    """Idle time allowed between two blocks of message data (RFC 5321 §4.5.3.2.5: 3 minutes)."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM: how long open sessions may go on before they get 421 4.3.2."""
    early_talker_delay_s: float = 0.0
    """Pause before the greeting on `smtp` listeners; a client that talks first gets 554 5.5.0. 0: off."""


class ListenerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    address: str
    """"host:port" to listen on, e.g. "127.0.0.1:2525" or "[::1]:2525"."""
    mode: ListenerMode = "smtp"
    """smtp (receives for local domains, relays for trusted/authenticated clients), submission
    (STARTTLS, then AUTH required), submissions (implicit TLS, RFC 8314)."""


class TlsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    cert: str = ""
    """PEM certificate chain. Empty: a self-signed pair is made under data_dir on first start."""
    key: str = ""
    """PEM private key for cert."""


class QueueConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["sqlite"] = "sqlite"
    """Queue store: "sqlite" (embedded, under data_dir)."""
    commit_batch_max: int = 512
    """Most enqueues one group commit (one fsync) may carry. 1 means one fsync per message."""
    keep_history_s: float = 7 * 86400.0
    """How long a delivered or failed message's record is kept, so "what happened to my message" has an
    answer. Default 7 days."""
    keep_body_s: float = 86400.0
    """How long the body of a delivered or failed message is kept (at most keep_history_s). Default 1 day."""
    purge_interval_s: float = 3600.0
    """How often the server purges finished messages past those times. Default hourly."""


class RelayConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    local_domains: tuple[str, ...] = ("localhost",)
    """Domains whose mail is delivered here (case-insensitive)."""
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """CIDR networks allowed to relay to any domain without AUTH."""
    smarthost: str = ""
    """"host:port" that all outbound mail is relayed through. Empty: deliver by MX. (Read by outbound
    delivery, which is not built yet.)"""


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


class LimitsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    connections_per_minute_per_ip: int = 0
    """New connections one client IP may open per minute; beyond, 421 4.7.0. 0: no limit."""
    messages_per_hour_per_ip: int = 0
    """Messages one client IP may send per hour; beyond, 450 4.7.1 at RCPT. 0: no limit."""
    messages_per_hour_per_user: int = 0
    """Messages one authenticated user may send per hour; beyond, 450 4.7.1 at RCPT. 0: no limit."""
    exempt_trusted_networks: bool = True
    """Clients in relay.trusted_networks are not rate-limited."""


class DnsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    nameservers: tuple[str, ...] = ()
    """"host:port" DNS servers to ask. Empty: the system resolver (/etc/resolv.conf). (Read by outbound
    delivery, which is not built yet.)"""


class LogConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written to standard error."""
    format: Literal["kv", "json"] = "kv"
    """Line format: key=value text or one JSON object per line."""


def _default_listeners() -> tuple[ListenerConfig, ...]:
    return (
        ListenerConfig(address="127.0.0.1:2525", mode="smtp"),
        ListenerConfig(address="127.0.0.1:2587", mode="submission"),
    )


class Config(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename={"listeners": "listener"}
):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    listeners: tuple[ListenerConfig, ...] = msgspec.field(default_factory=_default_listeners)
    """[[listener]] tables, one per listening socket. Default: smtp on 127.0.0.1:2525,
    submission on 127.0.0.1:2587."""
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    relay: RelayConfig = msgspec.field(default_factory=RelayConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    dns: DnsConfig = msgspec.field(default_factory=DnsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
