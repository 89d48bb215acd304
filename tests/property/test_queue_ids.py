"""Queue ids: strictly increasing per generator, and never the same from two shards."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.queue import QueueId, is_queue_id
from postier.queue.ids import SHARDS, IdGenerator

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# A clock as a list of ms offsets from T0: repeats (same millisecond) and steps back included.
clocks = st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=300)
shard_pairs = st.lists(st.integers(min_value=0, max_value=SHARDS - 1), min_size=2, max_size=2, unique=True)


def replay(offsets_ms: list[int]) -> Callable[[], datetime]:
    times: Iterator[datetime] = iter([T0 + timedelta(milliseconds=ms) for ms in offsets_ms])
    return lambda: next(times)


def mint(offsets_ms: list[int], seed: int, shard: int) -> list[QueueId]:
    new_id = IdGenerator(replay(offsets_ms), random.Random(seed), shard=shard)
    return [new_id() for _ in offsets_ms]


@given(clocks, st.integers(), shard_pairs)
def test_two_shards_never_mint_the_same_id(offsets_ms: list[int], seed: int, shards: list[int]) -> None:
    # Same clock readings, same random numbers: only the shard differs.
    a, b = (mint(offsets_ms, seed, shard) for shard in shards)
    assert not set(a) & set(b)
    for ids in (a, b):
        assert all(x < y for x, y in itertools.pairwise(ids))  # strictly increasing
        assert all(len(i) == 16 and is_queue_id(i) for i in ids)


@given(clocks, st.integers(), st.integers(min_value=0, max_value=SHARDS - 1))
def test_ids_keep_the_arrival_time(offsets_ms: list[int], seed: int, shard: int) -> None:
    # The first 10 characters are the time in ms: the latest clock reading so far (never earlier).
    ids = mint(offsets_ms, seed, shard)
    latest = [max(offsets_ms[: n + 1]) for n in range(len(offsets_ms))]
    assert [i[:10] for i in ids] == [mint([ms], 0, shard)[0][:10] for ms in latest]


@pytest.mark.parametrize("shard", [-1, SHARDS, 1000])
def test_a_shard_out_of_range_is_refused(shard: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        IdGenerator(replay([0]), shard=shard)
