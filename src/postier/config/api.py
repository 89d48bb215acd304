"""``[api]``: the HTTP API (docs/api.md), served by the server process in its own event loop."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ApiConfig"]


class ApiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    address: str = ""
    """"host:port" of the HTTP API and dashboard, e.g. "127.0.0.1:8025". Empty: off (the default).
    Keys: ``postier api-key add NAME``."""
    tls: Literal["auto", "on", "off"] = "auto"
    """HTTPS with the server's certificate ([tls], or the self-signed pair): "auto" uses it unless
    the address is a loopback one; "on" always; "off" never (put a TLS proxy in front)."""
    max_body_bytes: int = 30 * 1024 * 1024
    """Largest request body accepted, in octets (a larger one gets 413 before it is read whole).
    Base64 attachments take a third more than the message they make. Default 30 MiB."""
    max_concurrent_requests: int = 64
    """Requests handled at once; more get 503 at once (bounded memory under a flood). Default 64."""
    request_timeout_s: float = 60.0
    """A request (its body read and its answer made) that takes longer gets 408/503. Default 60."""
    max_recipients: int = 1000
    """Recipients (to + cc + bcc) of one message sent through the API. Default 1000."""
    page_size: int = 100
    """Default and largest number of items in one page of a listing (limit=). Default 100."""
