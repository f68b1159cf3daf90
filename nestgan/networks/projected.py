"""The projected discriminator (Sauer et al., "Projected GANs Converge Faster", NeurIPS 2021).

Images are read through a frozen ImageNet EfficientNet-Lite0; its four feature maps are mixed by fixed random 1x1
convolutions across channels (CCM) and then top-down across scales (CSM), and only small spectral-norm heads, one
per scale, are trained. The feature network is not part of the module tree: it takes no gradients, no optimiser
state, no DDP broadcast and no room in checkpoints, which record only its identity and weights hash (extra state,
checked when a checkpoint loads). The random projections are ordinary frozen layers: drawn from the run's seed, they
are saved with the heads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from nestgan.errors import CheckpointError, ConfigError
from nestgan.networks.efficientnet_lite import FEATURE_CHANNELS, WEIGHTS_SHA256, pretrained_lite0

FEATURE_NETWORK = "efficientnet-lite0"
# Head widths by the size of the map a head block outputs (projected_gan's table), for the nearest power of two.
HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}


def head_channels(size: int, width: float) -> int:
    nearest = min(max(2 ** round(math.log2(size)), 4), 256)
    return max(int(HEAD_CHANNELS[nearest] * width), 1)


class ScaleFusion(nn.Module):
    """CSM step: add the coarser fused map (if any) to this scale's mixed map, upsample 2x, then a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, coarser: torch.Tensor | None = None) -> torch.Tensor:
        if coarser is not None:
            x = x + coarser
        return self.out_conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


def down_block(c_in: int, c_out: int) -> nn.Sequential:
    """Spectral-norm conv 4x4 stride 2 -> BatchNorm -> LeakyReLU(0.2): halves the map."""
    return nn.Sequential(spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


class ScaleHead(nn.Module):
    """(B, C, S, S) -> logits (B, N): halvings down to 8x8 (or the map itself, if smaller), then a spectral-norm
    conv of kernel min(4, size), valid, to a map of patch logits."""

    def __init__(self, channels: int, size: int, width: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        while size > 8:
            c_out = head_channels(size // 2, width)
            layers.append(down_block(channels, c_out))
            channels, size = c_out, size // 2
        layers.append(spectral_norm(nn.Conv2d(channels, 1, min(4, size))))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    """x (B, 3, R, R) in [-1, 1] -> logits (B, N), N patch logits over four scales; the losses average over them.

    feature_resolution: the size the feature network reads (images are resized to it, bilinear); None: R.
    mix_channels: CCM widths are mix_channels x (1, 2, 4, 8) from the finest scale to the coarsest.
    head_width: multiplies every head's width (projected_gan's widths at 1.0).
    """

    def __init__(self, resolution: int, feature_resolution: int | None = None, mix_channels: int = 64,
                 head_width: float = 1.0) -> None:
        super().__init__()
        self.feature_resolution = feature_resolution or resolution
        if self.feature_resolution < 32 or self.feature_resolution % 32:
            raise ConfigError(f"projected discriminator: feature_resolution {self.feature_resolution} must be a "
                              "multiple of 32 (the feature network halves the image five times)")
        if mix_channels < 1 or head_width <= 0:
            raise ConfigError("projected discriminator: mix_channels must be >= 1 and head_width > 0")
        # Plain attribute, not a submodule: see the module docstring; _apply moves it with the module.
        object.__setattr__(self, "features", pretrained_lite0())

        mixed = [mix_channels * 2**i for i in range(4)]  # per scale, finest first
        self.channel_mixing = nn.ModuleList(nn.Conv2d(c, m, 1) for c, m in zip(FEATURE_CHANNELS, mixed))
        fused = [mixed[0], mixed[0], mixed[1], mixed[2]]  # each fusion halves its channels but the finest
        self.scale_mixing = nn.ModuleList(ScaleFusion(m, f) for m, f in zip(mixed, fused))
        self.channel_mixing.requires_grad_(False)
        self.scale_mixing.requires_grad_(False)

        sizes = [self.feature_resolution // 2**i for i in range(1, 5)]  # fused maps: 2x the feature maps' sizes
        self.heads = nn.ModuleList(ScaleHead(f, s, head_width) for f, s in zip(fused, sizes))

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        super()._apply(fn, recurse)
        self.features._apply(fn, recurse)
        return self

    def get_extra_state(self) -> dict[str, str]:
        return {"feature_network": FEATURE_NETWORK, "weights_sha256": WEIGHTS_SHA256}

    def set_extra_state(self, state: Any) -> None:
        if state != self.get_extra_state():
            raise CheckpointError(
                f"this checkpoint's projected discriminator was trained on other feature-network weights ({state}), "
                f"not {FEATURE_NETWORK} {WEIGHTS_SHA256[:12]}...; install the weights it was trained with"
            )

    def input_blocks(self) -> list[nn.Module]:
        """None: the heads read the frozen feature network side by side, so FreezeD has no input-first blocks."""
        return []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.feature_resolution:  # antialiased when shrinking (no bf16 kernel for growing)
            shrink = x.shape[-1] > self.feature_resolution
            x = F.interpolate(x, size=self.feature_resolution, mode="bilinear", align_corners=False, antialias=shrink)
        maps = self.features.features(x)  # 4 maps at 1/4 .. 1/32 of feature_resolution
        mixed = [mix(m) for mix, m in zip(self.channel_mixing, maps)]
        fused: list[torch.Tensor] = []
        coarser = None
        for i in reversed(range(4)):  # coarsest first; each fused map is 2x its feature map's size
            coarser = self.scale_mixing[i](mixed[i], coarser)
            fused.insert(0, coarser)
        return torch.cat([head(f) for head, f in zip(self.heads, fused)], dim=1)
