"""The mail-log subscriber that turns lines into events (``events.to_event``) and writes them to the
event store in batches, off the event loop, every 100 ms; then the webhooks are nudged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from postier.api.events import to_event
from postier.api.eventstore import EventStore
from postier.observe import get_logger

__all__ = ["Recorder"]

_log = get_logger("postier.api")
_FLUSH_S = 0.1
_PRUNE_S = 3600.0


class Recorder:
    def __init__(self, store: EventStore, recorded: Callable[[], None]) -> None:
        self.store = store
        self._recorded = recorded
        self._pending: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, name: str, fields: Mapping[str, object]) -> None:
        """The subscriber: quick, never raises (a list append)."""
        event = to_event(name, fields)
        if event is not None:
            self._pending.append((time.time(), event))

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.store.append, batch)
        except Exception:
            _log.exception("events: %d events could not be written; kept for the next try", len(batch))
            self._pending = batch + self._pending
            return
        self._recorded()

    async def run(self, prune: Callable[[], int]) -> None:
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(_FLUSH_S)
            await self.flush()
            if time.monotonic() - pruned_at > _PRUNE_S:
                pruned_at = time.monotonic()
                try:
                    await asyncio.to_thread(prune)
                except Exception:
                    _log.exception("events: pruning failed")
