"""TransGAN-style generator (Jiang et al., NeurIPS 2021): global self-attention over every token of each stage.

The baseline the NesT paper's 8x speed claim is measured against. Same layer as NesT, but one "block" is the whole
map, so attention cost grows with the square of the token count.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nestgan.errors import ConfigError
from nestgan.networks.transformer import TransformerLayer, init_vit_weights


class TransGANStage(nn.Module):
    def __init__(self, map_size: int, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, map_size * map_size, dim))
        self.layers = nn.Sequential(*[TransformerLayer(dim, heads, mlp_ratio) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = self.layers(x.reshape(b, h * w, c) + self.pos_embed)  # (B, H*W, C): every token sees every token
        return x.view(b, h, w, c)


class TransGANGenerator(nn.Module):
    """z (B, z_dim) -> image (B, 3, R, R) in [-1, 1]; R = init_size * 2**(stages - 1).

    Between stages PixelShuffle x2 divides the width by 4; when the next width differs from that, a per-token
    Linear adjusts it (the paper's configs need none).
    """

    def __init__(
        self,
        z_dim: int = 256,
        init_size: int = 8,
        widths: Sequence[int] = (1024, 256, 64),
        depths: Sequence[int] = (5, 4, 2),
        heads: int = 4,
        mlp_ratio: float = 4.0,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        stages = len(widths)
        if stages == 0 or stages != len(depths):
            raise ConfigError(f"transgan generator: widths and depths need the same non-zero length "
                              f"(got {len(widths)}, {len(depths)})")
        for w in widths:
            if w % heads:
                raise ConfigError(f"transgan generator: width {w} is not divisible by {heads} heads")
        for w in widths[:-1]:
            if w % 4:
                raise ConfigError(f"transgan generator: width {w} must be divisible by 4 for pixel shuffle")
        reachable = init_size * 2 ** (stages - 1)
        if resolution is not None and resolution != reachable:
            raise ConfigError(f"transgan generator: resolution {resolution} is not reachable: init_size "
                              f"{init_size} x 2^{stages - 1} = {reachable}")
        self.z_dim = z_dim
        self.resolution = reachable
        self.init_size = init_size

        self.stem = nn.Linear(z_dim, init_size * init_size * widths[0])
        self.stages = nn.ModuleList(
            TransGANStage(init_size * 2**i, widths[i], depths[i], heads, mlp_ratio) for i in range(stages)
        )
        self.width_projections = nn.ModuleList(
            nn.Identity() if widths[i] // 4 == widths[i + 1] else nn.Linear(widths[i] // 4, widths[i + 1])
            for i in range(stages - 1)
        )
        self.to_rgb = nn.Linear(widths[-1], 3)

        self.apply(init_vit_weights)
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z).view(z.shape[0], self.init_size, self.init_size, -1)  # (B, 8, 8, C0)
        for i, stage in enumerate(self.stages):
            x = stage(x)  # (B, H, W, C_i)
            if i < len(self.width_projections):
                x = F.pixel_shuffle(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)  # (B, 2H, 2W, C_i/4)
                x = self.width_projections[i](x)  # (B, 2H, 2W, C_i+1)
        return torch.tanh(self.to_rgb(x).permute(0, 3, 1, 2))  # (B, 3, R, R)
