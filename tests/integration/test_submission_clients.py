"""Mail clients submitting through Postier the way they would through an ISP's server: msmtp on the
submission port with STARTTLS and on the submissions port with implicit TLS, and swaks with AUTH PLAIN
and LOGIN — each logging in as a user made with the user store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.integration.conftest import StartServer
from tests.integration.harness import RunningServer
from tests.integration.mailcheck import queued_envelope

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice@example.test", "correct horse battery staple"


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    running: RunningServer = await start_server(relay={"trusted_networks": []})
    await asyncio.to_thread(running.app.users.add, USER, PASSWORD)
    return running


async def _run(*argv: str, stdin: bytes = b"") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(errors="replace")


def _msmtp_config(tmp_path: Path, port: int, *, starttls: bool, password: str) -> Path:
    path = tmp_path / f"msmtprc-{port}"
    path.write_text(
        "account default\n"
        f"host 127.0.0.1\nport {port}\nfrom {USER}\n"
        f"auth plain\nuser {USER}\npassword {password}\n"
        f"tls on\ntls_starttls {'on' if starttls else 'off'}\ntls_certcheck off\n"
    )
    os.chmod(path, 0o600)  # msmtp refuses a password file others can read
    return path


@pytest.mark.parametrize("mode", ["submission", "submissions"])
async def test_msmtp_submits_with_tls_and_auth(server: RunningServer, tmp_path: Path, mode: str) -> None:
    config = _msmtp_config(tmp_path, server.ports[mode], starttls=mode == "submission", password=PASSWORD)
    message = f"From: {USER}\r\nTo: friend@far-away.example\r\nSubject: via msmtp\r\n\r\nhello\r\n".encode()
    rc, out = await _run("msmtp", "-C", str(config), "-d", "friend@far-away.example", stdin=message)
    assert rc == 0, out
    qid = next(line for line in out.splitlines() if "queued as" in line).rsplit(" ", 1)[1]
    envelope = await queued_envelope(server, qid)
    assert envelope.client.auth_user == USER
    assert envelope.client.protocol == "ESMTPSA"
    assert [str(r.address) for r in envelope.recipients] == ["friend@far-away.example"]


async def test_msmtp_wrong_password_is_refused(server: RunningServer, tmp_path: Path) -> None:
    config = _msmtp_config(tmp_path, server.ports["submission"], starttls=True, password="wrong")
    rc, out = await _run(
        "msmtp", "-C", str(config), "friend@far-away.example", stdin=b"Subject: x\r\n\r\nx\r\n"
    )
    assert rc != 0
    assert "535" in out or "authentication failed" in out.lower()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_swaks_auth_over_starttls(server: RunningServer, mechanism: str) -> None:
    rc, out = await _run(
        "swaks",
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--tls",
        "--auth",
        mechanism,
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "friend@far-away.example",
    )
    assert rc == 0, out
    assert "235 2.7.0" in out


async def test_auth_is_not_offered_before_tls(server: RunningServer) -> None:
    rc, out = await _run(
        "swaks",
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--to",
        "friend@far-away.example",
    )
    assert rc != 0
    assert "AUTH" not in "\n".join(line for line in out.splitlines() if line.startswith("<-  250"))


async def test_untrusted_client_without_auth_cannot_relay_through_submission(server: RunningServer) -> None:
    rc, out = await _run(
        "swaks",
        "--server",
        f"127.0.0.1:{server.ports['submission']}",
        "--tls",
        "--to",
        "friend@far-away.example",
    )
    assert rc != 0
    assert "530 5.7.0" in out
