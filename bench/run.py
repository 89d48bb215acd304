"""``python -m bench.run``: Postier vs Postfix vs aiosmtpd, side by side, in one run.

Installs the peers if missing, then runs every scenario against each server in turn (A B C A B C …)
for ``--rounds`` rounds, and writes bench/results/<date>.md (+ .png when matplotlib is installed).
Everything listens on 127.0.0.1 high ports; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import scenarios as sc
from bench.postfix import IDLE_HEADROOM, SMTPD_KIB, SMTPD_MAXPROC
from bench.procs import PortPool
from bench.report import machine, markdown, write_chart
from bench.results import Metric, Results
from bench.servers import WORKERS, Kind, kinds

REPO = Path(__file__).resolve().parent.parent
SCENARIO_NAMES = ("limits", "acceptance", "relay", "connect", "idle", "latency")
CONNECT_KINDS = ("postier", "postierw", "postfix", "aiosmtpd", "sink")
CPU_UNIT = "server CPU ms/msg"
RELAY_KINDS = ("postier", "postierw", "postierdkim", "postierdkim2", "postfix", "aiosmtpd")
DOCS = REPO / "docs" / "benchmarks.md"
MARK_START, MARK_END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"


def ensure_peers() -> None:
    """Debian postfix (smtp-source, smtp-sink) via scripts/install-peers; aiosmtpd in this venv."""
    if not all(shutil.which(t) for t in ("postfix", "smtp-source", "smtp-sink")):
        subprocess.run([str(REPO / "scripts" / "install-peers")], check=True, timeout=900)
    if importlib.util.find_spec("aiosmtpd") is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "aiosmtpd>=1.4.6"], check=True, timeout=600
        )


def raise_nofile(need: int = 65_536) -> int:
    """10,000 idle sessions need 10,000+ descriptors on each side (the client is this process; the
    servers inherit the limit): the soft limit up to the hard one, and the hard one up to ``need``
    where we may (root, CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
    want = hard if hard != resource.RLIM_INFINITY else need
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def _sysctl(name: str) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(v) for v in Path("/proc/sys", *name.split(".")).read_text().split()]
    return []


def loopback_limits(idle_sessions: int) -> list[tuple[str, str]]:
    """The kernel limits the connect and idle scenarios meet on loopback, raised where they are too
    low for this run and we may (as root, here where the bench runs; never in the tests).
    Ephemeral ports: every client socket takes one (10,000 idle + the TIME_WAITs of the connect
    scenario, which the server's side keeps: it closes first). Accept backlogs are capped by somaxconn
    (Postier asks 1,024, Postfix its process limit) and half-open ones by tcp_max_syn_backlog; the
    clients open at most 100 at a time, so 1,024 of each is plenty."""
    wants = {"net.core.somaxconn": 1024, "net.ipv4.tcp_max_syn_backlog": 1024}
    for name, want in wants.items():
        got = _sysctl(name)
        if got and got[0] < want:
            with contextlib.suppress(OSError):
                Path("/proc/sys", *name.split(".")).write_text(str(want))
                _say(f"{name} raised from {got[0]} to {want}")
    lo, hi = [*_sysctl("net.ipv4.ip_local_port_range"), 0, 0][:2]
    if hi - lo + 1 < idle_sessions + 1000:
        _say(f"warning: {hi - lo + 1} ephemeral ports for {idle_sessions:,} idle sessions")
    names = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_tw_reuse")
    values = ", ".join(f"{n.rsplit('.', 1)[1]} {' '.join(map(str, _sysctl(n)))}" for n in names)
    return [("loopback limits", f"ephemeral ports {lo}–{hi}, {values}")]


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _measure(results: Results, metric: Metric, server: str, fn: Callable[[], float]) -> None:
    try:
        value = fn()
    except Exception as exc:
        _say(f"  {metric.scenario} / {metric.case} / {server}: FAILED {exc}")
        results.note(metric, server, f"failed: {str(exc)[:80]}")
        return
    results.add(metric, server, value)
    _say(f"  {metric.scenario} / {metric.case} / {server}: {value:,.2f} {metric.unit}")


