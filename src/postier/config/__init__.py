"""Configuration: TOML (tomllib) → frozen, validated structs."""

from postier.config.load import load_config, parse_config, parse_hostport
from postier.config.model import Config, ListenerConfig

__all__ = ["Config", "ListenerConfig", "load_config", "parse_config", "parse_hostport"]
