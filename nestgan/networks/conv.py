"""Convolutional generators: our DCGAN-style baseline (upsample + conv) and the DCGAN paper's own (transposed convs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nestgan.errors import ConfigError

# How a generator's BatchNorm normalises when it samples (eval mode): "running", with the statistics tracked in
# training (PyTorch's eval mode); "batch", with the sampled batch's own, as the PyTorch DCGAN example samples G in train
# mode. Training always uses batch statistics and tracks the running ones.
SAMPLE_BN = ("running", "batch")


class BatchStatNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises with the batch's statistics in eval mode too, leaving the running ones untouched
    there; the same parameters and buffers as nn.BatchNorm2d, so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


def check_resolution(resolution: int, who: str = "") -> int:
    """The number of 2x steps between 4 px and `resolution`, which must be a power of two >= 8 (the networks start
    or end at 4x4); `who` names the network that asked, for the error."""
    if not isinstance(resolution, int) or resolution < 8 or resolution & (resolution - 1):
        raise ConfigError(f"{who + ': ' if who else ''}resolution must be a power of two >= 8, got {resolution}")
    return resolution.bit_length() - 3


def batch_norm_class(sample_bn: str, arch: str) -> type[nn.BatchNorm2d]:
    """The BatchNorm of an `arch` generator that samples with `sample_bn` statistics (see SAMPLE_BN)."""
    if sample_bn not in SAMPLE_BN:
        raise ConfigError(f"{arch} generator: unknown sample_bn '{sample_bn}' (choose from {', '.join(SAMPLE_BN)})")
    return BatchStatNorm2d if sample_bn == "batch" else nn.BatchNorm2d


class ConvGenerator(nn.Module):
    """z (B, z_dim) -> Linear -> 4x4 map -> [2x upsample, conv 3x3, BN, ReLU] per doubling -> conv 3x3 -> tanh.

    sample_bn: the statistics BatchNorm normalises with in eval mode (SAMPLE_BN).
    """

    def __init__(self, z_dim: int = 128, resolution: int = 64, channel_base: int = 512, channel_min: int = 64,
                 sample_bn: str = "running") -> None:
        super().__init__()
        doublings = check_resolution(resolution, "conv generator")
        channels = [max(channel_base // 2**i, channel_min) for i in range(doublings + 1)]
        norm = batch_norm_class(sample_bn, "conv")
        self.z_dim = z_dim
        self.resolution = resolution
        self.stem = nn.Sequential(nn.Linear(z_dim, 16 * channels[0]), nn.Unflatten(1, (channels[0], 4, 4)),
                                  norm(channels[0]), nn.ReLU())
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU())
            for c_in, c_out in zip(channels[:-1], channels[1:])
        ])
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(z))  # (B, C, R, R)
        return torch.tanh(self.to_rgb(x))  # (B, 3, R, R)


def init_dcgan_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """The DCGAN generator of Radford et al. (2016), as in the PyTorch reference at 64 px with ngf = 64.

    z (B, z_dim) -> ConvT 4x4 valid to a 4x4 map of ngf * 2**(n-1) channels, then n - 1 ConvT(4, 2, 1) + BN + ReLU
    halving the channels down to ngf, then ConvT(4, 2, 1) to RGB + tanh; n = log2(R / 4) doublings in all.
    sample_bn: the statistics BatchNorm normalises with in eval mode (SAMPLE_BN); "batch" samples as the PyTorch
    example does, so an image depends on the others in its batch.
    """

    def __init__(self, z_dim: int = 100, resolution: int = 64, ngf: int = 64, sample_bn: str = "running") -> None:
        super().__init__()
        doublings = check_resolution(resolution, "dcgan generator")
        channels = [ngf * 2**i for i in reversed(range(doublings))]  # 64 px: 512, 256, 128, 64
        norm = batch_norm_class(sample_bn, "dcgan")
        self.z_dim = z_dim
        self.resolution = resolution
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, channels[0], 4, 1, 0, bias=False),
                                   norm(channels[0]), nn.ReLU()]  # (B, C0, 4, 4)
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]  # (B, 3, R, R)
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])
