"""Rate limits: how many events one key (a client IP, an authenticated user) may cause in a window.

A sliding window over the times of the last ``limit`` events: an event is allowed when fewer than
``limit`` of them fall within the last ``window_s`` seconds. Memory is bounded: at most ``limit`` times
per key, at most ``max_keys`` keys (the least recently used are forgotten first). Times come from the
caller (any monotonic clock), so the object is pure and testable without sleeping.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["RateLimits", "SlidingWindow"]


class SlidingWindow:
    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be ≥ 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def allows(self, key: str, now: float) -> bool:
        """Would one more event for ``key`` at ``now`` stay within the limit?"""
        times = self._events.get(key)
        if times is None:
            return True
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return len(times) < self.limit

    def record(self, key: str, now: float) -> None:
        times = self._events.pop(key, None)
        if times is None:
            times = deque(maxlen=self.limit)
        times.append(now)
        self._events[key] = times
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The server's limits; None means that limit is off."""

    connections_per_ip: SlidingWindow | None = None
    messages_per_ip: SlidingWindow | None = None
    messages_per_user: SlidingWindow | None = None
    exempt_trusted: bool = True

    @classmethod
    def build(
        cls,
        *,
        connections_per_minute_per_ip: int,
        messages_per_hour_per_ip: int,
        messages_per_hour_per_user: int,
        exempt_trusted: bool,
    ) -> RateLimits:
        def window(limit: int, seconds: float) -> SlidingWindow | None:
            return SlidingWindow(limit, seconds) if limit > 0 else None

        return cls(
            window(connections_per_minute_per_ip, 60.0),
            window(messages_per_hour_per_ip, 3600.0),
            window(messages_per_hour_per_user, 3600.0),
            exempt_trusted,
        )
