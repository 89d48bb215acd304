from __future__ import annotations

import os
from pathlib import Path

import pytest

from postier.config import load_config, parse_config, parse_hostport
from postier.config.doc import render
from postier.mail.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults_match_the_architecture() -> None:
    config = load_config(None)
    assert [(lc.address, lc.mode) for lc in config.listeners] == [
        ("127.0.0.1:2525", "smtp"),
        ("127.0.0.1:2587", "submission"),
    ]
    assert config.server.data_dir == "var"
    assert config.relay.local_domains == ("localhost",)
    assert config.queue.backend == "sqlite"
    assert config.server.max_message_bytes == 50 * 1024 * 1024
    assert config.server.command_timeout_s == 300  # RFC 5321 §4.5.3.2.7
    assert config.server.data_timeout_s == 180  # RFC 5321 §4.5.3.2.5


def test_the_public_shape_from_the_architecture_parses(tmp_path: Path) -> None:
    path = tmp_path / "postier.toml"
    path.write_text(
        """
[server]
hostname = "mx.example.test"
data_dir = "var"

[[listener]]
address = "127.0.0.1:2525"
mode = "smtp"

[[listener]]
address = "[::1]:2465"
mode = "submissions"

[tls]
cert = "cert.pem"
key = "key.pem"

[queue]
backend = "sqlite"

[relay]
local_domains = ["localhost", "example.test"]
trusted_networks = ["127.0.0.0/8", "::1/128"]
smarthost = "smtp.provider.example:587"

[dns]
nameservers = ["127.0.0.1:5353"]
"""
    )
    config = load_config(path)
    assert config.server.hostname == "mx.example.test"
    assert config.listeners[1].mode == "submissions"
    assert config.dns.nameservers == ("127.0.0.1:5353",)


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"server": {"hostnme": "x"}}, "server.hostnme", "unknown key"),
        ({"surver": {}}, "surver", "unknown key"),
        ({"listener": [{"address": "127.0.0.1:25", "mode": "lmtp"}]}, "listener[0].mode", "Invalid enum"),
        ({"listener": [{"address": "127.0.0.1"}]}, "listener[0].address", "no port"),
        ({"listener": [{"address": "127.0.0.1:99999"}]}, "listener[0].address", "invalid port"),
        ({"listener": []}, "listener", "at least one"),
        ({"relay": {"trusted_networks": ["10.0.0.0/33"]}}, "relay.trusted_networks[0]", "CIDR"),
        ({"server": {"max_recipients": 10}}, "server.max_recipients", "at least 100"),
        ({"server": {"max_message_bytes": "big"}}, "server.max_message_bytes", "Expected `int`"),
        ({"tls": {"cert": "a.pem"}}, "tls", "both"),
        ({"dns": {"nameservers": ["127.0.0.1:x"]}}, "dns.nameservers[0]", "invalid port"),
        ({"server": {"workers": -1}}, "server.workers", "between 1 and 31"),
        ({"server": {"workers": 32}}, "server.workers", "between 1 and 31"),
        ({"server": {"workers": 2}, "metrics": {"address": "127.0.0.1:9"}}, "metrics.address", "workers = 1"),
    ],
)
def test_bad_configuration_names_the_key(data: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == path
    assert fragment in info.value.message


def test_workers_default_to_one_per_core_but_one_with_metrics() -> None:
    cores = min(len(os.sched_getaffinity(0)), 31)
    assert parse_config({}).server.workers == cores
    assert parse_config({"server": {"workers": 0}}).server.workers == cores
    assert parse_config({"server": {"workers": 3}}).server.workers == 3
    assert parse_config({"metrics": {"address": "127.0.0.1:9"}}).server.workers == 1


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:587", ("::1", 587)),
        ("mx.example.test:2525", ("mx.example.test", 2525)),
        ("mx.example.test", ("mx.example.test", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, default_port=53) == expected


def test_configuration_doc_is_generated_from_the_code() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "run: python -m postier.config.doc > docs/configuration.md"
