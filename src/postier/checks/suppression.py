"""The suppression list: addresses Postier no longer sends its own users' mail to.

Theory of operation. An address is suppressed by a hard bounce (a ``delivery result=failed`` line whose
enhanced status says the address itself is bad: X.1.x, 5.2.1 — ``HardBounces``, a mail-log subscriber
in the primary), by hand (``postier suppress add``, ``PUT /v1/suppressions/…``) or by a one-click
unsubscribe (RFC 8058). Each entry may expire. ``SuppressionCheck`` refuses a suppressed recipient at
RCPT (``550 5.1.1``) for our own clients — authenticated or trusted: mail from strangers to our local
domains is not theirs to suppress — and the API asks ``SuppressionList.find`` before queueing.

Store: SQLite (data_dir/suppressions.sqlite, WAL), one row per address (lowercased), read with one
indexed SELECT per recipient — quick enough to ask from the event loop. The CLI writes the same file
while the server runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.observe import mail_event
from postier.policy import ACCEPT, Client, Transaction, Verdict, reject

__all__ = [
    "HardBounces",
    "Suppression",
    "SuppressionCheck",
    "SuppressionList",
    "is_hard",
    "suppressions_path",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL
)
"""


def suppressions_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "suppressions.sqlite"


def is_hard(enhanced: str | None) -> bool:
    """An enhanced status that says the address itself is bad (X.1.x; 5.2.1 mailbox disabled)."""
    if not enhanced:
        return False
    parts = enhanced.split(".")
    return len(parts) == 3 and parts[0] == "5" and (parts[1] == "1" or parts[1:] == ["2", "1"])


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    reason: str  # hard-bounce | manual | unsubscribe
    source: str
    created_at: float
    expires_at: float | None


def _key(address: Address | str) -> str:
    return str(address).strip().strip("<>").lower()


class SuppressionList:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._clock = clock
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(
        self, address: Address | str, reason: str, source: str = "", expires_at: float | None = None
    ) -> bool:
        """Suppress ``address`` (again: the new reason and expiry replace the old). True if it was not."""
        key, now = _key(address), self._clock()
        with self._lock:
            was = self._find(key, now)
            self._db.execute(
                "INSERT OR REPLACE INTO suppressions VALUES (?, ?, ?, ?, ?)",
                (key, reason, source[:300], now, expires_at),
            )
        return was is None

    def remove(self, address: Address | str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM suppressions WHERE address = ?", (_key(address),))
        return cur.rowcount > 0

    def find(self, address: Address | str) -> Suppression | None:
        with self._lock:
            return self._find(_key(address), self._clock())

    def _find(self, key: str, now: float) -> Suppression | None:
        row = self._db.execute(
            "SELECT * FROM suppressions WHERE address = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, now),
        ).fetchone()
        return None if row is None else Suppression(*row)

    def list(self, limit: int = 1000, offset: int = 0) -> list[Suppression]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM suppressions WHERE expires_at IS NULL OR expires_at > ? "
                "ORDER BY created_at DESC, address LIMIT ? OFFSET ?",
                (self._clock(), limit, offset),
            ).fetchall()
        return [Suppression(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class SuppressionCheck:
    """RCPT: our own clients' mail to a suppressed address is refused with 550 5.1.1."""

    suppressions: SuppressionList
    name: str = "suppression"

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        if not client.is_ours:
            return ACCEPT
        found = self.suppressions.find(rcpt.address)
        if found is None:
            return ACCEPT
        return reject(S.SUPPRESSED, f"suppressed ({found.reason})")


class HardBounces:
    """The mail-log subscriber that suppresses an address on a hard bounce."""

    def __init__(
        self, suppressions: SuppressionList, expiry_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.suppressions = suppressions
        self.expiry_s = expiry_s
        self._clock = clock

    def __call__(self, event: str, fields: Mapping[str, object]) -> None:
        if event != "delivery" or fields.get("result") != "failed":
            return
        enhanced = fields.get("dsn")
        reply = str(fields.get("reply", ""))
        if enhanced is None:
            parts = reply.split(" ")
            enhanced = parts[1] if len(parts) > 1 else None
        if not is_hard(str(enhanced) if enhanced else None):
            return
        rcpt = str(fields.get("rcpt", "")).strip("<>")
        if not rcpt:
            return
        try:  # after the other subscribers heard of the bounce: the bounce, then the suppression
            asyncio.get_running_loop().call_soon(self._suppress, rcpt, reply, fields.get("id"))
        except RuntimeError:
            self._suppress(rcpt, reply, fields.get("id"))

    def _suppress(self, rcpt: str, reply: str, queue_id: object) -> None:
        until = self._clock() + self.expiry_s if self.expiry_s > 0 else None
        if self.suppressions.add(rcpt, "hard-bounce", reply, until):
            mail_event(
                "suppressed",
                id=queue_id,
                rcpt=f"<{rcpt}>",
                reason="hard-bounce",
                source=reply,
                until=None if until is None else _iso(until),
            )


def _iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
