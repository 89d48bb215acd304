"""``serve``: run one ``Application`` until SIGTERM/SIGINT, reloading on SIGHUP; ``run_loop`` picks the
event loop (uvloop when installed)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from postier.app.application import Application, Role, Service
from postier.config import Config
from postier.observe import get_logger

__all__ = ["run_loop", "serve"]

_log = get_logger("postier.app")


async def serve(
    config: Config,
    *,
    started: Callable[[Application], None] | None = None,
    load: Callable[[], Config] | None = None,
    role: Role | None = None,
    on_signal: Callable[[signal.Signals], None] | None = None,
    services: Sequence[Service] = (),
) -> None:
    """Run until SIGTERM/SIGINT. SIGHUP reads the configuration again with ``load`` (the embedded
    defaults' TLS pair only, without one) and applies it with ``Application.reload``. ``on_signal``
    hears each of these signals first (the primary passes them on to its workers). ``services`` run
    beside the server, in its loop, from its start to its stop."""
    app = Application(config, role)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload: Callable[[], None] | None = None  # once started
    reload_asked = False

    def handle(sig: signal.Signals) -> None:
        nonlocal reload_asked
        if on_signal is not None:
            on_signal(sig)
        if sig != signal.SIGHUP:
            stop.set()  # while starting: the server stops as soon as it has started
        elif reload is None:
            reload_asked = True  # while starting: applied once started
        else:
            reload()

    # Installed before the listeners open: a signal that comes as soon as the port answers (a reload
    # right after a start) must find its handler, not the default action, which ends the process.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, handle, sig)
    await app.start()
    extras = contextlib.AsyncExitStack()
    try:
        for service in services:
            await extras.enter_async_context(service(app))
    except BaseException:
        await extras.aclose()
        await app.stop()
        raise
    if started is not None:
        started(app)
    reload = _reloader(app, load)
    if reload_asked:
        reload()
    try:
        await stop.wait()
    finally:
        # Handlers stay installed while stopping: a second SIGTERM must not kill a graceful shutdown.
        await extras.aclose()
        await app.stop()
        # Stopped: from here on a late SIGTERM/SIGINT (sent again while the loop and interpreter wind
        # down) is ignored rather than fatal, so a clean stop still exits 0, not "killed by SIGTERM".
        # Blocked first: removing a loop's handler restores SIG_DFL for a moment (and closing the
        # loop does it again), and a signal in that moment killed the process; a blocked one waits,
        # and is dropped when the process exits.
        stopping = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        for sig in stopping:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


def _reloader(app: Application, load: Callable[[], Config] | None) -> Callable[[], None]:
    def reload() -> None:
        _log.info("SIGHUP: reloading the configuration")
        try:
            new = app.config if load is None else load()
        except Exception as exc:  # ConfigError, or a file that vanished
            _log.error("reload refused, the running configuration stays: %s", exc)
            return
        app.reload(new)

    return reload


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, else on the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(main)
