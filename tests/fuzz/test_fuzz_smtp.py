"""A bounded fuzz run of the server engine under pytest (the harness runs longer standalone)."""

from __future__ import annotations

import pytest
from smtp_fuzz import fuzz


@pytest.mark.parametrize("seed", range(4))
def test_any_bytes_give_events_never_exceptions(seed: int) -> None:
    fuzz(300, seed)
