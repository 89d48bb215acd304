"""Which changed keys a SIGHUP applies and which wait for a restart (config/reloadable.py)."""

from __future__ import annotations

from typing import Any

import pytest

from postier.config import parse_config
from postier.config.reloadable import plan_reload
from postier.delivery import delivery_settings

BASE: dict[str, Any] = {
    # One process: the default (one per core) would become 1 with [metrics], a restart of its own.
    "server": {"hostname": "mx.test", "data_dir": "var", "workers": 1},
    "listener": [{"address": "127.0.0.1:2525"}],
    "relay": {"local_domains": ["example.test"]},
}


def with_(**sections: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return data


def test_nothing_changed_is_nothing_to_do() -> None:
    config = parse_config(BASE)
    plan = plan_reload(config, parse_config(BASE))
    assert plan.applied == () and plan.needs_restart == ()
    assert plan.effective == config


def test_live_keys_apply_and_restart_only_keys_keep_their_running_value() -> None:
    running = parse_config(BASE)
    new = parse_config(
        with_(
            relay={"local_domains": ["example.test", "new.test"], "smarthost": "relay.test:587"},
            server={"hostname": "other.test", "data_dir": "var", "max_connections": 10},
            limits={"messages_per_hour_per_ip": 100},
            log={"format": "json"},
            listener=[{"address": "127.0.0.1:2626"}],
        )
    )
    plan = plan_reload(running, new)
    assert set(plan.applied) == {
        "relay.local_domains",
        "relay.smarthost",
        "server.max_connections",
        "limits.messages_per_hour_per_ip",
        "log.format",
    }
    assert set(plan.needs_restart) == {"server.hostname", "listener"}
    effective = plan.effective
    assert effective.relay.local_domains == ("example.test", "new.test")
    assert effective.server.max_connections == 10
    assert effective.log.format == "json"
    assert effective.relay.smarthost == "relay.test:587"
    assert effective.server.hostname == "mx.test"
    assert effective.listeners == running.listeners


def test_whole_restart_only_sections_are_kept() -> None:
    running = parse_config(BASE)
    new = parse_config(with_(metrics={"address": "127.0.0.1:9325"}, queue={"commit_batch_max": 8}))
    plan = plan_reload(running, new)
    assert set(plan.needs_restart) == {"metrics.address", "queue.commit_batch_max"}
    assert plan.applied == ()
    assert plan.effective == running


# (section, values changed, the keys the plan names): all of them live (issue #7).
DELIVERY_SIDE = [
    ("delivery", {"retry_base_s": 60.0}, {"delivery.retry_base_s"}),
    (
        "delivery",
        {"max_connections": 5, "tls": "required", "ca_file": "ca.pem", "reuse_idle_s": 0.0},
        {"delivery.max_connections", "delivery.tls", "delivery.ca_file", "delivery.reuse_idle_s"},
    ),
    ("dns", {"nameservers": ["127.0.0.1:5353"]}, {"dns.nameservers"}),
    (
        "local",
        {"catch_all": {"example.test": "bob"}, "quota_bytes": 1000, "lmtp": {"example.test": "unix:/l"}},
        {"local.catch_all", "local.quota_bytes", "local.lmtp"},
    ),
    (
        "relay",
        {"smarthost": "relay.test", "smarthost_username": "u", "smarthost_password_file": "pw"},
        {"relay.smarthost", "relay.smarthost_username", "relay.smarthost_password_file"},
    ),
]


@pytest.mark.parametrize(("section", "values", "keys"), DELIVERY_SIDE)
def test_delivery_side_keys_apply(section: str, values: dict[str, Any], keys: set[str]) -> None:
    running = parse_config(BASE)
    new = parse_config(with_(**{section: values}))
    plan = plan_reload(running, new)
    assert set(plan.applied) == keys
    assert plan.needs_restart == ()
    assert plan.effective == new


def test_retry_base_s_takes_its_new_value_in_the_delivery_settings() -> None:
    running = parse_config(BASE)
    plan = plan_reload(running, parse_config(with_(delivery={"retry_base_s": 60.0})))
    assert delivery_settings(running).retry.base_s == 300.0
    assert delivery_settings(plan.effective).retry.base_s == 60.0


def test_routes_apply_as_a_whole_and_listeners_still_need_a_restart() -> None:
    running = parse_config(with_(route=[{"domains": ["a.test"], "host": "127.0.0.2", "tls": "none"}]))
    new = parse_config(
        with_(
            route=[{"domains": ["a.test"], "host": "127.0.0.3", "tls": "none"}],
            listener=[{"address": "127.0.0.1:2626"}],
        )
    )
    plan = plan_reload(running, new)
    assert plan.applied == ("route",)
    assert plan.needs_restart == ("listener",)
    assert plan.effective.routes == new.routes
    assert plan.effective.listeners == running.listeners
