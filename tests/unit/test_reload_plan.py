"""Which changed keys a SIGHUP applies and which wait for a restart (config/reloadable.py)."""

from __future__ import annotations

from typing import Any

from postier.config import parse_config
from postier.config.reloadable import plan_reload

BASE: dict[str, Any] = {
    "server": {"hostname": "mx.test", "data_dir": "var"},
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
        "server.max_connections",
        "limits.messages_per_hour_per_ip",
        "log.format",
    }
    assert set(plan.needs_restart) == {"relay.smarthost", "server.hostname", "listener"}
    effective = plan.effective
    assert effective.relay.local_domains == ("example.test", "new.test")
    assert effective.server.max_connections == 10
    assert effective.log.format == "json"
    assert effective.relay.smarthost == ""
    assert effective.server.hostname == "mx.test"
    assert effective.listeners == running.listeners


def test_whole_restart_only_sections_are_kept() -> None:
    running = parse_config(BASE)
    new = parse_config(with_(metrics={"address": "127.0.0.1:9325"}, queue={"commit_batch_max": 8}))
    plan = plan_reload(running, new)
    assert set(plan.needs_restart) == {"metrics.address", "queue.commit_batch_max"}
    assert plan.applied == ()
    assert plan.effective == running
