"""Convolutional discriminators: a StyleGAN2-style residual one (default) and a lighter DCGAN/SNGAN one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from nestgan.errors import ConfigError
from nestgan.networks.conv import check_resolution, init_dcgan_weights


def init_lrelu_weights(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2) on every conv and linear layer, zero biases.

    PyTorch's default init shrinks the signal about 3x per layer: a 64 px residual D then starts with logits that
    barely depend on its input (std ~1e-5 across images) and learns nothing for thousands of steps.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ResidualDownBlock(nn.Module):
    """conv3x3 -> lrelu -> conv3x3 -> lrelu -> avg-pool 2x, plus a pooled 1x1 skip; sum scaled by 1/sqrt(2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(x), 0.2)
        y = F.avg_pool2d(F.leaky_relu(self.conv2(y), 0.2), 2)
        return (y + self.skip(F.avg_pool2d(x, 2))) * (1 / math.sqrt(2))


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation across groups of samples as one extra feature map (StyleGAN)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, b) + 1) if b % d == 0)  # largest group dividing the batch
        y = x.float().reshape(g, b // g, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
        y = y.to(x.dtype).view(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, y], dim=1)


class ResNetDiscriminator(nn.Module):
    """x (B, 3, R, R) -> logits (B,). Channels per resolution r: min(channel_base // r, channel_max)."""

    def __init__(self, resolution: int, channel_base: int = 4096, channel_max: int = 256, mbstd_group: int = 4) -> None:
        super().__init__()
        halvings = check_resolution(resolution, "resnet discriminator")
        channels = [min(channel_base // (resolution >> i), channel_max) for i in range(halvings + 1)]
        self.from_rgb = nn.Conv2d(3, channels[0], 1)
        self.blocks = nn.Sequential(*[ResidualDownBlock(a, b) for a, b in zip(channels[:-1], channels[1:])])
        c = channels[-1]
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = nn.Conv2d(c + 1, c, 3, padding=1)
        self.fc = nn.Linear(c * 16, c)
        self.out = nn.Linear(c, 1)
        self.apply(init_lrelu_weights)

    def input_blocks(self) -> list[nn.Module]:
        """The blocks FreezeD can freeze, input first: one per resolution, the first with from_rgb (as StyleGAN2-ADA's
        b<resolution> blocks); the 4x4 epilogue (minibatch std, conv, fc, out) is never one."""
        return [nn.ModuleList([self.from_rgb, self.blocks[0]]), *self.blocks[1:]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(x), 0.2)
        x = self.blocks(x)  # (B, C, 4, 4)
        x = F.leaky_relu(self.conv(self.mbstd(x)), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x).squeeze(1)


DCGAN_NORMS = ("none", "batch", "spectral")


class DCGANDiscriminator(nn.Module):
    """Strided 4x4 convs halving the map down to 4x4, LeakyReLU 0.2, a 4x4 valid conv to one logit.

    norm: "batch" is the DCGAN paper's discriminator (BatchNorm after every conv but the first and the last, the
    paper's N(0, 0.02) initialisation, convs without biases as in the PyTorch reference); "spectral" spectrally
    normalises every conv (SNGAN); "none" has neither, with He initialisation so that the logits depend on the
    image from the start.
    """

    def __init__(self, resolution: int, channel_base: int = 64, channel_max: int = 512, norm: str = "none") -> None:
        super().__init__()
        if norm not in DCGAN_NORMS:
            raise ConfigError(f"dcgan discriminator: unknown norm '{norm}' (choose from {', '.join(DCGAN_NORMS)})")
        halvings = check_resolution(resolution, "dcgan discriminator")
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(halvings):
            c_out = min(channel_base * 2**i, channel_max)
            batch_norm = norm == "batch" and i > 0
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=norm != "batch"))
            layers += [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)] if batch_norm else [nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, bias=norm != "batch"))  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights if norm == "batch" else init_lrelu_weights)
        if norm == "spectral":  # after the initialisation, which spectral norm then rescales
            for i, layer in enumerate(self.net):
                if isinstance(layer, nn.Conv2d):
                    self.net[i] = apply_spectral_norm(layer)

    def input_blocks(self) -> list[nn.Module]:
        """The blocks FreezeD can freeze, input first: each strided conv with its BatchNorm and LeakyReLU, one per
        halving of the map; the last 4x4 conv (the logit) is never one."""
        starts = [i for i, layer in enumerate(self.net) if isinstance(layer, nn.Conv2d)][:-1]
        return [self.net[a:b] for a, b in zip(starts, starts[1:] + [len(self.net) - 1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()

