"""NesT turned upside down: a transformer decoder from a few coarse blocks to many fine ones.

z -> Linear -> token map (B, 8, 8, C0). Each level adds a positional embedding, splits the map into blocks of
block_size x block_size tokens and runs transformer layers whose attention stays inside each block. Between levels a
block de-aggregation step upsamples on the image plane (so a 3x3 conv can mix neighbouring blocks) and the number of
blocks grows x4. A per-pixel head turns the last map into RGB; with out_conv, a residual 3x3 conv first mixes each
pixel with its neighbours, the only step after the last level that crosses a block border.

The map stays on the image plane, (B, H, W, C) channels-last, at every step: LayerNorms, MLPs, residual adds and
the convs (channels_last memory) work on it where it lies, and only attention gathers each block's tokens.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nestgan.errors import ConfigError
from nestgan.networks.transformer import AdaptiveLayerNorm, TransformerLayer, init_vit_weights


def unblockify(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """(B, T, N, C) -> (B, H, W, C) for a square map: T = (H/s)*(W/s) blocks in row-major order, N = s*s tokens
    per block (the layout pos_embed is stored in)."""
    b, t, n, c = x.shape
    s = block_size
    g = math.isqrt(t)  # blocks per side
    x = x.view(b, g, g, s, s, c).transpose(2, 3)  # (B, g, s, g, s, C)
    return x.reshape(b, g * s, g * s, c)


class BorderConv(nn.Module):
    """x + depthwise conv3x3(x) on the map (B, H, W, C), before a layer's attention (CPVT's positional encoding
    generator): each token sees its eight neighbours, across block borders too, so neighbouring blocks agree where
    they meet. Zero-initialised, without drawing random numbers, like OutConv.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.utils.skip_init(nn.Conv2d, dim, dim, kernel_size=3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C), no copy either way


class ConvMlp(nn.Module):
    """The MLP with a depthwise 3x3 conv on its hidden units, on the map (B, H, W, C) (SegFormer's Mix-FFN, CeiT's
    LeFF): Linear, dwconv, GELU, Linear. Every layer then mixes each token with its neighbours, across block borders
    too, the locality a convolutional generator has from its first step.
    """

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.conv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv(self.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, 4C)
        return self.fc2(F.gelu(hidden))  # (B, H, W, C)


class NesTLevel(nn.Module):
    """Positional embedding + `depth` transformer layers attending only within each block of the map; with
    style_dim > 0 every LayerNorm is modulated by w, with border_conv a BorderConv precedes every layer, with mlp_conv
    every MLP is a ConvMlp; without attention the layers are their MLPs alone, and only the border convs (or
    ConvMlps) mix neighbouring tokens."""

    def __init__(self, map_size: int, block_size: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 parallel: bool, style_dim: int = 0, border_conv: bool = False, mlp_conv: bool = False,
                 attention: bool = True) -> None:
        super().__init__()
        self.block_size = block_size
        num_blocks = (map_size // block_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_blocks, block_size**2, dim))
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, mlp_ratio, parallel, style_dim, ConvMlp(dim, mlp_ratio) if mlp_conv else None,
                             block_size, attention)
            for _ in range(depth)
        )
        self.border_convs = nn.ModuleList(BorderConv(dim) for _ in range(depth if border_conv else 0))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        x = x + unblockify(self.pos_embed, self.block_size)  # (B, H, W, C); pos_embed is stored per block
        for i, layer in enumerate(self.layers):
            if self.border_convs:
                x = self.border_convs[i](x)
            x = layer(x, w)  # attention never crosses a block border
        return x  # (B, H, W, C)


class ConvDeaggregation(nn.Module):
    """Mirror of NesT's block aggregation: 2x upsampling, conv 3x3 (crosses block borders), LayerNorm (modulated
    by w when style_dim > 0).

    After nearest upsampling, the two pixels of each 2x2 copy see the conv's taps on different source pixels, which
    lets the generator draw texture locked to that grid; bilinear upsampling hands the conv a smooth map instead.
    """

    def __init__(self, dim_in: int, dim_out: int, upsample: str = "nearest", style_dim: int = 0) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)
        self.norm = AdaptiveLayerNorm(dim_out, style_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W) view with channels_last strides
        x = self.conv(F.interpolate(x, scale_factor=2, mode=self.upsample))  # (B, C', 2H, 2W)
        return self.norm(x.permute(0, 2, 3, 1), w)  # (B, 2H, 2W, C')


