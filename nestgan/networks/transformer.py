"""The pre-LN transformer layer shared by the NesT decoder (attention inside blocks) and TransGAN (global)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection. block_size 0: over the token axis of
    (..., tokens, C), every leading index its own sequence (TransGAN). block_size s: over each s x s block of an
    image-plane map (B, H, W, C), the blocks acting as batch (NesT); the map stays on the plane, only q, k and v are
    gathered into blocks (one copy) and the result scattered back (one copy)."""

    def __init__(self, dim: int, heads: int, block_size: int = 0) -> None:
        super().__init__()
        self.heads = heads
        self.block_size = block_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block_size:
            return self._within_blocks(x)
        lead, (n, c) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, n, c)
        b = x.shape[0]
        # (b, n, 3c) -> (3, b, heads, n, c/heads)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = _attend(q, k, v)  # (b, heads, n, c/heads)
        return self.proj(x.transpose(1, 2).reshape(*lead, n, c))

    def _within_blocks(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s, d = self.block_size, c // self.heads
        gh, gw = h // s, w // s  # blocks per column and row
        # (B, H, W, 3C) -> (3, B*T, heads, N, d), T = gh*gw blocks in row-major order, N = s*s tokens each
        qkv = self.qkv(x).view(b, gh, s, gw, s, 3, self.heads, d).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * gh * gw, self.heads, s * s, d)
        x = _attend(q, k, v)  # (B*T, heads, N, d)
        # (B, gh, gw, heads, s, s, d) -> (B, gh, s, gw, s, heads, d) = (B, H, W, C)
        x = x.view(b, gh, gw, self.heads, s, s, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, h, w, c)
        return self.proj(x)


# The attention kernels: which scaled_dot_product_attention backend runs is chosen here and nowhere else.
def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # The fused CPU kernel's bf16 backward is about 10x slower than the math one on many short sequences
    # (NesT's blocks of 16 tokens): 463 against 55 ms for 2048 blocks x 4 heads on an AVX512-BF16 CPU.
    cpu_bf16 = q.device.type == "cpu" and q.dtype == torch.bfloat16
    with sdpa_kernel(SDPBackend.MATH) if cpu_bf16 else contextlib.nullcontext():
        return F.scaled_dot_product_attention(q, k, v)


def twice_differentiable_attention() -> contextlib.AbstractContextManager:
    """Attention inside this context can be differentiated twice (R1 differentiates a discriminator's input
    gradient once more): the fused kernels (CPU flash, CUDA flash and memory-efficient) have no double backward
    ("derivative for ..._backward is not implemented"); the math one, an explicit softmax(q k^T / sqrt(d)) v, has."""
    return sdpa_kernel(SDPBackend.MATH)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class AdaptiveLayerNorm(nn.LayerNorm):
    """LayerNorm whose scale and shift come from a style vector w when style_dim > 0 (ViTGAN's self-modulated LN,
    DiT's adaLN): ln(x) * (1 + a(w)) + b(w). a and b start at zero, so a fresh layer is a plain LayerNorm. With
    style_dim = 0 it is exactly nn.LayerNorm (same parameters, same state-dict keys) and w is ignored.
    """

    def __init__(self, dim: int, style_dim: int = 0) -> None:
        super().__init__(dim, elementwise_affine=style_dim == 0)
        self.style = nn.Linear(style_dim, 2 * dim) if style_dim else None
        self.zero_style()

    def zero_style(self) -> None:
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
            nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        x = super().forward(x)
        if self.style is None:
            return x
        # w (B, style_dim) -> (B, 1, ..., 1, 2C): one scale and shift per sample, broadcast over its tokens
        scale, shift = self.style(w).view(w.shape[0], *[1] * (x.dim() - 2), -1).chunk(2, dim=-1)
        return torch.addcmul(shift, x, 1 + scale)


class TransformerLayer(nn.Module):
    """Pre-LN layer: x + attn(ln(x)), then x + mlp(ln(x)); or both branches side by side when `parallel`.
    With style_dim > 0 both LayerNorms are modulated by a style vector w (AdaptiveLayerNorm); `mlp` replaces the
    token-wise MLP (NesT's ConvMlp); block_size > 0 makes it a NesT layer on an image-plane map (see Attention).
    Without `attention` the layer is its MLP branch alone (HiT-GAN's high-resolution stages).

    The parallel form (Touvron et al. 2022, "Three things everyone should know about Vision Transformers") lets
    attention and MLP read the same input, removing a dependency between the two branches. Measured here at equal
    training time (docs/results.md, round 6): the same speed, and a slightly lower FID in one seed.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, parallel: bool = False,
                 style_dim: int = 0, mlp: nn.Module | None = None, block_size: int = 0,
                 attention: bool = True) -> None:
        super().__init__()
        self.parallel = parallel
        self.norm1 = AdaptiveLayerNorm(dim, style_dim) if attention else None
        self.attn = Attention(dim, heads, block_size) if attention else None
        self.norm2 = AdaptiveLayerNorm(dim, style_dim)
        self.mlp = mlp if mlp is not None else Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.attn is None:
            return x + self.mlp(self.norm2(x, w))
        if self.parallel:
            return x + self.attn(self.norm1(x, w)) + self.mlp(self.norm2(x, w))
        x = x + self.attn(self.norm1(x, w))
        return x + self.mlp(self.norm2(x, w))


def init_vit_weights(module: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal 0.02 for linear weights, zero biases, unit LayerNorm; the style
    projections of adaptive LayerNorms stay zero (Module.apply visits them before their LayerNorm)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, AdaptiveLayerNorm):
        module.reset_parameters()
        module.zero_style()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
