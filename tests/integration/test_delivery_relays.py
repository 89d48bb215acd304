"""Relays end to end: ``relay.smarthost`` and ``[[route]]`` (a transport map) through a running
Postier to aiosmtpd peers requiring AUTH — STARTTLS verified, implicit TLS on 465, plain text with
tls = "none" — and the configuration errors that stop the start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trustme

from postier.queue.model import RecipientState
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import make_config
from tests.integration.outbound import Peer, send, start, wait_final
from tests.integration.peers import AiosmtpdPeer, server_context

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("how", ["smarthost", "route"])
async def test_relay_with_auth(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
    tmp_path: Path,
    how: str,
) -> None:
    relay: AiosmtpdPeer = await aiosmtpd_peer(users={"postier": "s3cret"}, require_auth=True, port=2525)
    password = tmp_path / "relay-password"
    password.write_text("s3cret\n")
    dns = dns_server_factory({})  # every MX lookup would fail: the relay needs none
    target = f"{relay.address}:2525"
    if how == "smarthost":
        sections: dict[str, Any] = {
            "relay": {
                "local_domains": ["localhost", "example.test"],
                "smarthost": target,
                "smarthost_tls": "none",
                "smarthost_username": "postier",
                "smarthost_password_file": str(password),
                "smarthost_auth": "login",
            }
        }
    else:
        route = {"domains": ["far.test"], "host": target, "tls": "none", "username": "postier"}
        sections = {"route": [{**route, "password_file": str(password)}]}
    server = await start(start_server, dns, **sections)
    qid = await send(server, "zoe@far.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [message] = relay.messages
    assert (message.recipients, message.auth_login) == (("zoe@far.test",), "postier")


async def test_smarthost_verified_starttls_and_auth(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """The smarthost defaults: STARTTLS with the certificate verified (smarthost_tls = "verify")."""
    context = server_context(tls_ca, "smtp.provider.test")  # verified against the smarthost's name
    relay: AiosmtpdPeer = await aiosmtpd_peer(
        users={"postier": "s3cret"}, require_auth=True, port=587, starttls=context
    )
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    password = tmp_path / "relay-password"
    password.write_text("s3cret\n")
    relay_section = {
        "local_domains": ["localhost", "example.test"],
        "smarthost": "smtp.provider.test:587",
        "smarthost_username": "postier",
        "smarthost_password_file": str(password),
    }
    dns = dns_server_factory({"smtp.provider.test": {"A": [relay.address]}})
    server = await start(start_server, dns, delivery={"ca_file": str(ca_file)}, relay=relay_section)
    qid = await send(server, "zoe@far.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [message] = relay.messages
    assert (message.recipients, message.auth_login, message.is_tls) == (("zoe@far.test",), "postier", True)


def test_a_missing_relay_password_file_stops_the_start(tmp_path: Path) -> None:
    """Credentials are read when Postier starts; a password file that is not there is a configuration
    error naming the key, not a traceback, and not mail bounced later."""
    relay = {
        "local_domains": ["localhost"],
        "smarthost": "smtp.provider.test:587",
        "smarthost_username": "postier",
        "smarthost_password_file": str(tmp_path / "missing-password"),
    }
    config = tmp_path / "postier.toml"
    config.write_text(tomli_w.dumps(make_config(tmp_path / "var", relay=relay)))
    done = subprocess.run(
        [sys.executable, "-m", "postier", "serve", "--allow-root", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "relay.smarthost_password_file" in done.stderr and "missing-password" in done.stderr
    assert "Traceback" not in done.stderr


async def test_routes_to_one_relay_with_different_logins_never_share_a_connection(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
    tmp_path: Path,
) -> None:
    """Two [[route]]s to the same host:port, each with its own account (and TLS policy): an idle
    connection logged in for one must not carry the other's mail."""
    users = {"shop": "pw-shop", "news": "pw-news"}
    relay: AiosmtpdPeer = await aiosmtpd_peer(users=users, require_auth=True, port=2525)
    routes = []
    for login, password in users.items():
        (tmp_path / login).write_text(password + "\n")
        routes.append(
            {
                "domains": [f"{login}.test"],
                "host": f"{relay.address}:2525",
                "tls": "none",
                "username": login,
                "password_file": str(tmp_path / login),
            }
        )
    server = await start(start_server, dns_server_factory({}), delivery={"reuse_idle_s": 30.0}, route=routes)
    for login in users:  # one after the other: the first connection is idle when the second goes
        qid = await send(server, f"zoe@{login}.test")
        assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    assert [(m.recipients[0], m.auth_login) for m in relay.messages] == [
        ("zoe@shop.test", "shop"),
        ("zoe@news.test", "news"),
    ]


async def test_smarthost_implicit_tls_on_465_by_default(
    start_server: StartServer,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Peer,
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """smarthost_implicit_tls: TLS from the first byte (RFC 8314), port 465 when none is given, the
    certificate verified (smarthost_tls = "verify", the default), then AUTH PLAIN."""
    context = server_context(tls_ca, "smtp.provider.test")
    relay: AiosmtpdPeer = await aiosmtpd_peer(
        users={"postier": "s3cret"}, require_auth=True, port=465, implicit_tls=context
    )
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    (tmp_path / "pw").write_text("s3cret\n")
    relay_section = {
        "local_domains": ["localhost", "example.test"],
        "smarthost": "smtp.provider.test",
        "smarthost_implicit_tls": True,
        "smarthost_username": "postier",
        "smarthost_password_file": str(tmp_path / "pw"),
    }
    dns = dns_server_factory({"smtp.provider.test": {"A": [relay.address]}})
    server = await start(start_server, dns, delivery={"ca_file": str(ca_file)}, relay=relay_section)
    qid = await send(server, "zoe@far.test")
    assert await wait_final(server, qid) == [RecipientState.DELIVERED]
    [message] = relay.messages
    assert (message.recipients, message.auth_login, message.is_tls) == (("zoe@far.test",), "postier", True)
