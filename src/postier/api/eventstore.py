"""The event log and the webhook outbox: one SQLite file, ``data_dir/events.sqlite``.

Theory of operation. ``events`` holds every event with a growing ``seq``; each webhook has a row in
``cursors``: the last ``seq`` its receiver acknowledged (2xx), how many tries in a row failed and when
the next may start. A batch is read after the cursor and the cursor moves only once the receiver said
yes — so an event is never lost while a receiver is down, nor skipped when Postier restarts (it may be
sent twice: receivers de-duplicate by ``id``). Pruning (``api.keep_events_s``) never removes an event
a webhook has not taken. WAL with ``synchronous=FULL``; the recorder writes in batches, off the loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Cursor", "EventStore", "Page"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    queue_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_queue_id ON events (queue_id);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    last_seq: int
    """The last seq looked at: the last item's, or the newest event's when no item matched."""


@dataclass(frozen=True, slots=True)
class Cursor:
    seq: int
    failures: int
    next_at: float
    last_error: str | None


class EventStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, events: Iterable[tuple[float, dict[str, Any]]]) -> None:
        rows = [(at, e["type"], e.get("queue_id"), json.dumps(e)) for at, e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO events (at, type, queue_id, data) VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def newest(self) -> int:
        with self._lock:
            return self._newest()

    def _newest(self) -> int:
        """The last seq given (pruned or not: AUTOINCREMENT never gives one again)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return 0 if row is None else int(row[0])

    def page(self, after: int, limit: int, types: Sequence[str] = (), queue_id: str | None = None) -> Page:
        """Events after ``after``, oldest first; ``types`` empty: all."""
        where: list[str] = ["seq > ?"]
        args: list[object] = [after]
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            args += list(types)
        if queue_id is not None:
            where.append("queue_id = ?")
            args.append(queue_id)
        sql = f"SELECT seq, at, data FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"  # noqa: S608
        with self._lock:
            newest = self._newest()
            rows = self._db.execute(sql, [*args, limit]).fetchall()
        items = [_item(seq, at, data) for seq, at, data in rows]
        last = items[-1]["id"] if len(items) == limit else max(newest, after)
        return Page(items, last)

    def since(self, at: float, types: Sequence[str], limit: int = 100_000) -> list[dict[str, Any]]:
        """Events of ``types`` recorded at or after ``at`` (the dashboard's rates), oldest first."""
        marks = ",".join("?" * len(types))
        sql = f"SELECT seq, at, data FROM events WHERE at >= ? AND type IN ({marks}) ORDER BY seq LIMIT ?"  # noqa: S608
        with self._lock:
            rows = self._db.execute(sql, [at, *types, limit]).fetchall()
        return [_item(seq, when, data) for seq, when, data in rows]

    def cursor(self, name: str) -> Cursor:
        """The webhook's cursor; a new webhook starts at the newest event (no replay of history)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, failures, next_at, last_error FROM cursors WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                newest = self._newest()
                self._db.execute("INSERT INTO cursors (name, seq) VALUES (?, ?)", (name, newest))
                return Cursor(newest, 0, 0.0, None)
        return Cursor(int(row[0]), int(row[1]), float(row[2]), row[3])

    def advance(self, name: str, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE cursors SET seq = MAX(seq, ?), failures = 0, next_at = 0, last_error = NULL "
                "WHERE name = ?",
                (seq, name),
            )

    def failed(self, name: str, next_at: float, error: str) -> int:
        """Record a failed try; returns the failures in a row."""
        with self._lock:
            self._db.execute(
                "UPDATE cursors SET failures = failures + 1, next_at = ?, last_error = ? WHERE name = ?",
                (next_at, error[:500], name),
            )
            row = self._db.execute("SELECT failures FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def prune(self, keep_s: float, hooks: Sequence[str], now: float | None = None) -> int:
        """Drop events older than ``keep_s`` that every configured webhook (``hooks``) has taken."""
        cutoff = (time.time() if now is None else now) - keep_s
        marks = ",".join("?" * len(hooks)) or "NULL"
        with self._lock:
            taken = self._db.execute(
                f"SELECT MIN(seq) FROM cursors WHERE name IN ({marks})",  # noqa: S608
                list(hooks),
            ).fetchone()[0]
            limit = taken if taken is not None else 2**62
            cur = self._db.execute("DELETE FROM events WHERE at < ? AND seq <= ?", (cutoff, limit))
        return cur.rowcount


def _item(seq: int, at: float, data: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(data)
    return {"id": seq, "timestamp": _iso(at), **event}


def _iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
