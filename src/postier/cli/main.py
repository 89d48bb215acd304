"""The ``postier`` command.

Exit codes, the same for every command (docs/operations.md, "Exit codes"): 0 success (for ``serve``:
stopped cleanly by SIGTERM/SIGINT); 1 the operation failed (``serve``: could not start, e.g. an
address already in use; ``send``: the message was refused); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from postier.cli.apikey_cmd import register as register_apikey
from postier.cli.dkim_cmd import register as register_dkim
from postier.cli.doctor_cmd import register as register_doctor
from postier.cli.explain_cmd import register as register_explain
from postier.cli.queue_cmd import register as register_queue
from postier.cli.send_cmd import register as register_send
from postier.cli.suppress_cmd import register as register_suppress
from postier.cli.tls_cmd import register as register_tls
from postier.cli.user_cmd import register as register_user
from postier.config import Config, load_config
from postier.mail.errors import ConfigError, PostierError
from postier.recipients.aliases import AliasesError

__all__ = ["main"]


EXIT_CODES = "exit status: 0 success, 1 the operation failed, 2 usage or configuration error"


def _load_for_serve(args: argparse.Namespace) -> Config:
    """The configuration file with the command line's --log-format and --log-level on top; read at
    start and again on each SIGHUP, so the flags keep winning after a reload."""
    config = load_config(args.config)
    log = config.log
    if args.log_format is not None:
        log = msgspec.structs.replace(log, format=args.log_format)
    if args.log_level is not None:
        log = msgspec.structs.replace(log, level=args.log_level)
    return msgspec.structs.replace(config, log=log)


def _serve(args: argparse.Namespace) -> int:
    from postier.observe import setup_logging
    from postier.supervisor import WORKER_ENV, run, run_worker

    def load() -> Config:
        return _load_for_serve(args)

    spec = os.environ.pop(WORKER_ENV, None)
    try:
        if spec is not None:  # a receiving worker started by the primary (postier/supervisor.py)
            from postier.api.service import api_service

            return run_worker(spec, load, services=[api_service])
        config = load()
    except ConfigError as exc:
        print(f"postier: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except (OSError, PostierError) as exc:  # a worker's queue that cannot open
        print(f"postier: cannot start: {exc}", file=sys.stderr)
        return 1
    setup_logging(config.log.level, config.log.format)
    try:
        from postier.api.service import api_service

        return run(config, load, _serve_args(args), allow_root=args.allow_root, services=[api_service])
    except ConfigError as exc:  # root without server.user nor --allow-root; an unknown user
        print(f"postier: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except (OSError, PostierError) as exc:  # a listener address in use, a queue that cannot open
        print(f"postier: cannot start: {exc}", file=sys.stderr)
        return 1


def _serve_args(args: argparse.Namespace) -> list[str]:
    """``serve`` and its options, as each worker process is started with them."""
    out = ["serve"]
    options = {"--config": args.config, "--log-format": args.log_format, "--log-level": args.log_level}
    for flag, value in options.items():
        if value is not None:
            out += [flag, value]
    return out


def _check_config(args: argparse.Namespace) -> int:
    from postier.delivery import delivery_settings, routes_from_config
    from postier.recipients.directory import check_local_config

    try:
        config = load_config(args.config)
        check_local_config(config)  # [local] and the aliases file, as at start
        routes_from_config(config)  # [[route]] and smarthost password files, as at start
        delivery_settings(config)  # delivery.postmaster and the limits
        _check_ca_file(config.delivery.ca_file)
    except (ConfigError, AliasesError) as exc:
        print(f"postier: invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.format(msgspec.json.encode(config)).decode())
    return 0


def _check_ca_file(ca_file: str) -> None:
    """``delivery.ca_file`` loads, as the courier will load it at start."""
    if not ca_file:
        return
    import ssl

    try:
        ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError("delivery.ca_file", f"cannot load {ca_file}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postier", description="Postier mail transfer agent")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the server (embedded defaults without --config)",
        description="Run the server until SIGTERM or SIGINT; SIGHUP reloads the configuration file "
        "and the TLS certificate (docs/operations.md, Reload).",
    )
    serve.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--log-format", choices=("kv", "json"), help="log line format; overrides [log] format")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="lowest level logged; overrides [log] level",
    )
    serve.add_argument(
        "--allow-root",
        action="store_true",
        help="run as root when [server] user is not set (otherwise refused: docs/security.md)",
    )
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a configuration and print the effective settings")
    check.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    check.set_defaults(func=_check_config)
    register_queue(sub)
    register_user(sub)
    register_explain(sub)
    register_send(sub)
    register_dkim(sub)
    register_tls(sub)
    register_apikey(sub)
    register_suppress(sub)
    register_doctor(sub)
    _finish_help(parser)
    return parser


def _finish_help(parser: argparse.ArgumentParser) -> None:
    """Every command's --help the same way: its one-line help as the description when it has none,
    and the exit codes at the end."""
    parser.epilog = parser.epilog or EXIT_CODES
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None and helps.get(name):
                text = str(helps[name])
                child.description = text[:1].upper() + text[1:]
            _finish_help(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