class PixelShuffleDeaggregation(nn.Module):
    """HiT's upsampling: depth-to-space x2 (C -> C/4) then a per-token Linear to the next width.

    Every token becomes a 2x2 patch inside its own block's footprint, so this step alone does NOT let a block reach
    its neighbours; blocks only share what the initial Linear from z gave them. Use "conv" for cross-block mixing.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in // 4, dim_out)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        x = F.pixel_shuffle(x.permute(0, 3, 1, 2), 2)  # (B, C/4, 2H, 2W)
        return self.proj(x.permute(0, 2, 3, 1))  # (B, 2H, 2W, C')


class LinearDeaggregation(nn.Module):
    """The conv de-aggregation's cheap twin: a per-token Linear to the next width, 2x upsampling, LayerNorm
    (modulated by w when style_dim > 0).

    The Linear runs before the upsampling (the two commute) on a quarter of the tokens, about 1/36 of the conv's
    arithmetic. Bilinear upsampling blends each new token from its nearest parents, across block borders too; with
    border_conv the next level's depthwise convs do the rest of the mixing. Nearest upsampling stays inside each
    parent's footprint, like pixelshuffle.
    """

    def __init__(self, dim_in: int, dim_out: int, upsample: str = "nearest", style_dim: int = 0) -> None:
        super().__init__()
        self.upsample = upsample
        self.proj = nn.Linear(dim_in, dim_out)
        self.norm = AdaptiveLayerNorm(dim_out, style_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(x).permute(0, 3, 1, 2)  # (B, C', H, W) view with channels_last strides
        x = F.interpolate(x, scale_factor=2, mode=self.upsample)  # (B, C', 2H, 2W)
        return self.norm(x.permute(0, 2, 3, 1), w)  # (B, 2H, 2W, C')


DEAGGREGATIONS = ("conv", "linear", "pixelshuffle")
UPSAMPLINGS = ("nearest", "bilinear")  # of the conv and linear de-aggregations


def upsampling_deaggregation(kind: str) -> type[ConvDeaggregation | LinearDeaggregation]:
    """The de-aggregation class of kind "linear", else the conv one (pixelshuffle's generator builds its own)."""
    return LinearDeaggregation if kind == "linear" else ConvDeaggregation


class OutConv(nn.Module):
    """x + conv3x3(x) on the last map: lets each last-level block see its neighbours before the head.

    Zero-initialised, without drawing random numbers: a fresh generator with the same seed computes exactly what it
    would without it, so a run with out_conv differs from one without only by what the conv learns.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.utils.skip_init(nn.Conv2d, dim, dim, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)


class MappingNetwork(nn.Module):
    """StyleGAN's mapping network, shorter: z normalised to unit mean square, then `layers` x (Linear, LeakyReLU)."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(dim, dim), nn.LeakyReLU(0.2))])

    def init_weights(self) -> None:
        """He initialisation keeps w at z's scale through the layers (the ViT 0.02 would shrink it x0.3 per layer)."""
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0.2)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8))  # (B, z_dim)


