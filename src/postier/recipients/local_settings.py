"""Checks of the ``[local]`` settings that need the list of local domains (``relay.local_domains``).

Each failure is a ``ConfigError`` naming its key, raised when ``LocalDirectory`` is built: at start
(``postier serve`` stops with the message) and by ``postier check-config``.
"""

from __future__ import annotations

from collections.abc import Mapping

from postier.config import parse_hostport
from postier.mail.address import Address, parse_mailbox
from postier.mail.domain import normalize_domain
from postier.mail.errors import AddressError, ConfigError

__all__ = ["check_template", "config_address", "lmtp_domains", "local_domain_key"]


def config_address(text: str, key: str) -> Address:
    """An address given in the configuration (``local.postmaster``, a catch-all); no literals."""
    try:
        address = parse_mailbox(text.strip(), allow_utf8=True)
    except AddressError:
        raise ConfigError(key, f"not an address: {text!r}") from None
    if address.is_literal:
        raise ConfigError(key, f"address literals are not allowed: {text!r}")
    return address


def local_domain_key(local: frozenset[str], domain: str, key: str) -> str:
    """``domain`` as its A-label, which must be one of the local domains."""
    try:
        normalized = normalize_domain(domain)
    except ValueError:
        normalized = ""
    if normalized not in local:
        raise ConfigError(f"{key}.{domain}", "not one of relay.local_domains")
    return normalized


def lmtp_domains(local: frozenset[str], lmtp: Mapping[str, str]) -> frozenset[str]:
    """The local domains delivered by LMTP (``local.lmtp``), each server checked: ``unix:`` and an
    absolute path, or ``host[:port]`` (port 24 by default, RFC 2033 §5)."""
    domains: set[str] = set()
    for domain, server in lmtp.items():
        domains.add(local_domain_key(local, domain, "local.lmtp"))
        key = f"local.lmtp.{domain}"
        if server.startswith("unix:"):
            if not server.removeprefix("unix:").startswith("/"):
                raise ConfigError(key, f"{server!r}: a unix socket needs an absolute path")
            continue
        try:
            host, _ = parse_hostport(server, default_port=24)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if not host:
            raise ConfigError(key, f"{server!r}: expected host:port or unix:/path")
    return frozenset(domains)


def check_template(template: str) -> str:
    """``local.mailbox_path``: only ``{domain}`` and ``{user}``, and ``{user}`` is required."""
    try:
        template.format(domain="d", user="u")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("local.mailbox_path", f"only {{domain}} and {{user}} may be used: {exc}") from None
    if "{user}" not in template:
        raise ConfigError("local.mailbox_path", "must contain {user}")
    return template
