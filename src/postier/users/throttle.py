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

Per account too (issue 14, finding 6): failures are also counted per login name, whatever the client's
address, and an attempt at an account with recent failures waits ``account_delay_s`` (1, 2, 4 … s up
to ``max_account_delay_s``) before its password is checked. This slows a guesser spread over many
addresses — each of its sessions gets at most one guess per delay — but never locks the account: its
owner, typing the right password, waits at most ``max_account_delay_s`` and gets in, and a success
forgets the account's failures. Unknown names are counted like known ones, so the delay tells nothing
about which names exist.

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


def _account_key(name: str) -> str:
    return name.strip().casefold()[:256]


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
        max_account_delay_s: float = 0,
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
        self.max_account_delay_s = max_account_delay_s
        self._accounts: OrderedDict[str, list[float]] = OrderedDict()  # failure times; by last failure

    @property
    def settings(self) -> tuple[float, ...]:
        """What the throttle was built with (a reload keeps the counters when these did not change)."""
        return (self.max_failures, self.window_s, self.lockout_s, self.max_delay_s, self.max_account_delay_s)

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

    def record_success(self, ip: str, now: float, account: str | None = None) -> None:
        """Forget the client's failures, and the account's (a lockout in force stays)."""
        self._expire(now)
        self._failing.pop(client_key(ip), None)
        if account is not None:
            self._accounts.pop(_account_key(account), None)

    def account_delay_s(self, account: str, now: float) -> float:
        """How long an attempt at ``account`` waits before its password is checked: 0, then 1, 2, 4 … s per
        failure at that account inside the window, from any client, up to max_account_delay_s."""
        if self.max_account_delay_s <= 0:
            return 0.0
        failures = self._accounts.get(_account_key(account))
        count = 0 if failures is None else sum(1 for t in failures if t > now - self.window_s)
        return 0.0 if count == 0 else float(min(self.max_account_delay_s, 2 ** (count - 1)))

    def record_account_failure(self, account: str, now: float) -> None:
        """Count a failed login at ``account`` (any client). Keeps at most max_clients accounts, and per
        account only the failures that still count (the delay stops growing at its cap)."""
        if self.max_account_delay_s <= 0:
            return
        key = _account_key(account)
        failures = [t for t in self._accounts.pop(key, []) if t > now - self.window_s]
        failures.append(now)
        self._accounts[key] = failures[-32:]
        horizon = now - self.window_s
        while self._accounts:
            first = next(iter(self._accounts.values()))
            if first[-1] > horizon and len(self._accounts) <= self.max_clients:
                break
            self._accounts.popitem(last=False)

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