def _measure_throughput(
    results: Results, scenario: str, case: str, server: str, fn: Callable[[], sc.Throughput]
) -> None:
    """msg/s and the server's CPU per message, from one measurement."""
    rate, cpu = Metric(scenario, case, "msg/s"), Metric(scenario, case, CPU_UNIT, False)
    try:
        got = fn()
    except Exception as exc:
        _say(f"  {scenario} / {case} / {server}: FAILED {exc}")
        results.note(rate, server, f"failed: {str(exc)[:80]}")
        return
    results.add(rate, server, got.msg_per_s)
    results.add(cpu, server, got.server_cpu_ms)
    _say(f"  {scenario} / {case} / {server}: {got.msg_per_s:,.0f} msg/s, {got.server_cpu_ms:.3f} {CPU_UNIT}")


def preflight(active: list[Kind], plan: sc.Plan) -> dict[str, str]:
    """Start and stop each server once; a server that cannot start is left out of the whole run."""
    broken: dict[str, str] = {}
    for kind in active:
        try:
            with kind.launch(plan.root(kind), plan.ports.take(), None):
                pass
        except Exception as exc:
            broken[kind.key] = f"did not start: {str(exc)[:100]}"
            _say(f"{kind.label} {broken[kind.key]}")
    return broken


def _round(
    results: Results, plan: sc.Plan, active: list[Kind], chosen: set[str], relay_off: dict[str, str]
) -> None:
    if "limits" in chosen:
        _measure(
            results,
            Metric("limits", "disk: append 4 KiB + fsync", "fsync/s"),
            "disk",
            lambda: sc.fsync_rate(plan.workdir),
        )
    for case in plan.cases if "acceptance" in chosen else []:
        name = case.name + f", {case.messages:,} msgs"
        for kind in active:
            _measure_throughput(
                results, "acceptance", name, kind.key, lambda k=kind, c=case: sc.acceptance(k, c, plan)
            )  # type: ignore[misc]
    peers = [k for k in active if k.key in ("postier", "postfix", "aiosmtpd")]
    for case in sc.relay_cases(plan) if "relay" in chosen else ():
        name = case.name + f", {case.messages:,} msgs"
        for kind in [k for k in active if k.key in RELAY_KINDS]:
            if kind.key in relay_off:
                results.note(Metric("relay", name, "msg/s"), kind.key, relay_off[kind.key])
                continue
            _measure_throughput(results, "relay", name, kind.key, lambda k=kind, c=case: sc.relay(k, plan, c))  # type: ignore[misc]
    if "connect" in chosen:
        for kind in [k for k in active if k.key in CONNECT_KINDS]:
            _connect_round(results, plan, kind)
    if "idle" in chosen:
        for kind in [*peers, *(k for k in active if k.key == "sink")]:
            _idle_round(results, plan, kind)
    if "latency" in chosen:
        for kind in [k for k in active if k.durable]:
            _latency_round(results, plan, kind)


def _fail_all(results: Results, metrics: list[Metric], server: str, exc: Exception) -> None:
    _say(f"  {metrics[0].scenario} / {server}: FAILED {exc}")
    for m in metrics:
        results.note(m, server, f"failed: {str(exc)[:80]}")


