"""Logging setup, the mail-event log and metrics (``postier.observe.metrics``, imported on its own).

``setup_logging(level, fmt)`` once at start-up; ``mail_event("queued", sid=…, id=…, …)`` for the
mail log; ``get_logger(__name__)`` for everything else.
"""

from postier.observe.logs import JsonFormatter, KvFormatter, fields, format_kv, get_logger, setup_logging
from postier.observe.maillog import EVENTS, MAIL_LOGGER, Subscriber, mail_event, subscribe

__all__ = [
    "EVENTS",
    "MAIL_LOGGER",
    "JsonFormatter",
    "KvFormatter",
    "Subscriber",
    "fields",
    "format_kv",
    "get_logger",
    "mail_event",
    "setup_logging",
    "subscribe",
]