class ConvHead(nn.Module):
    """Last map (B, H, W, C) -> RGB (B, 3, H*p, W*p) by convolutions, p = out_patch in {1, 2}: for p = 2 a
    de-aggregation to half the width at full resolution (the linear one in a generator where any level transition
    uses it, else the conv one), GELU; then conv 3x3 to RGB. Unlike the per-token Linear head, neighbouring output
    pixels share their inputs, so no pixel patch or block grid is drawn into the image.
    """

    def __init__(self, dim: int, out_patch: int, upsample: str, style_dim: int = 0,
                 up: type[ConvDeaggregation | LinearDeaggregation] = ConvDeaggregation) -> None:
        super().__init__()
        if out_patch not in (1, 2):
            raise ConfigError(f"nest generator: head 'conv' takes out_patch 1 or 2 (got {out_patch})")
        self.up = up(dim, dim // 2, upsample, style_dim) if out_patch == 2 else None
        self.to_rgb = nn.Conv2d(dim // 2 if self.up else dim, 3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.up is not None:
            x = F.gelu(self.up(x, w))  # (B, 2H, 2W, C/2)
        return self.to_rgb(x.permute(0, 3, 1, 2))  # (B, 3, R, R)


HEADS = ("linear", "conv")


def check_levels(what: str, widths: Sequence[int], depths: Sequence[int], heads: Sequence[int]) -> None:
    """One ConfigError line unless every level has a width, a depth and a head count that divides its width."""
    if not (len(widths) == len(depths) == len(heads)) or not widths:
        raise ConfigError(f"{what}: widths, depths and heads need the same non-zero length "
                          f"(got {len(widths)}, {len(depths)}, {len(heads)})")
    for w, h in zip(widths, heads):
        if w % h:
            raise ConfigError(f"{what}: width {w} is not divisible by its {h} heads")


class NesTGenerator(nn.Module):
    """Transposed NesT generator: z (B, z_dim) -> image (B, 3, R, R) in [-1, 1].

    R = init_size * 2**(levels - 1) * out_patch, with levels = len(widths). attention: per level, whether its
    layers attend within blocks (default all); a level without is border convs and MLPs, the cheaper mixing at the
    finest levels where HiT-GAN also drops attention. deaggregation: one kind for every level transition, or one per
    transition, coarse to fine (a conv where a linear one's upsampling would show its parents' grid).
    """

    def __init__(
        self,
        z_dim: int = 256,
        init_size: int = 8,
        block_size: int = 4,
        widths: Sequence[int] = (512, 256, 128, 64),
        depths: Sequence[int] = (2, 2, 2, 2),
        heads: Sequence[int] = (8, 4, 4, 2),
        mlp_ratio: float = 4.0,
        deaggregation: str | Sequence[str] = "conv",
        upsample: str = "nearest",
        out_patch: int = 1,
        out_conv: bool = False,
        parallel_branches: bool = False,
        mapping_layers: int = 0,
        style: bool = False,
        border_conv: bool = False,
        mlp_conv: bool = False,
        head: str = "linear",
        attention: Sequence[bool] | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        check_levels("nest generator", widths, depths, heads)
        levels = len(widths)
        attention = [True] * levels if attention is None else list(attention)
        if len(attention) != levels or not all(isinstance(a, bool) for a in attention):
            raise ConfigError(f"nest generator: attention needs one true or false per level ({levels}), "
                              f"got {attention}")
        if init_size % block_size:
            raise ConfigError(f"nest generator: block_size {block_size} does not divide the initial "
                              f"{init_size}x{init_size} map; pick a divisor of init_size")
        kinds = [deaggregation] * (levels - 1) if isinstance(deaggregation, str) else deaggregation
        if not isinstance(kinds, (list, tuple)) or len(kinds) != levels - 1:
            raise ConfigError(f"nest generator: deaggregation needs one kind, or one per level transition "
                              f"({levels - 1}), got {deaggregation}")
        for kind in kinds:
            if kind not in DEAGGREGATIONS:
                raise ConfigError(f"nest generator: unknown deaggregation '{kind}' "
                                  f"(choose from {', '.join(DEAGGREGATIONS)})")
        if upsample not in UPSAMPLINGS:
            raise ConfigError(f"nest generator: unknown upsample '{upsample}' (choose from {', '.join(UPSAMPLINGS)})")
        if "pixelshuffle" in kinds and upsample != "nearest":
            raise ConfigError("nest generator: upsample applies to the conv and linear de-aggregations only; "
                              "drop it for pixelshuffle")
        if any(kind == "pixelshuffle" and w % 4 for kind, w in zip(kinds, widths)):
            raise ConfigError("nest generator: pixelshuffle de-aggregation needs widths divisible by 4")
        if head not in HEADS:
            raise ConfigError(f"nest generator: unknown head '{head}' (choose from {', '.join(HEADS)})")
        if mapping_layers < 0:
            raise ConfigError(f"nest generator: mapping_layers must be 0 or more (got {mapping_layers})")
        reachable = init_size * 2 ** (levels - 1) * out_patch
        if resolution is not None and resolution != reachable:
            raise ConfigError(f"nest generator: resolution {resolution} is not reachable: init_size {init_size} "
                              f"x 2^{levels - 1} levels x out_patch {out_patch} = {reachable}")
        self.z_dim = z_dim
        self.resolution = reachable
        self.init_size = init_size
        self.out_patch = out_patch

        self.style = style
        style_dim = z_dim if style else 0

        self.mapping = MappingNetwork(z_dim, mapping_layers) if mapping_layers else nn.Identity()
        self.stem = nn.Linear(z_dim, init_size * init_size * widths[0])
        self.levels = nn.ModuleList(
            NesTLevel(init_size * 2**i, block_size, widths[i], depths[i], heads[i], mlp_ratio, parallel_branches,
                      style_dim, border_conv, mlp_conv, attention[i])
            for i in range(levels)
        )
        self.deaggregations = nn.ModuleList(
            PixelShuffleDeaggregation(widths[i], widths[i + 1]) if kind == "pixelshuffle"
            else upsampling_deaggregation(kind)(widths[i], widths[i + 1], upsample, style_dim)
            for i, kind in enumerate(kinds)
        )
        # pixelshuffle keeps the conv head's conv up-step: its copies would draw the 2x2 patches that head removes
        up = upsampling_deaggregation("linear" if "linear" in kinds or deaggregation == "linear" else "conv")
        self.out_conv = OutConv(widths[-1]) if out_conv else nn.Identity()
        self.head_norm = AdaptiveLayerNorm(widths[-1], style_dim)
        self.head = (ConvHead(widths[-1], out_patch, upsample, style_dim, up) if head == "conv"
                     else nn.Linear(widths[-1], 3 * out_patch**2))

        self.apply(init_vit_weights)
        for level in self.levels:
            nn.init.trunc_normal_(level.pos_embed, std=0.02)
        if mapping_layers:
            self.mapping.init_weights()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)  # (B, z_dim); z itself without a mapping network
        style = w if self.style else None  # modulates every LayerNorm when set
        x = self.stem(w).view(z.shape[0], self.init_size, self.init_size, -1)  # (B, 8, 8, C0)
        for i, level in enumerate(self.levels):
            x = level(x, style)  # (B, H, W, C_i)
            if i < len(self.deaggregations):
                x = self.deaggregations[i](x, style)  # (B, 2H, 2W, C_i+1), blocks x4
        x = self.head_norm(self.out_conv(x), style)
        if isinstance(self.head, ConvHead):
            return torch.tanh(self.head(x, style))  # (B, 3, R, R)
        x = self.head(x)  # (B, H, W, 3 * p * p)
        x = F.pixel_shuffle(x.permute(0, 3, 1, 2), self.out_patch)  # (B, 3, R, R)
        return torch.tanh(x)
