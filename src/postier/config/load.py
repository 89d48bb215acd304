"""TOML file → validated ``Config``. Unknown keys and wrong types are a ``ConfigError`` naming the key."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from postier.config.api import EVENT_TYPES
from postier.config.dkim import check_dkim
from postier.config.mailauth import check_mailauth
from postier.config.model import Config
from postier.mail.errors import ConfigError

__all__ = ["load_config", "parse_config", "parse_hostport"]


def load_config(path: str | Path | None) -> Config:
    """Read ``path`` (None: the embedded defaults) and validate it."""
    if path is None:
        return parse_config({})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> Config:
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        path, message = _split_msgspec_error(str(exc))
        raise ConfigError(path, message) from None
    _check(config)
    return _resolve_workers(config)


def _resolve_workers(config: Config) -> Config:
    """``server.workers = 0``: one per CPU core this process may run on (its affinity, at most 31),
    or 1 when metrics are served (one process's counters would pass for all)."""
    if config.server.workers != 0:
        return config
    cores = 1 if config.metrics.address else min(len(os.sched_getaffinity(0)), 31)
    return msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, workers=cores))


def _split_msgspec_error(text: str) -> tuple[str, str]:
    # msgspec says e.g. "Object contains unknown field `hostnme` - at `$.server`".
    message, _, where = text.partition(" - at `")
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    if "unknown field `" in message:
        key = message.split("unknown field `", 1)[1].split("`", 1)[0]
        return (f"{path}.{key}" if path else key), "unknown key"
    return path, message


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``"127.0.0.1:25"``, ``"[::1]:25"``, ``"mx.example:587"`` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:
        close = text.index("]")
        host, rest = text[1:close], text[close + 1 :]
        sep, port = (":", rest[1:]) if rest.startswith(":") else ("", "")
    elif not sep or ":" in host:
        host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError(f"{text!r} has no port (write host:port)")
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has an invalid port")
    return host, int(port)


def _check(config: Config) -> None:
    if not config.listeners:
        raise ConfigError("listener", "at least one [[listener]] is needed")
    for i, listener in enumerate(config.listeners):
        try:
            parse_hostport(listener.address)
        except ValueError as exc:
            raise ConfigError(f"listener[{i}].address", str(exc)) from None
    for i, net in enumerate(config.relay.trusted_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"relay.trusted_networks[{i}]", f"{net!r} is not a CIDR network") from None
    for i, ns in enumerate(config.dns.nameservers):
        try:
            parse_hostport(ns, default_port=53)
        except ValueError as exc:
            raise ConfigError(f"dns.nameservers[{i}]", str(exc)) from None
    if config.relay.smarthost:
        try:
            parse_hostport(config.relay.smarthost, default_port=25)
        except ValueError as exc:
            raise ConfigError("relay.smarthost", str(exc)) from None
    if config.metrics.address:
        try:
            parse_hostport(config.metrics.address)
        except ValueError as exc:
            raise ConfigError("metrics.address", str(exc)) from None
    _check_api(config)
    if not 0 <= config.server.workers <= 31:  # with the primary, 32 processes: 32 id shards (queue/ids.py)
        raise ConfigError("server.workers", "must be between 1 and 31, or 0 (one per core)")
    if config.server.workers > 1 and config.metrics.address:
        raise ConfigError(
            "metrics.address", "needs server.workers = 1 (metrics over several workers are not built yet)"
        )
    if config.server.max_recipients < 100:
        raise ConfigError("server.max_recipients", "RFC 5321 §4.5.3.1.8 requires at least 100")
    for key in ("connections_per_minute_per_ip", "messages_per_hour_per_ip", "messages_per_hour_per_user"):
        if getattr(config.limits, key) < 0:
            raise ConfigError(f"limits.{key}", "must be 0 (off) or positive")
    if config.auth.max_failures < 1:
        raise ConfigError("auth.max_failures", "must be at least 1")
    if config.auth.max_concurrent_verifies < 1:
        raise ConfigError("auth.max_concurrent_verifies", "must be at least 1")
    if config.delivery.mx_address_limit < 1 or config.delivery.mx_session_limit < 1:
        raise ConfigError("delivery", "mx_address_limit and mx_session_limit must be at least 1")
    if config.auth.max_waiting_verifies < 0 or config.auth.max_account_delay_s < 0:
        raise ConfigError("auth", "max_waiting_verifies and max_account_delay_s must not be negative")
    if config.auth.window_s <= 0 or config.auth.lockout_s < 0:
        raise ConfigError("auth", "window_s must be positive and lockout_s not negative")
    _check_queue(config)
    if config.server.max_line_octets < 1000:
        raise ConfigError("server.max_line_octets", "RFC 5321 §4.5.3.1.6 requires at least 1000")
    if config.server.max_message_bytes < 1024:
        raise ConfigError("server.max_message_bytes", "must be at least 1024")
    if (config.tls.cert == "") != (config.tls.key == ""):
        raise ConfigError("tls", "give both cert and key, or neither")
    _check_delivery(config)
    _check_session_bounds(config)
    check_dkim(config.dkim)
    check_mailauth(config.mailauth)
    _check_antispam(config)
    _check_relay_domains(config)


def _check_relay_domains(config: Config) -> None:
    relay = config.relay
    domains = {d.lower().rstrip(".") for d in relay.relay_domains}
    for domain in relay.relay_recipients:
        if domain.lower().rstrip(".") not in domains:
            raise ConfigError(f"relay.relay_recipients.{domain}", "not one of relay.relay_domains")
    local = {d.lower().rstrip(".") for d in relay.local_domains}
    for domain in sorted(domains & local):
        raise ConfigError("relay.relay_domains", f"{domain} is also a local domain")


