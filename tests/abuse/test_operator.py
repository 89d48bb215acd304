"""What a stranger's bytes can do to the operator (issue 14: 12, 14), against a real ``postier serve``
and the real ``postier queue`` tool on its data directory while it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.abuse.conftest import AbuseServer, expect, raw_session, start_abuse_server

pytestmark = pytest.mark.integration

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\u2028\u0085"


@pytest.fixture(scope="module")
def server(module_tmp: Path) -> Iterator[AbuseServer]:
    # Delivery parked on a port that never greets: what is queued stays queued.
    yield from start_abuse_server(
        module_tmp,
        relay={"local_domains": ["example.test"], "trusted_networks": ["127.0.0.1/32"]},
        route=[{"domains": ["*"], "host": "127.0.0.1:9", "tls": "none"}],
    )


def _queue(server: AbuseServer, *args: str) -> subprocess.CompletedProcess[str]:
    data_dir = str(server.proc.config.server.data_dir)
    argv = [sys.executable, "-m", "postier", "queue", *args, "--data-dir", data_dir]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _send(server: AbuseServer, header: bytes, *, envid: str = "E1") -> str:
    with raw_session(server.port, source="127.0.0.2") as sock:
        sock.sendall(
            f"MAIL FROM:<x@example.net> ENVID={envid}\r\nRCPT TO:<erin@example.test>\r\nDATA\r\n".encode()
        )
        expect(sock, b"354")
        sock.sendall(header + b"\r\nbody\r\n.\r\n")
        reply = expect(sock, b"250 2.0.0").decode()
    return reply.rsplit(" ", 1)[-1].strip()


def test_escape_sequences_never_reach_the_operators_terminal(server: AbuseServer) -> None:
    """Finding 12: header fields (and ENVID) a stranger wrote were printed raw by ``queue show``."""
    qid = _send(server, f"Subject: {ESCAPES}\r\nX-Evil: \x1b[8m hidden\r\n".encode(), envid="A+1B")
    shown = _queue(server, "show", qid)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\u2028" not in shown.stdout and "\u0085" not in shown.stdout
    assert "owned" in shown.stdout  # the text is there, made visible


def test_a_flooded_queue_listing_says_what_it_did_not_show(server: AbuseServer) -> None:
    """Finding 14: ``queue list`` stopped at 1,000 rows without saying so: a stranger's flood could
    hide a message from a script. Now the listing says how many were left out, ``--json`` carries
    the total, and ``--limit 0`` shows all."""
    for i in range(12):
        _send(server, f"Subject: flood {i}\r\n".encode())
    total = json.loads(_queue(server, "list", "--json", "--limit", "0").stdout)["total"]
    assert total >= 12
    listed = _queue(server, "list", "--limit", "5")
    assert listed.returncode == 0
    assert str(total - 5) in listed.stderr
    as_json = json.loads(_queue(server, "list", "--json", "--limit", "5").stdout)
    assert as_json["total"] == total and len(as_json["messages"]) == 5
