"""``[suppression]``: addresses Postier no longer sends to (docs/api.md, Suppression list)."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["SuppressionConfig"]


class SuppressionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    """Keep a suppression list (data_dir/suppressions.sqlite): a hard bounce (X.1.x, 5.2.1) or a
    manual entry (``postier suppress add``, the API, a one-click unsubscribe) suppresses an address,
    and our own users' mail to it (authenticated or trusted clients, and the API) is refused or
    dropped. Off by default."""
    action: Literal["refuse", "drop"] = "refuse"
    """What happens to mail for a suppressed address: "refuse" — 550 5.1.1 at RCPT over SMTP, 422
    from the API (a ``reject`` event either way); "drop" — the API leaves the address out of the
    message and says so in its answer (SMTP refuses in both modes: one recipient of a transaction
    cannot be dropped silently)."""
    hard_bounce_expiry_s: float = 0.0
    """How long a hard bounce keeps an address suppressed, in seconds. 0 (the default): until removed."""
