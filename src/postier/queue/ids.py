"""Queue ids: unique, sortable by arrival time, safe in a log line.

An id is 16 characters of Crockford base32 (digits and capitals without I, L, O, U): the arrival
time in milliseconds since the epoch (50 bits, enough until the year 37648) followed by a 30-bit
counter. The counter's top 5 bits are the generator's *shard* (0 to 31): the processes that share a
queue directory each mint with a different shard (the server's worker index), so their ids never
collide, even in the same millisecond. Its low 25 bits start each millisecond at a random value
below 2**24; within one millisecond, and when the clock steps back, the generator keeps the last
time and bumps them (2**25 ids in one millisecond borrow the next one), so ids from one generator
strictly increase. Two generators with the same shard (a ``postier queue`` tool beside a server)
are unlikely to collide; the store's primary key refuses a collision anyway.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from datetime import datetime

from postier.queue.model import QueueId

__all__ = ["SHARDS", "IdGenerator", "is_queue_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARS = 10
_COUNTER_BITS = 30
_SHARD_BITS = 5
_LOW_BITS = _COUNTER_BITS - _SHARD_BITS
SHARDS = 1 << _SHARD_BITS
"""How many generators can mint ids that never collide: shards 0 to 31."""
_LENGTH = 16


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits → two characters


def _encode(value: int, chars: int) -> str:
    """The low ``5 * chars`` bits of ``value``, most significant first (``chars`` even)."""
    out = []
    for _ in range(chars // 2):
        out.append(_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(out))


def is_queue_id(text: str) -> bool:
    """True when ``text`` has the shape of a queue id (what the tools accept on the command line)."""
    return len(text) == _LENGTH and all(c in _ALPHABET for c in text)


class IdGenerator:
    """Mints ids from an injected clock and random source; safe to call from several threads.
    Generators with different ``shard`` values never mint the same id."""

    def __init__(
        self, clock: Callable[[], datetime], rng: random.Random | None = None, *, shard: int = 0
    ) -> None:
        if not 0 <= shard < SHARDS:
            raise ValueError(f"shard must be 0 to {SHARDS - 1}, not {shard}")
        self._clock = clock
        # Seeded once from the OS: the random start only spreads generators of the same shard apart
        # (ids are no secret: they carry the arrival time); a getrandom call per id cost 10 µs.
        self._rng = rng or random.Random(os.urandom(16))
        self._shard = shard << _LOW_BITS
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> QueueId:
        ms = int(self._clock().timestamp() * 1000)
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter >= 1 << _LOW_BITS:  # 2**24 ids or more in one ms: borrow the next
                    ms += 1
                    self._counter = 0
            else:
                self._counter = self._rng.randrange(1 << (_LOW_BITS - 1))
            self._last_ms = ms
            counter = self._shard | self._counter
        return QueueId(_encode(ms, _TIME_CHARS) + _encode(counter, _LENGTH - _TIME_CHARS))
