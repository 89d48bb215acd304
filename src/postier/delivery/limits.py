"""The scheduler's limits: connection slots (global and per destination) and dead destinations.

Theory of operation. ``Slots.hold(key)`` is entered around each transaction: first the
destination's own semaphore (``delivery.max_connections_per_destination``), then the global one
(``delivery.max_connections``), so a transaction waiting for a busy destination never sits on a
global slot that another destination could use. A destination's semaphore lives while someone holds
or waits for it.

``DeadDestinations`` remembers a network destination where no server answered at all (every
attempt a 4xx without a remote MTA: connection refused, timed out, temporary DNS failure of its
hosts) for ``dead_s`` seconds; transactions waiting for it meanwhile are deferred with the same
reply without connecting (Postfix's "dead destination"), so a backlog for a dead site drains fast.

``DomainShares`` caps the recipients of one domain in progress at once, so that the backlog of one
slow destination never fills the scheduler's whole ``max_in_flight``: what a claim brings beyond the
cap is handed back to the queue with a lease of a second (``Queue.unlease``) and claimed again once
there is room — other domains' recipients, behind it in the queue, are claimed meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from postier.delivery.transport import Attempt, Destination, DestinationKind
from postier.mail.reply import Reply

__all__ = ["DeadDestinations", "DomainShares", "Slots"]

T = TypeVar("T")
_log = logging.getLogger("postier.delivery.scheduler")
_NETWORK_KINDS = frozenset({DestinationKind.MX, DestinationKind.RELAY, DestinationKind.LMTP})


class Slots:
    """The global and per-destination connection limits."""

    def __init__(self, total: int, per_destination: int) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_destination = per_destination
        self._by_key: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Transactions waiting for a slot (their destination's or a global one)."""
        return self._waiting

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        semaphore, users = self._by_key.setdefault(key, (asyncio.Semaphore(self._per_destination), [0]))
        users[0] += 1
        self._waiting += 1
        waiting = True
        try:
            async with semaphore, self._total:  # the destination's slot first: never idle on a global one
                self._waiting -= 1
                waiting = False
                yield
        finally:
            if waiting:  # cancelled while waiting
                self._waiting -= 1
            users[0] -= 1
            if users[0] == 0:
                del self._by_key[key]


class DeadDestinations:
    """Destinations where no server answered, each with the reply that defers it until a time."""

    def __init__(self, dead_s: float, clock: Callable[[], datetime]) -> None:
        self._dead_s = dead_s
        self._clock = clock
        self._dead: dict[str, tuple[datetime, Reply]] = {}

    def reply(self, destination: Destination) -> Reply | None:
        """The reply that defers ``destination`` without trying, while it is held dead."""
        dead = self._dead.get(destination.key)
        if dead is None:
            return None
        until, reply = dead
        if self._clock() >= until:
            del self._dead[destination.key]
            return None
        return reply

    def note(self, destination: Destination, attempts: Sequence[Attempt]) -> None:
        """Hold ``destination`` dead when no server answered any of ``attempts``."""
        if destination.kind not in _NETWORK_KINDS or self._dead_s <= 0:
            return
        if attempts and all(a.reply.is_transient and a.remote_mta is None for a in attempts):
            until = self._clock() + timedelta(seconds=self._dead_s)
            self._dead[destination.key] = (until, attempts[0].reply)


class DomainShares:
    """Recipients in progress per claim domain, at most ``limit`` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # a reload may change it: the counts stay, later takes use the new one
        self._in_progress: collections.Counter[str] = collections.Counter()

    def take(self, domain: str, items: list[T]) -> list[T]:
        """The part of ``items`` there is room for (now counted as in progress); the rest is logged."""
        room = max(self.limit - self._in_progress[domain], 0)
        if len(items) > room:
            _log.debug(
                "%d recipients for %s wait for a share: %d are in progress already",
                len(items) - room,
                domain,
                self._in_progress[domain],
            )
            items = items[:room]
        self._in_progress[domain] += len(items)
        return items

    def give_back(self, domain: str, count: int) -> None:
        self._in_progress[domain] -= count
        if self._in_progress[domain] <= 0:
            del self._in_progress[domain]
