"""The HTTP API end to end (issue 22): a message sent with curl reaches a Postfix smtp-sink, and the
API tells its story; keys, scopes, problem details, limits; ``postier serve`` over HTTPS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from postier.api.service import api_service
from postier.control.apikeys import ApiKeyStore, check_scopes, keys_path
from tests.integration.conftest import StartServer
from tests.integration.harness import PostierProcess, RunningServer, free_port, make_config
from tests.integration.smtpsink import SmtpSink

pytestmark = pytest.mark.integration


class Api:
    def __init__(self, server: RunningServer, base: str, keys: dict[str, str]) -> None:
        self.server, self.base, self.keys = server, base, keys

    def client(self, key: str | None = "full") -> httpx.AsyncClient:
        headers = {} if key is None else {"Authorization": f"Bearer {self.keys[key]}"}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=10)


@pytest.fixture
async def api(
    start_server: StartServer, smtp_sink: Callable[..., SmtpSink]
) -> AsyncIterator[tuple[Api, SmtpSink]]:
    sink = smtp_sink()
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}", "max_body_bytes": 200_000, "page_size": 2},
        route=[
            {"domains": ["sink.test"], "host": f"{sink.address}:{sink.port}", "tls": "none"},
            {"domains": ["down.test"], "host": f"127.0.0.1:{free_port()}", "tls": "none"},  # nobody there
        ],
        delivery={"retry_base_s": 0.3, "retry_cap_s": 0.3},
    )
    store = ApiKeyStore(keys_path(server.data_dir))
    keys = {
        "full": store.add("full", check_scopes("admin")),
        "sender": store.add("sender", check_scopes("send")),
    }
    async with api_service(server.app):
        yield Api(server, f"http://127.0.0.1:{port}", keys), sink


def _curl(url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            f"Authorization: Bearer {key}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json.dumps(body),
            url,
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text)


async def _wait_delivered(client: httpx.AsyncClient, qid: str) -> dict[str, Any]:
    for _ in range(200):
        data: dict[str, Any] = (await client.get(f"/v1/messages/{qid}")).json()
        if all(r["state"] == "delivered" for r in data["recipients"]):
            return data
        await asyncio.sleep(0.05)
    pytest.fail(f"{qid} not delivered: {data}")


async def test_curl_sends_a_message_that_reaches_the_sink(api: tuple[Api, SmtpSink]) -> None:
    a, sink = api
    body = {
        "from": "Alice <alice@example.test>",
        "to": ["bob@sink.test"],
        "bcc": ["carol@sink.test"],
        "subject": "over HTTP",
        "text": "hello from the API",
        "html": "<p>hello</p>",
    }
    code, answer = await asyncio.to_thread(_curl, f"{a.base}/v1/messages", a.keys["sender"], body)
    assert code == 202 and answer["recipients"] == 2
    qid = answer["id"]
    (message,) = await sink.wait_messages(1)
    assert message.sender == "alice@example.test"
    assert sorted(message.recipients) == ["bob@sink.test", "carol@sink.test"]
    assert b"Subject: over HTTP" in message.body and b"carol" not in message.body.split(b"\r\n\r\n")[0]
    assert f"with HTTP id {qid}".encode() in message.body
    async with a.client() as client:
        shown = await _wait_delivered(client, qid)
        rcpt = shown["recipients"][0]
        assert rcpt["attempts"] == 1 and rcpt["last_reply"].startswith("250")
        assert rcpt["last_reply_explained"]["outcome"] == "success"
        assert shown["client"]["auth_user"] == "sender" and shown["client"]["protocol"] == "HTTP"
        stats = (await client.get("/v1/stats")).json()
        assert stats["messages"]["done"] == 1


async def test_listing_pages_filters_and_actions(api: tuple[Api, SmtpSink]) -> None:
    a, _ = api
    async with a.client() as client:
        ids = []
        for i in range(3):
            r = await client.post(
                "/v1/messages", json={"from": "a@example.test", "to": [f"r{i}@sink.test"], "text": "x"}
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        first = (await client.get("/v1/messages", params={"domain": "sink.test"})).json()
        assert len(first["items"]) == 2 and first["next"] == 2
        second = (await client.get("/v1/messages", params={"domain": "sink.test", "offset": 2})).json()
        assert [m["id"] for m in first["items"] + second["items"]] == ids and second["next"] is None
        assert (await client.get("/v1/messages", params={"domain": "other.test"})).json()["items"] == []
        for qid in ids:
            await _wait_delivered(client, qid)
        r = await client.post(
            "/v1/messages", json={"from": "a@example.test", "to": ["x@down.test"], "text": "x"}
        )
        down = r.json()["id"]
        r = await client.post(f"/v1/messages/{down}/hold")
        assert r.status_code == 200 and r.json() == {"id": down, "action": "hold", "changed": 1}
        held = (await client.get("/v1/messages", params={"status": "held"})).json()["items"]
        assert [m["id"] for m in held] == [down]
        assert (await client.post(f"/v1/messages/{down}/release")).json()["changed"] == 1
        assert (await client.post(f"/v1/messages/{down}/retry")).status_code == 200
        assert (await client.delete(f"/v1/messages/{ids[0]}")).json()["changed"] == 1
        r = await client.get(f"/v1/messages/{ids[0]}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_keys_scopes_and_problem_details(api: tuple[Api, SmtpSink]) -> None:
    a, _ = api
    msg = {"from": "a@example.test", "to": ["b@sink.test"], "text": "x"}
    async with a.client(None) as anon, a.client("sender") as sender, a.client() as full:
        r = await anon.post("/v1/messages", json=msg)
        assert r.status_code == 401 and r.json()["type"].endswith("/unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await anon.post("/v1/messages", json=msg, headers={"Authorization": "Bearer pk_full_nope"})
        assert r.status_code == 401
        r = await sender.get("/v1/stats")
        assert r.status_code == 403 and r.json()["status"] == 403
        r = await sender.post("/v1/messages", json={**msg, "from": "nobody"})
        assert r.status_code == 422 and r.json()["field"] == "from"
        r = await sender.post("/v1/messages", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        r = await sender.post("/v1/messages", json={**msg, "surprise": 1})
        assert r.status_code == 422
        r = await sender.post("/v1/messages", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = await sender.post("/v1/messages", json={**msg, "text": "x" * 300_000})
        assert r.status_code == 413 and r.json()["title"] == "Content too large"
        r = await full.get("/v1/nothing")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await full.post("/v1/messages/AAAAAAAAAAAAAAAA/explode")
        assert r.status_code == 404
        doc = (await anon.get("/v1/openapi.json")).json()
        validate(doc)


async def test_a_body_without_length_is_cut_at_the_limit(api: tuple[Api, SmtpSink]) -> None:
    a, _ = api

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"x" * 1000  # 1 MB, streamed (chunked): refused once past 200 kB

    async with a.client("sender") as sender:
        r = await sender.post("/v1/messages", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_serve_runs_the_api_over_https_and_the_cli_manages_keys(tmp_path: Path) -> None:
    port = free_port()
    data = make_config(tmp_path / "var", api={"address": f"127.0.0.1:{port}", "tls": "on"})
    proc = PostierProcess(tmp_path, data)
    cli = [sys.executable, "-m", "postier", "api-key"]
    secret = subprocess.run(
        [*cli, "add", "ops", "--scope", "read", "--config", str(proc.config_path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    listed = subprocess.run([*cli, "list", "--config", str(proc.config_path)], capture_output=True, text=True)
    assert listed.stdout.startswith("ops\tread\t") and secret not in listed.stdout
    proc.start()
    try:
        from tests.integration.harness import wait_for_port

        wait_for_port(port, alive=proc.proc, log=proc.log_path)
        with httpx.Client(verify=False, timeout=10) as client:  # noqa: S501 (the self-signed pair)
            r = client.get(
                f"https://127.0.0.1:{port}/v1/stats", headers={"Authorization": f"Bearer {secret}"}
            )
            assert r.status_code == 200 and r.json()["messages"]["active"] == 0
        subprocess.run([*cli, "remove", "ops", "--config", str(proc.config_path)], check=True)
        with httpx.Client(verify=False, timeout=10) as client:  # noqa: S501
            r = client.get(
                f"https://127.0.0.1:{port}/v1/stats", headers={"Authorization": f"Bearer {secret}"}
            )
            assert r.status_code == 401
    finally:
        assert proc.stop() == 0


async def test_api_metrics_beside_the_mail_metrics(start_server: StartServer) -> None:
    api_port, metrics_port = free_port(), free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{api_port}"}, metrics={"address": f"127.0.0.1:{metrics_port}"}
    )
    key = ApiKeyStore(keys_path(server.data_dir)).add("m", check_scopes("send,read"))
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        r = await client.post(
            "/v1/messages", json={"from": "a@example.test", "to": ["b@example.test"], "text": "x"}
        )
        assert r.status_code == 202
        assert (await client.get("/v1/stats")).status_code == 200
        assert (await client.get("/v1/no/such/thing")).status_code == 404
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'postier_api_requests_total{handler="send",method="POST",status="202"} 1.0' in text
    assert 'postier_api_requests_total{handler="stats",method="GET",status="200"} 1.0' in text
    assert 'postier_api_requests_total{handler="none",method="GET",status="404"} 1.0' in text
    assert 'postier_api_request_seconds_count{handler="send",method="POST"} 1.0' in text
    assert "postier_messages_accepted" in text  # the mail metrics, same endpoint


def test_receiving_workers_record_their_events_too(tmp_path: Path) -> None:
    """With ``server.workers = 2`` either process may take a message: every reception is an event."""
    import re
    import smtplib
    import time

    from tests.integration.harness import add_users

    port = free_port()
    data = make_config(tmp_path / "var", api={"address": f"127.0.0.1:{port}"})
    data["server"]["workers"] = 2
    data["server"]["shutdown_grace_s"] = 2.0
    add_users(tmp_path / "var", "box@example.test")
    secret = ApiKeyStore(keys_path(tmp_path / "var")).add("r", check_scopes("read"))
    proc = PostierProcess(tmp_path, data)
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while "worker=1 event=ready" not in proc.log():
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.05)
        ids = set()
        for i in range(12):  # new connections: the kernel spreads them over both processes
            with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as client:
                client.ehlo("c.example")
                client.mail("a@example.org")
                client.rcpt("box@example.test")
                reply = client.data(f"Subject: {i}\r\n\r\nhello\r\n".encode())[1]
            ids.add(re.search(rb"queued as (\w+)", reply)[1].decode())  # type: ignore[index]
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {secret}"}) as client:
            for _ in range(100):
                items = client.get(f"http://127.0.0.1:{port}/v1/events", params={"type": "injection"}).json()
                if {e["queue_id"] for e in items["items"]} >= ids:
                    break
                time.sleep(0.1)
        assert {e["queue_id"] for e in items["items"]} >= ids
        assert "worker=1 event=queued" in proc.log()  # the worker did take some
    finally:
        assert proc.stop() == 0


async def test_request_bodies_share_one_memory_budget(start_server: StartServer) -> None:
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}", "max_body_bytes": 1_000_000, "memory_budget_bytes": 300_000}
    )
    key = ApiKeyStore(keys_path(server.data_dir)).add("b", check_scopes("send"))
    msg = {"from": "a@example.test", "to": ["b@example.test"]}
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client,
    ):
        r = await client.post("/v1/messages", json={**msg, "text": "x" * 400_000})
        assert r.status_code == 503 and r.json()["type"].endswith("/busy")
        r = await client.post("/v1/messages", json={**msg, "text": "x" * 200_000})
        assert r.status_code == 202  # what the refused one held was given back
