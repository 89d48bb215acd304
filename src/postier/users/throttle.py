"""Brute-force protection for AUTH, per client network. Pure: the caller passes the time.

Theory of operation
-------------------
Each client keeps the times of its recent failed logins. A client with a failure inside the window is
*delayed*: the server waits before answering its next attempt (``delay_s`` grows 1, 2, 4, 8 … s, capped),
which costs a guesser far more than a person who mistyped once. ``max_failures`` failures inside
``window_s`` *lock* the client for ``lockout_s``: every AUTH is then refused with ``421 4.7.0`` without
checking the password, so a locked client cannot keep guessing while its wrong answers keep costing us
argon2 time. A success forgets the client's failures (as Dovecot's auth penalty does): a user behind a
shared address who finally types the right password is not punished for the typo. It does not lift a
lockout: the server refuses locked clients before it checks any password.

Clients are keyed by IPv4 address, and by /64 prefix for IPv6: one IPv6 host usually has a whole /64
to itself, and would otherwise get 2^64 fresh counters.

Memory is bounded: entries whose failures and lockout have expired are dropped as time passes (the
oldest first, in O(1) each), and at ``max_clients`` the least recently failed client is forgotten.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["AuthThrottle", "ThrottleState", "client_key"]

ThrottleState = Literal["ok", "delay", "locked"]


@dataclass(slots=True)
class _Entry:
    failures: list[float] = field(default_factory=list)  # times, oldest first, all within the window
    locked_until: float = 0.0
    last_at: float = 0.0


def client_key(ip: str) -> str:
    """The throttling key for a client address: IPv4 itself, IPv6 its /64 (IPv4-mapped → IPv4)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip  # not an address (a Unix socket, a test name): key on it as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthThrottle:
    """Counts failed logins per client and says whether its next attempt is ok, delayed or refused.

    Times are seconds on any monotonic clock (``time.monotonic()`` in the server).
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300,
        lockout_s: float = 900,
        *,
        max_delay_s: float = 8,
        max_clients: int = 10_000,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s < 0 or max_clients < 1:
            raise ValueError("max_failures and max_clients must be ≥ 1, window_s > 0, lockout_s ≥ 0")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_delay_s = max_delay_s
        self.max_clients = max_clients
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently failed first

    def __len__(self) -> int:
        """How many clients are remembered (for tests and metrics)."""
        return len(self._entries)

    def check(self, ip: str, now: float) -> ThrottleState:
        """What to do with ``ip``'s next AUTH attempt."""
        entry = self._live(client_key(ip), now)
        if entry is None:
            return "ok"
        if now < entry.locked_until:
            return "locked"
        return "delay" if entry.failures else "ok"

    def delay_s(self, ip: str, now: float) -> float:
        """How long to wait before answering ``ip``'s next attempt: 0, then 1, 2, 4 … s per recent failure."""
        entry = self._live(client_key(ip), now)
        if entry is None or not entry.failures:
            return 0.0
        return float(min(self.max_delay_s, 2 ** (len(entry.failures) - 1)))

    def record_failure(self, ip: str, now: float) -> ThrottleState:
        """Count a failed login; returns the client's state afterwards ("locked" when this one locked it)."""
        key = client_key(ip)
        self._expire(now)
        entry = self._live(key, now)
        if entry is None:
            while len(self._entries) >= self.max_clients:
                self._entries.popitem(last=False)
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        entry.last_at = now
        entry.failures.append(now)
        if len(entry.failures) >= self.max_failures:
            entry.failures.clear()
            entry.locked_until = now + self.lockout_s
            return "locked"
        return "delay"

    def record_success(self, ip: str, now: float) -> None:
        """Forget the client's failures (a lockout in force stays)."""
        key = client_key(ip)
        entry = self._live(key, now)
        if entry is not None and now >= entry.locked_until:
            del self._entries[key]
        self._expire(now)

    def _live(self, key: str, now: float) -> _Entry | None:
        """The entry for ``key`` with failures older than the window dropped; None when nothing is left."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        horizon = now - self.window_s
        while entry.failures and entry.failures[0] <= horizon:
            entry.failures.pop(0)
        if not entry.failures and now >= entry.locked_until:
            del self._entries[key]
            return None
        return entry

    def _expire(self, now: float) -> None:
        """Drop clients, oldest first, whose last failure is past both the window and any lockout."""
        keep_s = max(self.window_s, self.lockout_s)
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.last_at < keep_s or now < entry.locked_until:
                return
            del self._entries[key]
