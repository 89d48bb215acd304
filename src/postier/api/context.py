"""What the HTTP API works with, taken from the running ``Application`` (api/service.py builds it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from postier.api.eventstore import EventStore
from postier.api.metrics import ApiMetrics
from postier.api.unsubscribe import UnsubscribeKey
from postier.checks.suppression import SuppressionList
from postier.config import Config
from postier.control.apikeys import ApiKeyStore
from postier.mail.envelope import Envelope
from postier.mailauth.dkim import DkimSigner
from postier.queue import Queue

__all__ = ["ApiContext", "Sink"]


class Sink(Protocol):
    """The queue as receiving sees it: enqueue (durable on return), then delivery is woken."""

    def new_id(self) -> str: ...

    async def enqueue(self, envelope: Envelope, body: bytes, *, queue_id: str | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    config: Callable[[], Config]
    """The running configuration (a reload swaps it)."""
    queue: Queue
    sink: Sink
    keys: ApiKeyStore
    signer: Callable[[], DkimSigner]
    """The DKIM signer in use now."""
    wake: Callable[[], None]
    """Nudge delivery (after retry or release)."""
    events: EventStore | None = None
    suppressions: SuppressionList | None = None
    unsubscribe: UnsubscribeKey | None = None
    dkim_keys: Callable[[], Awaitable[list[dict[str, str]]]] | None = None
    """The DKIM keys and the state of their DNS records, looked up now (the dashboard)."""
    metrics: ApiMetrics | None = None
    """The API's Prometheus metrics, when ``metrics.address`` is set."""
    base_url: str = ""
    """Where the API is reached from outside (``api.public_url``, or its own address)."""
