"""Component presets behind the config's [generator] and [discriminator] tables: which preset a table builds on,
the resolved keyword arguments, and a line saying why (TrainConfig.sources). Which table applies at all is the
config's one layering rule (nestgan.config._component); this module only resolves the table that survived it.
"""

from __future__ import annotations

from typing import Any

from nestgan.errors import ConfigError
from nestgan.presets import preset_names


def generator_preset_name(g: str, resolution: int, table: dict[str, Any]) -> str | None:
    """The preset a [generator] table builds on: its "preset", else "<g>-<resolution>"; None when the table is
    complete by itself ("arch" and no "preset")."""
    if "arch" in table and "preset" not in table:
        return None
    name = table.get("preset", f"{g}-{resolution}")
    if not isinstance(name, str):
        raise ConfigError(f"generator.preset must be a preset name like 'nest-32', got {name!r}")
    return name


def resolve_generator(g: str, resolution: int, table: dict[str, Any]) -> dict[str, Any]:
    """[generator] table -> full generator preset dict with "arch": the table's keys over its preset's."""
    from nestgan.networks import generator_preset

    name = generator_preset_name(g, resolution, table)
    if name is None:
        return dict(table)
    return {**generator_preset(name), **{k: v for k, v in table.items() if k != "preset"}}


def generator_source(g: str, resolution: int, table: dict[str, Any]) -> str:
    """Which generator preset a [generator] table applies, and why, for TrainConfig.sources."""
    name = generator_preset_name(g, resolution, table)
    if name is None:
        return f"no generator preset: the [generator] table is a complete '{table['arch']}' generator"
    why = "named by the [generator] table" if "preset" in table else f"g is {g}, resolution {resolution}"
    overrides = [key for key in table if key != "preset"]
    return f"generator preset {name} applied: {why}" + (
        f"; the [generator] table overrides {', '.join(overrides)}" if overrides else ""
    )


def discriminator_preset_name(d: str, resolution: int, table: dict[str, Any]) -> str | None:
    """The preset a [discriminator] table builds on: its "preset", else "<d>-d-<resolution>" for a d that has
    presets (nest); None for a d whose constructor defaults fit every resolution (resnet, dcgan)."""
    if "preset" in table:
        name = table["preset"]
        if not isinstance(name, str):
            raise ConfigError(f"discriminator.preset must be a preset name like 'nest-d-64', got {name!r}")
        return name
    has_presets = any(name.startswith(f"{d}-d-") for name in preset_names("discriminators"))
    return f"{d}-d-{resolution}" if has_presets else None


def discriminator_source(d: str, resolution: int, table: dict[str, Any]) -> str:
    """Which discriminator preset a [discriminator] table applies, and why, for TrainConfig.sources."""
    name = discriminator_preset_name(d, resolution, table)
    why = "named by the [discriminator] table" if "preset" in table else f"d is {d}, resolution {resolution}"
    return f"discriminator preset {name} applied: {why}"


def resolve_discriminator(d: str, name: str, table: dict[str, Any]) -> dict[str, Any]:
    """Preset `name` with the [discriminator] table's keys over it, as keyword arguments of build_discriminator."""
    from nestgan.networks import discriminator_preset

    preset = discriminator_preset(name)
    if preset.get("arch") != d:
        raise ConfigError(f"discriminator preset '{name}' builds a '{preset.get('arch')}' discriminator but d = "
                          f"'{d}'; make them agree (or drop the preset to use d's default)")
    return {**{k: v for k, v in preset.items() if k != "arch"}, **{k: v for k, v in table.items() if k != "preset"}}
