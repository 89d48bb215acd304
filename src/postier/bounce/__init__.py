"""Bounces: delivery status notifications (RFC 3464 / RFC 6522 / RFC 6533) built as bytes by pure
functions, and the NOTIFY rules (RFC 3461) that say when to send one."""

from postier.bounce.dsn import DsnOptions, build_dsn, dsn_envelope
from postier.bounce.report import Action, RecipientReport, should_notify

__all__ = ["Action", "DsnOptions", "RecipientReport", "build_dsn", "dsn_envelope", "should_notify"]
