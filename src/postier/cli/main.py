"""The ``postier`` command. Exit codes: 0 success, 1 operation failed, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import sys

import msgspec

from postier.cli.explain_cmd import register as register_explain
from postier.cli.queue_cmd import register as register_queue
from postier.cli.send_cmd import register as register_send
from postier.cli.user_cmd import register as register_user
from postier.config import load_config
from postier.mail.errors import ConfigError

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from postier.app import run
    from postier.observe import setup_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"postier: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    return run(config)


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"postier: invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.format(msgspec.json.encode(config)).decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postier", description="Postier mail transfer agent")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server (embedded defaults without --config)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a configuration and print the effective settings")
    check.add_argument("--config", metavar="FILE", help="TOML configuration file")
    check.set_defaults(func=_check_config)
    register_queue(sub)
    register_user(sub)
    register_explain(sub)
    register_send(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
