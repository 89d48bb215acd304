"""Delivery: the scheduler takes due recipients from the queue, routes each domain (local Maildir or
LMTP, a configured relay, or MX), hands batches to couriers and turns their replies into outcomes
and bounces. ``transport`` is the scheduler ↔ courier contract."""

from postier.delivery.bounces import Bouncer, BounceSettings, plan_notices
from postier.delivery.outcomes import RetryPolicy, judge
from postier.delivery.routes import Relay, Router, RoutingTable, routes_from_config
from postier.delivery.scheduler import Scheduler
from postier.delivery.settings import DeliverySettings, delivery_settings
from postier.delivery.transport import (
    Attempt,
    Courier,
    Credentials,
    Destination,
    DestinationKind,
    Hop,
    OutboundMessage,
    TlsPolicy,
)

__all__ = [
    "Attempt",
    "BounceSettings",
    "Bouncer",
    "Courier",
    "Credentials",
    "DeliverySettings",
    "Destination",
    "DestinationKind",
    "Hop",
    "OutboundMessage",
    "Relay",
    "RetryPolicy",
    "Router",
    "RoutingTable",
    "Scheduler",
    "TlsPolicy",
    "delivery_settings",
    "judge",
    "plan_notices",
    "routes_from_config",
]
