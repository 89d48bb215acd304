"""The memory budget shared by sessions, and the deadline of a message (issue 14: 2)."""

from __future__ import annotations

import pytest

from postier.server.budget import DataDeadline, MemoryBudget


def test_the_budget_refuses_growth_past_its_total_but_never_shrinking() -> None:
    budget = MemoryBudget(1000)
    a, b = budget.charge(), budget.charge()
    assert a.update(600)
    assert not b.update(500)  # 1100 > 1000: b should spool
    assert b.update(100)  # it did: 700
    assert budget.used == 700 and budget.peak == 1100
    assert not a.update(950)
    a.release()
    b.release()
    assert budget.used == 0


@pytest.mark.parametrize(
    ("events", "cut_at"),
    [
        # (time, octets received so far) — a client at 10 octets/s against a floor of 100 octets/s
        ([(t, 10 * t) for t in range(0, 60)], 12),
        # a client at 1000 octets/s is never cut
        ([(t, 1000 * t) for t in range(0, 600)], None),
        # one octet every 9 s: cut at the first wait past 10 s
        ([(9 * i, i) for i in range(0, 20)], 18),
    ],
)
def test_the_deadline_grows_with_the_data_received(events: list[tuple[int, int]], cut_at: int | None) -> None:
    deadline = DataDeadline(timeout_s=10.0, min_rate=100.0)
    deadline.start(0.0, 0)
    cut = next((t for t, octets in events if deadline.remaining(float(t), octets) <= 0), None)
    assert cut == cut_at


def test_no_deadline_when_off_or_not_started() -> None:
    assert DataDeadline(10.0, 0.0).remaining(1e9, 0) == float("inf")
    deadline = DataDeadline(10.0, 100.0)
    assert deadline.remaining(1e9, 0) == float("inf")
    deadline.start(5.0, 1000)
    assert deadline.remaining(5.0, 1000) == 10.0
    deadline.stop()
    assert not deadline.is_running
