"""`postier serve` as a child process: SIGHUP reloads the TLS certificate without dropping an open
session; SIGTERM lets an open session finish its grace period and ends it with 421 4.3.2;
--log-format json makes every line a JSON object, and keeps doing so across a reload."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postier.server.tls import ensure_self_signed
from tests.integration.harness import PostierProcess, make_config, peer_certificate, wait_for_port

pytestmark = pytest.mark.integration


async def test_sighup_reloads_the_certificate_and_keeps_sessions(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    process = PostierProcess(tmp_path, make_config(data_dir))
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["submissions"]
        before = await asyncio.to_thread(peer_certificate, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", process.ports["smtp"])
        assert (await reader.readline()).startswith(b"220 ")
        for name in ("cert.pem", "key.pem"):
            (data_dir / "tls" / name).unlink()
        ensure_self_signed(data_dir, "mx.test")
        process.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60  # generous: a loaded machine; ends as soon as it changed
        after = before
        while after == before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            after = await asyncio.to_thread(peer_certificate, port)
        assert after != before
        writer.write(b"NOOP\r\n")  # the session opened before the reload is still served
        assert (await reader.readline()).startswith(b"250 ")
        writer.close()
    finally:
        process.kill()


async def test_sigterm_ends_idle_sessions_with_421(tmp_path: Path) -> None:
    process = PostierProcess(tmp_path, make_config(tmp_path / "var", server={"shutdown_grace_s": 0.5}))
    try:
        await asyncio.to_thread(process.start)
        reader, writer = await asyncio.open_connection("127.0.0.1", process.ports["smtp"])
        assert (await reader.readline()).startswith(b"220 ")
        process.signal(signal.SIGTERM)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"421 4.3.2")
        writer.close()
        assert await asyncio.to_thread(process.wait) == 0  # stopping already: no second SIGTERM
        assert "event=stopped" in process.log()
    finally:
        process.kill()


async def test_sigterm_sent_again_while_stopping_still_exits_0(tmp_path: Path) -> None:
    """An impatient operator (or a supervisor) repeating SIGTERM while the server stops must not turn
    a clean stop into "killed by SIGTERM": the handlers stay until the stop is done, then the signal
    is ignored while the loop and the interpreter wind down (tens of milliseconds)."""
    process = PostierProcess(tmp_path, make_config(tmp_path / "var", server={"shutdown_grace_s": 0.5}))
    try:
        await asyncio.to_thread(process.start)
        assert process.proc is not None
        process.signal(signal.SIGTERM)
        while "event=stopped" not in process.log() and process.proc.poll() is None:
            await asyncio.sleep(0.001)
        process.signal(signal.SIGTERM)  # again, once the stop is done (a no-op if it has exited)
        assert await asyncio.to_thread(process.wait) == 0, process.log()
        assert "event=stopped" in process.log()
    finally:
        process.kill()


async def test_log_format_json_flag_wins_over_the_file_also_after_a_reload(tmp_path: Path) -> None:
    process = PostierProcess(tmp_path, make_config(tmp_path / "var", log={"format": "kv"}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [
        "serve",
        "--allow-root",
        "-c",
        str(process.config_path),
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]
    try:
        with process.log_path.open("ab") as log:
            process.proc = subprocess.Popen(
                [sys.executable, "-m", "postier", *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        smtp, child = process.ports["smtp"], process.proc
        await asyncio.to_thread(wait_for_port, smtp, alive=child, log=process.log_path)
        process.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60  # generous: a loaded machine
        while "configuration reloaded" not in process.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(process.stop) == 0
    finally:
        process.kill()
    lines = [json.loads(line) for line in process.log().splitlines()]
    assert all(list(line)[:2] == ["ts", "level"] for line in lines)
    events = [line for line in lines if "event" in line]
    ready = next(line for line in events if line["event"] == "ready")
    assert ready["hostname"] == "mx.test" and "smtp=127.0.0.1:" in ready["listeners"]
    assert any(line.get("msg") == "configuration reloaded" for line in lines)
    assert events[-1]["event"] == "stopped"  # still JSON after the reload
