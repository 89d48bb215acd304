"""``DeliverySettings``: what the scheduler takes from ``[delivery]`` and ``[server]``, checked once."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from postier.config import Config
from postier.delivery.bounces import BounceSettings
from postier.delivery.outcomes import RetryPolicy
from postier.mail.address import Address, parse_mailbox
from postier.mail.errors import AddressError, ConfigError

__all__ = ["DeliverySettings", "delivery_settings"]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Limits and times of the scheduler. ``max_in_flight``: recipients in progress at once (claims
    stop beyond); ``claim_batch``: most recipients per claim; ``lease_s``: how long a claim is ours
    (renewed while delivering);
    ``poll_s``: how often the queue is asked when nobody wakes the scheduler; ``dead_s``: how long a
    destination where no server answered is deferred without trying; ``max_in_flight_per_destination``:
    recipients of one domain in progress at once — more are left leased, untouched, until their lease
    ends, so that a slow destination with a big backlog cannot take all of ``max_in_flight``."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bounces: BounceSettings = field(default_factory=lambda: BounceSettings("localhost"))
    max_connections: int = 100
    max_connections_per_destination: int = 20
    max_recipients_per_transaction: int = 50
    max_in_flight: int = 5000
    max_in_flight_per_destination: int = 2000
    claim_batch: int = 500
    lease_s: float = 120.0
    poll_s: float = 1.0
    dead_s: float = 60.0


def delivery_settings(config: Config) -> DeliverySettings:
    """The scheduler's settings from ``config``; a bad ``delivery.postmaster`` is a ``ConfigError``."""
    d = config.delivery
    postmaster: Address | None = None
    if d.postmaster:
        try:
            postmaster = parse_mailbox(d.postmaster, allow_utf8=True)
        except AddressError:
            raise ConfigError("delivery.postmaster", f"{d.postmaster!r} is not an address") from None
    if d.dsn_max_returned_bytes < 0:
        raise ConfigError("delivery.dsn_max_returned_bytes", "must not be negative")
    for key in ("max_connections", "max_connections_per_destination", "max_recipients_per_transaction"):
        if getattr(d, key) < 1:
            raise ConfigError(f"delivery.{key}", "must be at least 1")
    in_flight = max(100, min(20_000, d.max_connections * d.max_recipients_per_transaction))
    retry = RetryPolicy(d.retry_base_s, d.retry_cap_s, d.max_age_s, d.delay_notice_s)
    bounces = BounceSettings(
        reporting_mta=config.server.hostname,
        postmaster=postmaster,
        delay_by_default=d.delay_notice_by_default,
        max_full_bytes=d.dsn_max_returned_bytes,
        trusted_networks=_networks(config.relay.trusted_networks),
    )
    return DeliverySettings(
        retry=retry,
        bounces=bounces,
        max_connections=d.max_connections,
        max_connections_per_destination=d.max_connections_per_destination,
        max_recipients_per_transaction=d.max_recipients_per_transaction,
        max_in_flight=in_flight,
        # Two rounds of full transactions on every connection the destination may have.
        max_in_flight_per_destination=max(
            1, min(in_flight // 2, 2 * d.max_connections_per_destination * d.max_recipients_per_transaction)
        ),
        dead_s=min(60.0, d.retry_base_s),
        lease_s=config.queue.lease_s,
    )


def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        raise ConfigError("relay.trusted_networks", str(exc)) from None
