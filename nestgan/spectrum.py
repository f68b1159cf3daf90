"""Where in frequency, and where on the pixel grid, generated images differ from the real ones.

    python -m nestgan.spectrum --ckpt runs/00004-.../network-snapshot-000004.096.pt --ckpt .../network-snapshot-000012.288.pt

FID says how far apart two image sets are, not what differs. A generator built from blocks and 2x upsamplings can
leave its grid in the images (StyleSwin's blocking artifacts, checkerboards of up-convolutions), and such texture
shows here as:
- the power spectrum: mean |FFT|^2 along rows and columns at each frequency, generated over real (1 = same power);
- the step profile: mean |difference| between neighbouring pixels, by the position of the step modulo --period. Real
  photographs have no preferred phase; a generator whose texture follows its block or upsampling grid does;
- the seam ratio: the step across the grid's borders over the median step elsewhere (seam_ratio), generated and
  real side by side: one number per checkpoint for "are the blocks visible". Its two parts: the block seam ratio,
  the step across the borders over the other steps of the same 2-px phase (block_seam_ratio: the block grid alone),
  and the pair ratio, the step between 2-px pixel pairs over the step inside one (pair_ratio: a last 2x
  upsampling's texture).

The generated images are the first --n of the FID metrics' stream (same seed, same quantisation to uint8); the reals
are the first --n of the dataset the first checkpoint was trained on.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from nestgan.checkpoint import read_generator
from nestgan.cli import user_errors_as_exit
from nestgan.data import load_training_data, trained_data_source
from nestgan.device import DEVICES, resolve_device
from nestgan.errors import ConfigError
from nestgan.metrics.fidelity import metric_stream_batches
from nestgan.threads import choose_threads


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float (N, C, R, R) -> (R/2 + 1,): mean power at 0 .. R/2 cycles per image, rows and columns together."""
    x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    rows = torch.fft.rfft(x, dim=-1).abs().square().mean(dim=(0, 1, 2))
    cols = torch.fft.rfft(x, dim=-2).abs().square().mean(dim=(0, 1, 3))
    return (rows + cols) / 2


def step_profile(images: torch.Tensor, period: int) -> torch.Tensor:
    """(N, C, R, R) -> (period,): mean |x[i+1] - x[i]| over rows and columns, for i mod period = 0 .. period-1."""
    x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (R-1,): step from column i to i+1
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    steps = (horizontal + vertical) / 2
    return torch.stack([steps[phase::period].mean() for phase in range(period)])


def seam_ratio(images: torch.Tensor, period: int) -> float:
    """Mean |step| across the grid's borders (i mod period = period - 1) over the median step at the other phases.

    A generator whose blocks or patches meet with a visible seam scores above the reals (which score about 1); a
    seam-free one scores what the reals score.
    """
    steps = step_profile(images, period)
    return float(steps[-1] / steps[:-1].median())


def block_seam_ratio(images: torch.Tensor, period: int) -> float:
    """Mean |step| across the grid's borders over the median step at the other odd positions (i mod 2 = 1, as at
    the borders; for an even period of at least 4).

    A last 2x upsampling leaves its own texture: every step between two upsampled pixel pairs (odd i) differs from
    the steps inside a pair, which raises seam_ratio without any block showing. Against the other odd steps that
    texture cancels, and what is left is the block grid alone: the reals score about 1.
    """
    if not separates_pairs(period):
        raise ConfigError(f"the block seam ratio needs an even grid period of at least 4, got {period}")
    steps = step_profile(images, period)
    return float(steps[-1] / steps[1:-1:2].median())


def separates_pairs(period: int) -> bool:
    """A grid period whose borders can be told from a last 2x upsampling's pair steps: even, at least 4."""
    return period >= 4 and period % 2 == 0


def pair_ratio(images: torch.Tensor) -> float:
    """Mean |step| between 2-px pixel pairs (odd i) over the step inside a pair (even i): the texture of a last 2x
    upsampling; the reals score about 1."""
    steps = step_profile(images, 2)
    return float(steps[1] / steps[0])


