"""What the scheduler carries between the transactions of one message (``scheduler.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postier.delivery.transport import Attempt
from postier.queue.model import ClaimedRecipient, MessageRecord

__all__ = ["Carried", "LoadOnce", "Loaded"]


@dataclass(slots=True)
class Loaded:
    record: MessageRecord
    body: bytes | None  # None: not read (deferred without a courier; read if a DSN needs it)
    damaged: str | None = None  # why the body could not be read back (DamagedBodyError), if it could not


@dataclass(slots=True)
class Carried:
    """Outcomes still to settle, and how long each transaction took (None: not tried)."""

    items: list[ClaimedRecipient]
    attempts: list[Attempt]
    durations: list[float | None]


class LoadOnce:
    """A message read at most once for all its transactions, by the first that needs it."""

    def __init__(self, load: Callable[[], Awaitable[Loaded | None]]) -> None:
        self._load = load
        self._lock = asyncio.Lock()
        self._loaded: Loaded | None = None
        self._done = False

    async def get(self) -> Loaded | None:
        async with self._lock:
            if not self._done:
                self._loaded = await self._load()
                self._done = True
        return self._loaded

    @property
    def loaded(self) -> Loaded | None:
        """What ``get`` read, if it was called."""
        return self._loaded
