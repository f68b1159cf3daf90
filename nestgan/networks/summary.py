"""Parameter and FLOP counts for generator presets: `python -m nestgan.networks.summary`."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter

from nestgan.networks import generator_from_config, generator_preset
from nestgan.presets import preset_names


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode has no formula for the CPU kernel that F.scaled_dot_product_attention dispatches to, so on CPU all
# attention would count as 0 FLOPs; it does the same work as the (registered) CUDA attention kernels.
CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward (multiply-add = 2), counted by torch.utils.flop_counter, attention included on CPU too."""
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        module(*inputs)
    return counter.get_total_flops()


def forward_flops(generator: nn.Module, device: torch.device | str = "cpu") -> int:
    """FLOPs of the generator's forward pass for one image."""
    return count_flops(generator, torch.randn(1, generator.z_dim, device=device))


def summary_table() -> str:
    rows = ["| preset | arch | resolution | params (M) | forward GFLOP/image |", "|---|---|---|---|---|"]
    for name in preset_names("generators"):
        preset = generator_preset(name)
        g = generator_from_config(preset).eval()
        rows.append(f"| {name} | {preset['arch']} | {g.resolution} | {count_parameters(g) / 1e6:.2f} "
                    f"| {forward_flops(g) / 1e9:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(summary_table())
