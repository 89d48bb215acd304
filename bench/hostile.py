"""``python -m bench.hostile``: Postier under hostile load (issue 14).

Two measures, against one ``postier serve`` whose delivery is held (``servers.held_port``: accepted
mail stays queued, so the figures are those of receiving):

- ``big``: ``--big-clients`` (200) connections each send one ``--big-mb`` (20) MB message at full
  speed (half by DATA, half by one BDAT chunk); the server's peak RSS, sampled every 50 ms. Goal:
  under 300 MB.
- ``hostile``: smtp-source's throughput (``--sessions`` 20 sessions, ``--messages`` 1 KiB messages)
  alone, then again while attackers run in another process: ``--slow`` (500) clients trickling one
  message line every few seconds, ``--floods`` (8) connections sending ``BDAT 0`` as fast as the
  server answers (reconnecting when cut), and ``--tls`` (8) loops of full TLS handshakes on the
  implicit-TLS port, each closed at once. Goal: loaded throughput at least 70 % of unloaded.

Prints one line per figure and a Markdown table at the end (pasted into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.clients import smtp_source
from bench.procs import PortPool, tree_memory
from bench.servers import _child, _postier_toml, held_port

MIB = 1 << 20
RCPT = "user@bench.test"
FLOOD_IP, TLS_IP = "127.0.0.3", "127.0.0.4"  # attackers; smtp-source: 127.0.0.1
SLOW_IPS = [f"127.0.1.{i}" for i in range(1, 51)]  # 500 slow clients: 10 per address
ATTACK_RCPT = b"postmaster@postier.bench.test"  # accepted from anyone (a local domain)
# A deployment's per-IP limits, applied to the attackers' addresses as to everyone's.
LIMITS = "[limits]\nconnections_per_minute_per_ip = 120\n"


@contextlib.contextmanager
def postier(root: Path, port: int, tls_port: int, extra: str = "") -> Iterator[int]:
    """A held Postier with an smtp listener on ``port`` and a submissions one on ``tls_port``."""
    root.mkdir(parents=True, exist_ok=True)
    with held_port() as route_port:
        toml = _postier_toml(root, port, route_port, hold=True, batch_max=None, workers=1)
        # Only smtp-source's address is trusted: the attackers are strangers, limits apply to them.
        toml = toml.replace('trusted_networks = ["127.0.0.0/8"]', 'trusted_networks = ["127.0.0.1/32"]')
        toml += f'[[listener]]\naddress = "127.0.0.1:{tls_port}"\nmode = "submissions"\n' + extra
        (root / "postier.toml").write_text(toml)
        argv = [
            sys.executable,
            "-m",
            "postier",
            "serve",
            "--allow-root",
            "--config",
            str(root / "postier.toml"),
        ]
        with _child(root, port, argv) as pid:
            yield pid


async def _expect(reader: asyncio.StreamReader, code: bytes) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            if not line.startswith(code):
                raise ConnectionError(f"expected {code!r}: {line!r}")
            return line


async def _open(
    port: int, source: str = "127.0.0.1", rcpt: bytes = RCPT.encode()
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    await _expect(reader, b"220")
    writer.write(b"EHLO attacker.test\r\nMAIL FROM:<a@attacker.test>\r\nRCPT TO:<" + rcpt + b">\r\n")
    for code in (b"250", b"250", b"250"):
        await _expect(reader, code)
    return reader, writer


# --- big: many large messages at once ------------------------------------------------------------


async def _send_big(port: int, body: bytes, bdat: bool) -> None:
    reader, writer = await _open(port)
    try:
        if bdat:
            writer.write(b"BDAT %d LAST\r\n" % len(body))
        else:
            writer.write(b"DATA\r\n")
            await writer.drain()
            await _expect(reader, b"354")
        for i in range(0, len(body), MIB):
            writer.write(body[i : i + MIB])
            await writer.drain()
        if not bdat:
            writer.write(b".\r\n")
        await _expect(reader, b"250")
    finally:
        writer.close()


def measure_big(port: int, pid: int, clients: int, size_mb: int) -> dict[str, float]:
    line = b"b" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (size_mb * MIB // len(line))
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tree_memory(pid).rss_kib)

    before = tree_memory(pid).rss_kib
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()

    async def run() -> None:
        await asyncio.gather(*(_send_big(port, body, i % 2 == 1) for i in range(clients)))

    asyncio.run(run())
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {
        "rss_before_mb": before / 1024,
        "rss_peak_mb": peak[0] / 1024,
        "seconds": elapsed,
        "mb_per_s": clients * len(body) / MIB / elapsed,
    }


# --- hostile: attackers while smtp-source measures ---------------------------------------------


async def _slow_client(port: int, stop: asyncio.Event, source: str) -> None:
    """Open a message and trickle a line every 5 s (about 6 octets/s); start over when cut."""
    while not stop.is_set():
        try:
            reader, writer = await _open(port, source, ATTACK_RCPT)
            writer.write(b"DATA\r\n")
            await _expect(reader, b"354")
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"slow.\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5.0)
            writer.close()
        except (OSError, ConnectionError):
            await asyncio.sleep(1.0)


async def _bdat_flood(port: int, stop: asyncio.Event, counter: list[int]) -> None:
    """``BDAT 0`` in batches of 200, as fast as the server answers; reconnect when cut."""
    batch = b"BDAT 0\r\n" * 200
    while not stop.is_set():
        try:
            reader, writer = await _open(port, FLOOD_IP, ATTACK_RCPT)
            while not stop.is_set():
                writer.write(batch)
                for _ in range(200):
                    line = await reader.readline()
                    if not line or line.startswith(b"421"):
                        raise ConnectionError("cut")
                    counter[0] += 1
        except (OSError, ConnectionError):
            await asyncio.sleep(0.05)


async def _tls_flood(port: int, stop: asyncio.Event, counter: list[int]) -> None:
    """Full TLS handshakes on the implicit-TLS port, each connection closed once the greeting came."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, local_addr=(TLS_IP, 0)
            )
            await reader.readline()
            writer.close()
            counter[0] += 1
        except (OSError, ConnectionError, ssl.SSLError):
            await asyncio.sleep(0.05)


