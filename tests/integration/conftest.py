from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from postier.app import Application
from postier.config import parse_config
from tests.integration.dovecot import dovecot  # noqa: F401 (fixture)
from tests.integration.fakemilter import fake_milter  # noqa: F401 (fixture)
from tests.integration.harness import RunningServer, make_config
from tests.integration.milter_peer import opendkim  # noqa: F401 (fixture)
from tests.integration.peers import aiosmtpd_peer, smtp_sink, tls_ca  # noqa: F401 (fixtures)
from tests.integration.rspamd_peer import rspamd_server  # noqa: F401 (fixture)

StartServer = Callable[..., Any]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Factory: ``await start_server(relay={...}, server={...})`` runs Postier in this event loop."""
    apps: list[Application] = []

    async def start(**sections: dict[str, Any]) -> RunningServer:
        data_dir = tmp_path / f"var{len(apps)}"
        config = parse_config(make_config(data_dir, **sections))
        app = Application(config)
        await app.start()
        apps.append(app)
        return RunningServer(app, config)

    yield start
    for app in reversed(apps):  # last started first: a client (say, a relay) before its next hop,
        await app.stop()  # which then has no idle pooled session to wait out for its grace period


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    result: RunningServer = await start_server()
    return result
