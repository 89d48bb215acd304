"""Local recipients (``docs/delivery.md``): ``LocalDirectory`` — who exists at the local domains (users
of ``postier.users``, aliases, catch-all, sub-addressing, postmaster, quota) and which Maildir their
mail ends in — and the aliases file it reads."""

from postier.recipients.aliases import Aliases, AliasesError, AliasFile, parse_aliases
from postier.recipients.directory import LocalDirectory, check_local_config, mailbox_name

__all__ = [
    "AliasFile",
    "Aliases",
    "AliasesError",
    "LocalDirectory",
    "check_local_config",
    "mailbox_name",
    "parse_aliases",
]
