"""Settling outcomes: the scheduler's attempts → judgements → DSNs → log lines → queue records.

Theory of operation. Each ``Attempt`` is judged (``outcomes.judge``: delivered, deferred with the
next attempt's time, or failed). An outcome that needs no DSN is recorded as soon as its
transaction ends (``quiet_only``); the others wait until the message's last transaction to the
destination is done, then the DSNs due are enqueued (``bounces.Bouncer``: one per message, however
many transactions it took) and only then are those outcomes recorded (a crash in between may
duplicate a bounce, never lose one). If a DSN cannot be queued, its failures stay unrecorded (the
attempt is made again). A message deleted meanwhile gets no DSN.

``reconfigure`` (a configuration reload) replaces the bouncer and the retry policy: a settlement
that starts afterwards uses the new ones.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

from postier.delivery.attemptlog import log_attempt
from postier.delivery.bounces import Bouncer
from postier.delivery.loaded import Carried, Loaded
from postier.delivery.outcomes import Judgement, RetryPolicy, judge
from postier.delivery.transport import Attempt, Destination
from postier.mail.errors import DamagedBodyError, QueueError, UnknownMessageError
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.queue.model import ClaimedRecipient, QueueId, RecipientResult, RecipientState
from postier.queue.protocol import Queue

__all__ = ["Settler", "damaged_reply", "load"]

_log = logging.getLogger("postier.delivery.scheduler")  # one logger for the scheduler and its parts
_RECORD_PATIENCE_S = 60.0  # how long a failing record() is tried again before the lease is left to act


async def load(queue: Queue, message_id: QueueId, *, body: bool = True) -> Loaded | None:
    """The message (its body only with ``body``); None when it was deleted since the claim. A body that
    cannot be read back (``DamagedBodyError``) leaves ``body`` None and says why in ``damaged``."""
    try:
        record = await queue.get(message_id)
        data = await queue.read_body(message_id) if body else None
    except UnknownMessageError:
        return None  # deleted since the claim: nothing to deliver, nothing to record
    except DamagedBodyError as exc:
        return Loaded(record, None, damaged=str(exc))
    return Loaded(record, data)


def damaged_reply(loaded: Loaded, item: ClaimedRecipient) -> Reply:
    """The outcome of a recipient whose message body cannot be read (issue 14, finding 9): deferred
    once (the store may come back: a segment restored, a disk remounted), then failed with 5.3.0 — so
    the sender (or, for a bounce, the postmaster) is told, and the recipient is never leased for ever."""
    previous = {r.index: r.last_reply for r in loaded.record.recipients}.get(item.index)
    return S.BODY_UNREADABLE if previous == str(S.BODY_UNREADABLE_RETRY) else S.BODY_UNREADABLE_RETRY


class Settler:
    """Settles the scheduler's attempts (see the module docstring)."""

    def __init__(
        self,
        queue: Queue,
        bouncer: Bouncer,
        retry: RetryPolicy,
        *,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self._queue = queue
        self._bouncer = bouncer
        self._retry = retry
        self._clock = clock
        self._rng = rng

    def reconfigure(self, bouncer: Bouncer, retry: RetryPolicy) -> None:
        """A configuration reload: DSNs and retry times from now on come from these."""
        self._bouncer = bouncer
        self._retry = retry

    async def settle_now(
        self, message_id: QueueId, items: list[ClaimedRecipient], reply: Reply, route: Destination | None
    ) -> None:
        """Settle ``items`` with ``reply`` without asking a courier (nor reading the body)."""
        loaded = await load(self._queue, message_id, body=False)
        if loaded is not None:
            await self.settle(loaded, items, [Attempt(i.recipient, reply) for i in items], route)

    async def settle(
        self,
        loaded: Loaded,
        items: Sequence[ClaimedRecipient],
        attempts: Sequence[Attempt],
        destination: Destination | None,
        durations: Sequence[float | None] | None = None,
        *,
        quiet_only: bool = False,
    ) -> Carried:
        """Judge, send the DSNs due, log, then record (DSN first: see the module docstring).
        ``durations``: each recipient's transaction time (None: no courier was asked). With
        ``quiet_only``, only outcomes that need no DSN are settled; the others are returned."""
        now = self._clock()
        judged = self._judge(loaded, items, attempts, destination, now)
        times = list(durations) if durations is not None else [None] * len(items)
        if quiet_only:
            keep = [j.report is None for j in judged]
        else:
            keep = await self._notify(loaded, judged)
        settled = [k for k, kept in enumerate(keep) if kept]
        for k in settled:
            log_attempt(items[k], attempts[k], judged[k], now, destination, times[k])
        await self._record(loaded.record.id, [judged[k].result for k in settled])
        later = [k for k, j in enumerate(judged) if j.report is not None] if quiet_only else []
        return Carried([items[k] for k in later], [attempts[k] for k in later], [times[k] for k in later])

    def _judge(
        self,
        loaded: Loaded,
        items: Sequence[ClaimedRecipient],
        attempts: Sequence[Attempt],
        destination: Destination | None,
        now: datetime,
    ) -> list[Judgement]:
        """Each attempt's outcome (``outcomes.judge``), under the retry policy of the moment."""
        previous = {r.index: r.last_attempt_at for r in loaded.record.recipients}
        kind = None if destination is None else destination.kind
        return [
            judge(
                item,
                attempt,
                kind=kind,
                now=now,
                last_attempt_at=previous.get(item.index),
                policy=self._retry,
                rng=self._rng,
            )
            for item, attempt in zip(items, attempts, strict=True)
        ]

    async def _record(self, message_id: QueueId, results: list[RecipientResult]) -> None:
        """Record the settled outcomes, trying again for ``_RECORD_PATIENCE_S`` while the queue fails
        (a PostgreSQL queue restarting): the attempt happened, and an outcome not recorded makes the
        recipient due again when its lease ends — a second delivery. The scheduler keeps renewing
        the lease meanwhile. Past that, it is logged and left to the lease."""
        waited, pause = 0.0, 0.25
        while results:
            try:
                await self._queue.record(results, self._clock())
                return
            except QueueError as exc:
                if waited >= _RECORD_PATIENCE_S:
                    _log.error(
                        "recording outcomes of %s failed (%s); retried when the lease ends", message_id, exc
                    )
                    return
                if waited == 0.0:
                    _log.warning("recording outcomes of %s failed (%s); trying again", message_id, exc)
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 5.0)

    async def _notify(self, loaded: Loaded, judged: Sequence[Judgement]) -> list[bool]:
        """Enqueue the DSNs due; which judgements may be recorded. If a bounce cannot be queued,
        its failures stay unrecorded (the attempt is made again); other outcomes are recorded."""
        reports = [j.report for j in judged if j.report is not None]
        body = await self._body(loaded) if reports else None
        if reports and body is not None:
            try:
                await self._bouncer.notify(loaded.record, body, reports)
            except QueueError:
                _log.exception("queueing a DSN for %s failed; its failures are retried", loaded.record.id)
                return [j.result.state is not RecipientState.FAILED for j in judged]
        return [True] * len(judged)

    async def _body(self, loaded: Loaded) -> bytes | None:
        """The body a DSN returns; None when the message was deleted meanwhile (`postier queue
        delete` while it was in flight): then nobody is told. A body that cannot be read back is
        returned as nothing: the DSN then carries the report alone."""
        try:
            if loaded.body is None and loaded.damaged is None:
                return await self._queue.read_body(loaded.record.id)
            await self._queue.get(loaded.record.id)
        except UnknownMessageError:
            return None
        except DamagedBodyError:
            return b""
        return b"" if loaded.body is None else loaded.body
