"""``postier dkim keygen|list|rotate``: DKIM keys for the domains Postier signs for (docs/dkim.md).

- ``keygen DOMAIN``: a new private key under ``data_dir/dkim/DOMAIN/SELECTOR.pem`` (0600, written
  atomically) and the TXT record to publish. The server signs with it once that record is seen.
- ``list``: every key with its state, its record looked up live through ``[dns] nameservers``, and
  what to do (publish, keep published until …, remove).
- ``rotate DOMAIN``: a next key per algorithm the domain signs with, under a dated selector; it takes
  over once its record is seen, and the old key's record stays published for
  ``[dkim] rotation_grace_s`` after that (``list`` gives the date), then can be removed.

Exit codes: 0 done, 1 the operation failed (a selector taken, a rotation already waiting),
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from postier.config import Config, load_config, parse_hostport
from postier.dns import DnsPythonResolver
from postier.mail.domain import normalize_domain
from postier.mail.errors import ConfigError
from postier.mailauth.dkim import key_root, statuses
from postier.mailauth.dkim.keys import Algorithm, generate_key, zone_line
from postier.mailauth.dkim.keystore import KeyFile, write_key
from postier.mailauth.dkim.table import State, Status

__all__ = ["register"]


class _Failed(Exception):
    """The command cannot go on; the message is for the operator."""


def _config(args: argparse.Namespace) -> tuple[Config, Path]:
    config = load_config(args.config) if args.config else load_config(None)
    data_dir = Path(args.data_dir) if args.data_dir else Path(config.server.data_dir)
    return config, data_dir


def _resolver(config: Config) -> DnsPythonResolver:
    servers = [parse_hostport(ns, default_port=53) for ns in config.dns.nameservers]
    return DnsPythonResolver(servers or None)


def _selector(root: Path, domain: str, algorithm: Algorithm, now: datetime) -> str:
    """``ed20261207`` / ``rsa20261207``; a letter added when that one is taken the same day."""
    base = ("ed" if algorithm == "ed25519" else "rsa") + now.strftime("%Y%m%d")
    suffixes: list[str] = ["", *"bcdefghijklmnopqrstuvwxyz"]
    for suffix in suffixes:
        if not (root / domain / f"{base}{suffix}.pem").exists():
            return base + suffix
    raise _Failed(f"too many keys made today for {domain}")


def _make(args: argparse.Namespace, domain: str, algorithm: Algorithm, selector: str | None) -> KeyFile:
    _, data_dir = _config(args)
    root, now = key_root(data_dir), datetime.now(UTC)
    selector = selector or _selector(root, domain, algorithm, now)
    try:
        return write_key(root, domain, selector, generate_key(algorithm, args.bits), now)
    except FileExistsError as exc:
        raise _Failed(str(exc)) from None


def _print_record(entry: KeyFile) -> None:
    print(f"made {entry.algorithm} key {entry.selector} for {entry.domain}: {entry.path}")
    print("publish this TXT record:")
    print(f"  {zone_line(entry.selector, entry.domain, entry.key)}")


def _keygen(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    entry = _make(args, normalize_domain(args.domain), args.algorithm, args.selector)
    _print_record(entry)
    every = int(config.dkim.check_interval_s)
    print(f"Postier signs with it once the record is seen in DNS (checked every {every} s and on SIGHUP).")
    return 0


async def _statuses(args: argparse.Namespace) -> tuple[list[Status], list[tuple[Path, str]]]:
    config, data_dir = _config(args)
    return await statuses(config.dkim, data_dir, _resolver(config), datetime.now(UTC))


def _row(status: Status) -> dict[str, str]:
    k = status.key
    record = status.lookup.published.value + (f" ({status.lookup.detail})" if status.lookup.detail else "")
    return {
        "domain": k.domain,
        "selector": k.selector,
        "algorithm": k.algorithm,
        "created": f"{k.created_at:%Y-%m-%d %H:%M}",
        "state": status.state.value,
        "record": record,
        "note": status.note,
        "file": str(k.path),
    }


def _list(args: argparse.Namespace) -> int:
    found, problems = asyncio.run(_statuses(args))
    rows = [_row(s) for s in found]
    if args.json:
        bad = [{"file": str(p), "problem": r} for p, r in problems]
        print(json.dumps({"keys": rows, "unreadable": bad}, indent=2))
        return 0
    if not rows and not problems:
        print("no DKIM keys (make one with: postier dkim keygen DOMAIN)")
    for row in rows:
        head = f"{row['domain']}  {row['selector']}  {row['algorithm']}  created {row['created']}"
        print(f"{head}  {row['state']}")
        print(f"    record: {row['record']}")
        if row["note"]:
            print(f"    {row['note']}")
    for path, reason in problems:
        print(f"unreadable: {path}: {reason}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    domain = normalize_domain(args.domain)
    found, _ = asyncio.run(_statuses(args))
    mine = [s for s in found if s.key.domain == domain]
    active = {s.key.algorithm: s for s in mine if s.state is State.ACTIVE}
    algorithms: list[Algorithm] = [args.algorithm] if args.algorithm else sorted(active)
    if not algorithms:
        raise _Failed(f"{domain} has no signing key to rotate (postier dkim keygen {domain})")
    waiting = [s for s in mine if s.state is State.NEXT and s.key.algorithm in algorithms]
    if waiting:
        names = ", ".join(s.key.selector for s in waiting)
        raise _Failed(f"a rotation is already waiting for its record: {names} (postier dkim list)")
    config, _ = _config(args)
    grace_days = config.dkim.rotation_grace_s / 86400
    for algorithm in algorithms:
        entry = _make(args, domain, algorithm, None)
        _print_record(entry)
        old = active.get(algorithm)
        if old is not None:
            print(
                f"{old.key.selector} signs until this record is seen; then keep its record "
                f"published {grace_days:g} more days (postier dkim list gives the date) and remove it."
            )
    return 0


def _run(name: str, work: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return work(args)
        except (ConfigError, ValueError) as exc:
            print(f"postier dkim {name}: {exc}", file=sys.stderr)
            return 2
        except (_Failed, OSError) as exc:
            print(f"postier dkim {name}: {exc}", file=sys.stderr)
            return 1

    return handler


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dkim`` and its subcommands to the ``postier`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", help="data directory (default: from --config, else var)")
    common.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    dkim = subparsers.add_parser("dkim", help="make, list and rotate DKIM signing keys")
    sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")

    p = sub.add_parser("keygen", parents=[common], help="make a key and print the DNS record to publish")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--selector", metavar="S", help="default: rsaYYYYMMDD or edYYYYMMDD")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa", help="default: rsa")
    p.add_argument("--bits", type=int, default=2048, metavar="N", help="RSA key size (default 2048)")
    p.set_defaults(func=_run("keygen", _keygen))

    p = sub.add_parser("list", parents=[common], help="keys, their state and their DNS records (live)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run("list", _list))

    p = sub.add_parser("rotate", parents=[common], help="make the next key of a domain (dated selector)")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), help="default: each algorithm that signs now")
    p.add_argument("--bits", type=int, default=2048, metavar="N", help="RSA key size (default 2048)")
    p.set_defaults(func=_run("rotate", _rotate))
