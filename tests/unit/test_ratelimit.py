from __future__ import annotations

import pytest

from postier.policy.ratelimit import RateLimits, SlidingWindow


def test_sliding_window_allows_limit_events_per_window() -> None:
    window = SlidingWindow(3, 60.0)
    for t in (0.0, 10.0, 20.0):
        assert window.allows("a", t)
        window.record("a", t)
    assert not window.allows("a", 30.0)
    assert window.allows("b", 30.0)  # keys are independent
    assert not window.allows("a", 59.9)
    assert window.allows("a", 60.0)  # the first event has left the window


def test_memory_is_bounded() -> None:
    window = SlidingWindow(2, 60.0, max_keys=100)
    for i in range(1000):
        for _ in range(5):
            window.record(f"ip{i}", float(i))
    assert len(window) == 100
    assert window.allows("ip0", 999.0)  # forgotten, least recently used


@pytest.mark.parametrize(("limit", "window_s"), [(0, 60.0), (1, 0.0)])
def test_bad_arguments(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError):
        SlidingWindow(limit, window_s)


def test_zero_turns_a_limit_off() -> None:
    limits = RateLimits.build(
        connections_per_minute_per_ip=0,
        messages_per_hour_per_ip=10,
        messages_per_hour_per_user=0,
        exempt_trusted=True,
    )
    assert limits.connections_per_ip is None and limits.messages_per_user is None
    assert limits.messages_per_ip is not None and limits.messages_per_ip.limit == 10
