"""User checks: Python classes named in the configuration (``[[check]] module = "pkg.mod:Name"``).

``load_check`` imports ``pkg.mod``, takes ``Name`` (a class or any factory) and calls it with the
``options`` table as keyword arguments. The object must have at least one ``on_*`` stage method
(``policy.check``); it gets a ``name`` (the dotted path) when it has none. A path that does not import,
a missing name or a constructor that refuses its options is a ``ConfigError`` naming the table, so a
configuration with a broken check never starts (and a reload with one is refused).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from postier.mail.errors import ConfigError
from postier.policy.check import Stage

__all__ = ["load_check"]


def load_check(path: str, options: Mapping[str, object], *, key: str = "check") -> object:
    module_name, colon, attr = path.partition(":")
    if not colon or not module_name or not attr:
        raise ConfigError(key, f"{path!r} is not of the form 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(key, f"cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ConfigError(key, f"{module_name!r} has no callable {attr!r}")
    try:
        check = factory(**options)
    except Exception as exc:  # the user's constructor: any error is a configuration error
        raise ConfigError(key, f"{path} refused its options: {exc}") from exc
    if not any(callable(getattr(check, stage.method, None)) for stage in Stage):
        raise ConfigError(key, f"{path} has none of the stage methods on_connect … on_data")
    if not isinstance(getattr(check, "name", None), str):
        try:
            check.name = path
        except AttributeError as exc:  # slots or frozen: it must name itself
            raise ConfigError(key, f"{path} has no 'name' attribute") from exc
    return check
