"""The sans-IO SMTP engines. Shared: ``grammar`` (command syntax, ESMTP parameters, xtext), ``framing``
(DATA and BDAT readers, dot-stuffing), ``need_data``. ``server/``: the server engine; ``client/``: the
SMTP/LMTP client engine. No asyncio, sockets, clock, disk or logging here."""
