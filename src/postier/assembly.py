"""The delivery side of one configuration, built whole: the resolver, the routing table, the local
directory, the couriers and the scheduler's settings (``app.py`` builds them at start and again on
each reload, and swaps them in only once every part was built)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postier.config import Config, parse_hostport
from postier.delivery import (
    Courier,
    DeliverySettings,
    DestinationKind,
    RoutingTable,
    delivery_settings,
    routes_from_config,
)
from postier.delivery.courier import SmtpCourier
from postier.delivery.local import MaildirCourier
from postier.delivery.maildir import mailbox_size
from postier.delivery.ownaddresses import OwnAddresses
from postier.delivery.security.dane_lookup import DaneLookup
from postier.delivery.security.mtasts_cache import PolicyCache
from postier.delivery.security.mtasts_fetch import HttpsPolicyFetcher
from postier.delivery.security.mtasts_lookup import MtaSts
from postier.delivery.security.plan import TlsPlanner
from postier.delivery.security.tlsrpt_reporter import TlsReporter
from postier.dns import DnsPythonResolver
from postier.mail.errors import ConfigError
from postier.observe import get_logger
from postier.observe.maillog import subscribe
from postier.queue.protocol import Queue
from postier.recipients.directory import LocalDirectory
from postier.users import UserStore

__all__ = ["DeliveryParts", "TlsTasks", "delivery_parts"]

_log = get_logger("postier.delivery.tls")


def _resolver(config: Config) -> DnsPythonResolver:
    """``dns.nameservers`` ("host:port", port 53 by default); none: the system's resolv.conf."""
    servers = [parse_hostport(ns, default_port=53) for ns in config.dns.nameservers]
    return DnsPythonResolver(servers or None, dnssec=config.dns.dnssec)


def _smtp_courier(config: Config, resolver: DnsPythonResolver, own: OwnAddresses) -> SmtpCourier:
    """One SMTP/LMTP courier (one connection pool) for every network destination. A ``ca_file``
    that does not load is a ``ConfigError`` now (at start, or refusing a reload)."""
    d = config.delivery
    try:
        return SmtpCourier(
            resolver,
            helo_name=d.helo_name or config.server.hostname,
            connect_timeout_s=d.connect_timeout_s,
            ca_file=d.ca_file,
            reuse_idle_s=d.reuse_idle_s,
            reuse_max_messages=d.reuse_max_messages,
            own=own,
            max_addresses=d.mx_address_limit,
            max_sessions=d.mx_session_limit,
        )
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError("delivery.ca_file", f"cannot load {d.ca_file}: {exc}") from None


def _planner(config: Config, resolver: DnsPythonResolver) -> TlsPlanner:
    """MTA-STS (``delivery.mta_sts``, its cache in data_dir/mta-sts.json) and DANE (``dns.dnssec``)."""
    d = config.delivery
    sts = None
    if d.mta_sts:
        fetcher = HttpsPolicyFetcher(resolver, ca_file=d.ca_file, timeout_s=d.mta_sts_timeout_s)
        cache = PolicyCache(Path(config.server.data_dir) / "mta-sts.json")
        sts = MtaSts(resolver, fetcher, cache, refresh_s=d.mta_sts_refresh_s)
    return TlsPlanner(sts, DaneLookup(resolver) if config.dns.dnssec else None)


class TlsTasks:
    """The background work of outbound TLS security, on the delivering process: hourly refresh of
    cached MTA-STS policies (``MtaSts.refresh_due``; ``planner`` gives the one in use, a reload may
    swap it) and, with ``tlsrpt.enabled``, TLS-RPT (results recorded from the mail log, daily
    reports). A reload does not change ``[tlsrpt]`` (restart)."""

    def __init__(
        self, config: Config, planner: Callable[[], TlsPlanner], resolver: DnsPythonResolver, queue: Queue
    ) -> None:
        self._planner = planner
        self._unsubscribe: Callable[[], None] | None = None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._refresh_forever(), name="mta-sts-refresh")]
        t, hostname = config.tlsrpt, config.server.hostname
        if t.enabled:
            reporter = TlsReporter(
                Path(config.server.data_dir) / "tlsrpt",
                resolver,
                queue,
                organization=t.organization or hostname,
                contact=t.contact or f"mailto:postmaster@{hostname}",
                sender=t.sender or f"postmaster@{hostname}",
                ca_file=config.delivery.ca_file,
            )
            self._unsubscribe = subscribe(reporter.record)
            self._tasks.append(loop.create_task(reporter.run_forever(), name="tls-reports"))

    async def _refresh_forever(self, interval_s: float = 3600.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            sts = self._planner().sts
            if sts is not None:
                try:
                    await sts.refresh_due()
                except Exception:
                    _log.exception("refreshing MTA-STS policies failed; will try again")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class DeliveryParts:
    """The delivery side of one configuration, built whole before it is used (at start, or by a
    reload, which swaps it in only once every part was built: nothing is ever half-applied)."""

    resolver: DnsPythonResolver
    table: RoutingTable
    directory: LocalDirectory
    smtp: SmtpCourier
    maildir: MaildirCourier
    settings: DeliverySettings
    planner: TlsPlanner

    def couriers(self) -> dict[DestinationKind, Courier]:
        """Maildir for local domains; the SMTP/LMTP courier for everything else."""
        kinds = (DestinationKind.MX, DestinationKind.RELAY, DestinationKind.LMTP)
        return {DestinationKind.MAILDIR: self.maildir, **dict.fromkeys(kinds, self.smtp)}


def delivery_parts(
    config: Config,
    users: UserStore,
    own: OwnAddresses,
    running: tuple[Config, DeliveryParts] | None = None,
) -> DeliveryParts:
    """Build what delivery runs with for ``config``. Raises ``ConfigError`` (a password file that
    cannot be read, a bad key), ``AliasesError`` or ``OSError``. On a reload (``running``: the
    configuration and parts in use), parts whose settings did not change are kept — the resolver's
    cache, the directory's caches, the courier's idle connections — but password files are always
    read again (a rotated password needs no other change) and the courier is new when a relay
    changed, so no connection logged in with an old password is reused."""
    table = routes_from_config(config)
    if running is None:
        resolver = _resolver(config)
        directory = LocalDirectory.from_config(config, users, mailbox_size=mailbox_size)
        return DeliveryParts(
            resolver,
            table,
            directory,
            _smtp_courier(config, resolver, own),
            MaildirCourier(directory, hostname=config.server.hostname),
            delivery_settings(config),
            _planner(config, resolver),
        )
    old, was = running
    resolver = was.resolver if old.dns == config.dns else _resolver(config)
    directory, maildir = was.directory, was.maildir
    if (old.local, old.relay.local_domains) != (config.local, config.relay.local_domains):
        directory = LocalDirectory.from_config(config, users, mailbox_size=mailbox_size)
        maildir = MaildirCourier(directory, hostname=config.server.hostname)
    smtp = was.smtp
    if (resolver, table.relays, config.delivery) != (was.resolver, was.table.relays, old.delivery):
        smtp = _smtp_courier(config, resolver, own)
    planner = was.planner
    if (resolver, config.delivery, config.dns) != (was.resolver, old.delivery, old.dns):
        planner = _planner(config, resolver)
    return DeliveryParts(resolver, table, directory, smtp, maildir, delivery_settings(config), planner)
