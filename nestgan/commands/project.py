"""Project an image into a generator: nestgan-project --ckpt G --target face.png [--steps 300]; see --help.

Finds the latent whose image is closest to the target (nestgan.projection: a perceptual distance plus pixels) and
writes, in --outdir: projection.png, target.png (the target as the generator sees it: cropped and resized),
side-by-side.png (target | projection), latent.npy (z, shape (z_dim,)), levels.npz (the level offsets, when they were
optimised: --offsets), progress.gif (the image along the optimisation) and log.jsonl (distance and PSNR along the way).
Existing files are never overwritten without --force.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from nestgan.checkpoint import read_generator
from nestgan.cli import user_errors_as_exit
from nestgan.commands.generate import check_targets
from nestgan.data.files import UnreadableImage, decode_image
from nestgan.data.sources import CELEBA_CROP
from nestgan.device import DEVICES, resolve_device
from nestgan.errors import ConfigError, DataError
from nestgan.images import write_gif
from nestgan.projection import DEFAULT_OFFSETS, OFFSETS, project
from nestgan.threads import choose_threads

# How a target is cropped to a square before the resize: the largest centred square, or CelebA's aligned-face crop
# (for an img_align_celeba file, framed as the CelebA models were trained).
CROPS = {"square": None, "celeba": CELEBA_CROP}
OUTPUTS = ("projection.png", "target.png", "side-by-side.png", "latent.npy", "progress.gif", "log.jsonl")


def read_target(path: str, resolution: int, crop: str) -> torch.Tensor:
    """The target image as uint8 (3, R, R); a missing or unreadable file is a DataError naming it."""
    if not Path(path).is_file():
        raise DataError(f"--target {path}: no such file")
    try:
        return torch.from_numpy(decode_image(path, resolution, CROPS[crop]).copy())
    except UnreadableImage as e:
        raise DataError(f"--target {path} is not an image PIL can read ({e}); give a PNG or JPEG") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", required=True, type=str,
              help="Training checkpoint (network-snapshot-*.pt, best.pt) or .safetensors export.")
@click.option("--target", required=True, type=str, help="The image to project (PNG, JPEG, ...).")
@click.option("--crop", type=click.Choice(list(CROPS)), default="square", show_default=True,
              help="Square crop of the target before the resize: the largest centred one, or CelebA's face crop.")
@click.option("--steps", type=int, default=300, show_default=True, help="Optimisation steps.")
@click.option("--offsets", type=click.Choice(OFFSETS), default=DEFAULT_OFFSETS, show_default=True,
              help="What the second half of the steps moves besides z: the first level's token map (coarse), none, "
                   "a vector per level (channels), or every level's input (all: reproduces almost any image).")
@click.option("--outdir", type=str, help="Where the outputs go [out/project-<target name>].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=int, help="CPU threads for torch ops [one per usable CPU that other processes leave free].")
@click.option("--raw", is_flag=True, help="Use the raw generator weights G instead of the EMA G_ema.")
@click.option("--force", is_flag=True, help="Overwrite the outputs of an earlier projection in --outdir.")
@user_errors_as_exit
def main(ckpt: str, target: str, crop: str, steps: int, offsets: str, outdir: str | None, device: str, threads: int | None,
         raw: bool, force: bool) -> None:
    """Find the latent of an image: the generator's closest image to it, and the latent that draws it."""
    if steps < 1:
        raise ConfigError(f"--steps must be positive, got {steps}")
    choose_threads(threads)
    torch_device = resolve_device(device)
    generator, _, _ = read_generator(ckpt, ema=not raw, device=torch_device)
    goal = read_target(target, generator.resolution, crop)
    out = Path(outdir) if outdir else Path("out") / f"project-{Path(target).stem}"
    check_targets(out, [out / name for name in (*OUTPUTS, "levels.npz")], force)

    result = project(generator, goal, steps=steps, offsets=offsets, device=torch_device, progress=True)
    pictures = [image.permute(1, 2, 0).numpy() for image in (goal, result.image)]
    Image.fromarray(pictures[1]).save(out / "projection.png")
    Image.fromarray(pictures[0]).save(out / "target.png")
    Image.fromarray(np.concatenate(pictures, axis=1)).save(out / "side-by-side.png")
    np.save(out / "latent.npy", result.z.numpy())
    if result.offsets:
        np.savez(out / "levels.npz", *[offset.numpy() for offset in result.offsets])
    write_gif(result.frames, out / "progress.gif", frame_ms=80)
    (out / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in result.log))
    click.echo(f"projected {target} in {steps} steps (started from seed {result.start_seed}"
               f"{f', z and {offsets} offsets' if result.offsets else ', z alone'}): PSNR {result.psnr:.2f} dB, "
               f"perceptual distance {result.perceptual:.4f}; wrote {', '.join(OUTPUTS)}{' and levels.npz' if result.offsets else ''} "
               f"to {out}")


if __name__ == "__main__":
    main()