def _connect_round(results: Results, plan: sc.Plan, kind: Kind) -> None:
    case = (
        f"{plan.connect_sessions:,} empty sessions, "
        f"{plan.connect_loops} client loops × {plan.connect_concurrency} at a time"
    )
    metrics = [
        Metric("connect", case, "sessions/s"),
        Metric("connect", case, "server CPU ms/session", False),
        Metric("connect", case, "client CPU ms/session", False),
        Metric("connect", case, "client cores busy", False),
    ]
    try:
        fig = sc.connect(kind, plan)
    except Exception as exc:
        _fail_all(results, metrics, kind.key, exc)
        return
    values = (fig.sessions_per_s, fig.server_cpu_ms, fig.client_cpu_ms, fig.client_cores)
    for m, v in zip(metrics, values, strict=True):
        results.add(m, kind.key, v)
    _say(f"  connect / {kind.key}: {fig}")


def _idle_round(results: Results, plan: sc.Plan, kind: Kind) -> None:
    case = f"{plan.idle_sessions:,} idle sessions, {plan.idle_probes} new clients timed"
    names = [
        ("KiB RSS/conn", False),
        ("KiB PSS/conn", False),
        ("ms to greeting p50", False),
        ("ms to greeting p99", False),
        ("sessions open", True),
    ]
    metrics = [Metric("idle", case, unit, better) for unit, better in names]
    try:
        fig = sc.idle(kind, plan)
    except Exception as exc:
        _fail_all(results, metrics, kind.key, exc)
        return
    values = (
        fig.rss_kib_per_conn,
        fig.pss_kib_per_conn,
        fig.greeting_p50_ms,
        fig.greeting_p99_ms,
        fig.opened,
    )
    for m, v in zip(metrics, values, strict=True):
        results.add(m, kind.key, float(v))
    _say(f"  idle / {kind.key}: {fig}")


def _latency_round(results: Results, plan: sc.Plan, kind: Kind) -> None:
    case = f"1 KiB at {plan.latency_rate:g} msg/s, {plan.latency_count:,} msgs"
    p50m, p99m = Metric("latency", case, "ms p50", False), Metric("latency", case, "ms p99", False)
    try:
        p50, p99 = sc.latency(kind, plan)
    except Exception as exc:
        _say(f"  latency / {kind.key}: FAILED {exc}")
        results.note(p50m, kind.key, f"failed: {str(exc)[:80]}")
        results.note(p99m, kind.key, f"failed: {str(exc)[:80]}")
        return
    results.add(p50m, kind.key, p50)
    results.add(p99m, kind.key, p99)
    _say(f"  latency / {kind.key}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run: 1/10 of the messages and empty sessions, 200 idle sessions",
    )
    p.add_argument("--scenario", action="append", choices=SCENARIO_NAMES, help="only these (repeatable)")
    p.add_argument(
        "--server", action="append", choices=[k.key for k in kinds()], help="only these (repeatable)"
    )
    p.add_argument(
        "--case",
        action="append",
        metavar="TEXT",
        help='only acceptance cases whose name contains TEXT, e.g. "100 KiB" (repeatable)',
    )
    p.add_argument(
        "--messages", type=int, default=None, help="messages per acceptance case and for relay (overrides)"
    )
    p.add_argument("--connections", type=int, default=None, help="empty sessions per connect run (overrides)")
    p.add_argument("--idle", type=int, default=None, help="idle sessions to hold (overrides)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/var/tmp"),  # noqa: S108 — a disk, unlike a tmpfs /tmp
        help="where queues live (a real disk)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    p.add_argument("--base-port", type=int, default=24000, help="first loopback port to try")
    p.add_argument(
        "--postier-loop",
        choices=("default", "asyncio"),
        default="default",
        help="default: `postier serve` as shipped (uvloop if installed); asyncio: the stdlib loop",
    )
    p.add_argument("--update-docs", action="store_true", help="put the table in docs/benchmarks.md")
    return p.parse_args(argv)


def _plan(args: argparse.Namespace, workdir: Path) -> sc.Plan:
    return sc.Plan(
        workdir=workdir,
        ports=PortPool(args.base_port),
        cases=sc.plan_cases(args.quick, only=args.case, messages=args.messages),
        relay_messages=args.messages or (1_000 if args.quick else 10_000),
        idle_sessions=args.idle or (200 if args.quick else 10_000),
        latency_count=200 if args.quick else 1_000,
        connect_sessions=args.connections or (2_000 if args.quick else 20_000),
        idle_probes=200 if args.quick else 300,
    )


