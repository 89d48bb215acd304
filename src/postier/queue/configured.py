"""The queue a configuration names: ``[queue] backend`` "sqlite" (under ``data_dir``) or "postgres".

Shared by the server (``app.py``) and the tools (``control/queue_ops.py``), so both open the same
store the same way. The PostgreSQL backend (and asyncpg, the ``postgres`` extra) is imported only
when the configuration asks for it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from postier.config import Config
from postier.mail.errors import ConfigError
from postier.queue.protocol import Queue
from postier.queue.sqlite import SqliteQueue

__all__ = ["build_queue", "node_name", "read_password"]


def node_name(config: Config) -> str:
    """``[server] node``, or the machine's host name."""
    return config.server.node or socket.gethostname()


def read_password(path: str) -> str | None:
    """The first line of ``path`` (``[queue] password_file``); None when no file is set."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError("queue.password_file", f"cannot read it: {exc.strerror}") from None


def build_queue(
    config: Config,
    *,
    data_dir: Path | None = None,
    create: bool = True,
    worker: int = 0,
    batch_max: int | None = None,
    wake: Callable[[], None] | None = None,
) -> Queue:
    """The configured queue, not yet open. ``worker``: the server's worker index (id shard);
    ``wake``: called when another node made mail due (PostgreSQL's LISTEN/NOTIFY; the scheduler's
    ``wake``). ``create=False``: an existing queue only (the tools)."""
    q = config.queue
    batch = q.commit_batch_max if batch_max is None else batch_max
    if q.backend == "sqlite":
        path = (data_dir or Path(config.server.data_dir)) / "queue"
        return SqliteQueue(path, batch_max=batch, shard=worker, create=create)
    from postier.queue.postgres import PostgresQueue  # the optional extra: only when asked for

    queue = PostgresQueue(
        q.dsn,
        schema=q.schema,
        node=node_name(config),
        password=read_password(q.password_file),
        batch_max=batch,
        pool_size=q.pool_size,
        timeout_s=q.timeout_s,
        create=create,
        worker=worker,
    )
    if wake is not None:
        queue.subscribe(wake)
    return queue
