"""The pure retry schedule and the queue id generator."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from postier.queue import is_queue_id, next_attempt
from postier.queue.ids import IdGenerator

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 0.0


# attempts made, age of the message (s) → delay until the next attempt (s), None = expired
CASES = [
    (1, 0, 300),
    (2, 600, 600),
    (3, 1800, 1200),
    (4, 3600, 2400),
    (5, 7200, 3600),  # capped
    (40, 86400, 3600),
    (3, 5 * 86400 - 100, 100),  # never past the deadline: one last try at it
    (3, 5 * 86400, None),
    (3, 6 * 86400, None),
]


@pytest.mark.parametrize(("attempts", "age_s", "delay_s"), CASES)
def test_backoff_table(attempts: int, age_s: float, delay_s: float | None) -> None:
    now = T0 + timedelta(seconds=age_s)
    got = next_attempt(attempts, T0, now, rng=NoJitter())
    assert got == (None if delay_s is None else now + timedelta(seconds=delay_s))


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    delays = set()
    for _ in range(200):
        at = next_attempt(1, T0, T0, rng=rng, jitter=0.2)
        assert at is not None
        delays.add((at - T0).total_seconds())
    assert min(delays) >= 240 and max(delays) <= 360
    assert len(delays) > 100  # spread, not one value


@pytest.mark.parametrize(("attempts", "jitter"), [(0, 0.1), (1, 1.0), (1, -0.1)])
def test_bad_arguments(attempts: int, jitter: float) -> None:
    with pytest.raises(ValueError):
        next_attempt(attempts, T0, T0, rng=random.Random(1), jitter=jitter)


def test_ids_increase_even_when_the_clock_stalls_or_steps_back() -> None:
    times = [T0, T0, T0 - timedelta(seconds=5), T0 + timedelta(milliseconds=1), T0]
    it = iter(times)
    mint = IdGenerator(lambda: next(it), random.Random(3))
    ids = [mint() for _ in times]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(is_queue_id(i) and len(i) == 16 for i in ids)


def test_ids_sort_by_time_across_generators() -> None:
    early = IdGenerator(lambda: T0, random.Random(1))()
    late = IdGenerator(lambda: T0 + timedelta(milliseconds=1), random.Random(2))()
    assert early < late


@pytest.mark.parametrize(
    "text",
    ["", "01M8K1DY1C8THFJ", "01M8K1DY1C8THFJE0", "01m8k1dy1c8thfje", "01M8K1DY1C8THFJI", "../../etc/passwd"],
)
def test_is_queue_id_refuses(text: str) -> None:
    assert not is_queue_id(text)