def _relay_availability(plan: sc.Plan, active: list[Kind], chosen: set[str]) -> dict[str, str]:
    off: dict[str, str] = {}
    for kind in active:
        if "relay" in chosen and kind.key in RELAY_KINDS[:4]:
            reason = sc.relay_probe(kind, plan)
            if reason:
                off[kind.key] = reason
                _say(f"relay: Postier {reason}")
    return off


def _postfix_limit(idle_sessions: int) -> str:
    held = min(idle_sessions, SMTPD_MAXPROC - IDLE_HEADROOM)
    text = f"{SMTPD_MAXPROC:,} (one smtpd per connection; idle: {held:,} held, {IDLE_HEADROOM} spare)"
    if held < idle_sessions:
        text += f"; capped by the bench's memory guard (60 % of MemAvailable at {SMTPD_KIB:,} KiB per smtpd)"
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    chosen = set(args.scenario or SCENARIO_NAMES)
    ensure_peers()
    nofile = raise_nofile()
    _say(f"RLIMIT_NOFILE raised to {nofile}")
    workdir = Path(tempfile.mkdtemp(prefix="postier-bench-", dir=args.workdir))
    workdir.chmod(0o755)  # Postfix daemons must traverse it
    results = Results()
    try:
        plan = _plan(args, workdir)
        limits = loopback_limits(plan.idle_sessions) if chosen & {"connect", "idle"} else []
        every = kinds(args.postier_loop)
        active = [k for k in every if not args.server or k.key in args.server]
        broken = preflight(active, plan)
        active = [k for k in active if k.key not in broken]
        relay_off = _relay_availability(plan, active, chosen)
        for r in range(rounds):
            _say(f"round {r + 1}/{rounds}")
            _round(results, plan, active, chosen, relay_off)
        workers = WORKERS if args.postier_loop == "default" else 1  # of the "postierw" reference
        facts = [
            *machine(workdir),
            ("Postier event loop", args.postier_loop),
            ("Postier, workers", f"{workers} (as shipped: one per core); the reference column: {workers}"),
            *limits,
        ]
        if "idle" in chosen and any(k.key == "postfix" for k in active):
            facts.append(("Postfix smtpd process limit", _postfix_limit(plan.idle_sessions)))
        if chosen & {"connect", "idle"}:
            facts.append(("open files (RLIMIT_NOFILE)", f"{nofile:,} (the client and every server)"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _write(args, results, facts, rounds, broken)


def _write(
    args: argparse.Namespace,
    results: Results,
    facts: list[tuple[str, str]],
    rounds: int,
    broken: dict[str, str],
) -> int:
    date = dt.date.today().isoformat()
    stem = f"{date}-quick" if args.quick else date
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"# Benchmark {date}{' (quick smoke run)' if args.quick else ''}: {rounds} round(s)"
    extra = [("left out", "; ".join(f"{k} {v}" for k, v in broken.items()))] if broken else []
    text = markdown(results, facts + extra, header)
    if write_chart(results, args.out / f"{stem}.png"):
        text += f"\n![throughput per scenario]({stem}.png)\n"
    (args.out / f"{stem}.md").write_text(text)
    _say(f"wrote {args.out / f'{stem}.md'}")
    if args.update_docs and DOCS.exists():
        doc = DOCS.read_text()
        if MARK_START in doc and MARK_END in doc:
            before, rest = doc.split(MARK_START, 1)
            after = rest.split(MARK_END, 1)[1]
            body = text.replace(f"]({stem}.png)", f"](../bench/results/{stem}.png)")
            DOCS.write_text(f"{before}{MARK_START}\n{body}\n{MARK_END}{after}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
