"""The report: machine description, one Markdown table per scenario, the issue-8 goals as measured
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
PEERS = ("postfix", "aiosmtpd")
SCENARIOS = {
    "acceptance": "1. Durable acceptance (msg/s until the last 250; higher is better)",
    "relay": "2. End-to-end relay to an smtp-sink (msg/s, first message in until the sink counted the last)",
    "idle": "3. Many connections (idle sessions open at once)",
    "latency": "4. Per-transaction latency at a fixed rate (ms, MAIL FROM to the final 250; lower is better)",
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


def _goals(results: Results) -> list[str]:
    def find(scenario: str, unit: str) -> list[Metric]:
        return [m for m in results.metrics(scenario) if m.unit == unit]

    rows: list[tuple[str, float | None, float, bool]] = []
    for m in find("acceptance", "msg/s"):
        rows.append(
            (f"acceptance {m.case}: Postier / Postfix", results.ratio(m, "postier", "postfix"), 2.0, True)
        )
        rows.append(
            (f"acceptance {m.case}: Postier / aiosmtpd", results.ratio(m, "postier", "aiosmtpd"), 3.0, True)
        )
    for m in find("relay", "msg/s"):
        rows.append(
            (
                f"end-to-end relay {m.case}: Postier / Postfix",
                results.ratio(m, "postier", "postfix"),
                2.0,
                True,
            )
        )
    for m in find("idle", "KiB RSS/conn"):
        rows.append(("RSS per idle connection (KiB)", results.median(m, "postier"), 20.0, False))
    out = ["| goal (issues 8 and 19) | target | measured | met |", "|---|---|---|---|"]
    for name, got, target, at_least in rows:
        if got is None:
            out.append(f"| {name} | {'≥' if at_least else '≤'} {target:g} | not measured | — |")
            continue
        met = got >= target if at_least else got <= target
        out.append(
            f"| {name} | {'≥' if at_least else '≤'} {target:g} | {got:.2f} | {'yes' if met else 'no'} |"
        )
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
    """Grouped bars of median msg/s per throughput case; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    metrics = [m for m in results.values if m.unit == "msg/s"]
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
