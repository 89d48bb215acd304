"""The PostgreSQL the tests use: 127.0.0.1:5432, database ``test``, trust auth (``.ci/run`` starts it),
or ``POSTIER_TEST_PG_DSN``. Each test gets a schema of its own, named after the process and a counter,
so test runs of several engineers on one server never meet; it is dropped afterwards. When the server
is not there the tests skip — except under CI (``CI`` set), where they fail."""

from __future__ import annotations

import itertools
import os
import secrets

import asyncpg
import pytest

DSN = os.environ.get("POSTIER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

_names = itertools.count()
_reachable: bool | None = None


def new_schema() -> str:
    """A schema name no other test (of this run or another's) uses."""
    return f"t{os.getpid()}_{next(_names)}_{secrets.token_hex(3)}"


async def require_pg(dsn: str = DSN) -> None:
    """Skip (fail under CI) when PostgreSQL is not reachable."""
    global _reachable
    if _reachable is None:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            _reachable = False
            reason = f"PostgreSQL at {dsn} not reachable: {exc}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        else:
            _reachable = True
            await conn.close()
    if not _reachable:
        pytest.skip(f"PostgreSQL at {dsn} not reachable")


async def drop_schema(schema: str, dsn: str = DSN) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
