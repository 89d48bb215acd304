"""DMARC aggregate reports (RFC 7489 §7.2, Appendix C), pure: what is kept of each checked message
(``ReportRow``, one JSON line), and the XML report of one policy domain for one period.

Rows that agree on everything a report shows (source IP, identifiers, results, disposition) become one
``<record>`` with a ``<count>``. The published policy shown is the last one seen in the period.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from xml.etree import ElementTree as ET

__all__ = ["ReportMeta", "ReportRow", "build_report", "gzip_report", "report_filename"]


@dataclass(frozen=True, slots=True)
class ReportRow:
    policy_domain: str
    header_from: str
    source_ip: str
    envelope_from: str
    disposition: str
    """What was done: none, quarantine or reject."""
    dkim: str
    """pass when an aligned DKIM signature passed, else fail."""
    spf: str
    """pass when SPF passed for an aligned domain, else fail."""
    override: str = ""
    """Why the policy was not applied (RFC 7489 PolicyOverrideType): sampled_out, trusted_forwarder,
    local_policy."""
    auth_dkim: tuple[tuple[str, str, str], ...] = ()
    """Every DKIM signature checked: (domain, selector, result)."""
    auth_spf: tuple[str, str, str] = ("", "mfrom", "none")
    """(domain, scope: mfrom or helo, result)."""
    published: tuple[tuple[str, str], ...] = field(default=())
    """The record's policy: (adkim, aspf, p, sp, pct, np) as name/value pairs."""
    rua: tuple[str, ...] = ()
    """The record's rua URIs (``mailto:`` with an optional ``!size``)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReportRow:
        data = json.loads(text)
        data["auth_dkim"] = tuple(tuple(d) for d in data["auth_dkim"])
        data["auth_spf"] = tuple(data["auth_spf"])
        data["published"] = tuple(tuple(p) for p in data["published"])
        data["rua"] = tuple(data["rua"])
        return cls(**data)

    def key(self) -> tuple[object, ...]:
        return (
            self.source_ip,
            self.header_from,
            self.envelope_from,
            self.disposition,
            self.dkim,
            self.spf,
            self.override,
            self.auth_dkim,
            self.auth_spf,
        )


@dataclass(frozen=True, slots=True)
class ReportMeta:
    org_name: str
    email: str
    report_id: str
    begin: int
    """Seconds since the epoch, UTC: the period's start."""
    end: int


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(value)
    return element


def build_report(meta: ReportMeta, domain: str, rows: Iterable[ReportRow]) -> bytes:
    """The aggregate report of ``domain`` (XML, UTF-8) for the rows of one period."""
    rows = list(rows)
    counts = Counter(row.key() for row in rows)
    firsts = {row.key(): row for row in rows}
    root = ET.Element("feedback")
    _text(root, "version", "1.0")
    metadata = ET.SubElement(root, "report_metadata")
    _text(metadata, "org_name", meta.org_name)
    _text(metadata, "email", meta.email)
    _text(metadata, "report_id", meta.report_id)
    dates = ET.SubElement(metadata, "date_range")
    _text(dates, "begin", meta.begin)
    _text(dates, "end", meta.end)
    published = ET.SubElement(root, "policy_published")
    _text(published, "domain", domain)
    for name, value in rows[-1].published if rows else ():
        _text(published, name, value)
    for key, count in counts.items():
        _record(root, firsts[key], count)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _record(root: ET.Element, row: ReportRow, count: int) -> None:
    record = ET.SubElement(root, "record")
    line = ET.SubElement(record, "row")
    _text(line, "source_ip", row.source_ip)
    _text(line, "count", count)
    evaluated = ET.SubElement(line, "policy_evaluated")
    _text(evaluated, "disposition", row.disposition)
    _text(evaluated, "dkim", row.dkim)
    _text(evaluated, "spf", row.spf)
    if row.override:
        reason = ET.SubElement(evaluated, "reason")
        _text(reason, "type", row.override)
    identifiers = ET.SubElement(record, "identifiers")
    if row.envelope_from:
        _text(identifiers, "envelope_from", row.envelope_from)
    _text(identifiers, "header_from", row.header_from)
    results = ET.SubElement(record, "auth_results")
    for d, selector, result in row.auth_dkim:
        dkim = ET.SubElement(results, "dkim")
        _text(dkim, "domain", d)
        if selector:
            _text(dkim, "selector", selector)
        _text(dkim, "result", result)
    spf = ET.SubElement(results, "spf")
    _text(spf, "domain", row.auth_spf[0])
    _text(spf, "scope", row.auth_spf[1])
    _text(spf, "result", row.auth_spf[2])


def gzip_report(xml: bytes) -> bytes:
    return gzip.compress(xml, mtime=0)


def report_filename(submitter: str, domain: str, meta: ReportMeta) -> str:
    """RFC 7489 §7.2.1.1: ``receiver "!" policy-domain "!" begin "!" end [ "!" unique-id ] ".xml.gz"``."""
    return f"{submitter}!{domain}!{meta.begin}!{meta.end}.xml.gz"
