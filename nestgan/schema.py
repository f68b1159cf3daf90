"""The shape of one config source (a preset, a --config file, the flags): unknown keys and wrong types, checked
against a dataclass's fields and type hints; each problem one ConfigError naming the source and the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from nestgan.errors import ConfigError


def table(layer: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """layer[key], which must be a table ({} when absent)."""
    value = layer.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{key}' must be a table, got {type(value).__name__}")
    return value


def check_keys(cls: type, layer: dict[str, Any], source: str, prefix: str = "") -> None:
    """Unknown keys and wrong types in one source -> ConfigError naming the key."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in layer.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown config key '{prefix}{key}' (known: {', '.join(known)})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            check_keys(hint, table(layer, key, source), source, prefix=f"{key}.")
        elif not _matches(value, hint):
            raise ConfigError(
                f"{source}: '{prefix}{key}' must be {_type_name(hint)}, got {type(value).__name__} {value!r}"
            )
        elif hint in (float, float | None) and isinstance(value, int):
            layer[key] = float(value)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
