"""``postier send`` against a real Postier in this process: the transcript an operator reads, the
explanation under each reply, the queue id and the exit status."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from postier.cli.send_cmd import register
from tests.integration.conftest import StartServer

pytestmark = pytest.mark.integration


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="postier")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["send", *argv])
    result: int = args.func(args)
    return result


async def test_accepted_message_prints_its_queue_id(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server()
    argv = ["--server", f"127.0.0.1:{server.smtp_port}", "--to", "postmaster@example.test", "--subject", "hi"]
    assert await asyncio.to_thread(_run, argv) == 0
    out = capsys.readouterr().out
    assert "C: MAIL FROM:<postier-send@localhost>" in out
    assert "S: 220 " in out
    assert "Start mail input" in out  # the 354 explained
    queue_id = out.rsplit("Accepted: queued as ", 1)[1].strip()
    record = await server.app.queue.get(queue_id)
    assert [str(r.recipient.address) for r in record.recipients] == ["postmaster@example.test"]
    body = await server.app.queue.read_body(queue_id)
    assert b"Subject: hi\r\n" in body
    assert b"This is a test message" not in out.encode()  # the body is never printed


async def test_relay_refused_exits_1_with_the_explanation(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(relay={"trusted_networks": [], "local_domains": ["example.test"]})
    argv = ["--server", f"127.0.0.1:{server.smtp_port}", "--to", "user@remote.example"]
    assert await asyncio.to_thread(_run, argv) == 1
    out = capsys.readouterr().out
    assert "S: 554 5.7.1 " in out
    assert "= permanent: Delivery not authorized, message refused" in out
    assert "Accepted" not in out


async def test_starttls_upgrades_before_mail(
    start_server: StartServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = await start_server()
    body = tmp_path / "body.txt"
    body.write_text("hello\n.leading dot\n")
    argv = [
        "--server",
        f"127.0.0.1:{server.smtp_port}",
        "--starttls",
        "--insecure",
        "--to",
        "postmaster@example.test",
    ]
    assert await asyncio.to_thread(_run, [*argv, "--body", str(body)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines.index("C: STARTTLS") < next(i for i, ln in enumerate(lines) if "TLS established" in ln)
    assert next(i for i, ln in enumerate(lines) if "TLS established" in ln) < lines.index(
        "C: MAIL FROM:<postier-send@localhost>"
    )
    queue_id = out.rsplit("Accepted: queued as ", 1)[1].strip()
    assert (await server.app.queue.read_body(queue_id)).endswith(b"hello\r\n.leading dot\r\n")


@pytest.mark.parametrize("server_arg", ["nohost", "127.0.0.1:notaport", ":25", "127.0.0.1:70000"])
def test_bad_server_is_a_usage_error(server_arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--server", server_arg, "--to", "a@b.example"]) == 2
    assert "--server must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(("password", "code"), [("right horse battery", 0), ("wrong", 1)])
async def test_auth_reads_the_password_from_stdin_and_never_prints_it(
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    code: int,
) -> None:
    server = await start_server(relay={"trusted_networks": []})
    await asyncio.to_thread(server.app.users.add, "alice@example.test", "right horse battery")
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    port = server.ports["submission"]
    argv = ["--server", f"127.0.0.1:{port}", "--starttls", "--insecure", "--auth", "alice@example.test"]
    assert await asyncio.to_thread(_run, [*argv, "--to", "bob@remote.example"]) == code
    out = capsys.readouterr().out
    assert "C: AUTH PLAIN <credentials hidden>" in out
    assert password not in out
