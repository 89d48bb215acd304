"""The dashboard in a real browser (issue 22): headless Chromium (Debian's, driven by Playwright) logs
in with an API key, finds a message sent through the API on the queue overview, and clicks through to
its timeline, where the delivery attempt and its explained reply are shown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from postier.api.service import api_service
from postier.control.apikeys import ApiKeyStore, check_scopes, keys_path
from tests.integration.conftest import StartServer
from tests.integration.harness import RunningServer, free_port
from tests.integration.smtpsink import SmtpSink

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="scripts/install-peers installs chromium")
async def test_click_from_the_overview_to_the_timeline(
    start_server: StartServer, smtp_sink: Callable[..., SmtpSink]
) -> None:
    sink = smtp_sink()
    port = free_port()
    server: RunningServer = await start_server(
        api={"address": f"127.0.0.1:{port}"},
        suppression={"enabled": True},
        route=[{"domains": ["sink.test"], "host": f"{sink.address}:{sink.port}", "tls": "none"}],
    )
    store = ApiKeyStore(keys_path(server.data_dir))
    key = store.add("ui", check_scopes("send,read"))
    base = f"http://127.0.0.1:{port}"
    async with api_service(server.app):
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            r = await client.post(
                "/v1/messages", json={"from": "a@example.test", "to": ["bob@sink.test"], "text": "x"}
            )
            qid = r.json()["id"]
            await sink.wait_messages(1)
            for _ in range(200):
                shown = (await client.get(f"/v1/messages/{qid}")).json()
                if shown["recipients"][0]["state"] == "delivered" and len(shown.get("events", [])) >= 2:
                    break
                await asyncio.sleep(0.05)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--headless"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/ui")
                assert page.url.endswith("/ui/login")  # no key yet
                await page.fill("#key", "pk_ui_wrong")
                await page.click("#login")
                assert "does not open" in await page.content()
                await page.fill("#key", key)
                await page.click("#login")
                await page.wait_for_url(f"{base}/ui")
                link = page.locator(f"a.message-link:text('{qid}')").first
                await link.click()
                await page.wait_for_url(f"{base}/ui/messages/{qid}")
                rows = page.locator("#timeline tr.event")
                assert await rows.count() == 2
                delivery = await rows.nth(1).inner_text()
                assert "delivery" in delivery and "bob@sink.test" in delivery and "250" in delivery
                assert "Success" in delivery  # the reply explained
                assert "delivered" in await page.locator("#recipients").inner_text()
                await page.click("text=Destinations")
                assert "sink.test" in await page.locator("table").first.inner_text()
                assert await page.locator("svg#rates rect").count() == 3
                for name in ("Suppressions", "DKIM"):
                    await page.click(f"nav >> text={name}")
                    assert await page.locator("h1").inner_text()
                await page.click("text=Log out")
                await page.goto(f"{base}/ui")
                assert page.url.endswith("/ui/login")
            finally:
                await browser.close()
