"""Several processes receiving mail: ``[server] workers = N``.

Theory of operation. One Python process runs on one core (the GIL), and a mail server's receive
path — TCP, the SMTP dialogue, parsing — is CPU work. With ``workers = N`` the process that
``postier serve`` starts (the *primary*, worker 0) binds every listening socket itself — N times,
with SO_REUSEPORT, one set per worker — then starts N *receiving workers*: ``postier serve`` again,
with its set passed down (same descriptor numbers) and, in the environment variable
``POSTIER_WORKER``, a JSON spec — its index, the primary's pid, the socket and pipe descriptors, and
the primary's running configuration, so a worker runs exactly what the primary runs even when the
file changed since. The kernel spreads new connections over the sets (a hash of the client's
address and port). One socket shared by all (as before) woke every process for each connection,
and whichever woke first accepted every connection waiting: measured on 2 cores, 0.1–0.2 ms more
CPU per message, and a client's 20 connections opened at once landed mostly in one process. Every
process enqueues into the same queue directory (the queue serialises writers: docs/queue.md).

The primary receives nothing while its workers run: it delivers, so a fixed share of the
connections on top of every delivery made it the busiest process (measured: relaying, it spent
0.95 ms per message against its worker's 0.38). The kernel shares the cores among the N + 1
processes by demand. The primary keeps every set open; while a worker is down (restarted after
1 s, doubling up to 60 s while it keeps dying young), it accepts from that worker's set itself.

A worker that queued mail writes a byte to a pipe the primary watches (at most one per loop turn);
the primary wakes its scheduler, so delivery starts as soon as it would in one process.

Signals go to the primary: SIGTERM/SIGINT are passed to every worker (each finishes its sessions,
as one process would), then the primary waits for them; SIGHUP is passed on too, and each process
reloads the file itself. A worker whose primary is gone (killed) stops by itself: it watches the
primary through a pidfd.

Per process: the in-memory counters (connections per IP, ``[limits]`` rates, AUTH failures): with
N workers a client can reach N times each limit (documented at ``server.workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec

from postier import privileges
from postier.app import Application, Role, Service, run_loop, serve
from postier.config import Config, parse_hostport
from postier.observe import get_logger
from postier.observe.logs import set_worker

__all__ = ["WORKER_ENV", "bind_listeners", "run", "run_worker"]

WORKER_ENV = "POSTIER_WORKER"
_RESTART_MIN_S = 1.0
_RESTART_MAX_S = 60.0
_YOUNG_S = 10.0  # a worker that dies sooner than this after its start is restarted more slowly
_STOP_EXTRA_S = 10.0  # beyond shutdown_grace_s, how long the primary waits for workers to stop

_log = get_logger("postier.supervisor")


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the primary tells a receiving worker (``POSTIER_WORKER``, JSON)."""

    index: int
    parent: int
    listen_fds: tuple[int, ...]
    notify_fd: int
    config: Config


def bind_listeners(
    config: Config, *, reuse_port: bool = False, like: Sequence[socket.socket] = ()
) -> tuple[socket.socket, ...]:
    """Bind and listen on every ``[[listener]]`` address, in order, as asyncio's ``create_server``
    would (SO_REUSEADDR; IPv6 only) — on the first address a host name resolves to. ``reuse_port``:
    SO_REUSEPORT too; ``like``: a set bound so, whose addresses (ports) to bind. Raises ``OSError``."""
    bound: list[socket.socket] = []
    try:
        for i, lc in enumerate(config.listeners):
            host, port = parse_hostport(lc.address)
            family, kind, proto, _name, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(like[i].getsockname() if like else address)
            sock.listen(1024)
            sock.setblocking(False)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return tuple(bound)


def bind_worker_listeners(config: Config) -> tuple[tuple[socket.socket, ...], ...]:
    """A set of listening sockets per worker (``bind_listeners``; SO_REUSEPORT with several)."""
    workers = config.server.workers
    first = bind_listeners(config, reuse_port=workers > 1)
    sets = [first]
    try:
        for _ in range(1, workers):
            sets.append(bind_listeners(config, reuse_port=True, like=first))
    except BaseException:
        _close_all(sets)
        raise
    return tuple(sets)


def _close_all(sets: Sequence[Sequence[socket.socket]]) -> None:
    for sockets in sets:
        for sock in sockets:
            sock.close()


