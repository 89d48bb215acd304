"""Webhooks end to end (issue 22): events of a message sent through the API reach a local receiver that
verifies each batch's signature — also when the receiver was down when the events happened."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from postier.api.eventstore import EventStore
from postier.api.service import api_service
from postier.api.webhooks import SIGNATURE_HEADER, verify
from postier.control.apikeys import ApiKeyStore, check_scopes, keys_path
from tests.integration.conftest import StartServer
from tests.integration.harness import RunningServer, free_port
from tests.integration.smtpsink import SmtpSink

pytestmark = pytest.mark.integration

SECRET = "whsec-test"


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        if not verify(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body):
            self.bad_signatures += 1
            return Response(status_code=400)
        self.events += json.loads(body)["events"]
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver, port: int) -> AsyncIterator[None]:
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    task = asyncio.get_running_loop().create_task(server.main_loop())
    try:
        yield
    finally:
        server.should_exit = True
        await task
        await server.shutdown()


async def test_events_reach_a_receiver_that_was_down(
    start_server: StartServer, smtp_sink: Callable[..., SmtpSink]
) -> None:
    sink = smtp_sink()
    api_port, hook_port = free_port(), free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{api_port}", "webhook_retry_base_s": 0.2, "webhook_retry_cap_s": 0.5},
        webhook=[{"url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET}],
        route=[{"domains": ["sink.test"], "host": f"{sink.address}:{sink.port}", "tls": "none"}],
    )
    key = ApiKeyStore(keys_path(server.data_dir)).add("app", check_scopes("send,read"))
    receiver = Receiver()
    async with (
        api_service(server.app),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        r = await client.post(
            "/v1/messages", json={"from": "a@example.test", "to": ["b@sink.test"], "text": "x"}
        )
        qid = r.json()["id"]
        await sink.wait_messages(1)
        for _ in range(100):  # the receiver is down: the webhook fails and keeps the events
            events = (await client.get("/v1/events", params={"queue_id": qid})).json()["items"]
            if [e["type"] for e in events] == ["injection", "delivery"]:
                break
            await asyncio.sleep(0.05)
        assert [e["type"] for e in events] == ["injection", "delivery"]
        await asyncio.sleep(0.5)
        outbox = EventStore(server.data_dir / "events.sqlite")
        assert outbox.cursor(f"http://127.0.0.1:{hook_port}/hook").failures >= 1  # it did try
        outbox.close()
        async with serving(receiver, hook_port):
            for _ in range(200):
                if len(receiver.events) >= 2:
                    break
                await asyncio.sleep(0.05)
        shown = (await client.get(f"/v1/messages/{qid}")).json()
    assert receiver.bad_signatures == 0
    assert [(e["type"], e["queue_id"]) for e in receiver.events] == [("injection", qid), ("delivery", qid)]
    delivery = receiver.events[1]
    assert delivery["recipient"] == "b@sink.test" and delivery["reply"].startswith("250")
    assert [e["type"] for e in shown["events"]] == ["injection", "delivery"]
    assert shown["events"][1]["reply_explained"]["outcome"] == "success"
