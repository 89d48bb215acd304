"""Composition root: configuration → objects → one running server.

Everything Postier runs is wired here, in one place, so that each part receives what it needs (the
queue, the policy, the TLS context, the clock) instead of finding it through globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from postier.antispam import AntispamState
from postier.assembly import DeliveryParts, TlsTasks, delivery_parts
from postier.checks.build import dmarc_report_store, feature_checks, start_dmarc_reports
from postier.checks.suppression import HardBounces, SuppressionCheck, SuppressionList, suppressions_path
from postier.config import Config, parse_hostport
from postier.config.model import AuthConfig, ListenerConfig
from postier.config.reloadable import plan_reload
from postier.delivery import Router, Scheduler
from postier.delivery.ownaddresses import OwnAddresses
from postier.dns import DnsPythonResolver
from postier.mail.envelope import Envelope
from postier.mailauth.dkim import DkimKeys, DkimSigner, host_domain
from postier.observe import fields, get_logger, mail_event, setup_logging, subscribe
from postier.observe.metrics import MetricsService
from postier.policy import build_policy
from postier.queue import Queue
from postier.queue.configured import build_queue
from postier.queue.protocol import SharedSlots
from postier.server.listener import Listener, Live, SmtpServer, listener_settings
from postier.server.sasl import Authenticator as PasswordCheck
from postier.server.tls import TlsStore, ensure_self_signed
from postier.smtp.server.settings import EngineSettings
from postier.spool import MessageBody
from postier.users import Authenticator, AuthThrottle, UserStore, users_path

__all__ = ["Application", "Role", "Service"]

Service = Callable[["Application"], contextlib.AbstractAsyncContextManager[None]]
"""Something more the server process runs while it serves, started after the listeners and stopped
before them (the HTTP API: ``postier.api.service``, wired by the ``serve`` command)."""

_log = get_logger("postier.app")
_GC_YOUNG_THRESHOLD = 10_000  # objects allocated, net, between two collections of the youngest generation


class _WakingSink:
    """The queue as the SMTP server sees it, nudging delivery after each enqueue. Receiving and
    delivering stay apart: they meet in the queue, and in this adapter of the composition root."""

    def __init__(self, queue: Queue, wake: Callable[[], None]) -> None:
        self._queue = queue
        self._wake = wake

    def new_id(self) -> str:
        return self._queue.new_id()

    async def enqueue(
        self,
        envelope: Envelope,
        body: bytes | MessageBody,
        *,
        queue_id: str | None = None,
        held: bool = False,
    ) -> str:
        queue_id = await self._queue.enqueue(envelope, body, queue_id=queue_id, held=held)
        if not held:
            self._wake()
        return queue_id


@dataclass(frozen=True, slots=True)
class Role:
    """The part of the work this process does (``server.workers``, postier/supervisor.py)."""

    index: int = 0
    """0: the primary (delivers, purges, serves metrics); above 0: a worker that receives only."""
    sockets: tuple[socket.socket, ...] = ()
    """Listening sockets the primary bound, one per listener in order; empty: bind them here."""
    notify: Callable[[], None] | None = None
    """A receiving worker's word to the primary that mail was queued (the primary wakes delivery)."""
    receives: bool = True  # False: a primary of workers (it receives only for one that is down)

    @property
    def delivers(self) -> bool:
        return self.index == 0


