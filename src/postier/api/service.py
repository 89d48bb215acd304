"""The HTTP API served by uvicorn inside the server's own event loop (``[api] address``).

The socket is bound here (so an address in use is an ``OSError`` at start, as for the listeners) and
handed to uvicorn, whose ``startup``/``main_loop``/``shutdown`` run as a task of the same loop: no
thread, no process, and none of uvicorn's signal handling (the server's handlers stay in charge).
TLS: the server's certificate and key when the address is not a loopback one (``api.tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import uvicorn

from postier.api.context import ApiContext
from postier.api.eventstore import EventStore
from postier.api.metrics import ApiMetrics
from postier.api.recorder import Recorder
from postier.api.unsubscribe import UnsubscribeKey
from postier.api.web import build_app
from postier.api.webhooks import Dispatcher
from postier.app import Application
from postier.config import Config, parse_hostport
from postier.control.apikeys import ApiKeyStore, keys_path
from postier.mailauth.dkim.service import statuses
from postier.observe import get_logger, subscribe

__all__ = ["api_service", "context_of", "uses_tls"]

_log = get_logger("postier.api")


def uses_tls(config: Config) -> bool:
    mode = config.api.tls
    if mode != "auto":
        return mode == "on"
    host, _ = parse_hostport(config.api.address)
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def base_url(config: Config) -> str:
    if config.api.public_url:
        return config.api.public_url
    if not config.api.address:
        return ""
    return f"{'https' if uses_tls(config) else 'http'}://{config.api.address}"


def context_of(
    app: Application, events: EventStore | None = None, metrics: ApiMetrics | None = None
) -> ApiContext:
    return ApiContext(
        metrics=metrics,
        events=events,
        suppressions=app.suppressions,
        unsubscribe=UnsubscribeKey(app.data_dir / "unsubscribe.key")
        if app.suppressions is not None
        else None,
        base_url=base_url(app.config),
        dkim_keys=lambda: _dkim_rows(app),
        config=lambda: app.config,
        queue=app.queue,
        sink=app.sink,
        keys=ApiKeyStore(keys_path(app.data_dir)),
        signer=lambda: app.server.live.dkim,
        wake=app.delivery.wake,
    )


async def _dkim_rows(app: Application) -> list[dict[str, str]]:
    found, _ = await statuses(app.config.dkim, app.data_dir, app.resolver, datetime.now(UTC))
    rows = []
    for status in found:
        k, lookup = status.key, status.lookup
        record = lookup.published.value + (f" ({lookup.detail})" if lookup.detail else "")
        rows.append(
            {
                "domain": k.domain,
                "selector": k.selector,
                "algorithm": k.algorithm,
                "created": f"{k.created_at:%Y-%m-%d %H:%M}",
                "state": status.state.value,
                "record": record,
                "note": status.note,
            }
        )
    return rows


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def api_service(app: Application) -> AsyncIterator[None]:
    """While the context is open: the event log (with ``api.address`` or any ``[[webhook]]``, in every
    process: a receiving worker records its receptions and rejections), and in the primary the
    webhooks and the HTTP API (with ``api.address``)."""
    config = app.config
    if not (config.api.address or config.webhooks):
        yield
        return
    primary = app.role.delivers
    store = EventStore(app.data_dir / "events.sqlite")
    metrics = None if app.metrics is None else ApiMetrics(app.metrics.metrics.registry)
    observe = None if metrics is None else metrics.webhook
    hooks = config.webhooks if primary else ()
    dispatchers = [Dispatcher(store, hook, lambda: app.config, observe) for hook in hooks]

    def recorded() -> None:
        for d in dispatchers:
            d.nudge()

    recorder = Recorder(store, recorded)
    unsubscribe = subscribe(recorder)
    names = [d.name for d in dispatchers]
    loop = asyncio.get_running_loop()

    def prune() -> int:  # the primary's work: it knows the webhooks whose cursors hold events back
        return store.prune(app.config.api.keep_events_s, names) if primary else 0

    tasks = [loop.create_task(recorder.run(prune))]
    tasks += [loop.create_task(d.run(), name=f"webhook {d.name}") for d in dispatchers]
    try:
        if config.api.address and primary:
            async with _http(app, context_of(app, store, metrics)):
                yield
        else:
            yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        unsubscribe()
        await recorder.flush()
        store.close()


@asynccontextmanager
async def _http(app: Application, ctx: ApiContext) -> AsyncIterator[None]:
    config = app.config
    host, port = parse_hostport(config.api.address)
    tls = uses_tls(config)
    cert, key = (app.tls.cert_path, app.tls.key_path) if tls else (None, None)
    sock = _bind(host, port)
    server_config = uvicorn.Config(
        build_app(ctx),
        log_config=None,
        access_log=False,
        lifespan="off",
        http="h11",
        ws="none",
        server_header=False,
        timeout_keep_alive=15,
        limit_concurrency=config.api.max_concurrent_requests * 4,
        h11_max_incomplete_event_size=32 * 1024,
        ssl_certfile=None if cert is None else str(cert),
        ssl_keyfile=None if key is None else str(key),
    )
    server_config.load()
    server = uvicorn.Server(server_config)
    server.lifespan = server_config.lifespan_class(server_config)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    _log.info("api: serving on %s://%s", "https" if tls else "http", config.api.address)
    runner = asyncio.get_running_loop().create_task(server.main_loop(), name="api")
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await server.shutdown(sockets=[sock])
        sock.close()
