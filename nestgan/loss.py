"""GAN objectives on discriminator logits, and the R1 gradient penalty.

Logits are (B,), or (B, N) for a discriminator that judges N patches or scales (projected); every loss averages
over all of them. They are cast to float32 before any loss so that bf16/fp16 autocast never touches the reductions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss, mean over the batch. kind: "nonsaturating" (logistic) or "hinge"."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    raise ValueError(f"unknown loss '{kind}'")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss, mean over the batch: -log sigmoid(D(G(z))) or -D(G(z))."""
    fake_logits = fake_logits.float()
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss '{kind}'")


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """R1 = E ||d D(x) / d x||^2 on real images x (x must require grad), kept differentiable.

    Under fp16 the gradient is taken of the loss-scaled logits (so it does not underflow) and unscaled
    afterwards; the squared norm is always computed in float32.
    """
    (grads,) = torch.autograd.grad(real_logits.float().sum() * grad_scale, reals, create_graph=True)
    grads = grads.float() / grad_scale
    return grads.square().sum(dim=(1, 2, 3)).mean()
