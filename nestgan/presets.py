"""Presets are plain data: TOML files under configs/, read with the standard library."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from nestgan.errors import ConfigError

# configs/ lives beside the package in the repository; NESTGAN_CONFIGS points elsewhere.
CONFIGS_DIR = Path(os.environ.get("NESTGAN_CONFIGS", Path(__file__).resolve().parent.parent / "configs"))


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one TOML file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def preset_names(kind: str) -> list[str]:
    """Names of the presets of one kind, e.g. preset_names('generators') -> ['conv-32', ...]."""
    return sorted(p.stem for p in (CONFIGS_DIR / kind).glob("*.toml"))


def load_preset(kind: str, name: str) -> dict[str, Any]:
    """Load configs/<kind>/<name>.toml; an unknown name lists the known ones."""
    path = CONFIGS_DIR / kind / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(preset_names(kind)) or "none"
        raise ConfigError(f"unknown {kind} preset '{name}' (known: {known}; looked in {CONFIGS_DIR / kind})")
    return read_toml(path)
