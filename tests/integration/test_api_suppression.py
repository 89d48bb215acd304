"""The suppression list end to end (issue 22): a hard bounce suppresses the address; mail to it from the
API (422, or dropped) and from our own SMTP clients (550 5.1.1) is refused; manual entries over HTTP."""

from __future__ import annotations

import asyncio
import email
import smtplib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from postier.api.service import api_service
from postier.control.apikeys import ApiKeyStore, check_scopes, keys_path
from tests.integration.conftest import StartServer
from tests.integration.harness import RunningServer, free_port

pytestmark = pytest.mark.integration

MSG = {"from": "a@example.test", "text": "x"}


def _smtp_rcpt(port: int, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:  # 127.0.0.1: a trusted network
        client.ehlo("client.test")
        client.mail("a@example.test")
        return client.rcpt(rcpt)


async def _until(check: Callable[[], Any]) -> Any:
    for _ in range(200):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    pytest.fail("never happened")


async def test_a_hard_bounce_suppresses_the_address(
    start_server: StartServer, aiosmtpd_peer: Callable[..., Any]
) -> None:
    peer = await aiosmtpd_peer(refuse_rcpt={"gone@peer.test": "550 5.1.1 No such user"})
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}"},
        suppression={"enabled": True},
        route=[{"domains": ["peer.test"], "host": f"{peer.address}:{peer.port}", "tls": "none"}],
    )
    key = ApiKeyStore(keys_path(server.data_dir)).add("ops", check_scopes("admin"))
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        r = await client.post("/v1/messages", json={**MSG, "to": ["gone@peer.test"]})
        assert r.status_code == 202
        first = r.json()["id"]

        async def suppressed() -> Any:
            r = await client.get("/v1/suppressions/gone@peer.test")
            return r.json() if r.status_code == 200 else None

        entry = await _until(suppressed)
        assert entry["reason"] == "hard-bounce" and entry["source"].startswith("550 5.1.1")
        r = await client.post("/v1/messages", json={**MSG, "to": ["gone@peer.test", "ok@peer.test"]})
        assert r.status_code == 422 and r.json()["suppressed"] == ["gone@peer.test"]
        code, _ = await asyncio.to_thread(_smtp_rcpt, server.smtp_port, "gone@peer.test")
        assert code == 550

        async def events() -> Any:
            items = (await client.get("/v1/events")).json()["items"]
            mine = [e for e in items if e.get("queue_id") == first or e["type"] == "reject"]
            kinds = [(e["type"], e.get("bounce_type"), e.get("recipient")) for e in mine]
            return kinds if len(kinds) >= 5 else None

        kinds = await _until(events)
        assert kinds == [
            ("injection", None, None),
            ("bounce", "hard", "gone@peer.test"),
            ("suppression", None, "gone@peer.test"),
            ("reject", None, "gone@peer.test"),  # the API's
            ("reject", None, "gone@peer.test"),  # SMTP's
        ]
        assert (await client.get(f"/v1/messages/{first}")).json()["recipients"][0]["state"] == "failed"

        assert (await client.delete("/v1/suppressions/gone@peer.test")).status_code == 204
        code, _ = await asyncio.to_thread(_smtp_rcpt, server.smtp_port, "gone@peer.test")
        assert code == 250
        r = await client.put("/v1/suppressions/manual@peer.test", json={"expires_in_s": 3600})
        assert r.status_code == 201 and r.json()["expires_at"]
        listed = (await client.get("/v1/suppressions")).json()["items"]
        addresses = [s["address"] for s in listed]  # a@example.test too: its DSN found no mailbox
        assert "manual@peer.test" in addresses and "gone@peer.test" not in addresses


async def test_drop_leaves_suppressed_recipients_out(start_server: StartServer) -> None:
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}"}, suppression={"enabled": True, "action": "drop"}
    )
    assert server.app.suppressions is not None
    server.app.suppressions.add("bob@example.test", "manual")
    key = ApiKeyStore(keys_path(server.data_dir)).add("ops", check_scopes("send"))
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        r = await client.post("/v1/messages", json={**MSG, "to": ["bob@example.test", "alice@example.test"]})
        assert (
            r.status_code == 202
            and r.json()["recipients"] == 1
            and r.json()["suppressed"] == ["bob@example.test"]
        )
        r = await client.post("/v1/messages", json={**MSG, "to": ["bob@example.test"]})
        assert r.status_code == 202 and r.json() == {
            "id": None,
            "recipients": 0,
            "suppressed": ["bob@example.test"],
        }


async def test_one_click_unsubscribe_feeds_the_list(
    start_server: StartServer, aiosmtpd_peer: Callable[..., Any]
) -> None:
    peer = await aiosmtpd_peer()
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}"},
        suppression={"enabled": True},
        route=[{"domains": ["peer.test"], "host": f"{peer.address}:{peer.port}", "tls": "none"}],
    )
    key = ApiKeyStore(keys_path(server.data_dir)).add("ops", check_scopes("admin"))
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        many = {**MSG, "to": ["x@peer.test", "y@peer.test"], "list_unsubscribe": True}
        assert (await client.post("/v1/messages", json=many)).status_code == 422
        r = await client.post(
            "/v1/messages", json={**MSG, "to": ["reader@peer.test"], "list_unsubscribe": True}
        )
        assert r.status_code == 202

        async def received() -> Any:
            return peer.messages

        (message,) = await _until(received)
        parsed = email.message_from_bytes(message.body)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = parsed["List-Unsubscribe"].strip("<>")
        assert url.startswith(f"http://127.0.0.1:{port}/v1/unsubscribe/")
        async with httpx.AsyncClient() as provider:  # the mail provider: no API key
            page = await provider.get(url)
            assert page.status_code == 200 and "reader@peer.test" in page.text
            assert server.app.suppressions is not None
            assert server.app.suppressions.find("reader@peer.test") is None  # GET never unsubscribes
            assert (
                await provider.post(url[:-2] + "xx", content=b"List-Unsubscribe=One-Click")
            ).status_code == 404
            r = await provider.post(
                url,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 200
        found = server.app.suppressions.find("reader@peer.test")
        assert found is not None and found.reason == "unsubscribe"
        again = await client.post("/v1/messages", json={**MSG, "to": ["reader@peer.test"]})
        assert again.status_code == 422