def _attack(
    port: int,
    tls_port: int,
    slow: int,
    floods: int,
    tls: int,
    seconds: float,
    out: multiprocessing.Queue[object],
) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        bdat, hands = [0], [0]
        tasks = [
            asyncio.create_task(_slow_client(port, stop, SLOW_IPS[i % len(SLOW_IPS)])) for i in range(slow)
        ]
        tasks += [asyncio.create_task(_bdat_flood(port, stop, bdat)) for _ in range(floods)]
        tasks += [asyncio.create_task(_tls_flood(tls_port, stop, hands)) for _ in range(tls)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=10)
        out.put({"bdat_commands": bdat[0], "tls_handshakes": hands[0]})

    asyncio.run(run())


def measure_hostile(port: int, tls_port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    def throughput() -> float:
        elapsed = smtp_source(
            port, sessions=args.sessions, messages=args.messages, size=1024, rcpt=RCPT, timeout_s=600
        )
        return args.messages / elapsed

    throughput()  # warm-up
    unloaded = throughput()
    results: multiprocessing.Queue[object] = multiprocessing.Queue()
    attacker = multiprocessing.Process(
        target=_attack,
        args=(port, tls_port, args.slow, args.floods, args.tls, args.attack_s, results),
    )
    attacker.start()
    time.sleep(args.ramp_s)  # the slow clients connect, the floods start
    rss_attacked = tree_memory(pid).rss_kib
    loaded = throughput()
    attacker.join(args.attack_s + 60)
    figures = results.get(timeout=10) if not results.empty() else {}
    assert isinstance(figures, dict)
    return {
        "unloaded_msg_s": unloaded,
        "loaded_msg_s": loaded,
        "ratio": loaded / unloaded,
        "rss_attacked_mb": rss_attacked / 1024,
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["big", "hostile"], default=None)
    parser.add_argument("--big-clients", type=int, default=200)
    parser.add_argument("--big-mb", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--floods", type=int, default=8)
    parser.add_argument("--tls", type=int, default=8)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    parser.add_argument("--attack-s", type=float, default=60.0)
    args = parser.parse_args()
    ports = PortPool(23000)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="postier-hostile-") as tmp:
        if args.only in (None, "big"):
            port, tls_port = ports.take(), ports.take()
            with postier(Path(tmp) / "big", port, tls_port) as pid:
                big = measure_big(port, pid, args.big_clients, args.big_mb)
            print("big:", {k: round(v, 1) for k, v in big.items()}, flush=True)
            rows.append(
                (f"{args.big_clients} x {args.big_mb} MB at once: peak RSS", f"{big['rss_peak_mb']:.0f} MB")
            )
            rows.append(("  their throughput", f"{big['mb_per_s']:.0f} MB/s"))
        if args.only in (None, "hostile"):
            port, tls_port = ports.take(), ports.take()
            with postier(Path(tmp) / "hostile", port, tls_port, LIMITS) as pid:
                hostile = measure_hostile(port, tls_port, pid, args)
            print("hostile:", {k: round(v, 2) for k, v in hostile.items()}, flush=True)
            rows.append(("smtp-source alone", f"{hostile['unloaded_msg_s']:.0f} msg/s"))
            rows.append(
                ("smtp-source under attack", f"{hostile['loaded_msg_s']:.0f} msg/s ({hostile['ratio']:.0%})")
            )
            rows.append(("RSS under attack", f"{hostile['rss_attacked_mb']:.0f} MB"))
    print("\n| measure | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
