"""The sans-IO SMTP/LMTP client engine: ``ClientConnection`` (``connection``), its events (``events``),
the reply reader and EHLO keywords (``replies``), the message and its MAIL/RCPT lines (``message``) and
the transaction bookkeeping (``txn``)."""

from postier.smtp.client.connection import ClientConnection, ClientStateError

__all__ = ["ClientConnection", "ClientStateError"]
