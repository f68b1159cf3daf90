"""Generate images from a checkpoint: python generate.py --ckpt PATH [--n 64 | --seeds 0-63] [flags]; see --help.

One PNG per seed (seed0000.png, ...) in --outdir, which holds nothing else (so FID tools can read it as is),
and their grid beside it as <outdir>-grid.png; or, with --interpolate A,B, a strip of --steps images walking the
great circle (slerp) from seed A's z to seed B's (interp-A-B.png, and interp-A-B.gif with --gif).
Architecture and resolution come from the checkpoint. Image i is the generator's output for
z = torch.randn(z_dim) drawn from a CPU torch.Generator seeded with seed i, so a seed always gives the
same z, and the same image on the same device. --trunc-resample PSI redraws every z component outside
[-PSI, PSI] (BigGAN's truncation trick, not StyleGAN's psi, which pulls w towards its mean): smaller PSI, more
typical and less varied images. Existing files are never overwritten without --force.

With --export OUT.safetensors it writes no images but the generator itself (G_ema, or G with --raw): its weights
and, as metadata, its config, for every loader of nestgan and for any safetensors reader.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import click
import torch
from PIL import Image

from nestgan.api import check_sampling, sample, seed_latent, slerp, synthesize
from nestgan.checkpoint import (ANY_GENERATOR_FILE, EXPORT_DTYPES, export_generator, export_metrics, file_format,
                                metrics_batch, read_generator)
from nestgan.cli import user_errors_as_exit
from nestgan.device import DEVICES, resolve_device
from nestgan.errors import ConfigError
from nestgan.images import as_pixels, image_grid, write_gif

MAX_SEED = 2**32 - 1  # StyleGAN's range (numpy RandomState seeds)


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0-63', '1,5,9' or a mix like '0-3,10' -> a list of seeds in the given order."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"bad {flag} '{text}': use a range 0-63, a list 1,5,9 or a mix 0-3,10")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first or last > MAX_SEED:
            raise ConfigError(f"bad seed range '{part.strip()}' in {flag}: need A <= B <= {MAX_SEED}")
        seeds.extend(range(first, last + 1))
    return seeds


def default_outdir(ckpt: str) -> Path:
    """out/<run dir>-<checkpoint stem>: the best.pt of two runs go to two folders."""
    path = Path(ckpt).resolve()
    return Path("out") / f"{path.parent.name}-{path.stem}"


def grid_path(outdir: Path) -> Path:
    """The grid goes beside the samples folder, <outdir>-grid.png, so the folder holds only the samples."""
    outdir = outdir.resolve() if outdir.name in ("", "..") else outdir
    return outdir.with_name(f"{outdir.name}-grid.png")


def check_targets(outdir: Path, files: list[Path], force: bool) -> None:
    """Refuse to overwrite any of `files` (unless force) or to write where it cannot; creates --outdir."""
    clash = [path for path in files if path.exists()]
    if clash and not force:
        raise ConfigError(
            f"{clash[0]}{f' and {len(clash) - 1} more' if len(clash) > 1 else ''} already exist"
            f"{'s' if len(clash) == 1 else ''}; choose another --outdir or pass --force to overwrite"
        )
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for folder in {path.parent for path in files}:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as e:
        raise ConfigError(f"cannot write to --outdir {outdir}: {e.strerror or e}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", required=True, type=str,
              help="Training checkpoint (network-snapshot-*.pt, best.pt) or .safetensors export.")
@click.option("--n", "num", type=int, help="Number of images, seeds 0..n-1 [64].")
@click.option("--seeds", type=str, help="Seeds instead of --n: a range 0-63, a list 1,5,9 or a mix.")
@click.option("--outdir", type=str, help="Folder of the samples, nothing else [out/<run dir>-<checkpoint name>].")
@click.option("--grid/--no-grid", default=True, show_default=True,
              help="Also write their grid, beside --outdir as <outdir>-grid.png.")
@click.option("--trunc-resample", type=float, metavar="PSI",
              help="BigGAN truncation: redraw z components outside [-PSI, PSI] (not StyleGAN's psi).")
@click.option("--batch", type=click.IntRange(min=1),
              help="Images per generator call [the checkpoint's metrics_batch: the training batch where G samples with "
                   "batch statistics; else 64].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--raw", is_flag=True, help="Use the raw generator weights G instead of the EMA G_ema.")
@click.option("--interpolate", type=str, help="A,B: slerp from seed A's z to seed B's instead of per-seed images.")
@click.option("--steps", type=int, default=8, show_default=True, help="Images in the --interpolate strip.")
@click.option("--gif", is_flag=True, help="With --interpolate: also write an animated GIF.")
@click.option("--export", "export_path", type=str, metavar="OUT.safetensors",
              help="Write the generator (weights and config, no optimiser, no pickle) here instead of images.")
@click.option("--export-dtype", type=click.Choice(list(EXPORT_DTYPES)), default="fp32", show_default=True,
              help="Weights' storage type in --export (bf16: half the size; pixels may differ slightly).")
@click.option("--force", is_flag=True, help="Overwrite existing samples and grid, or the --export file.")
@user_errors_as_exit
def main(
    *,
    ckpt: str,
    num: int | None,
    seeds: str | None,
    outdir: str | None,
    grid: bool,
    trunc_resample: float | None,
    batch: int | None,
    device: str,
    raw: bool,
    interpolate: str | None,
    steps: int,
    gif: bool,
    export_path: str | None,
    export_dtype: str,
    force: bool,
) -> None:
    """Write generated images of a trained generator as PNGs, or export the generator (--export)."""
    if export_path:
        image_flags = {"--n": num is not None, "--seeds": seeds, "--outdir": outdir, "--interpolate": interpolate,
                       "--gif": gif, "--trunc-resample": trunc_resample is not None}
        given = [flag for flag, value in image_flags.items() if value]
        if given:
            raise ConfigError(f"--export writes the generator, not images; drop {'/'.join(given)}")
        write_export(ckpt, Path(export_path), raw, export_dtype, force)
        return
    if num is not None and num <= 0:
        raise ConfigError(f"--n must be positive, got {num}")
    if gif and not interpolate:
        raise ConfigError("--gif needs --interpolate A,B")
    if interpolate:
        if seeds or num is not None:
            raise ConfigError("--interpolate A,B takes its two seeds itself; drop --n/--seeds")
        ends = parse_seeds(interpolate, "--interpolate")
        if len(ends) != 2 or "-" in interpolate:
            raise ConfigError(f"--interpolate needs two seeds A,B, got '{interpolate}'")
        if steps < 2:
            raise ConfigError(f"--steps must be at least 2, got {steps}")
        stem = f"interp-{ends[0]}-{ends[1]}"
        names = [f"{stem}.png"] + ([f"{stem}.gif"] if gif else [])
    else:
        seed_list = parse_seeds(seeds) if seeds else list(range(64 if num is None else num))
        if num is not None and seeds and num != len(seed_list):
            raise ConfigError(f"--n {num} does not match the {len(seed_list)} seeds of --seeds; give one of them")
        names = [f"seed{s:04d}.png" for s in seed_list]

    torch_device = resolve_device(device)
    generator, config, _ = read_generator(ckpt, ema=not raw, device=torch_device)  # checks the checkpoint first
    batch = batch or metrics_batch(config)  # a batch-statistics generator's images depend on it
    check_sampling(batch, trunc_resample, ("--batch", "--trunc-resample"))
    out = Path(outdir) if outdir else default_outdir(ckpt)
    grid_file = grid_path(out) if grid and not interpolate else None
    check_targets(out, [out / name for name in names] + ([grid_file] if grid_file else []), force)

    if interpolate:
        a, b = (seed_latent(s, generator.z_dim, trunc_resample) for s in ends)
        images = as_pixels(synthesize(generator, slerp(a, b, torch.linspace(0, 1, steps)), torch_device, batch,
                                      progress=True))
        Image.fromarray(image_grid(images, columns=steps)).save(out / names[0])
        if gif:
            write_gif(images, out / names[1])
        click.echo(f"wrote {', '.join(names)} ({steps} steps) to {out}")
        return

    images = as_pixels(sample(generator, seed_list, torch_device, trunc_resample, batch, progress=True))
    for seed, image in zip(seed_list, images):
        Image.fromarray(image).save(out / f"seed{seed:04d}.png")
    if grid_file:
        Image.fromarray(image_grid(images, columns=math.ceil(math.sqrt(len(images))))).save(grid_file)
    click.echo(f"wrote {len(images)} images to {out}{f' and their grid to {grid_file}' if grid_file else ''}")


def write_export(ckpt: str, path: Path, raw: bool, dtype: str, force: bool) -> None:
    """The generator of `ckpt` as a safetensors export at `path`, written atomically, never over a file unasked."""
    if path.suffix != ".safetensors":
        raise ConfigError(f"--export needs a file name ending in .safetensors, got {path}")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; choose another --export path or pass --force to overwrite")
    from nestgan.metrics.records import metrics_at  # the metrics package loads torch-fidelity: only for exports

    generator, config, progress = read_generator(ckpt, ema=not raw)  # on the CPU, where the export is written
    # The scores of the snapshot it comes from go along: those of its run directory, or an export's own.
    metrics = (export_metrics(ckpt) if file_format(ckpt, ANY_GENERATOR_FILE) == "safetensors"
               else metrics_at(Path(ckpt).parent, progress.get("kimg", -1.0)))
    try:
        export_generator(path, generator, config, progress, weights="G" if raw else "G_ema", dtype=dtype,
                         metrics=metrics)
    except OSError as e:
        raise ConfigError(f"cannot write --export {path}: {e.strerror or e}") from None
    click.echo(f"wrote {path} ({'G' if raw else 'G_ema'}, {dtype}, {path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
