"""When to try a deferred recipient again: exponential backoff with jitter, and expiry.

Pure: the clock (``now``, ``first_seen_at``) and the random source are arguments. The delay after
the n-th failed attempt is ``base_s * 2**(n-1)``, capped at ``cap_s``, then spread by ±``jitter``
(a fraction) so recipients deferred together do not come back together. RFC 5321 §4.5.4.1: the
retry interval "SHOULD be at least 30 minutes" between attempts to one destination, and a sender
should keep trying "until the message is at least 4-5 days old" — hence the 5-day ``max_age_s``.
The first retries are sooner (5 minutes), as Postfix and Exim do for greylisting.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

__all__ = ["next_attempt"]


def next_attempt(
    attempts: int,
    first_seen_at: datetime,
    now: datetime,
    *,
    rng: random.Random,
    base_s: float = 300.0,
    cap_s: float = 3600.0,
    max_age_s: float = 5 * 86400.0,
    jitter: float = 0.1,
) -> datetime | None:
    """The time of the next attempt after ``attempts`` failed ones, or None when the message has
    been queued ``max_age_s`` or longer (time to bounce). The last attempt is never scheduled past
    the expiry time: the message gets one final try at its deadline."""
    if attempts < 1:
        raise ValueError("next_attempt is asked after at least one attempt")
    if not 0 <= jitter < 1:
        raise ValueError("jitter is a fraction in [0, 1)")
    expires_at = first_seen_at + timedelta(seconds=max_age_s)
    if now >= expires_at:
        return None
    delay_s = min(cap_s, base_s * 2.0 ** min(attempts - 1, 60))
    delay_s *= 1.0 + rng.uniform(-jitter, jitter)
    return min(now + timedelta(seconds=delay_s), expires_at)
