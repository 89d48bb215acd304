"""``postier suppress list | add ADDRESS [--expires 30d] [--reason R] | remove ADDRESS``: the
suppression list (checks/suppression.py), also while the server runs."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from postier.checks.suppression import SuppressionList, suppressions_path
from postier.config import load_config
from postier.mail.errors import PostierError

__all__ = ["register"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h, 3d)")
    return float(match[1]) * _UNITS[match[2]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = subparsers.add_parser("suppress", help="the suppression list: list, add, remove")
    sub = top.add_subparsers(dest="suppress_command", required=True)
    listing = sub.add_parser("list", help="suppressed addresses, newest first")
    add = sub.add_parser("add", help="suppress an address")
    add.add_argument("address")
    add.add_argument("--expires", type=_duration, metavar="DURATION", help="e.g. 30d (default: never)")
    add.add_argument("--reason", default="manual", help="default: manual")
    remove = sub.add_parser("remove", help="send to an address again")
    remove.add_argument("address")
    for p in (listing, add, remove):
        p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file (for data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="the server's data directory (default: var)")
    listing.set_defaults(func=_list)
    add.set_defaults(func=_add)
    remove.set_defaults(func=_remove)


def _store(args: argparse.Namespace) -> SuppressionList:
    if args.data_dir:
        return SuppressionList(suppressions_path(args.data_dir))
    data_dir = load_config(args.config).server.data_dir if args.config else "var"
    return SuppressionList(suppressions_path(Path(data_dir)))


def _when(at: float | None) -> str:
    return "never" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _run(args: argparse.Namespace, work: str) -> int:
    try:
        store = _store(args)
        try:
            if work == "list":
                for s in store.list(100_000):
                    print(
                        f"{s.address}\t{s.reason}\tsince {_when(s.created_at)}\tuntil {_when(s.expires_at)}"
                    )
            elif work == "add":
                until = None if args.expires is None else time.time() + args.expires
                store.add(args.address, args.reason, "cli", until)
            elif not store.remove(args.address):
                print(f"postier suppress: {args.address} is not suppressed", file=sys.stderr)
                return 1
        finally:
            store.close()
    except (OSError, PostierError) as exc:
        print(f"postier suppress: {exc}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    return _run(args, "list")


def _add(args: argparse.Namespace) -> int:
    return _run(args, "add")


def _remove(args: argparse.Namespace) -> int:
    return _run(args, "remove")