def run(
    config: Config,
    load: Callable[[], Config],
    serve_args: Sequence[str],
    *,
    allow_root: bool = False,
    services: Sequence[Service] = (),
) -> int:
    """``postier serve`` in the primary: one process when ``server.workers`` is 1, else the
    primary of N. ``serve_args`` are the command's arguments, given to each worker (``--config``
    and the log flags: a worker's SIGHUP reads the same file with the same flags). Started as root,
    the listeners are bound first, then the process becomes ``server.user`` (``privileges``).
    ``services`` run in the primary beside the server (the HTTP API)."""
    identity = privileges.plan(config, allow_root=allow_root)
    if config.server.workers == 1 and identity is None:
        run_loop(serve(config, load=load, services=services))
        return 0
    sets = bind_worker_listeners(config)
    try:
        if identity is not None:
            privileges.drop(identity, Path(config.server.data_dir))
    except BaseException:
        _close_all(sets)
        raise
    try:
        if config.server.workers == 1:
            run_loop(serve(config, load=load, role=Role(0, sets[0]), services=services))
        else:
            set_worker(0)
            run_loop(_primary(config, load, list(serve_args), sets, services))
    finally:
        _close_all(sets)
    return 0


def run_worker(spec_text: str, load: Callable[[], Config], services: Sequence[Service] = ()) -> int:
    """``postier serve`` in a receiving worker, from the primary's spec; ``services`` run beside it
    (each decides what a receiving worker does: the event log records its receptions and rejections)."""
    from postier.observe import setup_logging

    spec = msgspec.json.decode(spec_text, type=WorkerSpec)
    setup_logging(spec.config.log.level, spec.config.log.format)
    set_worker(spec.index)
    sockets = tuple(socket.socket(fileno=fd) for fd in spec.listen_fds)
    for sock in sockets:
        sock.setblocking(False)
    run_loop(_worker(spec, sockets, load, services))
    return 0


async def _primary(
    config: Config,
    load: Callable[[], Config],
    serve_args: list[str],
    sets: tuple[tuple[socket.socket, ...], ...],
    services: Sequence[Service] = (),
) -> None:
    team = _Team(serve_args, sets)
    try:
        await serve(
            config,
            load=load,
            role=Role(0, receives=False),
            started=team.start,
            on_signal=team.forward,
            services=services,
        )
    finally:
        await team.stop(config.server.shutdown_grace_s + _STOP_EXTRA_S)


async def _worker(
    spec: WorkerSpec,
    sockets: tuple[socket.socket, ...],
    load: Callable[[], Config],
    services: Sequence[Service] = (),
) -> None:
    loop = asyncio.get_running_loop()
    notify = _Notifier(loop, spec.notify_fd)

    def watch_parent(_app: Application) -> None:
        try:
            pidfd = os.pidfd_open(spec.parent)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        loop.add_reader(pidfd, _parent_gone, loop, pidfd)

    await serve(
        spec.config,
        load=load,
        role=Role(spec.index, sockets, notify),
        started=watch_parent,
        services=services,
    )


