"""``[tlsrpt]``: SMTP TLS reporting (RFC 8460, docs/tls.md): daily reports of the TLS results of
delivery to domains with a DANE or MTA-STS policy, sent to each domain's ``_smtp._tls`` ``rua``."""

from __future__ import annotations

import msgspec

__all__ = ["TlsRptConfig"]


class TlsRptConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    """Record results (data_dir/tlsrpt/DAY.jsonl) and send one report per policy domain and UTC day,
    gzipped JSON, to the mailto: and https: URIs of its _smtp._tls TXT record. Off by default."""
    organization: str = ""
    """organization-name of the reports, and the Submitter. Empty: server.hostname."""
    contact: str = ""
    """contact-info of the reports. Empty: mailto:postmaster@ server.hostname."""
    sender: str = ""
    """Envelope sender and From: of reports sent by mail. Empty: postmaster@ server.hostname."""
