"""Collected figures: one ``Series`` per table cell (a scenario, a case, a metric, a server), holding
the value of every round; summaries are median, min and max; ratios are Postier's median over a
peer's median."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

__all__ = ["Metric", "Results"]


@dataclass(frozen=True)
class Metric:
    scenario: str
    case: str
    unit: str
    higher_is_better: bool = True


@dataclass
class Results:
    values: dict[Metric, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[Metric, dict[str, str]] = field(default_factory=dict)

    def add(self, metric: Metric, server: str, value: float) -> None:
        self.values.setdefault(metric, {}).setdefault(server, []).append(value)

    def note(self, metric: Metric, server: str, text: str) -> None:
        self.notes.setdefault(metric, {})[server] = text
        self.values.setdefault(metric, {})

    def metrics(self, scenario: str) -> list[Metric]:
        return [m for m in self.values if m.scenario == scenario]

    def median(self, metric: Metric, server: str) -> float | None:
        got = self.values.get(metric, {}).get(server)
        return statistics.median(got) if got else None

    def cell(self, metric: Metric, server: str) -> str:
        got = self.values.get(metric, {}).get(server)
        if got:
            med, lo, hi = statistics.median(got), min(got), max(got)
            return f"{_fmt(med)} ({_fmt(lo)}–{_fmt(hi)})" if len(got) > 1 else _fmt(med)
        return self.notes.get(metric, {}).get(server, "—")

    def ratio(self, metric: Metric, num: str, den: str) -> float | None:
        a, b = self.median(metric, num), self.median(metric, den)
        return a / b if a is not None and b else None


def _fmt(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"
