"""What a session may cost while it receives a message: memory (one budget for the process) and time
(a deadline for the whole message, not only per read).

Memory. Each session holds some client input in memory: unread bytes, the framing's buffer, and the
message itself while it is small (``server.hold_message_bytes``). ``MemoryBudget`` adds up what every
session of the process holds; a session reports its figure after each read (``Charge.update``) and,
when the sum is past ``server.memory_budget_bytes``, it is told to spool: the engine hands out what
it holds of the message (``ServerConnection.spool_message``) and the session writes it to its spool
file. Only the part no session can spool — its input not yet read by the engine and the framing's
buffer, bounded per session by the read high-water mark — can take the sum past the budget.

Time. RFC 5321 §4.5.3.2 timeouts are per read: one byte every 179 s keeps a DATA open for ever.
``DataDeadline`` gives the whole message a deadline instead — as Postfix's
``smtpd_per_request_deadline`` with ``smtpd_min_data_rate`` — measured from the 354 (or the first
BDAT): ``data_timeout_s`` plus one second per ``min_data_bytes_per_s`` octets received since. A client
that sends at least that rate is never cut; a trickling one gets ``421 4.4.2`` once it falls behind.
The idle timeout per read still applies. Pure arithmetic on times the session passes in.
"""

from __future__ import annotations

__all__ = ["Charge", "DataDeadline", "MemoryBudget"]


class MemoryBudget:
    """Octets of client input all sessions of this process hold in memory, against ``total``."""

    __slots__ = ("peak", "total", "used")

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.peak = 0

    def charge(self) -> Charge:
        return Charge(self)


class Charge:
    """One session's share of a ``MemoryBudget``."""

    __slots__ = ("_budget", "octets")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.octets = 0

    def update(self, octets: int) -> bool:
        """The session holds ``octets`` now; False when the budget is spent and it holds more than
        before (it should spool)."""
        budget = self._budget
        delta = octets - self.octets
        budget.used += delta
        self.octets = octets
        if budget.used > budget.peak:
            budget.peak = budget.used
        return delta <= 0 or budget.used <= budget.total

    def release(self) -> None:
        self.update(0)


class DataDeadline:
    """The deadline of the message being received; ``remaining`` at ``now`` after ``octets`` of it."""

    __slots__ = ("_base", "_started", "min_rate", "timeout_s")

    def __init__(self, timeout_s: float, min_rate: float) -> None:
        self.timeout_s = timeout_s
        self.min_rate = min_rate  # octets per second; 0: no deadline beyond the idle timeout
        self._started: float | None = None
        self._base = 0

    @property
    def is_running(self) -> bool:
        return self._started is not None

    def start(self, now: float, octets: int) -> None:
        """The message starts at ``now``; ``octets``: the session's input counter then."""
        self._started, self._base = now, octets

    def stop(self) -> None:
        self._started = None

    def remaining(self, now: float, octets: int) -> float:
        """Seconds left (≤ 0: past the deadline); ``octets``: the session's input counter now."""
        if self._started is None or self.min_rate <= 0:
            return float("inf")
        allowed = self.timeout_s + (octets - self._base) / self.min_rate
        return self._started + allowed - now