class Application:
    """The running MTA. ``start()`` binds every listener; ``stop()`` shuts down gracefully."""

    def __init__(self, config: Config, role: Role | None = None) -> None:
        self.config = config
        self.role = role = role or Role()
        self.data_dir = Path(config.server.data_dir)
        self.queue: Queue = build_queue(
            config,
            data_dir=self.data_dir,
            worker=role.index,
            wake=(lambda: self.delivery.wake()) if role.delivers else None,  # another node's enqueue
        )
        self.tls = self._tls_store()
        self.users = UserStore(users_path(self.data_dir))
        self._purger: asyncio.Task[None] | None = None
        self._deliverer: asyncio.Task[None] | None = None
        self._dkim_checker: asyncio.Task[None] | None = None
        self._tls_tasks: TlsTasks | None = None  # MTA-STS refresh, TLS-RPT (the delivering process)
        self._dmarc_reports: asyncio.Task[None] | None = None
        self._dmarc_store = dmarc_report_store(config)  # restart-only, as its task
        self.suppressions = (  # restart-only
            SuppressionList(suppressions_path(self.data_dir)) if config.suppression.enabled else None
        )
        self._unsubscribe_bounces: Callable[[], None] | None = None
        self.metrics = self._metrics_service(config) if role.delivers else None
        self._own = OwnAddresses(
            parse_hostport(lc.address) for lc in config.listeners
        )  # never mail ourselves
        parts = self._parts = delivery_parts(config, self.users, self._own)
        self.directory = parts.directory
        self.router = Router(parts.table, parts.resolver, planner=parts.planner)
        self.delivery = Scheduler(
            self.queue,
            self.router,
            parts.couriers(),
            parts.settings,
            expand=parts.directory.expand,
            sign=self._sign_own,
            shared_slots=self.queue if isinstance(self.queue, SharedSlots) else None,  # several nodes
        )
        self.dkim = DkimKeys(config.dkim, self.data_dir, parts.resolver, on_change=self._dkim_changed)
        self.antispam = AntispamState(self.data_dir, config)  # greylisting, pregreet: kept across reloads
        self.sink = _WakingSink(self.queue, role.notify or self.delivery.wake)
        """The queue as receiving sees it (SMTP and the HTTP API): enqueue, then wake delivery."""
        self.server = SmtpServer(
            hostname=config.server.hostname,
            queue=self.sink,
            live=self._live(config, self.tls, parts),
            min_data_bytes_per_s=config.server.min_data_bytes_per_s,
            error_delay_s=config.server.error_delay_s,
            memory_budget_bytes=config.server.memory_budget_bytes,
            spool_dir=self.data_dir / "spool",
        )

    @property
    def resolver(self) -> DnsPythonResolver:
        """The DNS resolver delivery uses now (a reload may swap it)."""
        return self._parts.resolver

    def _live(
        self, config: Config, tls: TlsStore, parts: DeliveryParts, previous: Live | None = None
    ) -> Live:
        """What the receiving side obeys under ``config``, built whole: the policy (with the local
        directory of ``parts``), TLS, AUTH, the timeouts and the DKIM signer. ``previous``: the running
        one, whose counters (rate limits, the AUTH throttle) are kept where their settings did not
        change, and whose DKIM signer stays until the key checks swap it."""
        auth, s = config.auth, config.server
        throttle = _auth_throttle(auth)
        authenticator: PasswordCheck = _authenticator(self.users, auth)
        if previous is not None:
            old = self.config.auth
            if previous.auth_throttle is not None and throttle.settings == _auth_throttle(old).settings:
                throttle = previous.auth_throttle
            same = (auth.max_concurrent_verifies, auth.max_waiting_verifies) == (
                old.max_concurrent_verifies,
                old.max_waiting_verifies,
            )
            if previous.authenticator is not None and same:
                authenticator = previous.authenticator
        store = self._dmarc_store
        policy = build_policy(
            config,
            directory=parts.directory,
            sender_rule=self.users.can_send_as,
            checks=[
                *feature_checks(config, parts.resolver, observe=store.add if store is not None else None),
                *self.antispam.checks(config, parts.resolver),
                *([] if self.suppressions is None else [SuppressionCheck(self.suppressions)]),
            ],
            previous=previous.policy if previous is not None else None,
        )
        return Live(
            policy=policy,
            tls_context=tls.current,
            authenticator=authenticator,
            auth_throttle=throttle,
            command_timeout_s=s.command_timeout_s,
            data_timeout_s=s.data_timeout_s,
            dkim=previous.dkim if previous is not None else DkimSigner(),
            pregreet=self.antispam.pregreet_test(config),
            arc_seal=config.mailauth.arc_seal,
        )

    def _dkim_changed(self, signer: DkimSigner) -> None:
        # One new reference: the next transactions' messages sign with it.
        self.server.live = dataclasses.replace(self.server.live, dkim=signer)

    def _sign_own(self, message: bytes) -> bytes:
        """DKIM for mail Postier writes (DSNs): the key of ``server.hostname``'s domain, if any."""
        signer = self.server.live.dkim
        if signer.is_empty:
            return b""
        domain = host_domain(signer, self.config.server.hostname)
        return b"" if domain is None else signer.sign(message, domain)

    def _tls_store(self, config: Config | None = None) -> TlsStore:
        config = config or self.config
        cert, key = config.tls.cert, config.tls.key
        if cert:
            return TlsStore(Path(cert), Path(key))
        cert_path, key_path, created = ensure_self_signed(self.data_dir, config.server.hostname)
        if created:
            _log.info("made a self-signed certificate for %s at %s", config.server.hostname, cert_path)
        return TlsStore(cert_path, key_path)

    def _metrics_service(self, config: Config) -> MetricsService | None:
        """The Prometheus endpoint when ``metrics.address`` is set; None (nothing subscribed) when not."""
        if not config.metrics.address:
            return None
        host, port = parse_hostport(config.metrics.address)
        leases = getattr(self.queue, "leases", None)  # a cluster's queue: which node delivers what
        return MetricsService(host, port, self._queue_counts, lease_counts=leases)

    async def _queue_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        stats = await self.queue.stats()
        return (
            {status.value: n for status, n in stats.messages.items()},
            {state.value: n for state, n in stats.recipients.items()},
        )

    def _listeners(self) -> list[Listener]:
        s = self.config.server
        base = EngineSettings(
            hostname=s.hostname,
            max_message_bytes=s.max_message_bytes,
            max_recipients=s.max_recipients,
            max_errors=s.max_errors,
            max_text_line=s.max_line_octets,
            hold_message_octets=s.hold_message_bytes,
            max_header_octets=s.max_header_bytes,
            bdat_min_chunk_octets=s.bdat_min_chunk_bytes,
            bdat_max_small_chunks=s.bdat_max_small_chunks,
        )
        return [self._listener(lc, base) for lc in self.config.listeners]

    def _listener(self, lc: ListenerConfig, base: EngineSettings) -> Listener:
        host, port = parse_hostport(lc.address)
        settings = listener_settings(lc.mode, base, has_tls=True, has_auth=True)
        delay = self.config.server.early_talker_delay_s if lc.mode == "smtp" else 0.0
        return Listener(host, port, lc.mode, settings, early_talker_delay_s=delay)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "spool").mkdir(mode=0o700, exist_ok=True)  # large messages being received
        await self.queue.open()
        try:
            await self.dkim.refresh()  # keys whose records match sign from the first message on
        except Exception:  # never keep the server from starting: the periodic check tries again
            _log.exception("dkim: checking the keys at start failed; mail is not signed until a check works")
        try:
            if self.metrics is not None:
                await self.metrics.start()
            if self.role.receives:
                await self.server.start(self._listeners(), self.role.sockets)
        except BaseException:
            if self.metrics is not None:
                await self.metrics.close()
            await self.queue.close()
            raise
        loop = asyncio.get_running_loop()
        self._dkim_checker = loop.create_task(self.dkim.run_forever(), name="dkim-keys")
        if self.role.delivers:
            self._purger = loop.create_task(self._purge_forever(), name="queue-purge")
            self._deliverer = loop.create_task(self.delivery.run_forever(), name="delivery")
            self._tls_tasks = TlsTasks(
                self.config, lambda: self._parts.planner, self._parts.resolver, self.queue
            )
            if self.suppressions is not None:
                expiry = self.config.suppression.hard_bounce_expiry_s
                self._unsubscribe_bounces = subscribe(HardBounces(self.suppressions, expiry))
            if self._dmarc_store is not None:
                self._dmarc_reports = start_dmarc_reports(
                    self.config,
                    self._dmarc_store,
                    self._parts.resolver,
                    self.server.queue.enqueue,
                    self._sign_own,
                )
        _settle_garbage_collector()
        addresses = " ".join(f"{lc.mode}={lc.address}" for lc in self.config.listeners)
        mail_event("ready", listeners=addresses, hostname=self.config.server.hostname)

    async def serve_also(self, sockets: tuple[socket.socket, ...]) -> Callable[[], Awaitable[None]]:
        """Accept from a worker's sockets while it is down; the function returned stops that."""
        return await self.server.serve_also(self._listeners(), sockets)

    async def _purge_forever(self) -> None:
        """Retention: drop finished messages (and sooner their bodies) past the configured times."""
        q = self.config.queue
        while True:
            try:
                result = await self.queue.purge(keep_s=q.keep_history_s, keep_body_s=q.keep_body_s)
            except Exception:
                _log.exception("queue purge failed; will try again")
            else:
                if result.messages or result.bodies:
                    _log.info("purged %d finished messages and %d bodies", result.messages, result.bodies)
            self.antispam.purge(self.config)
            await asyncio.sleep(q.purge_interval_s)

    def reload_tls(self) -> None:
        try:
            self.tls.reload()
        except Exception as exc:
            _log.error("TLS reload refused, keeping the old certificate: %s", exc)
        else:
            _log.info("TLS certificate reloaded")

    def reload(self, new: Config) -> bool:
        """SIGHUP: apply the live keys of ``new`` (config/reloadable.py) for new sessions and new
        deliveries (routes and password files, ``[delivery]``, ``[dns]``, ``[local]``), and reload the
        TLS pair. All new objects are built before any is swapped in, so a pair or a value that does
        not load leaves everything as it was (logged; False). Restart-only changes are logged and kept
        at their running values; sessions already open may finish with the objects they started with."""
        plan = plan_reload(self.config, new)
        old, cfg = self.config, plan.effective
        try:
            tls = self._tls_store(cfg)
            parts = delivery_parts(cfg, self.users, self._own, (old, self._parts))
            live = self._live(cfg, tls, parts, previous=self.server.live)
        except Exception as exc:
            _log.error("reload refused, the running configuration stays: %s", exc)
            return False
        for key in plan.needs_restart:
            _log.warning("%s changed: needs a restart, the running value stays", key, extra=fields(key=key))
        self.tls = tls
        self._swap_delivery(parts)
        self.server.live = live  # one reference: new sessions and new transactions see all of it
        self.dkim.reconfigure(cfg.dkim, parts.resolver)  # keys read and checked again, now
        if cfg.log != old.log:
            setup_logging(cfg.log.level, cfg.log.format)
        self.config = cfg
        changed = " ".join(plan.applied) or "none"
        _log.info("configuration reloaded", extra=fields(changed=changed, restart=len(plan.needs_restart)))
        return True

    def _swap_delivery(self, parts: DeliveryParts) -> None:
        """Swap in the delivery side a reload built: the router's table and resolver (the next
        route), the scheduler's couriers and settings (the next transactions), and the directory
        recipients are expanded with at delivery."""
        self._parts = parts
        self.router.set_table(parts.table, parts.resolver, parts.planner)
        self.delivery.reconfigure(parts.couriers(), parts.settings, expand=parts.directory.expand)
        self.directory = parts.directory

    async def stop(self) -> None:
        await self.server.shutdown(self.config.server.shutdown_grace_s)
        await self.delivery.stop()
        if self._tls_tasks is not None:
            await self._tls_tasks.stop()
        for task in (self._purger, self._deliverer, self._dkim_checker, self._dmarc_reports):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.metrics is not None:
            await self.metrics.close()
        if self._unsubscribe_bounces is not None:
            self._unsubscribe_bounces()
        await self.queue.close()
        self.antispam.close()
        mail_event("stopped")


def _auth_throttle(auth: AuthConfig) -> AuthThrottle:
    return AuthThrottle(
        auth.max_failures, auth.window_s, auth.lockout_s, max_account_delay_s=auth.max_account_delay_s
    )


def _authenticator(users: UserStore, auth: AuthConfig) -> Authenticator:
    return Authenticator(
        users, max_concurrent=auth.max_concurrent_verifies, max_waiting=auth.max_waiting_verifies
    )


def _settle_garbage_collector() -> None:
    """Once started: what was built at start (modules, configuration, TLS and DKIM keys) moves out of
    the collector's sight (``gc.freeze``), and the youngest generation is collected less often. A
    session allocates a few hundred objects and frees nearly all of them by reference counting; with
    the default threshold (700) the collector ran several times per session and promoted live
    sessions' objects, so the full collections walked every long-lived object again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
