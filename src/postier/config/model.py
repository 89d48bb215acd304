"""The configuration as frozen, validated structs. Every field documents meaning, unit and default
where it is defined; docs/configuration.md is checked against these definitions by a test.

The shape ``[server] hostname, data_dir``, ``[[listener]] address, mode``, ``[tls] cert, key``,
``[queue] backend``, ``[relay] local_domains, trusted_networks, smarthost`` and ``[dns] nameservers``
is a public interface: keys may be added, never renamed.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from postier.config.antispam import AntispamConfig, MilterConfig
from postier.config.api import ApiConfig, WebhookConfig
from postier.config.dkim import DkimConfig, DkimKeyConfig
from postier.config.mailauth import MailauthConfig
from postier.config.rules import AuthConfig, CheckConfig, LimitsConfig, PolicyConfig
from postier.config.suppression import SuppressionConfig
from postier.config.tlsrpt import TlsRptConfig

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "CheckConfig",
    "Config",
    "DeliveryConfig",
    "DkimConfig",
    "DkimKeyConfig",
    "DnsConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LocalConfig",
    "LogConfig",
    "MailauthConfig",
    "MetricsConfig",
    "PolicyConfig",
    "QueueConfig",
    "RelayConfig",
    "RouteConfig",
    "ServerConfig",
    "SuppressionConfig",
    "TlsConfig",
    "WebhookConfig",
]

ListenerMode = Literal["smtp", "submission", "submissions"]
TlsMode = Literal["none", "opportunistic", "required", "verify"]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hostname: str = "localhost"
    """Name this server gives in the greeting, EHLO reply and Received headers."""
    data_dir: str = "var"
    """Directory for the queue, the self-signed certificate and mailboxes; relative to the working dir."""
    user: str = ""
    """Started as root, the user to become once the listeners are bound, before the queue is opened or
    any client byte is read (docs/security.md, "Privileges"). data_dir and everything in it is given to
    that user at each start. Empty: as root, `postier serve` refuses to start unless --allow-root is
    given; as another user, it runs as that user (set it to that user, or leave it empty). Needs a
    restart."""
    group: str = ""
    """The group to become with user. Empty: the user's primary group. The user's supplementary groups
    are kept (e.g. ssl-cert, to read the TLS key)."""
    max_message_bytes: int = 50 * 1024 * 1024
    """Largest message accepted, in octets (advertised as SIZE). Default 50 MiB."""
    max_recipients: int = 1000
    """Recipients accepted per message; beyond, 452 4.5.3. RFC 5321 requires at least 100."""
    max_line_octets: int = 1000
    """Longest message line, CRLF included (RFC 5321 §4.5.3.1.6: 1000). A message with a longer line is
    read to its end and refused with 550 5.6.0. Raise it only for legacy senders that cannot fold lines."""
    max_errors: int = 10
    """Protocol errors tolerated in one session before 421 4.7.0 and close."""
    error_delay_s: float = 1.0
    """Once a session has made max_errors / 2 protocol errors, each further error reply waits this
    long (a tarpit, as Postfix's smtpd_error_sleep_time after smtpd_soft_error_limit): a client
    flooding bad or junk commands (a BDAT 0 flood past server.bdat_max_small_chunks) then costs
    seconds, not CPU, before the 421. 0: no delay."""
    max_connections: int = 1000
    """Concurrent SMTP connections over all listeners; beyond, 421 4.7.0."""
    max_connections_per_ip: int = 50
    """Concurrent connections from one client IP address; beyond, 421 4.7.0."""
    command_timeout_s: float = 300.0
    """Idle time allowed while waiting for a command (RFC 5321 §4.5.3.2.7: 5 minutes)."""
    data_timeout_s: float = 180.0
    """Idle time allowed between two blocks of message data (RFC 5321 §4.5.3.2.5: 3 minutes)."""
    min_data_bytes_per_s: float = 500.0
    """The slowest a message may arrive, in octets per second: from the 354 (or the first BDAT) the
    whole message must be in within data_timeout_s plus one second per this many octets received, else
    421 4.4.2 (as Postfix's smtpd_min_data_rate). Stops a client holding a session and its memory by
    trickling one byte per data_timeout_s. 0: only the idle timeout per read. Default 500."""
    hold_message_bytes: int = 256 * 1024
    """Octets of one message a session keeps in memory; beyond, the message goes to an anonymous spool
    file under data_dir/spool, then into the queue's body log without passing through memory again.
    Default 256 KiB."""
    memory_budget_bytes: int = 64 * 1024 * 1024
    """Octets of client input all sessions of a process may hold in memory together (messages below
    hold_message_bytes, buffers); when spent, a session spools its message from the first byte
    instead. Bounds the memory of max_connections busy sessions. Default 64 MiB."""
    max_header_bytes: int = 1024 * 1024
    """Largest header section of a message (up to the first empty line, RFC 5322 §2.1), in octets;
    beyond, the message is read to its end and refused with 552 5.3.4. A message without an empty line
    is all header. Default 1 MiB."""
    bdat_min_chunk_bytes: int = 4096
    """A BDAT chunk (RFC 3030) smaller than this, other than the LAST, is "small" (BDAT 0, one-octet
    chunks: each costs a command and a reply, but no memory: chunks are merged as they come). Default 4096."""
    bdat_max_small_chunks: int = 100
    """Small BDAT chunks one session may send (over all its transactions: RSET gives no new budget);
    beyond, each gets 552 5.3.4 and counts toward max_errors, so a BDAT 0 flood ends with 421 4.7.0
    (slowed by error_delay_s). Like Postfix's smtpd_junk_command_limit (100). Default 100."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM: how long open sessions may go on before they get 421 4.3.2."""
    early_talker_delay_s: float = 0.0
    """Pause before the greeting on `smtp` listeners; a client that talks first gets 554 5.5.0. 0: off."""
    node: str = ""
    """Name of this node in a cluster sharing a PostgreSQL queue (queue.backend = "postgres"): its leases
    carry it, so the tools say which node holds what. Unique per node. Empty: the machine's host name."""
    workers: int = 0
    """Processes that receive mail on the same ports, sharing the queue: 1 to 31, or 0 (the default)
    for one per CPU core this process may run on (at most 31; 1 with [metrics], see below). With 1,
    one process does everything. With N > 1 (docs/operations.md, "Workers"), the first process
    delivers, purges and supervises N more that receive (it receives only for one that is down), so
    N + 1 processes run. Counters kept in memory
    are per process: with N workers a client can reach N times max_connections,
    max_connections_per_ip, the [limits] rates and auth.max_failures. Needs a restart. [metrics]
    needs one process (one process's counters would pass for all): with metrics.address set, 0 means
    1, and N > 1 is refused."""


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
    backend: Literal["sqlite", "postgres"] = "sqlite"
    """Queue store: "sqlite" (embedded, under data_dir) or "postgres" (one PostgreSQL database shared by
    several nodes: docs/scale-out.md)."""
    dsn: str = ""
    """postgres: the database, "postgresql://user@host:port/dbname" (libpq URI; no password in it: use
    password_file or the PGPASSWORD environment variable). Never logged with a password."""
    password_file: str = ""
    """postgres: file whose first line is the database password. Empty: PGPASSWORD, ~/.pgpass or none."""
    schema: str = "postier"
    """postgres: the PostgreSQL schema (namespace) holding the queue's tables; created if missing."""
    pool_size: int = 10
    """postgres: most database connections this process opens (the group-commit writer, claims,
    outcomes, tools, the LISTEN connection aside)."""
    timeout_s: float = 30.0
    """postgres: longest wait for one database call (connect or statement) before it fails: new mail
    gets 451 4.3.0, deliveries wait for the next poll."""
    lease_s: float = 120.0
    """How long claimed recipients are this process's to deliver. Renewed every third of it while their
    delivery runs; when a process (a node) dies, another takes its recipients after at most this long."""
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
    relay_domains: tuple[str, ...] = ()
    """Domains this server is a gateway or backup MX for: their mail is taken from anyone (like a local
    domain's) and carried on to their [[route]] or MX (docs/antispam.md, "Relay domains")."""
    relay_recipients: dict[str, str] = msgspec.field(default_factory=dict)
    """Per relay domain, a file of its valid recipients (one address or local part a line; "#"
    comments; "@" alone: any). Other recipients of that domain get 550 5.1.1 at RCPT instead of a
    bounce later. A relay domain without a file takes any recipient. Read at start and on reload."""
    smarthost: str = ""
    """"host:port" that all outbound mail is relayed through (a provider relay: Amazon SES, SparkPost,
    Gmail, an ISP). Empty: deliver by MX. Shorthand for a [[route]] with domains = ["*"]."""
    smarthost_tls: TlsMode = "verify"
    """TLS towards the smarthost: verify (STARTTLS, certificate checked), required, opportunistic, none."""
    smarthost_implicit_tls: bool = False
    """Connect to the smarthost with TLS from the first byte (port 465, RFC 8314) instead of STARTTLS."""
    smarthost_username: str = ""
    """SASL user name for the smarthost. Empty: no AUTH."""
    smarthost_password_file: str = ""
    """File holding the smarthost password (first line). Kept out of the config file so it can be shared."""
    smarthost_auth: Literal["plain", "login"] = "plain"
    """SASL mechanism for the smarthost: plain or login."""


class DnsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    nameservers: tuple[str, ...] = ()
    """"host:port" DNS servers to ask. Empty: the system resolver (/etc/resolv.conf)."""
    dnssec: bool = False
    """Declares the resolvers above DNSSEC-validating (a local unbound, say): their AD bit is then
    trusted, and DANE (RFC 7672) applies to MX hosts whose TLSA records are secure. Only set it for a
    resolver you trust on a path you trust (loopback): the AD bit is not itself protected."""


class RouteConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    domains: tuple[str, ...]
    """Recipient domains sent through this route (a transport map); "*" is every non-local domain that no
    other route names."""
    host: str
    """"host:port" of the relay for these domains."""
    tls: TlsMode = "verify"
    """TLS towards this relay: verify, required, opportunistic or none (see delivery.tls)."""
    implicit_tls: bool = False
    """TLS from the first byte (port 465, RFC 8314) instead of STARTTLS."""
    username: str = ""
    """SASL user name. Empty: no AUTH."""
    password_file: str = ""
    """File holding the password (first line)."""
    auth: Literal["plain", "login"] = "plain"
    """SASL mechanism: plain or login."""


class DeliveryConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tls: TlsMode = "opportunistic"
    """TLS policy for delivery by MX: none (never STARTTLS), opportunistic (STARTTLS when offered, plain
    text when not), required (STARTTLS or defer, certificate not checked), verify (STARTTLS with the
    certificate chain and the MX host name checked, or defer)."""
    tls_policy: dict[str, TlsMode] = msgspec.field(default_factory=dict)
    """Per recipient domain overrides of tls, e.g. { "bank.example" = "verify" }."""
    ca_file: str = ""
    """PEM bundle of trusted CAs for verify, MTA-STS MX certificates and MTA-STS policy fetches. Empty:
    the system's trust store."""
    mta_sts: bool = True
    """Apply MTA-STS (RFC 8461) policies of recipient domains: enforce → only the MX hosts the policy
    names, with a verified certificate, else deferred (4.7.5); testing → delivered as usual and logged."""
    mta_sts_timeout_s: float = 10.0
    """Time allowed for fetching one MTA-STS policy over HTTPS (its size is limited to 64 KiB)."""
    mta_sts_refresh_s: float = 86400.0
    """Age after which a cached MTA-STS policy is fetched again when used, even with an unchanged id
    (the cache is kept in data_dir/mta-sts.json until the policy's max_age runs out)."""
    helo_name: str = ""
    """Name sent in EHLO/LHLO. Empty: server.hostname."""
    connect_timeout_s: float = 30.0
    """Time allowed to open a TCP connection to one address."""
    mx_address_limit: int = 5
    """Addresses tried per delivery attempt, over all the destination's hosts (MX hosts or a relay's
    addresses), connected to or not (Postfix: smtp_mx_address_limit = 5). The others wait for the next
    attempt. Bounds what a domain publishing many MX hosts and addresses costs: at most this many
    connect timeouts per attempt. At least 1."""
    mx_session_limit: int = 2
    """SMTP sessions per delivery attempt that got through greeting, EHLO and TLS and were given the
    message (Postfix: smtp_mx_session_limit = 2); a session reused from the pool is not counted. At
    least 1."""
    retry_base_s: float = 300.0
    """First retry delay after a temporary failure; doubles each attempt (with ±10 % jitter)."""
    retry_cap_s: float = 3600.0
    """Longest delay between two attempts."""
    max_age_s: float = 5 * 86400.0
    """Time in the queue after which a still-undelivered recipient fails and is bounced
    (RFC 5321 §4.5.4.1: 4-5 days). Default 5 days."""
    delay_notice_s: float = 4 * 3600.0
    """Send a "delayed" DSN when a recipient is still deferred this long after arrival (once), to senders
    who asked with NOTIFY=DELAY. 0: never."""
    delay_notice_by_default: bool = False
    """Also send the "delayed" DSN for recipients given without NOTIFY (RFC 3461 §4.1 leaves it to the
    MTA). NOTIFY=NEVER or a NOTIFY without DELAY is always honoured."""
    max_connections: int = 100
    """Outbound connections open at once, over all destinations."""
    max_connections_per_destination: int = 20
    """Outbound connections open at once to one destination (one domain's MX set, or one relay). With
    queue.backend = "postgres", counted over every node of the cluster."""
    max_recipients_per_transaction: int = 50
    """Recipients of one message sent in one SMTP transaction; more are split over transactions."""
    reuse_idle_s: float = 5.0
    """How long an idle outbound connection is kept open to carry the next message. 0: no reuse."""
    reuse_max_messages: int = 100
    """Most messages one outbound connection carries before it is closed."""
    postmaster: str = ""
    """Where a bounce that cannot be delivered goes. Empty: it is logged and dropped."""
    dsn_max_returned_bytes: int = 100_000
    """The most of the original message a DSN returns, in octets (Postfix: bounce_size_limit, 50 KB). A
    larger message comes back as its header section only, itself cut at this size; with RET=HDRS, or a
    body that has no blank line, only the lines that are header fields come back. Bounds what a forged
    sender receives per bounce. Default 100 kB. NOTIFY=SUCCESS/DELAY is honoured only for messages from
    relay.trusted_networks or an authenticated client (docs/security.md)."""


class LocalConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    postmaster: str = ""
    """Address that postmaster@ every local domain (and the bare <Postmaster>) is delivered to. Empty: the
    postmaster mailbox of each domain."""
    aliases: str = ""
    """Aliases file, lines "name: target, target" (name is a local part, or a whole address). Relative
    paths are under data_dir. Empty: data_dir/aliases when that file exists."""
    catch_all: dict[str, str] = msgspec.field(default_factory=dict)
    """Per local domain, the address that gets mail for unknown recipients, e.g. { "example.org" =
    "info@example.org" }. Without one, unknown recipients are refused at RCPT with 550 5.1.1."""
    recipient_delimiter: str = "+"
    """Sub-addressing: user+tag@domain is delivered to user@domain. Empty: off."""
    mailbox_path: str = "mail/{domain}/{user}"
    """Maildir of each mailbox; {domain} and {user} are replaced; relative paths are under data_dir."""
    quota_bytes: int = 0
    """Largest total size of one Maildir (new/ and cur/), in octets. 0: no quota."""
    lmtp: dict[str, str] = msgspec.field(default_factory=dict)
    """Per local domain, an LMTP server (RFC 2033) to deliver to instead of Maildir: "host:port" or
    "unix:/path/to/socket", e.g. Dovecot's { "example.org" = "unix:/run/dovecot/lmtp" }."""


class MetricsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    address: str = ""
    """"host:port" of the Prometheus endpoint (/metrics), e.g. "127.0.0.1:9325". Empty: off."""


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
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    rename={
        "listeners": "listener",
        "routes": "route",
        "checks": "check",
        "webhooks": "webhook",
        "milters": "milter",
    },
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
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    routes: tuple[RouteConfig, ...] = ()
    """[[route]] tables: relays for chosen recipient domains (a transport map). Checked before
    relay.smarthost and MX."""
    local: LocalConfig = msgspec.field(default_factory=LocalConfig)
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    checks: tuple[CheckConfig, ...] = ()
    """[[check]] tables: user checks (Python classes) asked after the built-in ones, in order."""
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    antispam: AntispamConfig = msgspec.field(default_factory=AntispamConfig)
    milters: tuple[MilterConfig, ...] = ()
    """[[milter]] tables: filters speaking the Sendmail milter protocol, asked at the end of data in
    file order (docs/antispam.md)."""
    dkim: DkimConfig = msgspec.field(default_factory=DkimConfig)
    mailauth: MailauthConfig = msgspec.field(default_factory=MailauthConfig)
    tlsrpt: TlsRptConfig = msgspec.field(default_factory=TlsRptConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    suppression: SuppressionConfig = msgspec.field(default_factory=SuppressionConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    """[[webhook]] tables: receivers of delivery events (docs/api.md, Webhooks)."""
