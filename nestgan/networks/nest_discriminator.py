"""NesT the right way up as a discriminator: image -> patches -> levels of block-local attention -> one logit.

x (B, 3, R, R) -> conv patch embedding (B, R/p, R/p, C0). Each level adds a positional embedding, splits the map into
blocks of block_size x block_size tokens and runs transformer layers whose attention stays inside each block (the
generator's NesTLevel). Between levels, NesT's block aggregation: conv 3x3 -> LayerNorm -> 3x3 max-pool stride 2,
which halves the map, merges each 2x2 group of blocks into one, and is the only step that crosses block borders.
After the last level: LayerNorm, minibatch-std, and a StyleGAN-like epilogue over the flattened last map.

The map travels channels-last, (B, H, W, C), as in the generator.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nestgan.errors import ConfigError
from nestgan.networks.discriminators import MinibatchStd
from nestgan.networks.nest import NesTLevel, check_levels
from nestgan.networks.transformer import init_vit_weights, twice_differentiable_attention


class ConvAggregation(nn.Module):
    """NesT's block aggregation: conv 3x3 (crosses block borders), LayerNorm over channels, max-pool 3x3 stride 2."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.permute(0, 3, 1, 2))  # (B, C', H, W) with channels_last strides
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, C', H/2, W/2)
        return x.permute(0, 2, 3, 1)  # (B, H/2, W/2, C')


class NesTDiscriminator(nn.Module):
    """x (B, 3, R, R) -> logits (B,). Level i works on a (R/p / 2^i)^2 token map of width widths[i]."""

    def __init__(
        self,
        resolution: int,
        patch_size: int,
        widths: Sequence[int],
        depths: Sequence[int],
        heads: Sequence[int],
        block_size: int = 4,
        mlp_ratio: float = 4.0,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        check_levels("nest discriminator", widths, depths, heads)
        levels = len(widths)
        tokens = resolution // patch_size
        last = tokens >> (levels - 1)  # side of the last level's map
        if resolution % patch_size or tokens % 2 ** (levels - 1) or last % block_size:
            raise ConfigError(
                f"nest discriminator: {resolution} px in patches of {patch_size} cannot be halved {levels - 1} times "
                f"into whole {block_size}x{block_size}-token blocks; use preset nest-d-{resolution} or set "
                f"resolution = patch_size x block_size x 2^(levels - 1) (x any integer)"
            )
        self.patch_embed = nn.Conv2d(3, widths[0], kernel_size=patch_size, stride=patch_size)
        self.levels = nn.ModuleList(
            NesTLevel(tokens >> i, block_size, widths[i], depths[i], heads[i], mlp_ratio, parallel=False)
            for i in range(levels)
        )
        self.aggregations = nn.ModuleList(ConvAggregation(widths[i], widths[i + 1]) for i in range(levels - 1))
        c = widths[-1]
        self.norm = nn.LayerNorm(c)
        self.mbstd = MinibatchStd(mbstd_group)
        self.fc = nn.Linear((c + 1) * last * last, c)
        self.out = nn.Linear(c, 1)

        self.apply(init_vit_weights)
        for level in self.levels:
            nn.init.trunc_normal_(level.pos_embed, std=0.02)

    def input_blocks(self) -> list[nn.Module]:
        """The blocks FreezeD can freeze, input first: one per level (one per token-map resolution), the first with
        the patch embedding, each later one with the aggregation that makes its map (as timm's NestLevel owns its
        ConvPool); the epilogue (LayerNorm, minibatch std, fc, out) is never one."""
        later = (nn.ModuleList([aggregation, level]) for aggregation, level in zip(self.aggregations, self.levels[1:]))
        return [nn.ModuleList([self.patch_embed, self.levels[0]]), *later]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous: the levels view the map as (B, H, W, C) memory, and an NCHW conv output's permute is not that
        x = self.patch_embed(x).permute(0, 2, 3, 1).contiguous()  # (B, R/p, R/p, C0)
        with twice_differentiable_attention():  # R1 differentiates the input gradient once more
            for i, level in enumerate(self.levels):
                x = level(x)  # (B, H, W, C_i)
                if i < len(self.aggregations):
                    x = self.aggregations[i](x)  # (B, H/2, W/2, C_i+1), blocks / 4
        x = self.mbstd(self.norm(x).permute(0, 3, 1, 2))  # (B, C + 1, h, w)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)  # (B, C)
        return self.out(x).squeeze(1)
