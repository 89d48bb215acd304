"""SIGHUP on a `postier serve` child process: a new local domain takes effect without a restart; an
invalid file, or a certificate that does not load, is refused with a log line and the running
configuration keeps working; a changed restart-only key is logged and keeps its running value.
The delivery side too (issue #7): a [[route]] moved to another peer, a rotated smarthost password,
a new catch-all apply at once; a route whose password file is missing is refused as a whole."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from postier.config import parse_config
from tests.integration.harness import (
    PostierProcess,
    RunningServer,
    add_users,
    make_config,
    peer_certificate,
)
from tests.integration.peers import AiosmtpdPeer

pytestmark = pytest.mark.integration


def rcpt_code(port: int, rcpt: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        return client.rcpt(rcpt)[0]


def send(port: int, rcpt: str) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c.example")
        client.mail("a@example.org")
        client.rcpt(rcpt)
        return client.data(b"Subject: after the reload\r\n\r\nhello\r\n")[1]


async def wait_for_file(directory: Path) -> Path:
    deadline = time.monotonic() + 15
    while not (files := sorted(directory.glob("*")) if directory.is_dir() else []):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing was delivered into {directory}")
        await asyncio.sleep(0.05)
    return files[0]


def greeting(port: int) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.ehlo("c.example")[1].split(b"\n", 1)[0]


async def wait_for_log(process: PostierProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 15
    while process.log().count(text) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared {count} time(s) in the log:\n{process.log()}")
        await asyncio.sleep(0.05)


def write_config(process: PostierProcess, data: dict[str, Any] | str) -> None:
    text = data if isinstance(data, str) else tomli_w.dumps(data)
    tmp = process.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(process.config_path)


def _base(tmp_path: Path) -> dict[str, Any]:
    # No trusted networks: mail from 127.0.0.1 for a non-local domain is refused (554 5.7.1).
    return make_config(tmp_path / "var", relay={"trusted_networks": []})


async def test_sighup_adds_a_local_domain_and_refuses_an_invalid_file(tmp_path: Path) -> None:
    data = _base(tmp_path)
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        assert await asyncio.to_thread(rcpt_code, port, "postmaster@new.example") == 554

        data["relay"]["local_domains"] = [*data["relay"]["local_domains"], "new.example"]
        write_config(process, data)
        process.signal(signal.SIGHUP)
        await wait_for_log(process, "configuration reloaded")
        assert "relay.local_domains" in process.log()
        assert await asyncio.to_thread(rcpt_code, port, "postmaster@new.example") == 250
        # Delivery knows the new domain too: the message lands in its Maildir.
        await asyncio.to_thread(send, port, "postmaster@new.example")
        new = tmp_path / "var" / "mail" / "new.example" / "postmaster" / "new"
        assert (await wait_for_file(new)).read_bytes().endswith(b"hello\r\n")

        write_config(process, "[server]\nhostnme = 'typo.example'\n")
        process.signal(signal.SIGHUP)
        await wait_for_log(process, "reload refused")
        assert "server.hostnme" in process.log()
        # Still running, still with the reloaded configuration.
        assert await asyncio.to_thread(rcpt_code, port, "postmaster@new.example") == 250
        assert await asyncio.to_thread(rcpt_code, port, "someone@elsewhere.example") == 554
        assert process.log().count("configuration reloaded") == 1
    finally:
        process.kill()


async def test_restart_only_keys_are_logged_and_kept(tmp_path: Path) -> None:
    data = _base(tmp_path)
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        data["server"] = {**data["server"], "hostname": "renamed.test"}
        data["relay"]["local_domains"] = [*data["relay"]["local_domains"], "new.example"]
        write_config(process, data)
        process.signal(signal.SIGHUP)
        await wait_for_log(process, "configuration reloaded")
        log = process.log()
        assert "server.hostname changed: needs a restart" in log
        assert await asyncio.to_thread(greeting, port) == b"mx.test"  # the running value stays
        assert await asyncio.to_thread(rcpt_code, port, "postmaster@new.example") == 250  # the rest applies
    finally:
        process.kill()


async def test_a_certificate_that_does_not_load_is_refused_and_the_old_one_stays(tmp_path: Path) -> None:
    data = _base(tmp_path)
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        tls_port = process.ports["submissions"]
        before = await asyncio.to_thread(peer_certificate, tls_port)
        broken = tmp_path / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        data["tls"] = {"cert": str(broken), "key": str(broken)}
        data["relay"]["local_domains"] = [*data["relay"]["local_domains"], "new.example"]
        write_config(process, data)
        process.signal(signal.SIGHUP)
        await wait_for_log(process, "reload refused")
        assert "broken.pem" in process.log()
        assert await asyncio.to_thread(peer_certificate, tls_port) == before
        # Refused as a whole: the new local domain in the same file was not applied either.
        assert await asyncio.to_thread(rcpt_code, process.ports["smtp"], "postmaster@new.example") == 554
    finally:
        process.kill()


# --- the delivery side (issue #7): routes, smarthost passwords, catch-alls -----------------------


def send_to(port: int, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", [rcpt], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


async def wait_for_messages(peer: AiosmtpdPeer, count: int, process: PostierProcess) -> None:
    deadline = time.monotonic() + 15
    while len(peer.messages) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{peer.address} got {len(peer.messages)} of {count} messages:\n{process.log()}")
        await asyncio.sleep(0.05)


def subjects(peer: AiosmtpdPeer) -> list[bytes]:
    return [line for m in peer.messages for line in m.body.splitlines() if line.startswith(b"Subject:")]


async def reload_with(process: PostierProcess, data: dict[str, Any], expect: str) -> None:
    before = process.log().count(expect)
    write_config(process, data)
    process.signal(signal.SIGHUP)
    await wait_for_log(process, expect, before + 1)


def _route(peer: AiosmtpdPeer, **extra: Any) -> dict[str, Any]:
    return {"domains": ["far.test"], "host": f"{peer.address}:{peer.port}", "tls": "none", **extra}


async def test_sighup_moves_a_route_to_another_peer(
    tmp_path: Path, aiosmtpd_peer: Callable[..., Awaitable[AiosmtpdPeer]]
) -> None:
    a, b = await aiosmtpd_peer(), await aiosmtpd_peer()
    # Connections are kept idle long after each message: the new route must not reuse A's.
    data = make_config(tmp_path / "var", route=[_route(a)], delivery={"reuse_idle_s": 60.0})
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        await asyncio.to_thread(send_to, port, "x@far.test", "first")
        await wait_for_messages(a, 1, process)

        data["route"] = [_route(b)]
        await reload_with(process, data, "configuration reloaded")
        assert "changed=route " in process.log()
        await asyncio.to_thread(send_to, port, "x@far.test", "second")
        await wait_for_messages(b, 1, process)
        assert subjects(b) == [b"Subject: second"]
        assert subjects(a) == [b"Subject: first"]
    finally:
        process.kill()


async def test_sighup_reads_a_rotated_smarthost_password(
    tmp_path: Path, aiosmtpd_peer: Callable[..., Awaitable[AiosmtpdPeer]]
) -> None:
    users = {"postier": "old secret"}
    peer = await aiosmtpd_peer(users=users, require_auth=True)
    password = tmp_path / "smarthost.password"
    password.write_text("old secret\n")
    relay = {
        "smarthost": f"{peer.address}:{peer.port}",
        "smarthost_tls": "none",
        "smarthost_username": "postier",
        "smarthost_password_file": str(password),
        "smarthost_auth": "login",
    }
    data = make_config(tmp_path / "var", relay=relay, delivery={"reuse_idle_s": 60.0})
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        await asyncio.to_thread(send_to, port, "x@far.test", "first")
        await wait_for_messages(peer, 1, process)

        # The configuration file does not change: only the password, here and at the peer.
        password.write_text("new secret\n")
        users["postier"] = "new secret"
        await reload_with(process, data, "configuration reloaded")
        await asyncio.to_thread(send_to, port, "x@far.test", "second")
        await wait_for_messages(peer, 2, process)
        # A new session logged in (the idle one, logged in with the old password, was not reused).
        assert peer.handler.logins == ["LOGIN postier", "LOGIN postier"]
        assert [m.auth_login for m in peer.messages] == ["postier", "postier"]
        assert "authentication failed" not in process.log()
    finally:
        process.kill()


async def test_a_route_whose_password_file_is_missing_is_refused_and_the_old_route_stays(
    tmp_path: Path, aiosmtpd_peer: Callable[..., Awaitable[AiosmtpdPeer]]
) -> None:
    a, b = await aiosmtpd_peer(), await aiosmtpd_peer(users={"postier": "secret"})
    data = make_config(tmp_path / "var", route=[_route(a)])
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        missing = tmp_path / "missing.password"
        data["route"] = [_route(b, username="postier", password_file=str(missing))]
        data["local"] = {"catch_all": {"example.test": "postmaster@example.test"}}  # refused with the rest
        await reload_with(process, data, "reload refused")
        log = process.log()
        assert "route[0].password_file" in log and "missing.password" in log
        assert "configuration reloaded" not in log

        port = process.ports["smtp"]
        await asyncio.to_thread(send_to, port, "x@far.test", "after")
        await wait_for_messages(a, 1, process)
        assert b.messages == [] and b.connections == 0
        assert await asyncio.to_thread(rcpt_code, port, "nobody@example.test") == 550
    finally:
        process.kill()


async def test_sighup_adds_a_catch_all(tmp_path: Path) -> None:
    data = make_config(tmp_path / "var")
    add_users(tmp_path / "var", "bob@example.test")
    process = PostierProcess(tmp_path, data)
    try:
        await asyncio.to_thread(process.start)
        port = process.ports["smtp"]
        assert await asyncio.to_thread(rcpt_code, port, "nobody@example.test") == 550

        data["local"] = {"catch_all": {"example.test": "bob@example.test"}}
        await reload_with(process, data, "configuration reloaded")
        assert "local.catch_all" in process.log()
        assert await asyncio.to_thread(rcpt_code, port, "nobody@example.test") == 250
        await asyncio.to_thread(send, port, "nobody@example.test")
        bob = tmp_path / "var" / "mail" / "example.test" / "bob" / "new"
        delivered = (await wait_for_file(bob)).read_bytes()
        assert b"Delivered-To: bob@example.test" in delivered and delivered.endswith(b"hello\r\n")
    finally:
        process.kill()


@pytest.mark.parametrize("broken", ["delivery.ca_file", "local.aliases"])
async def test_a_ca_file_or_aliases_file_that_does_not_load_refuses_the_reload(
    start_server: Callable[..., Awaitable[RunningServer]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    """In this process: the whole reload is refused, the directory and routes in use stay."""
    running = await start_server()
    app = running.app
    directory = app.directory
    bad = tmp_path / "bad-file"
    bad.write_text("no colon on this line\n")
    section, key = broken.split(".")
    data = make_config(
        running.data_dir,
        server={"hostname": "mx.test", "data_dir": str(running.data_dir)},
        relay={"local_domains": ["localhost", "example.test", "new.test"]},
        route=[{"domains": ["far.test"], "host": "127.0.0.2", "tls": "none"}],
        **{section: {key: str(bad)}},
    )
    data["listener"] = [{"address": a.address, "mode": a.mode} for a in running.config.listeners]
    with caplog.at_level("ERROR", logger="postier.app"):
        assert app.reload(parse_config(data)) is False
    assert "reload refused, the running configuration stays" in caplog.text and str(bad) in caplog.text
    assert app.directory is directory and app.server.live.policy.directory is directory
    assert app.config == running.config
    assert not app.router.is_local("new.test")
