"""``[server] workers = 2``: `postier serve` as a real process with two receiving workers beside it.

What an operator checks: both workers take mail from the same port into the same queue, and every
message is delivered once (by the primary, which receives nothing meanwhile); a worker that dies is
started again; SIGHUP reaches every process; SIGTERM stops them all, and a killed primary does not
leave a worker behind.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from postier.config import parse_config
from postier.supervisor import bind_worker_listeners
from tests.integration.harness import PostierProcess, add_users, make_config

pytestmark = pytest.mark.integration

RCPT = "box@example.test"


def _config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data = make_config(tmp_path / "var", **sections)
    data["server"]["workers"] = 2
    data["server"]["shutdown_grace_s"] = 2.0
    return data


def _start(tmp_path: Path, data: dict[str, Any]) -> PostierProcess:
    add_users(tmp_path / "var", RCPT)
    process = PostierProcess(tmp_path, data)
    process.start()
    ready = ("worker=1 event=ready", "worker=2 event=ready")
    _wait(lambda: all(line in process.log() for line in ready), "a worker never got ready", process)
    return process


def _wait(done: Callable[[], bool], what: str, process: PostierProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; the log:\n{process.log()}")
        time.sleep(0.05)


def _send(port: int, subject: str, rcpt: str = RCPT) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        client.rcpt(rcpt)
        return client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())[1]


def _worker_pid(process: PostierProcess, index: int, nth: int = 1) -> int:
    started = re.findall(rf"worker {index} started \(pid (\d+)\)", process.log())
    assert len(started) >= nth, process.log()
    return int(started[nth - 1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent's successor) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_both_workers_take_mail_on_one_port_and_each_message_is_delivered_once(tmp_path: Path) -> None:
    process = _start(tmp_path, _config(tmp_path))
    try:
        port = process.ports["smtp"]
        subjects: list[str] = []
        # The kernel spreads the connections over the workers' sockets: go on until both have queued
        # mail (a bound keeps a broken worker from looping forever).
        while not all(f"worker={i} event=queued" in process.log() for i in (1, 2)):
            assert len(subjects) < 400, "one process never queued anything:\n" + process.log()
            subjects.append(f"message {len(subjects)}")
            assert b"queued as" in _send(port, subjects[-1])
        new = tmp_path / "var" / "mail" / "example.test" / "box" / "new"
        _wait(lambda: len(list(new.glob("*"))) >= len(subjects), "not every message was delivered", process)
        assert process.stop() == 0  # a stopped server delivers nothing more: any duplicate is there now
        got = sorted(re.search(rb"Subject: (.*)\r\n", p.read_bytes())[1].decode() for p in new.glob("*"))  # type: ignore[index]
        assert got == sorted(subjects)
        deliveries = [line for line in process.log().splitlines() if "event=delivery" in line]
        assert len(deliveries) == len(subjects)
        assert all(" worker=0 " in line for line in deliveries)  # only the primary delivers
        assert "worker=0 event=connect" not in process.log()  # and receives nothing meanwhile
    finally:
        process.kill()


def test_each_process_listens_on_a_socket_of_its_own_on_every_address(tmp_path: Path) -> None:
    """SO_REUSEPORT: the kernel spreads connections over the processes' sockets (one socket shared
    by all went to whichever process woke first)."""
    data = _config(tmp_path)
    data["server"]["workers"] = 3
    sets = bind_worker_listeners(parse_config(data))
    try:
        assert len(sets) == 3
        addresses = [[sock.getsockname() for sock in socks] for socks in sets]
        assert addresses[0] == addresses[1] == addresses[2]
        assert [port for _host, port in addresses[0]] == [
            int(lc["address"].rsplit(":", 1)[1]) for lc in data["listener"]
        ]
        assert len({sock.fileno() for socks in sets for sock in socks}) == 9
    finally:
        for socks in sets:
            for sock in socks:
                sock.close()


def test_a_worker_that_dies_is_started_again(tmp_path: Path) -> None:
    process = _start(tmp_path, _config(tmp_path))
    try:
        first = _worker_pid(process, 1)
        os.kill(first, signal.SIGKILL)
        _wait(lambda: "worker 1 exited" in process.log(), "the primary did not notice", process)
        # Meanwhile the primary accepts the connections the kernel hands to worker 1's sockets.
        _wait(lambda: "accepting worker 1's connections" in process.log(), "nobody took over", process)
        _wait(lambda: process.log().count("worker=1 event=ready") == 2, "worker 1 was not restarted", process)
        assert _worker_pid(process, 1, nth=2) != first
        for i in range(10):  # whichever process takes them, mail is accepted
            assert b"queued as" in _send(process.ports["smtp"], f"after restart {i}")
        assert process.stop() == 0
    finally:
        process.kill()


def test_sighup_reaches_every_process(tmp_path: Path) -> None:
    data = _config(tmp_path)
    process = _start(tmp_path, data)
    try:
        data["relay"]["local_domains"] = [*data["relay"]["local_domains"], "new.example"]
        tmp = process.config_path.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(data))
        tmp.replace(process.config_path)
        process.signal(signal.SIGHUP)
        reloaded = [f'worker={i} logger=postier.app msg="configuration reloaded"' for i in (0, 1, 2)]
        _wait(lambda: all(line in process.log() for line in reloaded), "not every process reloaded", process)
        for i in range(10):  # whichever process takes them, the new domain is local now
            assert b"queued as" in _send(process.ports["smtp"], f"new domain {i}", "postmaster@new.example")
        assert process.stop() == 0
    finally:
        process.kill()


def test_sigterm_stops_every_process_and_a_killed_primary_leaves_no_worker(tmp_path: Path) -> None:
    process = _start(tmp_path, _config(tmp_path))
    worker = _worker_pid(process, 1)
    assert process.stop() == 0
    assert not _alive(worker)
    assert process.log().count("event=stopped") == 3  # the primary and its two workers

    second = tmp_path / "second"
    second.mkdir()
    again = _start(second, _config(second))
    try:
        worker = _worker_pid(again, 1)
        again.kill()  # SIGKILL: no chance to pass anything on
        _wait(lambda: not _alive(worker), "the worker outlived its primary", again)
        assert "the primary process is gone" in again.log()
    finally:
        again.kill()
