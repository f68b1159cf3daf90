"""Exponential moving average of the generator weights (the network used for samples and metrics)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch: int, ema_kimg: float, images_seen: int, rampup: float | None) -> float:
    """Per-step decay giving a half-life of ema_kimg thousand images: 0.5 ** (batch / (ema_kimg * 1000)).

    With ramp-up (StyleGAN2-ADA) the half-life is at most rampup * images_seen, so early weights,
    which are far from good, are forgotten quickly.
    """
    half_life = ema_kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
