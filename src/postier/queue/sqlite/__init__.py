"""The embedded SQLite backend of the queue (``docs/queue.md``): ``SqliteQueue`` (``backend``), the
group-commit writer thread (``writer``), the reads off the writer (``reader``), the SQL of writes
(``store``) and reads (``reads``), the schema (``sql``) and the body log for large bodies
(``bodylog``). Backend-neutral parts stay one level up: ``protocol``, ``model``, ``codec``, ``ids``,
``schedule``."""

from postier.queue.sqlite.backend import SqliteQueue

__all__ = ["SqliteQueue"]
