"""``[api]``: the HTTP API (docs/api.md), served by the server process in its own event loop."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["EVENT_TYPES", "ApiConfig", "WebhookConfig"]


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
    memory_budget_bytes: int = 128 * 1024 * 1024
    """Request body octets held at once, all requests together; a request that would pass it gets 503
    (a message being built takes a few times its body: bounded memory under a flood). Default 128 MiB."""
    max_concurrent_requests: int = 64
    """Requests handled at once; more get 503 at once (bounded memory under a flood). Default 64."""
    request_timeout_s: float = 60.0
    """A request (its body read and its answer made) that takes longer gets 408/503. Default 60."""
    public_url: str = ""
    """The API's URL as recipients' mail providers reach it, for one-click unsubscribe links
    (e.g. "https://mail.example.com:8025"). Empty: http(s)://address."""
    max_recipients: int = 1000
    """Recipients (to + cc + bcc) of one message sent through the API. Default 1000."""
    page_size: int = 100
    """Default and largest number of items in one page of a listing (limit=). Default 100."""
    keep_events_s: float = 7 * 86400.0
    """How long events stay in data_dir/events.sqlite (GET /v1/events, webhooks), in seconds; an event
    a webhook has not taken yet is kept until it has. Default 7 days."""
    webhook_retry_base_s: float = 5.0
    """First wait after a webhook delivery failed; it doubles with each failure in a row. Default 5."""
    webhook_retry_cap_s: float = 600.0
    """Longest wait between two tries of a webhook. Default 600 (10 minutes)."""


EVENT_TYPES = ("injection", "delivery", "delay", "bounce", "reject", "suppression")


class WebhookConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str
    """Where batches of events are POSTed (http: or https:), as JSON ``{"events": [...]}``."""
    secret: str = ""
    """The key of the ``Postier-Signature`` HMAC-SHA256 (docs/api.md, Webhooks). Required unless
    ``secret_file`` is set."""
    secret_file: str = ""
    """A file holding the secret (its first line), instead of ``secret``."""
    events: tuple[str, ...] = ()
    """Event types sent to this hook: injection, delivery, delay, bounce, reject, suppression. Empty:
    all of them."""
    timeout_s: float = 10.0
    """How long one POST may take before it counts as failed."""
    batch_size: int = 100
    """Events in one POST at most."""
