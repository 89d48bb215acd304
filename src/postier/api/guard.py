"""An ASGI middleware that bounds what one client can make the server hold: requests handled at
once (beyond ``api.max_concurrent_requests``: 503 at once, nothing read) and the time one request
may take (``api.request_timeout_s``, its body read and its answer made: 503 when no answer was
started, else the connection is cut), and the request body octets held at once by all requests
together (``api.memory_budget_bytes``: past it, a request reading more gets 503). Header size is
bounded by the HTTP server (h11's limit) and
body size by ``problems.read_body``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postier.api.problems import Problem, problem_response

__all__ = ["Guard"]


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        limits: Callable[[], tuple[int, float]],
        observe: Callable[[str, str, int, float], None] | None = None,
        budget: Callable[[], int] = lambda: 2**62,
    ) -> None:
        self.app = app
        self._limits = limits  # (max concurrent requests, timeout_s), read per request (reloads)
        self._observe = observe  # (handler, method, status, seconds): the API metrics
        self._active = 0
        self._budget = budget  # octets of request bodies held at once, all requests together
        self._held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        most, timeout_s = self._limits()
        if self._active >= most:
            await problem_response(Problem(503, "busy", "too many requests at once; try again"))(
                scope, receive, send
            )
            return
        started = False
        status = 503
        begun = time.monotonic()
        held = 0

        async def counting_receive() -> Message:
            nonlocal held
            message = await receive()
            size = len(message.get("body", b""))
            if size:
                if self._held + size > self._budget():
                    raise Problem(503, "busy", "too much request data at once; try again")
                self._held += size
                held += size
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        self._active += 1
        try:
            async with asyncio.timeout(timeout_s):
                await self.app(scope, counting_receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            answer = problem_response(Problem(503, "timeout", "the request took too long"))
            await answer(scope, receive, send)
        finally:
            self._active -= 1
            self._held -= held
            if self._observe is not None:
                endpoint = scope.get("endpoint")
                handler = getattr(endpoint, "__name__", "none")
                self._observe(handler, scope.get("method", ""), status, time.monotonic() - begun)
