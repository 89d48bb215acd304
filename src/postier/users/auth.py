"""The SMTP server's view of the user store: ``await authenticate(username, password)``.

An argon2 verification takes about 150 ms of CPU and 64 MiB of memory at the default parameters. Run on
the event loop it would stall every session; run without a cap, a burst of AUTH commands would eat all
memory and cores. So each verification runs in a thread (argon2-cffi releases the GIL while hashing)
and at most ``max_concurrent`` run at once; the others wait their turn on an ``asyncio.Semaphore``
before taking a thread. Failed logins are not logged here: the session logs them with the client's
address, and never with the password.

The wait is bounded too (issue 14, finding 6): at most ``max_waiting`` attempts wait for a turn; one
more is answered ``Refused.BUSY`` at once (the session says ``454 4.7.0``), so a burst of AUTH commands
costs a coroutine each, never an unbounded queue whose tail is minutes old. And ``admit`` is asked when
an attempt's turn comes, right before its hash: a client locked out while it waited (by failures in its
other sessions) gets ``Refused.WITHDRAWN`` and its password is not checked.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from concurrent.futures import Executor

from postier.users.store import UserStore

__all__ = ["Authenticator", "Refused"]


class Refused(enum.Enum):
    """Why a password was not checked (a value, beside the user name or None of a check)."""

    BUSY = "busy"  # max_waiting attempts already wait for a turn
    WITHDRAWN = "withdrawn"  # admit() said no when the attempt's turn came (locked out meanwhile)


def _always() -> bool:
    return True


class Authenticator:
    """Implements ``postier.server.sasl.Authenticator`` over a ``UserStore``."""

    def __init__(
        self,
        store: UserStore,
        *,
        max_concurrent: int = 2,
        max_waiting: int = 32,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` None: the loop's default thread pool (the cap keeps most of it free).

        Blocks for one argon2 hash (the store's dummy hash): build it at start-up, not per session.
        """
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be ≥ 1 and max_waiting ≥ 0")
        self.store = store
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self._executor = executor
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._pending = 0  # attempts waiting for a turn or being verified
        store.warm_up()

    @property
    def pending(self) -> int:
        """Attempts waiting for a turn or being verified now."""
        return self._pending

    async def authenticate(
        self, username: str, password: str, *, admit: Callable[[], bool] = _always
    ) -> str | Refused | None:
        """The canonical user name when the password is right, None when it is wrong (unknown users take
        as long); ``Refused`` when it was not checked: the queue was full, or ``admit()`` said no."""
        if self._pending >= self.max_concurrent + self.max_waiting:
            return Refused.BUSY
        self._pending += 1
        try:
            async with self._semaphore:
                if not admit():
                    return Refused.WITHDRAWN
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, self.store.verify, username, password)
        finally:
            self._pending -= 1
