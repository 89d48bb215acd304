"""The delivery scheduler: due recipients from the queue → routes → couriers → outcomes and bounces.

Theory of operation. The queue hands out due recipients as claims, one per destination domain,
leased for ``lease_s`` and renewed while their delivery runs (a scheduler that dies stops renewing: the
lease ends and another node takes them over). Each claim runs as its own task, so a slow or dead
destination never holds up the others:

1. route the domain once (``Router``): a ``Destination``, or a ``Reply`` that settles every recipient
   of the claim without connecting (null MX, NXDOMAIN, SERVFAIL, an MX loop);
2. per message, split its recipients into transactions of at most ``max_recipients_per_transaction``
   and hand each to the courier of the destination's kind — at most
   ``max_connections_per_destination`` at once per destination key and ``max_connections`` overall
   (``limits.Slots``);
3. settle each ``Attempt`` (``settle.Settler``: judged, DSNs enqueued, logged, recorded). An
   outcome that needs no DSN is settled as soon as its transaction ends; the others once the
   message's last transaction to the destination is done, so the sender gets one DSN for all.

Errors stay with their message: one whose DSN cannot be built, or whose queue store fails, is logged
and left leased (tried again when the lease ends) while the others of the claim go on. A body that
cannot be read back (``DamagedBodyError``) is deferred once, then failed with 5.3.0 and bounced
(``settle.damaged_reply``), logged with the reason each time — never leased for ever.

``run_forever`` keeps claiming while there is room (``max_in_flight`` recipients in progress), wakes on
``wake()`` (after an enqueue), when a finished batch frees room after a full claim, or every
``poll_s``. A recipient still in progress is never started twice, even if its lease ran out and a
later claim returned it. One domain has at most ``max_in_flight_per_destination`` recipients in
progress: more are handed back due in a second (``Queue.unlease``), so that the backlog of a slow
destination never fills ``max_in_flight`` and holds up mail for every other domain. A claim that
handed recipients back (and was not a full claim that started some) makes the scheduler
*saturated*: it claims again when a batch finishes or when that second has passed, not at each
enqueue's wake-up — otherwise every new message would lease and hand back the same backlog again.

A destination where no server answered at all (a 4xx without a remote MTA) is *dead* for
``dead_s`` (``limits.DeadDestinations``): its waiting transactions are deferred with the same reply
without connecting (Postfix's "dead destination"), so a backlog for it drains quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from postier.delivery.bounces import Bouncer, Expand, Sign
from postier.delivery.limits import DeadDestinations, DomainShares, Slots
from postier.delivery.loaded import Carried, Loaded, LoadOnce
from postier.delivery.routes import Router
from postier.delivery.settings import DeliverySettings
from postier.delivery.settle import Settler, damaged_reply, load
from postier.delivery.transport import Attempt, Courier, Destination, DestinationKind, OutboundMessage
from postier.mail.errors import QueueError
from postier.mail.reply import EnhancedStatus, Reply
from postier.queue.model import Claim, ClaimedRecipient, QueueId
from postier.queue.protocol import Queue, SharedSlots

__all__ = ["INTERNAL_ERROR", "NO_COURIER", "DeliverySettings", "Scheduler"]

_log = logging.getLogger(__name__)
# RFC 3463 X.3.0 / X.3.5: other or undefined mail system status / system incorrectly configured.
INTERNAL_ERROR = Reply(451, EnhancedStatus(4, 3, 0), "Local error during delivery, will retry")
NO_COURIER = Reply(451, EnhancedStatus(4, 3, 5), "No courier for this destination, will retry")


# Recipients a claim brought beyond their domain's share are made due again after this long (a short
# lease instead of the full one), so a burst to one domain drains as fast as its share allows.
_WAIT_FOR_SHARE_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Delivers due recipients (see the module docstring). ``couriers`` maps each destination kind
    to the courier that carries it; a kind without one is deferred with ``451 4.3.5``. ``expand``
    maps a DSN's recipients to final local mailboxes (``LocalDirectory.expand``; None: as they are)."""

    def __init__(
        self,
        queue: Queue,
        router: Router,
        couriers: Mapping[DestinationKind, Courier],
        settings: DeliverySettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        expand: Expand | None = None,
        sign: Sign | None = None,
        shared_slots: SharedSlots | None = None,
    ) -> None:
        self._sign = sign  # DKIM for the DSNs we write (Bouncer)
        self._shared_slots = shared_slots  # per-destination limits over every node (PostgreSQL)
        self._queue = queue
        self._router = router
        self._couriers = dict(couriers)
        self._settings = settings
        self._clock = clock
        self._settler = Settler(
            queue,
            self._new_bouncer(settings, expand),
            settings.retry,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
        )
        self._slots = Slots(settings.max_connections, settings.max_connections_per_destination, shared_slots)
        self._in_flight: set[tuple[QueueId, int]] = set()
        self._shares = DomainShares(settings.max_in_flight_per_destination)
        self._tasks: set[asyncio.Task[int]] = set()
        self._dead = DeadDestinations(settings.dead_s, clock)
        self._wake = asyncio.Event()
        self._claiming = asyncio.Lock()  # stop() waits for a claim in progress to spawn its tasks
        self._starved = False
        self._saturated = False  # the last claim started nothing: every due domain is at its share
        self._freed = asyncio.Event()  # a batch finished (room for a saturated domain), or stop()
        self._stopping = False
        self._retiring: set[asyncio.Task[None]] = set()  # closing couriers a reload replaced

    def reconfigure(
        self,
        couriers: Mapping[DestinationKind, Courier],
        settings: DeliverySettings,
        *,
        expand: Expand | None = None,
    ) -> None:
        """A configuration reload: what starts from now on uses ``couriers``, ``settings`` (retry
        policy, bounces, limits) and ``expand``. A transaction in progress finishes with the courier
        and the connection slots it holds: new limits get new ``Slots`` (no semaphore is resized
        under a running task), so until the old transactions end both limits count. A courier that
        is no longer used is closed (its idle connections QUIT; one in use is QUIT when returned)."""
        old = self._settings
        kept = {id(c) for c in couriers.values()}
        gone = {id(c): c for c in self._couriers.values() if id(c) not in kept}
        self._couriers = dict(couriers)
        limits = (settings.max_connections, settings.max_connections_per_destination)
        if limits != (old.max_connections, old.max_connections_per_destination):
            self._slots = Slots(*limits, self._shared_slots)
        self._shares.limit = settings.max_in_flight_per_destination
        if settings.dead_s != old.dead_s:
            self._dead = DeadDestinations(settings.dead_s, self._clock)
        self._settler.reconfigure(self._new_bouncer(settings, expand), settings.retry)
        self._settings = settings
        for courier in gone.values():
            self._retiring.add(task := asyncio.get_running_loop().create_task(self._close(courier)))
            task.add_done_callback(self._retiring.discard)
        self.wake()  # a larger max_in_flight may leave room now
        self._freed.set()

    def _new_bouncer(self, settings: DeliverySettings, expand: Expand | None) -> Bouncer:
        return Bouncer(
            self._queue,
            settings.bounces,
            clock=self._clock,
            on_enqueued=self.wake,
            expand=expand or tuple,
            sign=self._sign,
        )

    @property
    def waiting_for_slots(self) -> int:
        """Transactions waiting for a connection slot (``max_connections`` and its per-destination
        share), under the current limits."""
        return self._slots.waiting

    def wake(self) -> None:
        """Claim now (after an enqueue) instead of at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """One claim, every batch of it carried and recorded; how many recipients were handled."""
        tasks = await self._claim()
        return sum(await asyncio.gather(*tasks))

    async def run_forever(self) -> None:
        """Claim and deliver until ``stop()``. A failed claim (a queue error, or any other: the loop
        must not die and leave mail undelivered) is logged and tried again after ``poll_s``. The
        leases of recipients in progress are renewed meanwhile (``_renew_forever``)."""
        renewer = asyncio.get_running_loop().create_task(self._renew_forever(), name="lease-renewal")
        try:
            await self._claim_forever()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew_forever(self) -> None:
        """Every third of ``lease_s``, extend the leases of every recipient still in progress by a
        whole ``lease_s``: a delivery that outlasts its lease is not claimed again by another node
        (or after a restart of this one), while a node that dies stops renewing and its recipients
        come due within ``lease_s``. A failed renewal (the database away) is tried at the next turn."""
        lease_s = self._settings.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            items = list(self._in_flight)
            if not items:
                continue
            try:
                await self._queue.renew(items, self._clock() + timedelta(seconds=lease_s))
            except Exception:
                _log.exception("renewing the leases of %d recipients failed; trying again", len(items))

    async def _claim_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._freed.clear()
            try:
                await self._claim()
            except QueueError as exc:  # the queue's database away (PostgreSQL restarting): no traceback
                _log.warning("claiming due recipients failed (%s); retrying", exc)
                self._starved = self._saturated = False
            except Exception:
                _log.exception("claiming due recipients failed; retrying")
                self._starved = self._saturated = False
            event, timeout = self._wake, self._settings.poll_s
            if self._saturated:  # a full claim of it would lease and hand back the same backlog
                event, timeout = self._freed, min(timeout, _WAIT_FOR_SHARE_S)
            elif self._starved and len(self._in_flight) < self._settings.max_in_flight:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=timeout)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming; let batches in progress finish for ``grace_s``, cancel the rest (their
        leases give them back), then close the couriers' idle connections."""
        self._stopping = True
        self._wake.set()
        self._freed.set()
        async with self._claiming:  # a claim that was out when stop() came has started its tasks
            pass
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for courier in {id(c): c for c in self._couriers.values()}.values():
            await self._close(courier)
        await asyncio.gather(*self._retiring)

    @staticmethod
    async def _close(courier: Courier) -> None:
        try:
            await courier.close()
        except Exception:
            _log.exception("closing a courier failed")

    # --- claiming -------------------------------------------------------------------------------

    async def _claim(self) -> list[asyncio.Task[int]]:
        async with self._claiming:
            room = self._settings.max_in_flight - len(self._in_flight)
            limit = min(room, self._settings.claim_batch)
            if limit <= 0 or self._stopping:
                self._starved, self._saturated = room <= 0, False
                return []
            claims = await self._queue.claim(self._clock(), self._settings.lease_s, limit)
            # Started even if stop() came meanwhile: it waits for this lock, then for the tasks.
            tasks, waiting = self._start(claims, limit)
            # Recipients handed back come due in a second, or sooner room frees: claim then, not at the
            # next enqueue (unless the claim was full and started some: more may be due elsewhere).
            self._saturated = bool(waiting) and not (tasks and self._starved)
            if waiting:  # beyond their domain's share: due again soon, not at the end of the lease
                until = self._clock() + timedelta(seconds=_WAIT_FOR_SHARE_S)
                await self._queue.unlease([(i.message_id, i.index) for i in waiting], until)
            return tasks

    def _start(
        self, claims: Sequence[Claim], limit: int
    ) -> tuple[list[asyncio.Task[int]], list[ClaimedRecipient]]:
        self._starved = sum(len(c.recipients) for c in claims) >= limit
        tasks, waiting = [], []
        for claim in claims:
            items = [i for i in claim.recipients if (i.message_id, i.index) not in self._in_flight]
            taken = self._shares.take(claim.domain, items)
            waiting += items[len(taken) :]
            if taken:
                self._in_flight.update((i.message_id, i.index) for i in taken)
                tasks.append(self._spawn(self._run_claim(claim.domain, taken)))
        return tasks, waiting

    def _spawn(self, coro: Coroutine[Any, Any, int]) -> asyncio.Task[int]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        self._freed.set()
        if self._starved:
            self._wake.set()

    # --- one claim: one destination domain ------------------------------------------------------

    async def _run_claim(self, domain: str, items: list[ClaimedRecipient]) -> int:
        try:
            route = await self._route(domain)
            by_message: dict[QueueId, list[ClaimedRecipient]] = {}
            for item in items:
                by_message.setdefault(item.message_id, []).append(item)
            # ``_message`` never raises (but for cancellation): one message cannot stop the others.
            await asyncio.gather(*(self._message(route, mid, mine) for mid, mine in by_message.items()))
        finally:
            self._in_flight.difference_update((i.message_id, i.index) for i in items)
            self._shares.give_back(domain, len(items))
        return len(items)

    async def _route(self, domain: str) -> Destination | Reply:
        try:
            return await self._router.route(domain)
        except Exception:
            _log.exception("routing %s failed", domain)
            return INTERNAL_ERROR

    async def _message(
        self, route: Destination | Reply, message_id: QueueId, items: list[ClaimedRecipient]
    ) -> None:
        """One message's recipients at one destination (or the route's own reply). Its transactions
        run at once; their outcomes are settled together, so the sender gets one DSN for all of them.
        An error is logged and leaves the recipients leased: they are tried again when it ends."""
        try:
            if isinstance(route, Reply):
                await self._settler.settle_now(message_id, items, route, None)
                return
            courier = self._couriers.get(route.kind)
            if courier is None:
                await self._settler.settle_now(message_id, items, NO_COURIER, route)
                return
            size = self._settings.max_recipients_per_transaction
            batches = [items[i : i + size] for i in range(0, len(items), size)]
            message = LoadOnce(lambda: load(self._queue, message_id))
            if len(batches) == 1:  # the usual case: no gather (a future and a task per batch)
                carried = [await self._batch(route, courier, message, batches[0])]
            else:
                carried = await asyncio.gather(*(self._batch(route, courier, message, b) for b in batches))
            done = [c for c in carried if c is not None and c.items]
            loaded = message.loaded  # None: deleted, or every batch met a dead destination
            if done and loaded is None:
                loaded = await load(self._queue, message_id, body=False)
            if done and loaded is not None:
                items = [i for c in done for i in c.items]
                attempts = [a for c in done for a in c.attempts]
                durations = [d for c in done for d in c.durations]
                await self._settler.settle(loaded, items, attempts, route, durations)
        except Exception:
            _log.exception("delivering %s failed; its recipients are retried when the lease ends", message_id)

    async def _batch(
        self, route: Destination, courier: Courier, message: LoadOnce, items: list[ClaimedRecipient]
    ) -> Carried | None:
        """One transaction. The message is read once a connection slot is ours (so a long backlog
        does not hold every body in memory), and only once for all its transactions. Outcomes that
        need no DSN are recorded at once (a crash later cannot make them happen twice); the others
        are returned, to be settled with the rest of the message. None: the message is gone, or an
        error (logged)."""
        try:
            async with self._slots.hold(route.key):
                dead = self._dead.reply(route)
                if dead is not None:
                    return Carried(items, [Attempt(i.recipient, dead) for i in items], [None] * len(items))
                loaded = await message.get()
                if loaded is None:
                    return None
                if loaded.damaged is not None:
                    return self._damaged(loaded, items)
                started = self._clock()
                attempts = await self._carry(courier, route, loaded, items)
                duration_s = (self._clock() - started).total_seconds()
                self._dead.note(route, attempts)  # before the slot goes to the next one waiting
            durations: list[float | None] = [duration_s] * len(items)
            return await self._settler.settle(loaded, items, attempts, route, durations, quiet_only=True)
        except Exception:
            _log.exception("a transaction of %s failed; retried when the lease ends", items[0].message_id)
            return None

    def _damaged(self, loaded: Loaded, items: list[ClaimedRecipient]) -> Carried:
        """Outcomes for a message whose body cannot be read (no courier asked, no dead destination)."""
        _log.error("the body of %s cannot be read: %s", loaded.record.id, loaded.damaged)
        attempts = [Attempt(i.recipient, damaged_reply(loaded, i)) for i in items]
        return Carried(items, attempts, [None] * len(items))

    async def _carry(
        self, courier: Courier, destination: Destination, loaded: Loaded, items: list[ClaimedRecipient]
    ) -> list[Attempt]:
        assert loaded.body is not None  # read with the message, for a courier
        message = OutboundMessage(loaded.record.id, loaded.record.envelope, loaded.body)
        recipients = [i.recipient for i in items]
        try:
            attempts = await courier.deliver(destination, message, recipients)
        except Exception:
            _log.exception("courier for %s raised; deferring", destination.key)
            return [Attempt(r, INTERNAL_ERROR) for r in recipients]
        if len(attempts) != len(recipients):
            _log.error(
                "courier for %s gave %d results for %d recipients",
                destination.key,
                len(attempts),
                len(recipients),
            )
            return [Attempt(r, INTERNAL_ERROR) for r in recipients]
        return attempts
