"""DCGAN-style convolutional generator: the non-transformer baseline."""

from __future__ import annotations

import math

import torch
from torch import nn

from nestgan.errors import ConfigError


class ConvGenerator(nn.Module):
    """z (B, z_dim) -> Linear -> 4x4 map -> [2x upsample, conv 3x3, BN, ReLU] per doubling -> conv 3x3 -> tanh."""

    def __init__(self, z_dim: int = 128, resolution: int = 64, channel_base: int = 512, channel_min: int = 64) -> None:
        super().__init__()
        doublings = math.log2(resolution / 4)
        if resolution < 8 or doublings != int(doublings):
            raise ConfigError(f"conv generator: resolution {resolution} must be a power of two >= 8")
        channels = [max(channel_base // 2**i, channel_min) for i in range(int(doublings) + 1)]
        self.z_dim = z_dim
        self.resolution = resolution
        self.stem = nn.Sequential(nn.Linear(z_dim, 16 * channels[0]), nn.Unflatten(1, (channels[0], 4, 4)),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip(channels[:-1], channels[1:])
        ])
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(z))  # (B, C, R, R)
        return torch.tanh(self.to_rgb(x))  # (B, 3, R, R)
