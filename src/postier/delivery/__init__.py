"""Delivery: taking due recipients from the queue and delivering them (Maildir for local domains)."""

from postier.delivery.local import DELIVERED_REPLY, NO_OUTBOUND_REPLY, LocalDelivery
from postier.delivery.maildir import deliver_to_maildir

__all__ = ["DELIVERED_REPLY", "NO_OUTBOUND_REPLY", "LocalDelivery", "deliver_to_maildir"]
