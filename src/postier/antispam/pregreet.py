"""The pregreet test (postscreen's): a client that talks before the greeting is a bot.

On an ``smtp`` listener the session sends the greeting's first line, ``220-host ESMTP``, at once and
its last line ``pregreet_s`` later. A real SMTP client waits for the last line before it says EHLO
(RFC 5321 §4.2: a multiline reply ends with the line whose code is followed by a space); many bots
talk as soon as the connection is up, or after the first line. Such a client is answered
``554 5.5.0`` and disconnected (``event=reject stage=connect check=pregreet``).

A client address that passed is remembered (``PregreetPasses``, in memory, for ``ttl_s``) and greeted
at once next time, so a legitimate server pays the delay once a day, not per message. The memory is
the application's and outlives reloads; it forgets the oldest entries beyond ``max_entries``.
Trusted networks never wait.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Pregreet", "PregreetPasses"]


class PregreetPasses:
    def __init__(
        self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._passed: OrderedDict[str, float] = OrderedDict()

    def has_passed(self, ip: str) -> bool:
        at = self._passed.get(ip)
        if at is None:
            return False
        if self.clock() - at > self.ttl_s:
            del self._passed[ip]
            return False
        return True

    def passed(self, ip: str) -> None:
        self._passed[ip] = self.clock()
        self._passed.move_to_end(ip)
        while len(self._passed) > self.max_entries:
            self._passed.popitem(last=False)

    def __len__(self) -> int:
        return len(self._passed)


@dataclass(frozen=True, slots=True)
class Pregreet:
    """What a session needs: the delay and the memory of clients that passed."""

    delay_s: float
    passes: PregreetPasses

    def applies(self, ip: str, *, is_trusted: bool) -> bool:
        return self.delay_s > 0 and not is_trusted and not self.passes.has_passed(ip)
