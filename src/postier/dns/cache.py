"""A small answer cache that respects TTLs.

Theory of operation: each entry is a positive answer (a tuple of record texts) or a negative one
(an ``NxDomain`` / ``NoData`` error), stored with the moment it stops being valid on an injected
monotonic clock. Positive entries live for the record set's TTL (RFC 1035 §3.2.1), capped by
``max_ttl_s``; negative ones for the SOA-derived negative TTL (RFC 2308 §5: min(SOA TTL, SOA MINIMUM)),
capped by ``max_negative_ttl_s`` so that a fixed typo heals quickly. Temporary failures are never
cached: the next attempt must ask again. The cache is bounded: when full, expired entries go first,
then the oldest inserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postier.dns.errors import NoData, NxDomain

__all__ = ["AnswerCache", "CachedAnswer", "Clock"]

Clock = Callable[[], float]
"""Monotonic seconds, e.g. ``time.monotonic``; injected so tests can move time."""

CachedAnswer = tuple[str, ...] | NxDomain | NoData


@dataclass(slots=True)
class _Entry:
    expires_at: float
    value: CachedAnswer


class AnswerCache:
    """Answers keyed by ``(name, rdtype)``; ``get`` returns None when absent or expired."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_entries: int = 10_000,
        max_ttl_s: float = 86_400.0,
        max_negative_ttl_s: float = 300.0,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_ttl_s = max_ttl_s
        self._max_negative_ttl_s = max_negative_ttl_s
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, rdtype: str) -> CachedAnswer | None:
        key = (name, rdtype)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry.expires_at:
            del self._entries[key]
            return None
        return entry.value

    def put(self, name: str, rdtype: str, value: CachedAnswer, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds (capped); TTL 0 means "do not cache" (RFC 1035 §3.2.1)."""
        cap = self._max_ttl_s if isinstance(value, tuple) else self._max_negative_ttl_s
        ttl_s = min(ttl_s, cap)
        if ttl_s <= 0 or self._max_entries <= 0:
            return
        key = (name, rdtype)
        self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._evict()
        self._entries[key] = _Entry(self._clock() + ttl_s, value)

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now >= e.expires_at]:
            del self._entries[key]
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
