"""Parameter and FLOP counts for generator presets: `python -m nestgan.networks.summary`."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nestgan.networks import build_generator, generator_preset
from nestgan.presets import preset_names


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(generator: nn.Module, batch: int = 1) -> int:
    """FLOPs of one forward pass per image (multiply-add = 2 FLOPs), counted by torch.utils.flop_counter."""
    z = torch.randn(batch, generator.z_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator(z)
    return counter.get_total_flops() // batch


def summary_table() -> str:
    rows = ["| preset | arch | resolution | params (M) | forward GFLOP/image |", "|---|---|---|---|---|"]
    for name in preset_names("generators"):
        preset = generator_preset(name)
        g = build_generator(preset).eval()
        rows.append(f"| {name} | {preset['arch']} | {g.resolution} | {count_parameters(g) / 1e6:.2f} "
                    f"| {forward_flops(g) / 1e9:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary_table())
