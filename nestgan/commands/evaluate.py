"""Evaluate a checkpoint: python evaluate.py --ckpt PATH [--metrics fid50k_full,kid50k] [flags]; see --help.

The real images default to the dataset the checkpoint was trained on (its config["data"]); the reference
statistics are computed once and cached. Prints one line per metric and appends one json line per metric to
metric-<name>.jsonl next to the checkpoint (or to --out). Works offline: see nestgan/metrics/inception_weights.py
for where the Inception weights come from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import torch

from nestgan.checkpoint import load_generator
from nestgan.cli import resolve_device, user_errors_as_exit
from nestgan.data import DATASETS, SPLITS, load_training_data
from nestgan.errors import ConfigError
from nestgan.metrics import METRIC_GRAMMAR, append_metric_line, evaluate_metrics, parse_metric_name
from nestgan.threads import choose_threads


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", required=True, type=str,
              help="Training checkpoint (network-snapshot-*.pt, best.pt) or .safetensors export.")
@click.option("--metrics", default="fid50k_full", show_default=True, help=f"Comma-separated: {METRIC_GRAMMAR}.")
@click.option("--data", type=click.Choice(list(DATASETS)), help="Real images [the checkpoint's training data].")
@click.option("--data-dir", type=str, help="Where --data lives [the checkpoint's, for its own dataset].")
@click.option("--split", type=click.Choice(list(SPLITS)), help="Split of the real images [the checkpoint's].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch", type=int, default=64, show_default=True, help="Images per Inception / generator call.")
@click.option("--inception-weights", type=str, help="torch-fidelity inception-v3-compat weights file.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Arithmetic inside Inception (float64: slower, a hair more exact).")
@click.option("--threads", type=int, help="CPU threads for torch ops [one per usable CPU that other processes leave free].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated images' latents.")
@click.option("--cache-dir", type=str, help="Prepared data / reference statistics [checkpoint's, $NESTGAN_CACHE or ~/.cache/nestgan].")
@click.option("--out", type=str, help="Append the json lines here instead of metric-<name>.jsonl next to --ckpt.")
@click.option("--raw", is_flag=True, help="Evaluate the raw generator weights G instead of the EMA G_ema.")
@user_errors_as_exit
def main(
    ckpt: str,
    metrics: str,
    data: str | None,
    data_dir: str | None,
    split: str | None,
    device: str,
    batch: int,
    inception_weights: str | None,
    dtype: str,
    threads: int | None,
    seed: int,
    cache_dir: str | None,
    out: str | None,
    raw: bool,
) -> None:
    """Compute FID / KID / precision-recall / IS of a trained generator."""
    specs = [parse_metric_name(name) for name in metrics.split(",") if name.strip()]
    if not specs:
        raise ConfigError(f"--metrics is empty; metric names are {METRIC_GRAMMAR}")
    choose_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch_device = resolve_device(device)
    generator, config, progress = load_generator(ckpt, ema=not raw, device=torch_device)
    trained_on = dict(config.get("data") or {})
    if data is None and not trained_on.get("name"):
        raise ConfigError(f"{ckpt} does not say which data it was trained on; pass --data (and --data-dir)")
    if data is None or data == trained_on.get("name"):  # the training data, with what the flags change
        source = {**trained_on, **({"data_dir": data_dir} if data_dir else {}), **({"split": split} if split else {})}
    else:
        source = {"name": data, "data_dir": data_dir, "split": split or "train", "cache_dir": trained_on.get("cache_dir")}
    dataset = load_training_data(source, generator.resolution, cache_dir)
    report = evaluate_metrics(
        generator,
        dataset,
        [spec.name for spec in specs],
        torch_device,
        batch_size=batch,
        cache_dir=cache_dir or trained_on.get("cache_dir"),
        weights=inception_weights,
        internal_dtype=dtype,
        seed=seed,
    )
    for spec in report.specs:
        # where in its run the checkpoint stands, as in the metric-*.jsonl that training writes
        record = {**report.record(spec, checkpoint=ckpt), "kimg": progress.get("kimg"),
                  "train_s": progress.get("train_seconds")}
        values = "  ".join(f"{key} {value:.4f}" for key, value in record["results"].items())
        click.echo(
            f"{values}  ({spec.num_gen} generated vs {record['num_reals']} real {dataset.pixels_id}, "
            f"{report.extractor} {dtype}, {report.wall_s:.0f} s)"
        )
        append_metric_line(out or Path(ckpt).parent / f"metric-{spec.name}.jsonl", record)


if __name__ == "__main__":
    main()
