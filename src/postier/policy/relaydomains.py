"""Recipient lists of relay domains: an unknown recipient is refused at RCPT, never bounced later.

A gateway or backup MX that takes any recipient of the domains it relays for must bounce the
unknown ones once the final server refuses them — to a sender address that spam forged, so the
bounce hits an innocent (backscatter). With a list of the valid recipients
(``relay.relay_recipients``: one file per relay domain) the refusal is ``550 5.1.1`` at RCPT, as
Postfix's ``relay_recipient_maps``. A relay domain without a file takes any recipient.

The file: one address (``user@domain``) or local part (``user``) a line, compared case-insensitively;
``#`` starts a comment; a line ``@`` makes the list a catch-all. Files are read when the policy is
built (at start and on each reload: edit the file, then SIGHUP); one that cannot be read is a
``ConfigError`` (at start the server does not start; a reload is refused and the running policy stays).
The check applies to every client, trusted and authenticated ones too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from postier.mail.domain import normalize_domain
from postier.mail.envelope import Recipient
from postier.mail.errors import ConfigError
from postier.mail.replies import S
from postier.policy.context import Client, Transaction
from postier.policy.verdict import ACCEPT, Verdict, reject

__all__ = ["RelayRecipientCheck", "load_recipient_lists", "parse_recipient_list"]


def parse_recipient_list(text: str, domain: str) -> frozenset[str] | None:
    """The local parts of ``text`` (lowercased), or None for a catch-all (a line ``@``)."""
    local_parts: set[str] = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "@":
            return None
        local, at, where = line.rpartition("@")
        if not at:
            local, where = line, domain
        if normalize_domain(where) == domain:
            local_parts.add(local.lower())
    return frozenset(local_parts)


def load_recipient_lists(files: Mapping[str, str]) -> dict[str, frozenset[str] | None]:
    """``relay.relay_recipients`` read: domain → its valid local parts (None: any)."""
    lists: dict[str, frozenset[str] | None] = {}
    for domain, path in files.items():
        key = normalize_domain(domain)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"relay.relay_recipients.{domain}", f"cannot read {path}: {exc}") from None
        lists[key] = parse_recipient_list(text, key)
    return lists


@dataclass(frozen=True, slots=True)
class RelayRecipientCheck:
    lists: Mapping[str, frozenset[str] | None]
    name: str = "relay-recipients"

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        address = rcpt.address
        if address.is_literal:
            return ACCEPT
        try:
            domain = address.domain_key
        except ValueError:
            return ACCEPT
        if domain not in self.lists:
            return ACCEPT
        valid = self.lists[domain]
        if valid is None or address.local_part.lower() in valid:
            return ACCEPT
        return reject(S.UNKNOWN_USER, f"not in the recipient list of relay domain {domain}")