def _check_antispam(config: Config) -> None:
    """[antispam] networks, zones and URLs; [[milter]] addresses."""
    a = config.antispam
    for i, net in enumerate(a.greylist_exempt_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"antispam.greylist_exempt_networks[{i}]", f"{net!r} is not a CIDR network"
            ) from None
    for i, zone in enumerate(a.dnsbl):
        if not zone.zone.strip("."):
            raise ConfigError(f"antispam.dnsbl[{i}].zone", "must not be empty")
        for code in zone.codes:
            try:
                ipaddress.IPv4Address(code)
            except ValueError:
                raise ConfigError(f"antispam.dnsbl[{i}].codes", f"{code!r} is not an IPv4 address") from None
    if not (0 <= a.greylist_ipv4_prefix <= 32 and 0 <= a.greylist_ipv6_prefix <= 128):
        raise ConfigError("antispam.greylist_ipv4_prefix", "prefix lengths: 0-32 (IPv4), 0-128 (IPv6)")
    if a.rspamd_url and not a.rspamd_url.startswith("http://"):
        raise ConfigError("antispam.rspamd_url", "must be http://host:port")
    if a.rspamd_url:
        try:
            parse_hostport(a.rspamd_url.removeprefix("http://").split("/", 1)[0], default_port=11333)
        except ValueError as exc:
            raise ConfigError("antispam.rspamd_url", str(exc)) from None
    for i, milter in enumerate(config.milters):
        if milter.address.startswith("unix:"):
            if not milter.address.removeprefix("unix:"):
                raise ConfigError(f"milter[{i}].address", "unix: needs a socket path")
            continue
        try:
            parse_hostport(milter.address.removeprefix("inet:"))
        except ValueError as exc:
            raise ConfigError(f"milter[{i}].address", str(exc)) from None


def _check_api(config: Config) -> None:
    if config.api.address:
        try:
            parse_hostport(config.api.address)
        except ValueError as exc:
            raise ConfigError("api.address", str(exc)) from None
    for key in (
        "max_body_bytes",
        "memory_budget_bytes",
        "max_concurrent_requests",
        "max_recipients",
        "page_size",
    ):
        if getattr(config.api, key) < 1:
            raise ConfigError(f"api.{key}", "must be at least 1")
    if config.api.request_timeout_s <= 0:
        raise ConfigError("api.request_timeout_s", "must be positive")
    for i, hook in enumerate(config.webhooks):
        if not hook.url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook[{i}].url", "must be an http: or https: URL")
        if not hook.secret and not hook.secret_file:
            raise ConfigError(f"webhook[{i}].secret", "a secret (or secret_file) is required")
        unknown = set(hook.events) - set(EVENT_TYPES)
        if unknown:
            raise ConfigError(f"webhook[{i}].events", f"unknown: {', '.join(sorted(unknown))}")
        if hook.batch_size < 1 or hook.timeout_s <= 0:
            raise ConfigError(f"webhook[{i}]", "batch_size and timeout_s must be positive")


def _check_session_bounds(config: Config) -> None:
    s = config.server
    for key in ("hold_message_bytes", "memory_budget_bytes", "bdat_min_chunk_bytes", "bdat_max_small_chunks"):
        if getattr(s, key) < 0:
            raise ConfigError(f"server.{key}", "must not be negative")
    if s.min_data_bytes_per_s < 0 or s.error_delay_s < 0:
        raise ConfigError("server", "min_data_bytes_per_s and error_delay_s must be 0 (off) or positive")
    if s.max_header_bytes < 1024:
        raise ConfigError("server.max_header_bytes", "must be at least 1024")


def _check_queue(config: Config) -> None:
    q = config.queue
    if q.keep_body_s > q.keep_history_s:
        raise ConfigError("queue.keep_body_s", "must not be longer than queue.keep_history_s")
    if q.purge_interval_s <= 0:
        raise ConfigError("queue.purge_interval_s", "must be positive")
    if q.commit_batch_max < 1:
        raise ConfigError("queue.commit_batch_max", "must be at least 1")
    if q.lease_s <= 0:
        raise ConfigError("queue.lease_s", "must be positive")
    if q.backend != "postgres":
        return
    if not q.dsn:
        raise ConfigError("queue.dsn", 'required with backend = "postgres"')
    if q.pool_size < 2:
        raise ConfigError("queue.pool_size", "must be at least 2")
    if q.timeout_s <= 0:
        raise ConfigError("queue.timeout_s", "must be positive")
    if not q.schema.isidentifier():
        raise ConfigError("queue.schema", "must be a plain SQL identifier (letters, digits, _)")


def _check_delivery(config: Config) -> None:
    """[delivery] numbers and [[route]] hosts (password files are read when the server starts)."""
    d = config.delivery
    if d.retry_base_s <= 0 or d.retry_cap_s < d.retry_base_s:
        raise ConfigError("delivery.retry_base_s", "must be positive and not above delivery.retry_cap_s")
    if d.max_age_s <= 0:
        raise ConfigError("delivery.max_age_s", "must be positive")
    if d.delay_notice_s < 0:
        raise ConfigError("delivery.delay_notice_s", "must be 0 (off) or positive")
    for key in ("max_connections", "max_connections_per_destination", "max_recipients_per_transaction"):
        if getattr(d, key) < 1:
            raise ConfigError(f"delivery.{key}", "must be at least 1")
    for i, route in enumerate(config.routes):
        try:
            parse_hostport(route.host, default_port=25)
        except ValueError as exc:
            raise ConfigError(f"route[{i}].host", str(exc)) from None
        if route.username and not route.password_file:
            raise ConfigError(f"route[{i}].password_file", "a user name needs a password file")
    if config.relay.smarthost_username and not config.relay.smarthost_password_file:
        raise ConfigError("relay.smarthost_password_file", "a user name needs a password file")
