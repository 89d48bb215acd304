"""``postier user …``: manage the accounts that may AUTH and send through submission.

A running server sees the change at the next AUTH: it re-reads the store when the file changes.
Passwords are never taken from the command line (other users can read it in ``ps``): on a terminal they
are asked twice without echo; otherwise the first line of standard input is the password, so scripts can
pipe it: ``printf '%s\\n' "$PW" | postier user add alice@example.org``.

Exit codes: 0 done, 1 the operation failed (unknown user, user exists, passwords differ, empty or
forbidden password, unreadable store), 2 usage (a malformed address or sender, a bad configuration).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postier.config import load_config
from postier.mail.errors import ConfigError
from postier.users import InvalidAddressError, User, UserStore, UserStoreError, normalize_login, users_path

__all__ = ["register"]


class _Failed(Exception):
    """The command cannot go on; the message is for the operator (never holds a password)."""


def _store(args: argparse.Namespace) -> UserStore:
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif args.config:
        data_dir = Path(load_config(args.config).server.data_dir)
    else:
        data_dir = Path("var")
    return UserStore(users_path(data_dir))


def _read_password() -> str:
    """Twice without echo on a terminal; else the first line of stdin (its line ending removed)."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first and getpass.getpass("Repeat password: ") != first:
            raise _Failed("passwords differ")
        return first
    return sys.stdin.readline().removesuffix("\n").removesuffix("\r")


def _run(name: str, work: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the store's errors to messages and exit codes, the same way for every subcommand."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return work(args)
        except (ConfigError, InvalidAddressError) as exc:
            print(f"postier user {name}: {exc}", file=sys.stderr)
            return 2
        except (UserStoreError, _Failed) as exc:
            print(f"postier user {name}: {exc}", file=sys.stderr)
            return 1

    return handler


def _add(args: argparse.Namespace) -> int:
    store = _store(args)
    existing = store.get(args.address)
    if existing is not None:  # say so before asking for a password that would be thrown away
        raise _Failed(f"user exists: {existing.address}")
    user = store.add(args.address, _read_password(), senders=args.sender)
    print(f"added {user.address} (may send as {', '.join(user.senders)})")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    store = _store(args)
    user = store.get(args.address)
    if user is None:
        raise _Failed(f"no such user: {args.address}")
    store.set_password(user.address, _read_password())
    print(f"password changed for {user.address}")
    return 0


def _del(args: argparse.Namespace) -> int:
    _store(args).delete(args.address)
    print(f"deleted {normalize_login(args.address)}")
    return 0


def _senders(args: argparse.Namespace) -> int:
    user = _store(args).set_senders(args.address, args.sender)
    print(f"{user.address} may send as {', '.join(user.senders)}")
    return 0


def _enable(disabled: bool) -> Callable[[argparse.Namespace], int]:
    def work(args: argparse.Namespace) -> int:
        user = _store(args).set_disabled(args.address, disabled)
        print(f"{'disabled' if disabled else 'enabled'} {user.address}")
        return 0

    return work


def _to_json(user: User) -> dict[str, Any]:
    """What ``list --json`` shows: everything but the hash."""
    return {
        "address": user.address,
        "senders": list(user.senders),
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
    }


def _list(args: argparse.Namespace) -> int:
    users = _store(args).list()
    if args.json:
        print(json.dumps([_to_json(u) for u in users], indent=2, ensure_ascii=False))
        return 0
    width = max([7, *(len(u.address) for u in users)])
    print(f"{'ADDRESS':{width}}  {'STATE':8}  {'UPDATED':20}  SENDERS")
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        updated = u.updated_at.strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{u.address:{width}}  {state:8}  {updated:20}  {' '.join(u.senders)}")
    print(f"-- {len(users)} user{'s' if len(users) != 1 else ''}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``user`` and its subcommands to the ``postier`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", help="data directory (default: from --config, else var)")
    common.add_argument("--config", metavar="FILE", help="TOML configuration file to read data_dir from")
    user = subparsers.add_parser("user", help="add, change, delete and list the users who may AUTH")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    sender_help = "an address, or @domain for any address there; repeat for more"

    p = sub.add_parser("add", parents=[common], help="add a user (password from a prompt or stdin)")
    p.add_argument("address", metavar="ADDRESS", help="the login name, an email address")
    p.add_argument("--sender", action="append", metavar="ADDR", help=f"{sender_help} (default: ADDRESS)")
    p.set_defaults(func=_run("add", _add))

    p = sub.add_parser("passwd", parents=[common], help="change a user's password")
    p.add_argument("address", metavar="ADDRESS")
    p.set_defaults(func=_run("passwd", _passwd))

    p = sub.add_parser("del", parents=[common], help="delete a user")
    p.add_argument("address", metavar="ADDRESS")
    p.set_defaults(func=_run("del", _del))

    p = sub.add_parser("senders", parents=[common], help="replace the addresses a user may send as")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--sender", action="append", required=True, metavar="ADDR", help=sender_help)
    p.set_defaults(func=_run("senders", _senders))

    for name, disabled in (("disable", True), ("enable", False)):
        p = sub.add_parser(name, parents=[common], help=f"{name} logins and sending, keeping the password")
        p.add_argument("address", metavar="ADDRESS")
        p.set_defaults(func=_run(name, _enable(disabled)))

    p = sub.add_parser("list", parents=[common], help="list users (never their hashes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run("list", _list))
