"""The SMTP server's view of the user store: ``await authenticate(username, password)``.

An argon2 verification takes about 150 ms of CPU and 64 MiB of memory at the default parameters. Run on
the event loop it would stall every session; run without a cap, a burst of AUTH commands would eat all
memory and cores. So each verification runs in a thread (argon2-cffi releases the GIL while hashing)
and at most ``max_concurrent`` run at once; the others wait their turn on an ``asyncio.Semaphore``
before taking a thread. Failed logins are not logged here: the session logs them with the client's
address, and never with the password.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from postier.users.store import UserStore

__all__ = ["Authenticator"]


class Authenticator:
    """Implements ``postier.server.sasl.Authenticator`` over a ``UserStore``."""

    def __init__(
        self, store: UserStore, *, max_concurrent: int = 2, executor: Executor | None = None
    ) -> None:
        """``executor`` None: the loop's default thread pool (the cap keeps most of it free).

        Blocks for one argon2 hash (the store's dummy hash): build it at start-up, not per session.
        """
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be ≥ 1")
        self.store = store
        self.max_concurrent = max_concurrent
        self._executor = executor
        self._semaphore = asyncio.Semaphore(max_concurrent)
        store.warm_up()

    async def authenticate(self, username: str, password: str) -> str | None:
        """The canonical user name when the password is right, else None (unknown users take as long)."""
        async with self._semaphore:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self.store.verify, username, password)
