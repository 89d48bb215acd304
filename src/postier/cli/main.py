"""The ``postier`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="postier", description="Postier mail transfer agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the server")
    args = parser.parse_args(argv)
    print(f"postier {args.command}: not built yet", file=sys.stderr)
    return 1
