"""The Python API: load or build a generator, sample images for seeds, and compute metrics.

    import nestgan

    G = nestgan.load_generator("runs/<run>/best.pt")         # or a .safetensors export (generate.py --export)
    images = nestgan.sample(G, range(16))                    # uint8 (16, 3, R, R), the images generate.py writes
    nestgan.compute_metrics(images, ["kid16"], data="celeba", data_dir="data/celeba")
    G = nestgan.build_generator("nest-32", depths=[1, 1, 1])  # untrained, from a preset

Everything here is also what the command-line tools use, so a seed gives the same image in both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nestgan.errors import ConfigError, DataError


def seed_latent(seed: int, z_dim: int, trunc_resample: float | None = None) -> torch.Tensor:
    """z (z_dim,) for one seed: torch.randn from a CPU torch.Generator seeded with `seed`, so a seed gives the
    same z on every device. With `trunc_resample`, components outside [-trunc_resample, trunc_resample] are
    redrawn from the same stream (BigGAN's truncation trick, not StyleGAN's psi)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(z_dim, generator=rng)
    if trunc_resample is not None:
        outside = z.abs() > trunc_resample
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
            outside = z.abs() > trunc_resample
    return z


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (T,) x (D,) -> (T, D), with magnitudes interpolated linearly; lerp if a || b. At t = 0
    and t = 1 it is a and b exactly, so a walk's ends draw the ends' own images."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    t = t.view(-1, 1)
    if omega.abs() < 1e-6:
        path = (1 - t) * a + t * b
    else:
        path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return torch.where(t == 0, a, torch.where(t == 1, b, path))


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = True) -> nn.Module:
    """The generator in a training checkpoint (network-snapshot-*.pt, best.pt) or a safetensors export, rebuilt
    from the config stored with it, in eval mode on `device`. A checkpoint gives G_ema, or G with ema=False.

    Raises nestgan.errors.CheckpointError, naming the problem, for anything that is not such a file.
    """
    from nestgan.checkpoint import read_generator

    generator, _, _ = read_generator(path, ema=ema, device=device)
    return generator


def build_generator(preset_name: str, **overrides: Any) -> nn.Module:
    """An untrained generator from a preset (nest-32, nest-64, conv-32, ...; nestgan.presets.preset_names
    ("generators") lists them), with constructor arguments in `overrides` replacing the preset's."""
    from nestgan.networks import generator_from_config, generator_preset

    return generator_from_config({**generator_preset(preset_name), **overrides})


def check_sampling(batch: int, trunc_resample: float | None, names: tuple[str, str] = ("batch", "trunc_resample")
                   ) -> None:
    """The sampling settings are usable; `names`: how the caller calls them (generate.py: its flags)."""
    if batch < 1:
        raise ConfigError(f"{names[0]} must be positive, got {batch}")
    if trunc_resample is not None and not trunc_resample > 0:
        raise ConfigError(f"{names[1]} must be positive, got {trunc_resample}")


@torch.no_grad()
def synthesize(
    generator: nn.Module,
    z: torch.Tensor,
    device: str | torch.device | None = None,
    batch: int = 32,
    quantize: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """The one path from latents to images: z (N, z_dim) -> images (N, 3, R, R) on the CPU, `batch` at a time.

    quantize: uint8 in [0, 255], rounded like StyleGAN (what generate.py writes); False: the generator's float
    output in [-1, 1]. device: where the generator runs (it is moved there); None: where its parameters are. The
    generator runs in eval mode and is left in the mode it had. progress: a bar on stderr when it is a terminal.
    """
    from nestgan.images import quantize_images
    from nestgan.progress import image_progress

    check_sampling(batch, None)
    if device is None:
        device = next(generator.parameters()).device
    generator.to(device)
    was_training = generator.training
    generator.eval()
    out = []
    try:
        with image_progress(len(z), "generating", enabled=None if progress else False) as bar:
            for chunk in z.split(batch):
                x = generator(chunk.to(device))
                out.append((quantize_images(x) if quantize else x.float()).cpu())
                bar.update(len(chunk))
    finally:
        generator.train(was_training)
    return torch.cat(out)


def sample(
    generator: nn.Module,
    seeds: Iterable[int],
    device: str | torch.device | None = None,
    trunc_resample: float | None = None,
    batch: int = 32,
    quantize: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Images (N, 3, R, R) for `seeds`, on the CPU: z from seed_latent (with `trunc_resample` as generate.py's
    --trunc-resample) through `synthesize`, whose arguments the others are."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("sample needs at least one seed")
    check_sampling(batch, trunc_resample)
    z = torch.stack([seed_latent(seed, generator.z_dim, trunc_resample) for seed in seeds])
    return synthesize(generator, z, device, batch, quantize, progress)


def compute_metrics(
    images: torch.Tensor | str | os.PathLike | nn.Module,
    metrics: Sequence[str] | str,
    data: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    batch: int = 64,
    cache_dir: str | os.PathLike | None = None,
    inception_weights: str | os.PathLike | None = None,
    seed: int = 0,
    feature_extractor: str | None = None,
) -> dict[str, float]:
    """Metric values (StyleGAN names: "fid1k_full", "kid10k_mean", ...) of generated images against dataset
    `data` (shapes, celeba, imagenet64, cifar10, folder; with `data_dir`, `split`, `max_images` as in training).

    images: uint8 (N, 3, R, R) (e.g. from sample), a folder of image files (e.g. what generate.py wrote), or a
    generator, which draws its own images from the metrics' seed stream. fidN / kidN use the first N images, so
    N must not exceed the number given. The reals are prepared at the images' resolution; their features are
    cached under `cache_dir`, like the Inception weights (see nestgan.metrics.inception_weights for offline use).
    feature_extractor: a torch-fidelity extractor name instead of Inception v3.
    """
    from nestgan.data import load_dataset
    from nestgan.metrics import evaluate_metrics

    names = [name.strip() for name in (metrics.split(",") if isinstance(metrics, str) else metrics) if name.strip()]
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        fakes = load_dataset("folder", _first_image_size(folder), data_dir=folder, cache_dir=cache_dir,
                             progress=False).images
        images = torch.from_numpy(np.array(fakes))  # a copy: the prepared array is a read-only memory map
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ConfigError(
                f"images must be uint8 (N, 3, R, R) (nestgan.sample gives that), got {images.dtype} {tuple(images.shape)}"
            )
        resolution = images.shape[-1]
    else:
        resolution = images.resolution
    reals = load_dataset(data, resolution, data_dir=data_dir, split=split, cache_dir=cache_dir, max_images=max_images)
    extra = {"feature_extractor": feature_extractor} if feature_extractor else {}
    report = evaluate_metrics(images, reals, names, device, batch_size=batch, cache_dir=cache_dir,
                              weights=inception_weights, seed=seed, **extra)
    return report.values


def _first_image_size(folder: Path) -> int:
    """The side of the first image file in `folder` (sorted, recursively): the resolution of those images."""
    from PIL import Image

    from nestgan.data.files import IMAGE_EXTENSIONS, list_files

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    first = next((f for f in list_files(folder) if f.lower().endswith(IMAGE_EXTENSIONS)), None)
    if first is None:
        raise DataError(f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {folder}")
    with Image.open(first) as image:
        width, height = image.size
    if width != height:
        raise DataError(f"{first} is {width}x{height}; generated images for metrics are square")
    return width
