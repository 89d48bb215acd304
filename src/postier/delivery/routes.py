"""Routing: where the mail for one recipient domain goes.

Theory of operation. ``Router.route(domain)`` answers, for one recipient domain (the queue's
routing key: A-label, lowercase), either a ``Destination`` for a courier or a ``Reply`` that ends
the attempt for every recipient of that domain without connecting anywhere. Rules, in order:

1. a local domain (``relay.local_domains``; the bare ``<Postmaster>`` has the empty domain and
   belongs to the first one) → LMTP when ``local.lmtp`` names a server for it, else MAILDIR;
2. a ``[[route]]`` naming the domain (a transport map), then a ``[[route]]`` with ``"*"``, then
   ``relay.smarthost`` → RELAY to that host, with its TLS mode and credentials;
3. otherwise the domain's MX hosts (``postier.dns.resolve_mx``): by preference, random within one
   preference; implicit MX; null MX → 556 5.1.10; NXDOMAIN → 550 5.1.2; SERVFAIL or timeout →
   451 4.4.3; an MX list pointing back at us (``server.hostname``) → 554 5.4.6 (RFC 5321 §5.1,
   RFC 7505). An address literal (``[192.0.2.1]``) goes to that address (RFC 5321 §4.1.3).

The resolver caches answers (TTL-bound), so routing one domain per claim costs nothing twice.
Password files are read when the table is built from the configuration (``routes_from_config``): at
start, and again on each reload, which swaps the whole table in with ``Router.set_table``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from postier.config import Config, parse_hostport
from postier.config.model import RouteConfig
from postier.delivery.security.plan import TlsPlanner
from postier.delivery.transport import Credentials, Destination, DestinationKind, Hop, TlsPolicy
from postier.dns.mx import resolve_mx
from postier.dns.resolver import Resolver
from postier.mail.domain import normalize_domain
from postier.mail.errors import ConfigError
from postier.mail.reply import Reply

__all__ = ["Relay", "Router", "RoutingTable", "lmtp_hop", "routes_from_config"]

_WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Relay:
    """A configured next hop for some domains: ``[[route]]`` or ``relay.smarthost``."""

    host: str
    port: int
    tls: TlsPolicy = TlsPolicy.VERIFY
    implicit_tls: bool = False
    credentials: Credentials | None = None

    @property
    def key(self) -> str:
        """Names the relay for limits and connection reuse: everything a session was set up with
        (login, TLS), so that a connection opened for one route never carries another's mail."""
        user = f"{self.credentials.username}@" if self.credentials is not None else ""
        tls = f"{self.tls.value}+implicit" if self.implicit_tls else self.tls.value
        return f"relay:{user}{self.host}:{self.port}/{tls}"


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The routing configuration, already checked. ``relays`` maps a domain (or ``"*"``) to its
    relay; ``lmtp`` maps a local domain to ``"host:port"`` or ``"unix:/path"``; ``local_names`` are
    our own host names (an MX naming one of them is a loop); ``tls_policy`` overrides ``tls`` for
    delivery by MX per domain."""

    local_domains: tuple[str, ...] = ("localhost",)
    lmtp: Mapping[str, str] = field(default_factory=dict)
    relays: Mapping[str, Relay] = field(default_factory=dict)
    local_names: tuple[str, ...] = ()
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    tls_policy: Mapping[str, TlsPolicy] = field(default_factory=dict)


class Router:
    """Turns a recipient domain into a ``Destination`` or a ``Reply`` (see the module docstring)."""

    def __init__(
        self,
        table: RoutingTable,
        resolver: Resolver,
        rng: random.Random | None = None,
        planner: TlsPlanner | None = None,
    ) -> None:
        self._rng = rng if rng is not None else random.Random()
        self.set_table(table, resolver, planner)

    def set_table(self, table: RoutingTable, resolver: Resolver, planner: TlsPlanner | None = None) -> None:
        """Swap the whole table and the resolver (a configuration reload): the next ``route()`` call
        uses them; a call in progress finishes with what it started with. Connections pooled under
        an old relay's key are not reused by a relay whose login or TLS mode changed (``Relay.key``)."""
        self._table = table
        self._resolver = resolver
        self._planner = planner  # MTA-STS and DANE for MX destinations (``security.plan``)
        self._local = tuple(normalize_domain(d) for d in table.local_domains)
        self._lmtp = {normalize_domain(d): v for d, v in table.lmtp.items()}
        self._relays = {d if d == _WILDCARD else normalize_domain(d): r for d, r in table.relays.items()}
        self._tls_policy = {normalize_domain(d): p for d, p in table.tls_policy.items()}

    def set_local_domains(self, domains: Iterable[str]) -> None:
        """Swap the local domains (a configuration reload); routes in progress keep the old ones."""
        self._local = tuple(normalize_domain(d) for d in domains)

    def is_local(self, domain: str) -> bool:
        """True when mail for ``domain`` (a routing key; "" for the bare ``<Postmaster>``) stays here."""
        return domain == "" or domain in self._local

    async def route(self, domain: str) -> Destination | Reply:
        """Where mail for ``domain`` goes, or the reply that fails (5xx) or defers (4xx) it."""
        if self.is_local(domain):
            return self._local_destination(domain or (self._local[0] if self._local else "localhost"))
        relay = self._relays.get(domain) or self._relays.get(_WILDCARD)
        if relay is not None:
            return Destination(
                key=relay.key,
                kind=DestinationKind.RELAY,
                domain=domain,
                hosts=(Hop(relay.host, relay.port),),
                tls=relay.tls,
                implicit_tls=relay.implicit_tls,
                credentials=relay.credentials,
                tls_label=relay.tls.value,
                tls_source="config:route",
            )
        if domain.startswith("["):
            return self._literal(domain)
        table, tls_policy, planner = self._table, self._tls_policy, self._planner  # a reload: keep these
        plan = await resolve_mx(self._resolver, domain, self._rng, table.local_names)
        if plan.reply is not None:
            return plan.reply
        tls, source = self._configured_tls(domain, table, tls_policy)
        destination = Destination(
            key=f"mx:{domain}",
            kind=DestinationKind.MX,
            domain=domain,
            hosts=tuple(Hop(record.host) for record in plan.hosts),
            tls=tls,
            tls_label=tls.value,
            tls_source=source,
        )
        return destination if planner is None else await planner.plan(destination)

    @staticmethod
    def _configured_tls(
        domain: str, table: RoutingTable, tls_policy: Mapping[str, TlsPolicy]
    ) -> tuple[TlsPolicy, str]:
        """``delivery.tls_policy`` for the domain, else ``delivery.tls``, and which of the two."""
        if domain in tls_policy:
            return tls_policy[domain], "config:delivery.tls_policy"
        return table.tls, "config:delivery.tls"

    def _local_destination(self, domain: str) -> Destination:
        server = self._lmtp.get(domain)
        if server is None:
            return Destination(f"maildir:{domain}", DestinationKind.MAILDIR, domain, ())
        # LMTP (RFC 2033) stays on this host or a trusted network: TLS only when offered.
        return Destination(f"lmtp:{server}", DestinationKind.LMTP, domain, (lmtp_hop(server),))

    def _literal(self, domain: str) -> Destination:
        """RFC 5321 §4.1.3 address literal: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
        address = domain[1:-1]
        if address.lower().startswith("ipv6:"):
            address = address[5:]
        tls, source = self._configured_tls(domain, self._table, self._tls_policy)
        hops = (Hop(address),)
        return Destination(
            f"mx:{domain}", DestinationKind.MX, domain, hops, tls=tls, tls_label=tls.value, tls_source=source
        )


def lmtp_hop(server: str) -> Hop:
    """``"unix:/run/dovecot/lmtp"`` or ``"host:port"`` (port 24 when missing) as a ``Hop``."""
    if server.startswith("unix:"):
        path = server.removeprefix("unix:")
        return Hop(path, 0, unix_path=path)
    host, port = parse_hostport(server, default_port=24)
    return Hop(host, port)


def routes_from_config(config: Config) -> RoutingTable:
    """The routing table of ``config``. Reads password files now (the first line; a relative path is
    taken from the working directory, like ``tls.cert``); a missing file or a bad host is a
    ``ConfigError`` naming the key."""
    relays: dict[str, Relay] = {}
    for i, route in enumerate(config.routes):
        relay = _relay(route, f"route[{i}]")
        for domain in route.domains:
            relays.setdefault(domain if domain == _WILDCARD else normalize_domain(domain), relay)
    r = config.relay
    if r.smarthost and _WILDCARD not in relays:
        smarthost = RouteConfig(
            domains=(_WILDCARD,),
            host=r.smarthost,
            tls=r.smarthost_tls,
            implicit_tls=r.smarthost_implicit_tls,
            username=r.smarthost_username,
            password_file=r.smarthost_password_file,
            auth=r.smarthost_auth,
        )
        relays[_WILDCARD] = _relay(smarthost, "relay.smarthost")
    return RoutingTable(
        local_domains=tuple(r.local_domains),
        lmtp=dict(config.local.lmtp),
        relays=relays,
        local_names=_own_names(config.server.hostname, config.delivery.helo_name),
        tls=TlsPolicy(config.delivery.tls),
        tls_policy={d: TlsPolicy(p) for d, p in config.delivery.tls_policy.items()},
    )


def _relay(route: RouteConfig, where: str) -> Relay:
    try:
        host, port = parse_hostport(route.host, default_port=465 if route.implicit_tls else 25)
    except ValueError as exc:
        raise ConfigError(_key(where, "host"), str(exc)) from None
    credentials = None
    if route.username:
        password = _read_password(route.password_file, where)
        credentials = Credentials(route.username, password, route.auth.upper())
    return Relay(host, port, TlsPolicy(route.tls), route.implicit_tls, credentials)


def _key(where: str, field: str) -> str:
    """The config key a route's field came from: ``route[2].host``, or for the smarthost shorthand
    ``relay.smarthost`` and ``relay.smarthost_password_file``."""
    if where == "relay.smarthost":
        return where if field == "host" else f"{where}_{field}"
    return f"{where}.{field}"


def _read_password(name: str, where: str) -> str:
    if not name:
        raise ConfigError(_key(where, "password_file"), "a user name needs a password file")
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_key(where, "password_file"), f"cannot read {path}: {exc.strerror}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def _own_names(*names: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.rstrip(".").lower() for n in names if n))
