"""The test peers themselves: what they report must be true even while a transaction is in flight,
and the ports the harness hands out must be safe from the rest of the machine."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import PostierProcess, free_port, make_config
from tests.integration.smtpsink import SmtpSink

pytestmark = pytest.mark.integration


def test_a_sink_transaction_in_progress_is_not_a_message(smtp_sink: Callable[..., SmtpSink]) -> None:
    """smtp-sink creates its dump file at MAIL FROM and closes it at the final dot: until then the
    file holds part of a transaction, which ``messages()`` must not report (nor a RSET one)."""
    sink = smtp_sink()
    with smtplib.SMTP(sink.address, sink.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("a@sender.test")[0] == 250
        assert client.rcpt("b@dest.test")[0] == 250
        assert list(sink.dump_dir.iterdir()) != []  # the file is there already …
        assert sink.messages() == []  # … but it is no message yet
        code, _ = client.data(b"Subject: whole\r\n\r\nbody\r\n")
        assert code == 250
        (message,) = sink.messages()
        assert (message.recipients, message.body) == (("b@dest.test",), b"Subject: whole\r\n\r\nbody\r\n")
        client.mail("a@sender.test")
        client.rset()
    assert len(sink.messages()) == 1


def test_free_ports_are_outside_the_ephemeral_range() -> None:
    """Any connect() or bind(port 0) on the machine draws from the ephemeral range: a port from there,
    checked free and released, may be taken before the server binds it."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50  # never the same one twice in a run
    assert all(not low <= port <= high for port in ports)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[-1] + 1))
        taken.listen()
        assert free_port() != ports[-1] + 1  # a port something listens on is skipped


def test_a_child_that_cannot_listen_fails_at_once_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: the child's bind fails, nobody answers
        data = make_config(tmp_path / "var")
        data["listener"][0]["address"] = f"127.0.0.1:{busy.getsockname()[1]}"
        process = PostierProcess(tmp_path, data)
        process.log_path.write_bytes(b"")
        with pytest.raises(RuntimeError, match="exited"):
            # Not the 60 s of a slow start: the child's exit is noticed (and what it said shown).
            process.start()
        process.kill()
