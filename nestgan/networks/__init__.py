"""Generators and discriminators, built from presets that are plain data (nestgan/configs/generators/*.toml,
nestgan/configs/discriminators/*.toml)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from nestgan.errors import ConfigError
from nestgan.networks.conv import ConvGenerator, DCGANGenerator
from nestgan.networks.discriminators import DCGANDiscriminator, ResNetDiscriminator
from nestgan.networks.nest import NesTGenerator
from nestgan.networks.nest_discriminator import NesTDiscriminator
from nestgan.networks.projected import ProjectedDiscriminator
from nestgan.networks.transgan import TransGANGenerator
from nestgan.presets import load_preset

GENERATORS: dict[str, type[nn.Module]] = {
    "nest": NesTGenerator, "transgan": TransGANGenerator, "conv": ConvGenerator, "dcgan": DCGANGenerator,
}
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "resnet": ResNetDiscriminator, "dcgan": DCGANDiscriminator, "nest": NesTDiscriminator,
    "projected": ProjectedDiscriminator,
}


def _construct(kind: str, registry: dict[str, type[nn.Module]], arch: str, kwargs: dict[str, Any]) -> nn.Module:
    if arch not in registry:
        raise ConfigError(f"unknown {kind} arch '{arch}' (known: {', '.join(registry)})")
    cls = registry[arch]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"{arch} {kind}: unknown option(s) {', '.join(unknown)} (accepted: {', '.join(sorted(accepted))})")
    return cls(**kwargs)


def generator_preset(name: str) -> dict[str, Any]:
    """The generator preset nestgan/configs/generators/<name>.toml as a dict with an 'arch' key."""
    return load_preset("generators", name)


def generator_from_config(config: dict[str, Any]) -> nn.Module:
    """A generator from its config, {'arch': 'nest' | 'transgan' | 'conv' | 'dcgan', **constructor keyword
    arguments} (a resolved preset; nestgan.build_generator takes a preset's name)."""
    kwargs = dict(config)
    arch = kwargs.pop("arch", None)
    if arch is None:
        raise ConfigError("generator preset has no 'arch' key (one of: " + ", ".join(GENERATORS) + ")")
    return _construct("generator", GENERATORS, arch, kwargs)


def discriminator_preset(name: str) -> dict[str, Any]:
    """The discriminator preset nestgan/configs/discriminators/<name>.toml as a dict with an 'arch' key."""
    return load_preset("discriminators", name)


def build_discriminator(arch: str, resolution: int, **kwargs: Any) -> nn.Module:
    return _construct("discriminator", DISCRIMINATORS, arch, {"resolution": resolution, **kwargs})
