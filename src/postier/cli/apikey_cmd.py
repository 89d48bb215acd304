"""``postier api-key add NAME [--scope send,read,admin] | list | remove NAME``: keys of the HTTP API
(docs/api.md). ``add`` prints the secret once; only its hash is stored (control/apikeys.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from postier.config import load_config
from postier.control.apikeys import ApiKeyError, ApiKeyStore, check_scopes, keys_path
from postier.mail.errors import PostierError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("api-key", help="keys of the HTTP API: add, list, remove")
    sub = keys.add_subparsers(dest="apikey_command", required=True)
    add = sub.add_parser("add", help="make a key and print its secret (shown only this once)")
    add.add_argument("name", help="the key's name: lowercase letters, digits and '-'")
    add.add_argument(
        "--scope", default="send,read", help="comma-separated: send, read, admin (default send,read)"
    )
    listing = sub.add_parser("list", help="the keys: name, scopes, when made")
    remove = sub.add_parser("remove", help="remove a key: requests with it are refused at once")
    remove.add_argument("name")
    for p in (add, listing, remove):
        p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file (for data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="the server's data directory (default: var)")
    add.set_defaults(func=_add)
    listing.set_defaults(func=_list)
    remove.set_defaults(func=_remove)


def _store(args: argparse.Namespace) -> ApiKeyStore:
    if args.data_dir:
        return ApiKeyStore(keys_path(args.data_dir))
    data_dir = load_config(args.config).server.data_dir if args.config else "var"
    return ApiKeyStore(keys_path(Path(data_dir)))


def _fail(exc: Exception, code: int) -> int:
    print(f"postier api-key: {exc}", file=sys.stderr)
    return code


def _add(args: argparse.Namespace) -> int:
    try:
        scopes = check_scopes(args.scope)
        secret = _store(args).add(args.name, scopes)
    except ApiKeyError as exc:
        return _fail(exc, 2)
    except (OSError, PostierError) as exc:
        return _fail(exc, 1)
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        keys = _store(args).list()
    except (OSError, PostierError) as exc:
        return _fail(exc, 1)
    for key in keys:
        print(f"{key.name}\t{','.join(sorted(key.scopes))}\t{key.created_at}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        removed = _store(args).remove(args.name)
    except (OSError, PostierError) as exc:
        return _fail(exc, 1)
    if not removed:
        return _fail(ApiKeyError(f"no key named {args.name!r}"), 1)
    return 0
