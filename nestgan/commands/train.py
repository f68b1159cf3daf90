"""Train a GAN: python train_gan.py [--data shapes] [--config configs/X.toml] [flags]; see --help.

Flags override the --config file, which overrides the dataset preset nestgan/configs/<data>.toml.
Multi-GPU / multi-node: torchrun --nproc_per_node=N train_gan.py ...
"""

from __future__ import annotations

import json
from typing import Any

import click

from nestgan.cli import number_list, user_errors_as_exit
from nestgan.config import TRAINABLE, TrainConfig, load_config
from nestgan.data.sources import DATASETS
from nestgan.device import DEVICES, PRECISION_CHOICES
from nestgan.networks import DISCRIMINATORS, GENERATORS
from nestgan.presets import preset_names
from nestgan.training.distributed import world_from_env


def preset_resolutions() -> list[str]:
    """The resolutions that have a generator preset (<g>-<resolution>[-variant]), smallest first."""
    sizes = {name.split("-")[1] for name in preset_names("generators") if "-" in name}
    return sorted((size for size in sizes if size.isdigit()), key=int)


def metric_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    return [] if names == ["none"] else names


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--data", type=click.Choice(list(DATASETS)), help="Dataset (default shapes: procedural, no download).")
@click.option("--data-dir", type=str,
              help="Where the dataset lives (folder: a folder or .zip of images; optional for others).")
@click.option("--config", "config_file", type=str, help="TOML file of config keys (see configs/recipes/*.toml).")
@click.option("--outdir", type=str, help="Parent of the numbered run directories [runs].")
@click.option("--kimg", type=float, help="Total training length in thousands of images.")
@click.option("--minutes", type=float, help="Also stop after this many minutes of training (snapshots excluded).")
@click.option("--batch", type=int, help="Images per optimiser step over all devices.")
@click.option("--batch-per-device", type=int, help="Micro-batch per device; smaller than batch/devices = accumulation.")
@click.option("--g", type=click.Choice(list(GENERATORS)), help="Generator family; preset <g>-<resolution>.")
@click.option("--d", type=click.Choice(list(DISCRIMINATORS)),
              help="Discriminator; nest uses preset nest-d-<resolution> (nestgan/configs/discriminators/).")
@click.option("--resolution", type=click.Choice(preset_resolutions()),
              help="Image size in pixels: those of the generator presets (others: resolution and a [generator] "
                   "table in a --config file).")
@click.option("--lr-g", type=float, help="Adam learning rate of the generator.")
@click.option("--lr-d", type=float, help="Adam learning rate of the discriminator.")
@click.option("--r1-gamma", type=float, help="R1 penalty weight on real images (0 turns it off).")
@click.option("--ema-kimg", type=float, help="Half-life of the generator EMA in kimg.")
@click.option("--augment", type=str, help="DiffAugment policy, e.g. color,translation,cutout; '' turns it off.")
@click.option("--seed", type=int, help="Random seed of weights, data order, latents and augmentation.")
@click.option("--resume", type=str, help="'latest' (newest matching run under outdir) or a checkpoint path.")
@click.option("--finetune-from", type=str,
              help="Start a new run from this checkpoint's weights (a snapshot, or a .safetensors export: D fresh).")
@click.option("--trainable", type=click.Choice(TRAINABLE),
              help="Generator parameters that train: all, or attention (qkv and output projections) [all].")
@click.option("--freeze-d", type=int, help="FreezeD: keep the discriminator's first N blocks frozen [0].")
@click.option("--metrics", type=str, help="Comma-separated metrics at each snapshot, e.g. fid10k,kid10k, or none.")
@click.option("--snap", type=int, help="Snapshot (samples, checkpoint, metrics) every this many ticks.")
@click.option("--snap-minutes", type=str,
              help="Also snapshot when the training time passes each of these minutes, e.g. 10,25,50 (kept past "
                   "keep_snapshots).")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), help="fp32, bf16 autocast, or fp16 autocast (CUDA).")
@click.option("--device", type=click.Choice(DEVICES), help="auto = cuda when available.")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile G and D.")
@click.option("--download/--no-download", default=None, help="Download the dataset when it is missing.")
@click.option("--split", type=str, help="Dataset split [train].")
@click.option("--attribute", type=str,
              help="celeba: only images with this list_attr_celeba.txt attribute, e.g. Eyeglasses (-Eyeglasses: without).")
@click.option("--xflip/--no-xflip", default=None, help="Random horizontal flips of the real images.")
@click.option("--threads", type=int,
              help="CPU threads for torch ops [one per usable CPU that other processes leave free, re-checked every tick].")
@click.option("--cache-dir", type=str, help="Prepared-dataset / FID-statistics cache [$NESTGAN_CACHE or ~/.cache/nestgan].")
@click.option("--dry-run", is_flag=True,
              help="Print the resolved config as JSON and exit; stderr says which preset tables applied and why, and "
                   "the networks' parameters (trainable ones too).")
@user_errors_as_exit
def main(config_file: str | None, dry_run: bool, **options: Any) -> None:
    """Train a GAN with a transposed-NesT (or TransGAN / conv) generator."""
    flags = flags_to_config(options)
    cfg = load_config(flags, config_file, world_size=world_from_env().world_size)
    if dry_run:
        networks = describe_networks(cfg)  # builds them: a config they cannot be built from fails before any output
        for source in cfg.sources:  # on stderr: stdout stays one JSON document
            click.echo(f"config: {source}", err=True)
        click.echo(f"networks: {networks}", err=True)
        click.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    from nestgan.training import train

    train(cfg)


def describe_networks(cfg: TrainConfig) -> str:
    """Parameters of the networks the config builds, and how many of them train."""
    from nestgan.training.step import build_networks, describe_parameters, trainable_parameters

    G, D = build_networks(cfg)
    trainable_parameters(G, D, cfg)
    return describe_parameters(G, D, cfg)


def flags_to_config(options: dict[str, Any]) -> dict[str, Any]:
    """Given flags (None = not given) -> a config layer shaped like TrainConfig."""
    data_keys = {"data": "name", "data_dir": "data_dir", "split": "split", "xflip": "xflip",
                 "download": "download", "cache_dir": "cache_dir", "attribute": "attribute"}
    layer: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in data_keys:
            data[data_keys[key]] = value
        elif key == "metrics":
            layer["metrics"] = metric_list(value)
        elif key == "snap_minutes":
            layer["snap_minutes"] = number_list(value, "--snap-minutes")
        elif key == "resolution":
            layer["resolution"] = int(value)
        elif key == "compile_":
            layer["compile"] = value
        else:
            layer[key] = value
    if data:
        layer["data"] = data
    return layer


if __name__ == "__main__":
    main()
