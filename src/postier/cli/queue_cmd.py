"""``postier queue …``: look at and act on the queue, also while a server runs.

Exit codes: 0 done, 1 the operation failed (unknown id, no queue there, store error), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from postier.config import Config, load_config
from postier.control import queue_ops
from postier.control.queue_ops import Action
from postier.mail.errors import ConfigError, QueueError
from postier.observe.logs import visible
from postier.queue import AGE_BUCKETS_MIN, MessageStatus, MessageSummary, Queue, QueueFilter

__all__ = ["register"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 3d)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def _data_dir(args: argparse.Namespace, config: Config | None) -> Path:
    if args.data_dir:
        return Path(args.data_dir)
    if config is not None:
        return Path(config.server.data_dir)
    return Path("var")


def _run(args: argparse.Namespace, work: Callable[[Queue], Awaitable[int]]) -> int:
    """Open the queue of ``args``, run ``work(queue)``, map failures to messages and exit codes."""

    async def main() -> int:
        config = load_config(args.config) if args.config else None
        async with queue_ops.open_queue(_data_dir(args, config), config) as queue:
            return await work(queue)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        print(f"postier queue: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except QueueError as exc:  # UnknownMessageError included
        print(f"postier queue: {exc}", file=sys.stderr)
        return 1


def _age(at: datetime, now: datetime) -> str:
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _size(octets: int) -> str:
    return f"{octets}" if octets < 1024 else f"{octets / 1024:.1f}K"


def _filter(args: argparse.Namespace) -> QueueFilter:
    now = datetime.now(UTC)
    return QueueFilter(
        status=None if args.status is None else MessageStatus(args.status),
        domain=args.domain,
        sender=args.sender,
        arrived_before=None if args.older_than is None else now - args.older_than,
        error=args.error,
    )


def _list(args: argparse.Namespace) -> int:
    """Up to ``--limit`` messages (0: all); the text form says on stderr how many were left out, the
    JSON form is ``{"total": N, "shown": n, "messages": [...]}``."""
    if args.limit < 0:
        print("postier queue list: --limit must be 0 (all) or more", file=sys.stderr)
        return 2

    async def work(queue: Queue) -> int:
        where = _filter(args)
        rows = await queue.list_messages(where, limit=args.limit or None)
        total = len(rows) if not args.limit or len(rows) < args.limit else await queue.count_messages(where)
        if args.json:
            data = {
                "total": total,
                "shown": len(rows),
                "messages": [queue_ops.summary_to_json(r) for r in rows],
            }
            print(json.dumps(data, indent=2, ensure_ascii=True))
        else:
            _print_list(rows, total)
        if total > len(rows):
            print(
                f"postier queue list: {total - len(rows)} of {total} messages not shown"
                f" (--limit {args.limit}; --limit 0 shows all)",
                file=sys.stderr,
            )
        return 0

    return _run(args, work)


def _print_list(rows: list[MessageSummary], total: int) -> None:
    now = datetime.now(UTC)
    print(f"{'ID':16}  {'STATUS':6}  {'AGE':>4}  {'SIZE':>6}  {'RCPT':>5}  SENDER / LAST REPLY")
    for r in rows:
        rcpt = f"{r.pending}/{r.recipients}"
        print(
            f"{r.id:16}  {r.status.value:6}  {_age(r.arrived_at, now):>4}  {_size(r.size):>6}  "
            f"{rcpt:>5}  <{visible(r.sender)}>"
        )
        if r.last_reply:
            print(f"{'':46}{visible(r.last_reply)}")
    shown = f"{len(rows)} message{'s' if len(rows) != 1 else ''}"
    print(f"-- {shown}" if total == len(rows) else f"-- {shown} of {total}")


def _show(args: argparse.Namespace) -> int:
    async def work(queue: Queue) -> int:
        shown = await queue_ops.show(queue, args.id, body=args.body)
        if args.json:
            print(json.dumps(queue_ops.record_to_json(shown.record), indent=2, ensure_ascii=True))
            return 0
        if args.body and shown.body is not None:
            # A person reads it: no escape sequence in the message may reach the terminal.
            if sys.stdout.isatty():
                text = shown.body.decode("utf-8", "replace").replace("\r\n", "\n")
                print(visible(text, keep_newlines=True), end="")
                return 0
            sys.stdout.flush()
            sys.stdout.buffer.write(shown.body)  # piped: the message as stored, byte for byte
            sys.stdout.buffer.flush()
            return 0
        _print_record(queue_ops.record_to_json(shown.record), shown.body)
        return 0

    return _run(args, work)


def _print_record(data: dict[str, Any], headers: bytes | None) -> None:
    """The record in text; every value that came from a client (addresses, ENVID, ORCPT, HELO, replies,
    headers) is passed through ``visible``: an escape sequence in it is printed, never obeyed."""
    data = _visible_values(data)
    client = data["client"]
    print(f"id:        {data['id']}  ({data['status']})")
    print(f"arrived:   {data['arrived_at']}  size={data['size']}  sha256={data['body_sha256']}")
    print(
        f"sender:    <{data['sender']}>  body={data['body_type']}  smtputf8={data['smtputf8']}  "
        f"ret={data['ret']}  envid={data['envid']}"
    )
    print(
        f"client:    {client['ip']}  helo={client['helo']}  proto={client['protocol']}  "
        f"tls={client['tls']}  user={client['auth_user']}"
    )
    if client.get("mailauth"):
        print(f"mailauth:  {client['mailauth']}")
    if data["done_at"]:
        print(f"done:      {data['done_at']}")
    for r in data["recipients"]:
        print(
            f"rcpt:      <{r['address']}>  {r['state']}  attempts={r['attempts']}  "
            f"next={r['next_attempt_at']}  notify={r['notify']}  orcpt={r['orcpt']}"
        )
        if r["last_reply"]:
            print(f"           last reply: {r['last_reply']}")
    if headers is None:
        print("body:      purged (retention)")
        return
    print()
    print(visible(headers.decode("utf-8", "replace").replace("\r\n", "\n"), keep_newlines=True), end="")


def _visible_values(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {k: _visible_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_values(v) for v in value]
    return value


def _target(args: argparse.Namespace) -> QueueFilter | str | None:
    if args.all == (args.id is not None):
        return None
    return QueueFilter() if args.all else str(args.id)


def _confirm(args: argparse.Namespace, what: str) -> bool:
    """Deleting needs --yes, or a "y" typed on a terminal: there is no undo and no bounce."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("postier queue: refusing to delete without --yes (no terminal to ask on)", file=sys.stderr)
        return False
    answer = input(f"Delete {what}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _action(action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        target = _target(args)
        if target is None:
            print(f"postier queue {action.value}: give one queue ID or --all", file=sys.stderr)
            return 2
        if action is Action.DELETE:
            what = "EVERY message in the queue" if args.all else f"message {args.id}"
            if not _confirm(args, what):
                return 1

        async def work(queue: Queue) -> int:
            count = await queue_ops.act(queue, action, target)
            noun = "recipient" if action is Action.RETRY else "message"
            print(f"{action.value}: {count} {noun}{'s' if count != 1 else ''}")
            return 0

        return _run(args, work)

    return handler


def _stats(args: argparse.Namespace) -> int:
    async def work(queue: Queue) -> int:
        data = queue_ops.stats_to_json(await queue.stats())
        if args.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        print("messages: " + "  ".join(f"{k}={v}" for k, v in data["messages"].items()))
        print("recipients: " + "  ".join(f"{k}={v}" for k, v in data["recipients"].items()))
        heads = [f"{b}m" for b in AGE_BUCKETS_MIN] + [f"{AGE_BUCKETS_MIN[-1]}m+"]
        width = max([20, *(len(d) for d in data["by_domain"])])
        print(f"{'pending by domain':>{width}} {'T':>6}" + "".join(f"{h:>7}" for h in heads))
        totals = [sum(col) for col in zip(*data["by_domain"].values(), strict=False)] or [0] * len(heads)
        for name, counts in [("TOTAL", totals), *data["by_domain"].items()]:
            print(f"{name:>{width}} {sum(counts):>6}" + "".join(f"{c:>7}" for c in counts))
        leases = await queue_ops.node_leases(queue)
        if leases is not None:
            print("delivering by node: " + ("  ".join(f"{k}={v}" for k, v in sorted(leases.items())) or "-"))
        return 0

    return _run(args, work)


def _migrate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        before, after = asyncio.run(queue_ops.migrate(config))
    except ConfigError as exc:
        print(f"postier queue: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except QueueError as exc:
        print(f"postier queue: {exc}", file=sys.stderr)
        return 1
    word = "already at" if before == after else f"migrated from version {before} to"
    print(f"queue schema {config.queue.schema}: {word} version {after}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``queue`` and its subcommands to the ``postier`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", help="data directory (default: from --config, else var)")
    common.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (its data_dir, or its PostgreSQL queue)"
    )
    queue = subparsers.add_parser("queue", help="list, show and act on queued messages")
    sub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", parents=[common], help="list messages (oldest first)")
    p.add_argument("--status", choices=[s.value for s in MessageStatus])
    p.add_argument("--domain", help="with a recipient at this domain")
    p.add_argument("--sender", help='envelope sender ("" for <>)')
    p.add_argument("--older-than", type=_duration, metavar="AGE", help="queued longer than AGE (30m, 2h, 3d)")
    p.add_argument("--error", metavar="TEXT", help="a recipient's last reply contains TEXT")
    p.add_argument("--limit", type=int, default=1000, help="at most N messages (0: all); default 1000")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = sub.add_parser("show", parents=[common], help="envelope, recipients, last replies and headers")
    p.add_argument("id", metavar="ID")
    p.add_argument("--body", action="store_true", help="print the whole message, as stored")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show)

    helps = {
        Action.RETRY: "make pending recipients due now",
        Action.HOLD: "keep messages from delivery until released",
        Action.RELEASE: "let held messages be delivered again",
        Action.DELETE: "remove messages without a bounce",
    }
    for action, text in helps.items():
        p = sub.add_parser(action.value, parents=[common], help=text)
        p.add_argument("id", metavar="ID", nargs="?")
        p.add_argument("--all", action="store_true", help="every message in the queue")
        if action is Action.DELETE:
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=_action(action))

    p = sub.add_parser("migrate", help="create or upgrade a PostgreSQL queue's tables (versioned)")
    p.add_argument("--config", metavar="FILE", required=True, help="TOML configuration naming the database")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("stats", parents=[common], help="counts by status, destination domain and age")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)
