"""Admission: may one more connection in? Counted before anything else, TLS handshakes included.

A client is keyed by its address; an IPv6 client by its /64 (``ipv6_prefix``), because one host
usually holds a whole /64 and would otherwise take every per-address slot with addresses of its own.
An IPv4-mapped IPv6 address counts as the IPv4 address.

``Admission`` holds the live counters and outlives configurations; the limits come from the policy
of the moment, so a reload changes limits without forgetting who is connected.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.policy.ratelimit import SlidingWindow

__all__ = ["Admission", "ConnectionLimits", "client_key"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 1000
    max_connections_per_ip: int = 50
    ipv6_prefix: int = 64
    per_minute: SlidingWindow | None = None
    """New connections per minute per client key; None: no limit."""


@lru_cache(maxsize=4096)
def client_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The key a client is counted under: the IPv4 address, or the IPv6 network of ``ipv6_prefix``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return ip


class Admission:
    def __init__(self) -> None:
        self.total = 0
        self._per_key: Counter[str] = Counter()

    def admit(self, ip: str, limits: ConnectionLimits, *, rate_limited: bool) -> tuple[str, Reply | None]:
        """Count a new connection in: ``(key, None)``, or ``(key, refusal)`` and nothing counted.
        ``rate_limited``: the per-minute window applies to this client (not trusted, or no exemption)."""
        key = client_key(ip, limits.ipv6_prefix)
        if self.total >= limits.max_connections or self._per_key[key] >= limits.max_connections_per_ip:
            return key, S.TOO_MANY_CONNECTIONS
        window = limits.per_minute
        if window is not None and rate_limited:
            now = time.monotonic()
            if not window.allows(key, now):
                return key, S.CONNECTION_RATE_LIMITED
            window.record(key, now)
        self.total += 1
        self._per_key[key] += 1
        return key, None

    def release(self, key: str) -> None:
        if self._per_key[key] > 0:
            self.total -= 1
            self._per_key[key] -= 1
        if self._per_key[key] <= 0:
            del self._per_key[key]

    def count(self, key: str) -> int:
        return self._per_key.get(key, 0)
