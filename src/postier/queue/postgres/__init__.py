"""The PostgreSQL queue backend: several Postier nodes share one queue (docs/scale-out.md).

Needs the ``postgres`` extra (asyncpg); import it only when ``[queue] backend = "postgres"``.
``schema.py`` (versioned tables, ``migrate``), ``writer.py`` (group commit), ``ops.py`` (claims,
leases, outcomes, tools), ``reads.py`` (records, listings, counts), ``queue.py`` (the facade).
"""

from postier.queue.postgres.queue import PostgresQueue, safe_dsn
from postier.queue.postgres.schema import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "PostgresQueue", "migrate", "safe_dsn"]
