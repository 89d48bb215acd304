"""The PostgreSQL queue's schema, versioned: each migration moves it one version up.

``migrate(conn, schema)`` brings the tables in ``schema`` (a PostgreSQL namespace) to
``SCHEMA_VERSION``, in one transaction under an advisory lock, so several nodes starting at once
migrate it once. A database newer than this code is refused, never touched. ``postier queue
migrate`` runs it on its own; ``PostgresQueue.open`` runs it too, so a first start works alone.

Times are epoch seconds (``float8``) as in the SQLite backend (``queue/codec.py``); bodies are
``bytea`` kept out of line (TOAST) without compression: mail is mostly already compressed
(attachments in base64 of compressed files), and compressing in the database costs its CPU, the
one shared resource of a cluster (docs/scale-out.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "current_version", "migrate", "migrate_database"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        "CREATE TABLE schema_info (version integer NOT NULL)",
        "INSERT INTO schema_info (version) VALUES (0)",
        """CREATE TABLE messages (
            id text PRIMARY KEY,
            arrived_at float8 NOT NULL,
            sender text NOT NULL,
            envelope text NOT NULL,
            size integer NOT NULL,
            body_sha256 text NOT NULL,
            status text NOT NULL,
            done_at float8,
            node text NOT NULL
        )""",
        """CREATE TABLE bodies (
            message_id text PRIMARY KEY,
            data bytea NOT NULL
        )""",
        "ALTER TABLE bodies ALTER COLUMN data SET STORAGE EXTERNAL",
        """CREATE TABLE recipients (
            message_id text NOT NULL,
            idx integer NOT NULL,
            local_part text NOT NULL,
            domain text NOT NULL,
            domain_key text NOT NULL,
            notify text,
            orcpt text,
            state text NOT NULL,
            attempts integer NOT NULL,
            next_attempt_at float8,
            lease_until float8,
            lease_node text,
            last_attempt_at float8,
            last_reply text,
            PRIMARY KEY (message_id, idx)
        )""",
        # only pending recipients are ever looked up by due time: the index stays small
        "CREATE INDEX recipients_due ON recipients (next_attempt_at, message_id, idx)"
        " WHERE state IN ('queued', 'deferred')",
        "CREATE INDEX recipients_domain ON recipients (domain_key)",
        "CREATE INDEX messages_status ON messages (status, done_at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_LOCK_KEY = 0x706F7374  # "post": one advisory lock for every migration


async def current_version(conn: Any, schema: str) -> int:
    """The schema's version; 0 when the queue's tables are not there yet."""
    exists = await conn.fetchval(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'schema_info'",
        schema,
    )
    if exists is None:
        return 0
    version: int = await conn.fetchval(f'SELECT MAX(version) FROM "{schema}".schema_info')
    return version


async def migrate(conn: Any, schema: str) -> tuple[int, int]:
    """Bring ``schema`` to ``SCHEMA_VERSION``; returns (version before, version after). Raises
    ``RuntimeError`` when the database is newer than this code."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        before = await current_version(conn, schema)
        if before > SCHEMA_VERSION:
            raise RuntimeError(f"the queue's schema is version {before}; this Postier knows {SCHEMA_VERSION}")
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        for statements in MIGRATIONS[before:]:
            for statement in statements:
                await conn.execute(statement)
        if before < SCHEMA_VERSION:
            await conn.execute("UPDATE schema_info SET version = $1", SCHEMA_VERSION)
    return before, SCHEMA_VERSION


async def migrate_database(
    dsn: str, schema: str, *, password: str | None, timeout_s: float
) -> tuple[int, int]:
    """``migrate`` on a connection of its own (``postier queue migrate``)."""
    import asyncpg  # the optional extra, as everything in this package

    conn = await asyncpg.connect(dsn, password=password, timeout=timeout_s, command_timeout=timeout_s)
    try:
        return await migrate(conn, schema)
    finally:
        await conn.close()
