"""An example user check for Postier's policy pipeline (docs/policy.md).

Load it with, in the configuration::

    [[check]]
    module = "examples.postier_checks:SubjectFilter"
    options = { words = ["lottery", "viagra"], action = "reject" }

(the directory that holds ``examples/`` must be on the server's Python path, e.g. the working directory
or ``PYTHONPATH``). At the end of data it looks at the Subject: a message whose subject holds one of
``words`` is refused with ``550 5.7.1`` (``action = "reject"``), delivered with an
``X-Subject-Filter`` header (``action = "tag"``) or queued held for an operator (``action =
"quarantine"``: ``postier queue release ID`` lets it go). Everything it needs comes from ``postier.policy``.
"""

from __future__ import annotations

from postier.mail.reply import EnhancedStatus, Reply
from postier.policy import ACCEPT, Client, Message, Transaction, Verdict, quarantine, reject, tag

__all__ = ["SubjectFilter"]

_REFUSED = Reply(550, EnhancedStatus(5, 7, 1), "Message content rejected")


class SubjectFilter:
    name = "subject-filter"

    def __init__(self, words: list[str], action: str = "reject") -> None:
        if action not in ("reject", "tag", "quarantine"):
            raise ValueError("action is 'reject', 'tag' or 'quarantine'")
        self.words = tuple(word.lower() for word in words)
        self.action = action

    def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        if client.is_ours:  # our own users' mail is not filtered
            return ACCEPT
        subject = " ".join(message.get_all("subject")).lower()
        found = next((word for word in self.words if word in subject), None)
        if found is None:
            return ACCEPT
        header = ("X-Subject-Filter", f"matched {found!r}")
        if self.action == "tag":
            return tag(header, score=5.0, reason=f"subject has {found!r}")
        if self.action == "quarantine":
            return quarantine(f"subject has {found!r}", header)
        return reject(_REFUSED, f"subject has {found!r}")
