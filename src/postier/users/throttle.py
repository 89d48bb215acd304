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

Memory is bounded: failing clients are kept in the order of their last failure and locked clients in
the order their lockout ends, so expired ones are dropped from the front as time passes, O(1) each; at
``max_clients`` the least recently failed client is forgotten (a locked one only when no other is left).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Literal

__all__ = ["AuthThrottle", "ThrottleState", "client_key"]

ThrottleState = Literal["ok", "delay", "locked"]


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

    Times are seconds on any monotonic clock (``time.monotonic()`` in the server), never going back.
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
        self._failing: OrderedDict[str, list[float]] = OrderedDict()  # failure times; by last failure
        self._locked: OrderedDict[str, float] = OrderedDict()  # locked until; by that time

    def __len__(self) -> int:
        """How many clients are remembered (for tests and metrics)."""
        return len(self._failing) + len(self._locked)

    def check(self, ip: str, now: float) -> ThrottleState:
        """What to do with ``ip``'s next AUTH attempt."""
        key = client_key(ip)
        self._expire(now)
        if key in self._locked:
            return "locked"
        return "delay" if self._recent(key, now) else "ok"

    def delay_s(self, ip: str, now: float) -> float:
        """How long to wait before answering ``ip``'s next attempt: 0, then 1, 2, 4 … s per recent failure."""
        self._expire(now)
        count = len(self._recent(client_key(ip), now))
        return 0.0 if count == 0 else float(min(self.max_delay_s, 2 ** (count - 1)))

    def record_failure(self, ip: str, now: float) -> ThrottleState:
        """Count a failed login; returns the client's state afterwards ("locked" when this one locked it)."""
        key = client_key(ip)
        self._expire(now)
        if key in self._locked:
            return "locked"
        failures = self._recent(key, now)
        self._failing.pop(key, None)
        failures.append(now)
        if len(failures) >= self.max_failures:
            self._locked[key] = now + self.lockout_s
            state: ThrottleState = "locked"
        else:
            self._failing[key] = failures
            state = "delay"
        while len(self) > self.max_clients:
            (self._failing or self._locked).popitem(last=False)
        return state

    def record_success(self, ip: str, now: float) -> None:
        """Forget the client's failures (a lockout in force stays)."""
        self._expire(now)
        self._failing.pop(client_key(ip), None)

    def _recent(self, key: str, now: float) -> list[float]:
        """``key``'s failures inside the window (the list kept in the table, pruned in place)."""
        failures = self._failing.get(key)
        if failures is None:
            return []
        horizon = now - self.window_s
        while failures and failures[0] <= horizon:
            failures.pop(0)
        if not failures:
            del self._failing[key]
        return failures

    def _expire(self, now: float) -> None:
        """Drop, from the front of each table, clients whose last failure or lockout is over."""
        horizon = now - self.window_s
        while self._failing:
            key, failures = next(iter(self._failing.items()))
            if failures[-1] > horizon:
                break
            del self._failing[key]
        while self._locked:
            key, until = next(iter(self._locked.items()))
            if until > now:
                break
            del self._locked[key]
