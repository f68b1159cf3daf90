"""Presets are plain data: TOML files shipped in the package (nestgan/configs/), the one place presets are looked up.

nestgan/configs/generators/<name>.toml are generator architectures; nestgan/configs/<dataset>.toml are the
per-dataset defaults. The environment variable NESTGAN_CONFIGS points at another folder of the same layout.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
try:
    from importlib.resources.abc import Traversable
except ModuleNotFoundError:  # Python 3.10
    from importlib.abc import Traversable

from nestgan.errors import ConfigError

ENV_VAR = "NESTGAN_CONFIGS"


def presets_root() -> Traversable:
    """The folder of presets: $NESTGAN_CONFIGS when set, else the presets shipped in the package."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else files("nestgan.configs")


def read_toml(path: str | os.PathLike | Traversable) -> dict[str, Any]:
    """Read one TOML file; a missing or malformed file is a ConfigError naming it."""
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def preset_names(kind: str) -> list[str]:
    """Names of the presets of one kind, e.g. preset_names('generators') -> ['conv-32', ...]."""
    folder = presets_root() / kind
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(kind: str, name: str) -> dict[str, Any]:
    """Load <presets>/<kind>/<name>.toml; an unknown name lists the known ones."""
    folder = presets_root() / kind
    path = folder / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(preset_names(kind)) or "none"
        raise ConfigError(f"unknown {kind} preset '{name}' (known: {known}; looked in {folder})")
    return read_toml(path)


def dataset_preset(name: str) -> tuple[dict[str, Any], str]:
    """The dataset preset <presets>/<name>.toml and its path (for messages); ({}, path) when there is none."""
    path = presets_root() / f"{name}.toml"
    return (read_toml(path) if path.is_file() else {}), str(path)
