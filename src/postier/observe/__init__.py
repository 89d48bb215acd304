"""Logging setup, the mail-event log and (later) metrics.

``setup_logging(level, fmt)`` once at start-up; ``mail_event("queued", sid=…, id=…, …)`` for the
mail log; ``get_logger(__name__)`` for everything else.
"""

from postier.observe.logs import JsonFormatter, KvFormatter, fields, format_kv, get_logger, setup_logging
from postier.observe.maillog import EVENTS, MAIL_LOGGER, mail_event

__all__ = [
    "EVENTS",
    "MAIL_LOGGER",
    "JsonFormatter",
    "KvFormatter",
    "fields",
    "format_kv",
    "get_logger",
    "mail_event",
    "setup_logging",
]
