"""DMARC (RFC 7489, with the settled DMARCbis changes): the record parser (``record``), policy discovery
through DNS (``discover``) and the pure evaluation (``evaluate``)."""

from postier.mailauth.dmarc.discover import PolicyAnswer, discover_policy, from_domains
from postier.mailauth.dmarc.evaluate import DmarcResult, evaluate_dmarc, is_aligned
from postier.mailauth.dmarc.record import DmarcRecord, ReportUri, parse_record

__all__ = [
    "DmarcRecord",
    "DmarcResult",
    "PolicyAnswer",
    "ReportUri",
    "discover_policy",
    "evaluate_dmarc",
    "from_domains",
    "is_aligned",
    "parse_record",
]