def _generated(ckpt: str, n: int, batch: int, device: torch.device, seed: int) -> tuple[torch.Tensor, dict, str]:
    generator, config, progress = read_generator(ckpt, device=device)
    with torch.no_grad():
        images = torch.cat([b.cpu() for b in metric_stream_batches(generator, n, batch, device, seed)])
    kimg = progress.get("kimg")
    label = f"{Path(ckpt).parent.name[:5]} {kimg:.1f} kimg" if kimg is not None else Path(ckpt).name
    return images, config, label


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", "ckpts", multiple=True, required=True, help="Training checkpoint; repeat to compare several.")
@click.option("--n", type=int, default=1000, show_default=True, help="Images per side (generated, real).")
@click.option("--period", type=int, default=4, show_default=True, help="Grid period in pixels of the step profile.")
@click.option("--data-dir", help="Where the real images live [the first checkpoint's; an export keeps none].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated images' latents.")
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=int,
              help="CPU threads for torch ops [one per usable CPU that other processes leave free].")
@user_errors_as_exit
def main(*, ckpts: tuple[str, ...], n: int, period: int, data_dir: str | None, seed: int, batch: int, device: str,
         threads: int | None) -> None:
    """Print the generated/real power spectrum and step profile of each checkpoint as markdown tables."""
    if n < 1 or batch < 1 or period < 2:
        raise ConfigError(f"--n and --batch must be positive and --period at least 2 (got {n}, {batch}, {period})")
    choose_threads(threads)
    torch_device = resolve_device(device)
    runs = [_generated(ckpt, n, batch, torch_device, seed) for ckpt in ckpts]
    resolution = runs[0][0].shape[-1]
    if any(images.shape[-1] != resolution for images, _, _ in runs):
        raise ConfigError("--ckpt: the checkpoints generate different resolutions; compare one resolution at a time")
    dataset = load_training_data(trained_data_source(runs[0][1].get("data") or {}, data_dir=data_dir), resolution)
    reals = torch.from_numpy(np.array(dataset.images[: min(n, len(dataset))]))

    real_power = power_spectrum(reals)
    ratios = [power_spectrum(images) / real_power for images, _, _ in runs]
    labels = [label for _, _, label in runs]
    click.echo(f"Power, generated / real ({n} generated, {len(reals)} real {dataset.pixels_id}):\n")
    click.echo("| cycles per image | period (px) | " + " | ".join(labels) + " |")
    click.echo("|---" * (2 + len(labels)) + "|")
    for k in range(1, len(real_power)):
        click.echo(f"| {k} | {resolution / k:.1f} | " + " | ".join(f"{r[k]:.2f}" for r in ratios) + " |")

    click.echo(f"\nMean |step| between neighbouring pixels, by the step's position modulo {period} (pixel i to i+1):\n")
    click.echo("| images | " + " | ".join(f"i mod {period} = {p}" for p in range(period)) + " |")
    click.echo("|---" * (1 + period) + "|")
    for label, images in [("real", reals), *zip(labels, (images for images, _, _ in runs))]:
        click.echo(f"| {label} | " + " | ".join(f"{v:.3f}" for v in step_profile(images, period)) + " |")

    blocks = separates_pairs(period)
    real_seams = seam_ratio(reals, period)
    click.echo(f"\nSeam ratio: step across a {period}-px border over the median step elsewhere (reals: "
               f"{real_seams:.3f})"
               + ("; block seam ratio: the same over the other odd steps only, the block grid without a last 2x "
                  "upsampling's texture; pair ratio: the step between 2-px pixel pairs over the step inside one, "
                  "that texture" if blocks else "") + ":\n")
    columns = ["seam ratio", "over the reals'", *(["block seam ratio", "pair ratio"] if blocks else [])]
    click.echo("| images | " + " | ".join(columns) + " |")
    click.echo("|---" * (1 + len(columns)) + "|")
    for label, images in [("real", reals), *zip(labels, (images for images, _, _ in runs))]:
        seams = seam_ratio(images, period)
        values = [seams, seams / real_seams,
                  *([block_seam_ratio(images, period), pair_ratio(images)] if blocks else [])]
        click.echo(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    main()
