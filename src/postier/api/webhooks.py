"""Webhooks: events POSTed in signed JSON batches, from the durable outbox (``eventstore.py``).

Signature (as Stripe signs): ``Postier-Signature: t=UNIX_TIME, v1=HEX`` where HEX is the
HMAC-SHA256, keyed with the webhook's secret, of ``t`` + ``"."`` + the raw body. A receiver recomputes
it, compares in constant time and refuses a ``t`` older than its replay window (``verify``, 5 min).

Each webhook has its own task: read a batch after its cursor, POST it, move the cursor on a 2xx;
on anything else (a refused connection, a timeout, a 5xx, a 4xx) wait ``webhook_retry_base_s``,
doubling with each failure in a row up to ``webhook_retry_cap_s``, and send the same events again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from postier.api.eventstore import EventStore
from postier.config import Config
from postier.config.model import WebhookConfig
from postier.observe import get_logger

__all__ = ["SIGNATURE_HEADER", "Dispatcher", "sign", "verify"]

SIGNATURE_HEADER = "Postier-Signature"
_log = get_logger("postier.api")


def sign(secret: str, body: bytes, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at}, v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is within the replay window."""
    parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > tolerance_s:
        return False
    expected = sign(secret, body, at).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def hook_secret(hook: WebhookConfig) -> str:
    if hook.secret:
        return hook.secret
    return Path(hook.secret_file).read_text().splitlines()[0].strip()


def hook_name(hook: WebhookConfig) -> str:
    return hook.url


class Dispatcher:
    """One webhook's sender task (``run``); ``nudge`` wakes it when events were recorded."""

    def __init__(
        self,
        store: EventStore,
        hook: WebhookConfig,
        config: Callable[[], Config],
        observe: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self._observe = observe  # the webhook metric: True for a 2xx
        self.hook = hook
        self.name = hook_name(hook)
        self._config = config
        self._secret = hook_secret(hook)
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        self._wake.set()

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.hook.timeout_s, follow_redirects=False) as client:
            while True:
                try:
                    wait = await self._step(client)
                except Exception:  # a store error: try again later, never die
                    _log.exception("webhook %s: step failed", self.name)
                    wait = 5.0
                if wait > 0:
                    await self._idle(wait)

    async def _step(self, client: httpx.AsyncClient) -> float:
        """One try; returns how long to wait before the next (0: go on at once)."""
        cursor = await asyncio.to_thread(self.store.cursor, self.name)
        now = time.time()
        if cursor.next_at > now:
            return cursor.next_at - now
        page = await asyncio.to_thread(
            self.store.page, cursor.seq, self.hook.batch_size, tuple(self.hook.events)
        )
        if not page.items:
            if page.last_seq > cursor.seq:
                await asyncio.to_thread(self.store.advance, self.name, page.last_seq)
            return 1.0
        error = await self._post(client, json.dumps({"events": page.items}).encode())
        if self._observe is not None:
            self._observe(error is None)
        if error is None:
            await asyncio.to_thread(self.store.advance, self.name, page.last_seq)
            return 0.0
        api = self._config().api
        delay = float(min(api.webhook_retry_cap_s, api.webhook_retry_base_s * 2**cursor.failures))
        failures = await asyncio.to_thread(self.store.failed, self.name, time.time() + delay, error)
        _log.warning("webhook %s: %s (failure %d; next try in %.1f s)", self.name, error, failures, delay)
        return delay

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> str | None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
            "User-Agent": "Postier-Webhook/1",
        }
        try:
            response = await client.post(self.hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
