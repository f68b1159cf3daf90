"""GAN objectives on discriminator logits, and the R1 gradient penalty.

Logits are (B,), or (B, N) for a discriminator that judges N patches or scales (projected); every loss averages
over all of them. They are cast to float32 before any loss so that bf16/fp16 autocast never touches the reductions.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class Objective(NamedTuple):
    """A GAN objective: the discriminator's and the generator's loss, each a mean over logits."""

    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real_logits, fake_logits) -> loss
    g: Callable[[torch.Tensor], torch.Tensor]  # fake_logits -> loss


LOSSES: dict[str, Objective] = {
    # logistic: D minimises -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), G minimises -log sigmoid(D(G(z)))
    "nonsaturating": Objective(
        d=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
        g=lambda fake: F.softplus(-fake).mean(),
    ),
    "hinge": Objective(
        d=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
        g=lambda fake: -fake.mean(),
    ),
}


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss of the objective `kind` (a key of LOSSES)."""
    return LOSSES[kind].d(real_logits.float(), fake_logits.float())


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss of the objective `kind` (a key of LOSSES)."""
    return LOSSES[kind].g(fake_logits.float())


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """R1 = E ||d D(x) / d x||^2 on real images x (x must require grad), kept differentiable.

    Under fp16 the gradient is taken of the loss-scaled logits (so it does not underflow) and unscaled
    afterwards; the squared norm is always computed in float32.
    """
    (grads,) = torch.autograd.grad(real_logits.float().sum() * grad_scale, reals, create_graph=True)
    grads = grads.float() / grad_scale
    return grads.square().sum(dim=(1, 2, 3)).mean()
