"""Waiting in tests without guessing how long something takes: ``eventually`` waits for a condition to
become true, with a deadline; it never stands in for "long enough that something did not happen" —
a test proves an absence against a positive witness instead (a later event that could only come after
the one that must not happen)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]

_POLL_S = 0.01


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str = "the condition", *, timeout_s: float = 30.0
) -> None:
    """Return as soon as ``condition()`` is true (it may be async: a queue read); fail after
    ``timeout_s`` (generous: a loaded machine is slow, and the wait ends at once when done)."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None
