"""The scheduler's limits: connection slots (global and per destination) and dead destinations.

Theory of operation. ``Slots.hold(key)`` is entered around each transaction: first the
destination's own semaphore (``delivery.max_connections_per_destination``), then the global one
(``delivery.max_connections``), so a transaction waiting for a busy destination never sits on a
global slot that another destination could use. A destination's semaphore lives while someone holds
or waits for it. With a queue shared by several nodes (``SharedSlots``: PostgreSQL), a transaction
also takes one of the destination's cluster-wide slots once it has its own node's: the limit then
holds over every node. None free: it waits (50 ms, doubling to 1 s) — holding only its node's
destination slot. The shared store away (the database restarting): it goes on under the node's
limit alone rather than stall deliveries in progress.

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
from typing import Any, TypeVar

from postier.delivery.transport import Attempt, Destination, DestinationKind
from postier.mail.errors import QueueError
from postier.mail.reply import Reply
from postier.queue.protocol import SharedSlots

__all__ = ["DeadDestinations", "DomainShares", "Slots"]

T = TypeVar("T")
_log = logging.getLogger("postier.delivery.scheduler")
_NETWORK_KINDS = frozenset({DestinationKind.MX, DestinationKind.RELAY, DestinationKind.LMTP})


class Slots:
    """The global and per-destination connection limits (``shared``: per destination over every
    node of a cluster too)."""

    def __init__(self, total: int, per_destination: int, shared: SharedSlots | None = None) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_destination = per_destination
        self._by_key: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._shared = shared
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
            async with semaphore:  # the destination's slot first: never idle on a global one
                slot = await self._take_shared(key)
                try:
                    async with self._total:
                        self._waiting -= 1
                        waiting = False
                        yield
                finally:
                    if slot is not None and self._shared is not None:
                        with contextlib.suppress(Exception):
                            await self._shared.give_slot(key, slot)
        finally:
            if waiting:  # cancelled while waiting
                self._waiting -= 1
            users[0] -= 1
            if users[0] == 0:
                del self._by_key[key]

    async def _take_shared(self, key: str) -> Any:
        """A cluster-wide slot of ``key``, waiting for one; None without a shared store (or while
        it is away)."""
        if self._shared is None:
            return None
        pause = 0.05
        while True:
            try:
                slot = await self._shared.take_slot(key, self._per_destination)
            except QueueError as exc:
                _log.warning(
                    "no shared connection slot for %s (%s); going on under this node's limit", key, exc
                )
                return None
            if slot is not None:
                return slot
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


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
