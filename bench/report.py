"""The report: machine description, one Markdown table per scenario, the goals of issues 8 and 19 as measured
(never asserted), and an optional PNG chart (matplotlib; without it, the table alone)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.postfix import postfix_version
from bench.results import Metric, Results
from bench.servers import WORKERS

__all__ = ["LABELS", "machine", "markdown", "write_chart"]

LABELS = {
    "postier": "Postier",
    "postier1": "Postier, 1 fsync/msg",
    "postierw": f"Postier, {WORKERS} workers",
    "postfix": "Postfix",
    "aiosmtpd": "aiosmtpd+fsync",
    "sink": "smtp-sink (no durability)",
    "disk": "disk",
}
PEERS = ("postfix", "aiosmtpd", "sink")
SCENARIOS = {
    "acceptance": "1. Durable acceptance (msg/s until the last 250; higher is better)",
    "relay": "2. End-to-end relay to an smtp-sink (msg/s, first message in until the sink counted the last)",
    "connect": "3. Connections per second, empty sessions (connect, greeting, EHLO, QUIT, 221, close)",
    "idle": "4. Many connections (idle sessions held open; new clients timed to their greeting meanwhile)",
    "latency": "5. Per-transaction latency at a fixed rate (ms, MAIL FROM to the final 250; lower is better)",
    "limits": "Limit references (same run)",
}


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _disk(workdir: Path) -> str:
    src_fs = _run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(workdir)]).split()
    if not src_fs:
        return "unknown"
    dev = Path(src_fs[0]).name
    rot = Path(f"/sys/block/{dev}/queue/rotational")
    kind = {"0": "non-rotational", "1": "rotational"}.get(rot.read_text().strip(), "") if rot.exists() else ""
    opts = src_fs[2] if len(src_fs) > 2 else ""
    return f"{src_fs[0]} {src_fs[1] if len(src_fs) > 1 else ''} ({opts}) {kind}".strip()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(workdir: Path) -> list[tuple[str, str]]:
    repo = Path(__file__).resolve().parent.parent
    commit = _run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    return [
        ("CPU", f"{os.cpu_count()} × {_cpu_model()}"),
        ("memory", _mem_total()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("disk (queues)", f"{workdir}: {_disk(workdir)}"),
        ("Python", sys.version.split()[0]),
        ("Postfix", postfix_version()),
        ("aiosmtpd", _version("aiosmtpd")),
        ("Postier", f"{_version('postier')} (git {commit or '?'})"),
    ]


def _table(results: Results, scenario: str) -> list[str]:
    metrics = results.metrics(scenario)
    servers = [
        k for k in LABELS if any(k in results.values[m] or k in results.notes.get(m, {}) for m in metrics)
    ]
    ratios = [p for p in PEERS if p in servers] if "postier" in servers else []
    for reference in ("postier1", "postierw"):
        if reference in servers and "postier" in servers:
            ratios.append(reference)
    head = ["case", "unit", *(LABELS[s] for s in servers), *(f"Postier / {LABELS[p]}" for p in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        cells = [m.case, m.unit, *(results.cell(m, s) for s in servers)]
        for p in ratios:
            r = results.ratio(m, "postier", p)
            cells.append("—" if r is None else f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


IDLE_GOAL = 10_000
"""Issue 19: this many idle connections held at once, each costing at most 20 KiB, while a new client
is still greeted within 100 ms (p99)."""

Goal = tuple[str, float | None, float, bool, bool]
"""(what, measured, target, at least (else at most), and whatever else the goal needs held)."""


def _idle_goals(results: Results) -> list[Goal]:
    rows: list[Goal] = []
    for m in [m for m in results.metrics("idle") if m.unit == "sessions open"]:
        opened = results.median(m, "postier")
        held = opened is not None and opened >= IDLE_GOAL
        what = f"{opened:,.0f} held" if opened is not None else "not measured"
        for unit, target, name in (
            ("KiB RSS/conn", 20.0, "KiB RSS per connection"),
            ("ms to greeting p99", 100.0, "new client's greeting, ms p99"),
        ):
            got = results.median(Metric("idle", m.case, unit, False), "postier")
            rows.append((f"{IDLE_GOAL:,} idle connections ({what}): {name}", got, target, False, held))
    return rows


def _goals(results: Results) -> list[str]:
    def find(scenario: str, unit: str) -> list[Metric]:
        return [m for m in results.metrics(scenario) if m.unit == unit]

    def vs(m: Metric, peer: str) -> float | None:
        return results.ratio(m, "postier", peer)

    rows: list[Goal] = []
    for m in find("acceptance", "msg/s"):
        rows.append((f"acceptance {m.case}: Postier / Postfix", vs(m, "postfix"), 2.0, True, True))
        rows.append((f"acceptance {m.case}: Postier / aiosmtpd", vs(m, "aiosmtpd"), 3.0, True, True))
    for m in find("relay", "msg/s"):
        rows.append((f"end-to-end relay {m.case}: Postier / Postfix", vs(m, "postfix"), 2.0, True, True))
    for m in find("relay", "server CPU ms/msg"):
        if m.case.startswith("1 KiB"):
            what = f"server CPU per message end to end, {m.case}: ms"
            rows.append((what, results.median(m, "postier"), 0.6, False, True))
    for m in find("connect", "sessions/s"):
        name = "connections/s, empty sessions: Postier / Postfix (the 2× of the other goals)"
        rows.append((name, vs(m, "postfix"), 2.0, True, True))
    rows += _idle_goals(results)
    out = ["| goal (issues 8 and 19) | target | measured | met |", "|---|---|---|---|"]
    for name, got, target, at_least, also in rows:
        aim = f"{'≥' if at_least else '≤'} {target:g}"
        if got is None:
            out.append(f"| {name} | {aim} | not measured | — |")
            continue
        met = (got >= target if at_least else got <= target) and also
        out.append(f"| {name} | {aim} | {got:.2f} | {'yes' if met else 'no'} |")
    return out


def markdown(results: Results, facts: list[tuple[str, str]], header: str) -> str:
    out = [header, "", "| machine | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), ""]
    out += ["Cells: median (min–max) over the rounds. Ratios: Postier's median / the peer's median.", ""]
    for key, title in SCENARIOS.items():
        if results.metrics(key):
            out += [f"## {title}", "", *_table(results, key), ""]
    out += ["## Goals, as measured (not asserted)", "", *_goals(results), ""]
    return "\n".join(out)


def write_chart(results: Results, path: Path) -> bool:
    """Grouped bars of median msg/s per throughput case; False when matplotlib is not installed or
    there is no such case."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    metrics = [m for m in results.values if m.unit == "msg/s"]
    if not metrics:
        return False
    servers = [s for s in LABELS if any(results.median(m, s) for m in metrics)]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / max(1, len(servers))
    for i, s in enumerate(servers):
        ys = [results.median(m, s) or 0.0 for m in metrics]
        ax.bar([x + i * width for x in range(len(metrics))], ys, width, label=LABELS[s])
    ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(metrics))])
    ax.set_xticklabels([f"{m.scenario}\n{m.case}" for m in metrics], fontsize=8)
    ax.set_ylabel("messages per second (median)")
    ax.set_yscale("log")
    ax.set_title("Throughput per scenario: Postier vs peers (log scale)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