def _parent_gone(loop: asyncio.AbstractEventLoop, pidfd: int) -> None:
    """The primary exited (it was killed, or it crashed): stop as SIGTERM would."""
    loop.remove_reader(pidfd)
    os.close(pidfd)
    _log.error("the primary process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)


class _Notifier:
    """A worker's "mail was queued": one byte on the primary's pipe, at most one per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._pending = False
        os.set_blocking(fd, False)

    def __call__(self) -> None:
        if not self._pending:
            self._pending = True
            self._loop.call_soon(self._send)

    def _send(self) -> None:
        self._pending = False
        # A full pipe: wake-ups wait already; a closed one: the primary is gone (the pidfd watch).
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, b"\0")


class _Child:
    __slots__ = ("adopted", "delay_s", "pidfd", "proc", "restart", "started_at")

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd = -1
        self.started_at = 0.0
        self.delay_s = _RESTART_MIN_S
        self.adopted: asyncio.Task[Callable[[], Awaitable[None]] | None] | None = None  # while down
        self.restart: asyncio.Task[None] | None = None


class _Team:
    """The primary's receiving workers: started once the primary runs, restarted when they die,
    told of signals, waited for at the end."""

    def __init__(self, serve_args: list[str], sets: tuple[tuple[socket.socket, ...], ...]) -> None:
        self._args = serve_args
        self._sets = sets  # worker i listens on sets[i - 1]; the primary keeps them all open
        self._children: dict[int, _Child] = {}
        self._stopping = False
        self._app: Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all_stopped = asyncio.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    def start(self, app: Application) -> None:
        self._app = app
        self._loop = loop = asyncio.get_running_loop()
        loop.add_reader(self._wake_r, self._woken)
        for index in range(1, app.config.server.workers + 1):
            self._children[index] = _Child()
            self._spawn(index)

    def _woken(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        if self._app is not None:
            self._app.delivery.wake()

    def _spawn(self, index: int) -> None:
        app, loop, child = self._app, self._loop, self._children[index]
        if app is None or loop is None or self._stopping:
            return
        spec = WorkerSpec(
            index=index,
            parent=os.getpid(),
            listen_fds=tuple(s.fileno() for s in self._sets[index - 1]),
            notify_fd=self._wake_w,
            config=app.config,
        )
        env = {**os.environ, WORKER_ENV: msgspec.json.encode(spec).decode()}
        argv = [sys.executable, "-m", "postier", *self._args]
        try:
            proc = subprocess.Popen(argv, env=env, pass_fds=(*spec.listen_fds, self._wake_w))
        except OSError as exc:
            _log.error("cannot start worker %d: %s", index, exc)
            self._restart_later(index)
            return
        child.proc, child.started_at = proc, time.monotonic()
        child.pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(child.pidfd, self._exited, index)
        _log.info("worker %d started (pid %d)", index, proc.pid)

    def _exited(self, index: int) -> None:
        child, loop = self._children[index], self._loop
        if loop is not None:
            loop.remove_reader(child.pidfd)
        os.close(child.pidfd)
        child.pidfd = -1
        code = child.proc.wait() if child.proc is not None else None
        if self._stopping:
            if not self._alive():
                self._all_stopped.set()
            return
        _log.error("worker %d exited (status %s)", index, code)
        if time.monotonic() - child.started_at >= _YOUNG_S:
            child.delay_s = _RESTART_MIN_S
        self._restart_later(index)

    async def _adopt(self, index: int) -> Callable[[], Awaitable[None]] | None:
        """Accept from worker ``index``'s sockets until it runs again (they still get their share)."""
        try:
            stop = await self._app.serve_also(self._sets[index - 1]) if self._app is not None else None
        except Exception:
            _log.exception("cannot accept worker %d's connections meanwhile", index)
            return None
        _log.info("accepting worker %d's connections until it runs again", index)
        return stop

    async def _unadopt(self, index: int) -> None:
        task, self._children[index].adopted = self._children[index].adopted, None
        if task is not None and (stop := await task) is not None:
            await stop()

    async def _restart(self, index: int) -> None:
        await self._unadopt(index)
        self._spawn(index)

    def _restart_later(self, index: int) -> None:
        child, loop = self._children[index], self._loop
        if loop is None:
            return
        _log.info("starting worker %d again in %.0fs", index, child.delay_s)
        if child.adopted is None:
            child.adopted = loop.create_task(self._adopt(index))
        loop.call_later(child.delay_s, self._restart_soon, index)
        child.delay_s = min(child.delay_s * 2, _RESTART_MAX_S)

    def _restart_soon(self, index: int) -> None:
        if self._loop is not None:
            self._children[index].restart = self._loop.create_task(self._restart(index))

    def _alive(self) -> list[subprocess.Popen[bytes]]:
        return [c.proc for c in self._children.values() if c.proc is not None and c.proc.poll() is None]

    def forward(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT: every worker stops (SIGTERM); SIGHUP: every worker reloads."""
        if sig != signal.SIGHUP:
            self._stopping = True
            sig = signal.SIGTERM
        for proc in self._alive():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def stop(self, timeout_s: float) -> None:
        """Stop every worker (SIGTERM), wait up to ``timeout_s``, then kill what is left."""
        if not self._stopping:
            self.forward(signal.SIGTERM)
        for index in self._children:
            await self._unadopt(index)
        if self._alive():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_stopped.wait(), timeout_s)
        for proc in self._alive():
            _log.error("worker pid %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._wake_r)
        for child in self._children.values():
            if child.pidfd >= 0 and self._loop is not None:
                self._loop.remove_reader(child.pidfd)
                os.close(child.pidfd)
                child.pidfd = -1
        os.close(self._wake_r)
        os.close(self._wake_w)
