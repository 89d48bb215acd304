"""Which configuration keys a running server can change on SIGHUP, and which need a restart.

Theory of operation: a reload reads the whole file again and validates it exactly like a start. Then
``plan_reload(running, new)`` compares the two, key by key. Keys in ``LIVE`` take their new value;
any other key that changed is reported as needing a restart and keeps its running value, so the
effective configuration is always one the process really runs with. The application then builds the
objects for the live keys (relay policy, rate limits, AUTH throttle, TLS context, log handler, and
the delivery side: routing table, resolver, couriers, scheduler settings, local directory) and swaps
them in at once; new sessions and new delivery attempts use them.

Live: what a new session reads from the server each time (relay policy, rate limits, AUTH throttle
and password checks, connection limits, timeouts), the TLS pair, the log, the shutdown grace, and
what delivery takes per claim: ``[[route]]`` and the smarthost keys (password files are read again),
``[delivery]``, ``[dns]``, ``[local]``, ``[dkim]`` (the keys are read and checked again),
``[mailauth]`` (but its DMARC report keys need a restart), ``[antispam]`` and ``[[milter]]`` (the
greylisting store and the pregreet memory are kept).
Restart: what is bound into a listening socket or an open store — listener addresses and modes,
``server.hostname`` and the message limits (baked into each listener's engine settings),
``server.data_dir``, ``[queue]``, ``[metrics]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from postier.config.antispam import AntispamConfig
from postier.config.model import Config, DeliveryConfig, DkimConfig, DnsConfig, LocalConfig, MailauthConfig

__all__ = ["LIVE", "LIVE_TABLES", "ReloadPlan", "plan_reload"]

LIVE: dict[str, frozenset[str]] = {
    "server": frozenset(
        {
            "max_connections",
            "max_connections_per_ip",
            "command_timeout_s",
            "data_timeout_s",
            "shutdown_grace_s",
        }
    ),
    "tls": frozenset({"cert", "key"}),
    "relay": frozenset(
        {
            "local_domains",
            "trusted_networks",
            "relay_domains",
            "relay_recipients",
            "smarthost",
            "smarthost_tls",
            "smarthost_implicit_tls",
            "smarthost_username",
            "smarthost_password_file",
            "smarthost_auth",
        }
    ),
    "auth": frozenset(
        {
            "max_failures",
            "window_s",
            "lockout_s",
            "max_concurrent_verifies",
            "max_waiting_verifies",
            "max_account_delay_s",
        }
    ),
    "limits": frozenset(
        {
            "connections_per_minute_per_ip",
            "messages_per_hour_per_ip",
            "messages_per_hour_per_user",
            "exempt_trusted_networks",
        }
    ),
    "log": frozenset({"level", "format"}),
    "delivery": frozenset(DeliveryConfig.__struct_fields__),
    "dns": frozenset(DnsConfig.__struct_fields__),
    "local": frozenset(LocalConfig.__struct_fields__),
    "dkim": frozenset(DkimConfig.__struct_fields__),
    "mailauth": frozenset(MailauthConfig.__struct_fields__)
    - {"dmarc_reports", "dmarc_report_interval_s", "dmarc_report_from", "dmarc_report_org"},
    "antispam": frozenset(AntispamConfig.__struct_fields__),
}
"""Per section, the keys a reload applies. Every other key needs a restart."""

LIVE_TABLES = frozenset({"routes", "milters"})
"""Array-of-tables sections a reload applies as a whole (``[[route]]``); ``[[listener]]`` needs a restart."""

# Config field name → the name in the file.
_FILE_NAMES = {"listeners": "listener", "routes": "route", "milters": "milter"}


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    effective: Config
    """The new configuration, with every restart-only key kept at its running value."""
    applied: tuple[str, ...]
    """Live keys whose value changed ("relay.local_domains"; "route" for the whole ``[[route]]`` list)."""
    needs_restart: tuple[str, ...]
    """Keys that changed but keep their running value until a restart ("listener", "server.data_dir")."""


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Split the differences between ``running`` and ``new`` into live and restart-only keys."""
    applied: list[str] = []
    restart: list[str] = []
    sections: dict[str, object] = {}
    for name in running.__struct_fields__:
        old_value, new_value = getattr(running, name), getattr(new, name)
        if old_value == new_value:
            continue
        file_name = _FILE_NAMES.get(name, name)
        if not isinstance(old_value, msgspec.Struct):  # [[listener]] and [[route]]: whole lists
            if name in LIVE_TABLES:
                applied.append(file_name)
            else:
                restart.append(file_name)
                sections[name] = old_value
            continue
        live = LIVE.get(name, frozenset())
        kept: dict[str, object] = {}
        for key in old_value.__struct_fields__:
            before, after = getattr(old_value, key), getattr(new_value, key)
            if before == after:
                continue
            if key in live:
                applied.append(f"{file_name}.{key}")
            else:
                restart.append(f"{file_name}.{key}")
                kept[key] = before
        if kept:
            sections[name] = msgspec.structs.replace(new_value, **kept)
    effective = msgspec.structs.replace(new, **sections) if sections else new
    return ReloadPlan(effective, tuple(applied), tuple(restart))
