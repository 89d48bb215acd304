"""The sans-IO SMTP server engine: ``ServerConnection`` (``connection``), the events it yields
(``events``), its state table (``state``), the verb handlers (``handlers``, ``commands``) and the
listener settings it needs (``settings``). Shared with the client: ``grammar``, ``framing``,
``need_data`` one level up."""

from postier.smtp.server.connection import AUTH_LINE_MAX, ServerConnection

__all__ = ["AUTH_LINE_MAX", "ServerConnection"]
