"""Relay access: who may send mail to which recipient through this server.

Theory of operation. Mail for a local domain is taken from anyone (it ends here). Mail for any other
domain is relayed only for a client in a trusted network or an authenticated client; everyone else is
refused at RCPT with ``554 5.7.1 Relay access denied``. Postier must never be an open relay.

Relay domains (``relay.relay_domains``: this server is a gateway or backup MX for them) are taken
from anyone like local domains, and delivered onward by their route or MX; their recipient lists are
``relaydomains.py``.

The local-domain test is deliberately strict: a recipient counts as local only when its domain, after
lowercasing, dropping one trailing dot and IDNA normalisation, equals a configured local domain. Address
literals (``user@[192.0.2.1]``) are never local. Sender-specified routing in a local part
(``user%remote@local``, ``"user@remote"@local``, ``remote!user@local``) is refused for untrusted,
unauthenticated clients, like Postfix's ``allow_untrusted_routing = no``: some downstream agent might
still honour the route, and no legitimate stranger needs it.

``is_trusted`` is asked several times per message (each RCPT, the rate-limit exemption): its answer
per client IP string is kept in a small cache that lives as long as the policy (a configuration
reload builds a new policy, with an empty cache), and is emptied when it reaches ``_TRUST_CACHE_MAX``
entries, so a flood of addresses costs a reparse, never memory.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from postier.mail.address import Address
from postier.mail.domain import normalize_domain
from postier.mail.replies import S
from postier.mail.reply import Reply

__all__ = ["RelayPolicy"]

_ROUTING = "@%!"  # RFC 5321 §3.6.1 / the "percent hack" and UUCP bang paths

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_TRUST_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    local_domains: frozenset[str]
    trusted_networks: tuple[_Network, ...]
    relay_domains: frozenset[str] = frozenset()
    _trust_cache: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls, local_domains: Iterable[str], trusted_networks: Iterable[str], relay_domains: Iterable[str] = ()
    ) -> RelayPolicy:
        return cls(
            frozenset(normalize_domain(d) for d in local_domains),
            tuple(ipaddress.ip_network(n, strict=False) for n in trusted_networks),
            frozenset(normalize_domain(d) for d in relay_domains),
        )

    def is_trusted(self, client_ip: str) -> bool:
        cache = self._trust_cache
        trusted = cache.get(client_ip)
        if trusted is None:
            if len(cache) >= _TRUST_CACHE_MAX:
                cache.clear()
            trusted = cache[client_ip] = self._is_trusted(client_ip)
        return trusted

    def _is_trusted(self, client_ip: str) -> bool:
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.trusted_networks)

    def is_local(self, address: Address) -> bool:
        if address.is_literal:
            return False
        try:
            return address.domain_key in self.local_domains
        except ValueError:
            return False

    def is_relay_domain(self, address: Address) -> bool:
        """``address`` is in a relay domain (taken from anyone, delivered onward)."""
        if not self.relay_domains or address.is_literal:
            return False
        try:
            return address.domain_key in self.relay_domains
        except ValueError:
            return False

    def may_receive(self, address: Address, *, is_local: bool) -> bool:
        """May a stranger (neither trusted nor authenticated) send to ``address``? Only when it is
        local (``is_local``: the directory's answer) and carries no sender-specified routing."""
        return is_local and not any(ch in address.local_part for ch in _ROUTING)

    def check_rcpt(self, address: Address, *, client_ip: str, authenticated: bool) -> Reply | None:
        """None when the recipient is acceptable, else the reply that refuses it."""
        if authenticated or self.is_trusted(client_ip):
            return None
        is_local = address.is_postmaster or self.is_local(address) or self.is_relay_domain(address)
        return None if self.may_receive(address, is_local=is_local) else S.RELAY_DENIED
