"""``postier explain CODE... [--json]``: what an SMTP reply means and what to do about it.

Words are grouped into queries: ``postier explain 550 5.7.1 452`` explains ``550 5.7.1`` and ``452``;
a quoted log fragment (``postier explain "451 4.4.1 No answer from host"``) is one query.
``postier explain tls DOMAIN…`` explains the TLS decision for a recipient domain instead
(``cli/explain_tls.py``).
Exit status: 0 when everything was explained, 2 when a word is not a reply code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from postier.cli.explain_tls import explain_tls_command
from postier.mail.explain import Explanation, explain, group_queries

__all__ = ["handler", "register", "render"]


def register(subparsers: Any) -> None:
    """Add the ``explain`` command to ``postier``'s sub-parsers (``argparse._SubParsersAction``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="explain SMTP reply codes (452, 5.1.1, '550 5.7.1')",
        description="Explain SMTP reply codes and enhanced status codes in plain English.",
    )
    parser.add_argument("codes", nargs="+", metavar="CODE", help="452, 5.1.1, 550 5.7.1 or a quoted reply")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="for 'explain tls DOMAIN': the configuration to look up with"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="for 'explain tls': also connect to each MX (EHLO, STARTTLS; no mail)",
    )
    parser.set_defaults(func=handler)


def render(expl: Explanation) -> list[str]:
    """A few readable lines for one explanation."""
    lines = [expl.query]
    for entry in expl.entries:
        source = entry.source or "no RFC defines it"
        lines.append(f"  {entry.code}: {entry.meaning}  [{source}]")
    lines.append(f"  Outcome: {expl.retry}")
    checks = [e.check for e in expl.entries if e.check]
    if checks:
        lines.append("  Check: " + " — ".join(dict.fromkeys(checks)))
    lines.extend(f"  Note: {note}" for note in expl.notes)
    if expl.sent_as:
        lines.append("  Postier sends this as: " + "; ".join(expl.sent_as))
    return lines


def handler(args: argparse.Namespace) -> int:
    if args.codes[0].lower() == "tls":  # postier explain tls DOMAIN…: the TLS decision, looked up live
        return explain_tls_command(args, args.codes[1:])
    try:
        explanations = [explain(query) for query in group_queries(args.codes)]
    except ValueError as exc:
        print(f"postier explain: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([e.as_dict() for e in explanations], ensure_ascii=False, indent=2))
        return 0
    blocks = ["\n".join(render(e)) for e in explanations]
    print("\n\n".join(blocks))
    return 0
