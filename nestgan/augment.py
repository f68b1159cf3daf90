"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable colour, translation and cutout augmentation.

The discriminator only ever sees augmented images, real and fake alike, so the generator is not pushed to
reproduce the augmentations. Parameters are drawn per sample from a torch.Generator owned by the
augmenter; its state is part of a checkpoint, which makes resumed runs exact.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One U(0, 1) number per sample, shaped (B, 1, 1, 1) to broadcast over an image batch."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=gen).to(x.device, x.dtype)


def brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x, gen) - 0.5)


def saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * (_uniform(x, gen) * 2) + gray


def contrast(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, gen) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to +-ratio of its size in x and y, filling with zeros."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1), generator=gen).to(x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1), generator=gen).to(x.device)
    rows = torch.arange(h, device=x.device) + sy + dy  # (B, H) row of the padded image each output row reads
    cols = torch.arange(w, device=x.device) + sx + dx  # (B, W)
    padded = F.pad(x, [sx, sx, sy, sy])  # (B, C, H + 2sy, W + 2sx)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ratio * size per image, centred anywhere (it may hang over the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :, None] - (cy - ch // 2)  # (B, H, 1) offset into the square
    xs = torch.arange(w, device=x.device)[None, None, :] - (cx - cw // 2)  # (B, 1, W)
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, list[Op]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


class DiffAugment:
    """Callable augmenter: `augment(images)` with images (B, C, H, W); same policy for every call.

    policy: comma-separated subset of "color,translation,cutout"; "" is the identity.
    """

    def __init__(self, policy: str, seed: int) -> None:
        names = [p for p in policy.split(",") if p]
        unknown = [p for p in names if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown} (known: {', '.join(POLICIES)})")
        self.policy = ",".join(names)
        self.ops = [op for name in names for op in POLICIES[name]]
        self.generator = torch.Generator().manual_seed(seed)  # on the CPU: identical streams on every device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x, self.generator)
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng"])
