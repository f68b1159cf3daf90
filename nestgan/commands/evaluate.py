"""Evaluate a checkpoint: python evaluate.py --ckpt PATH [--metrics fid50k_full,kid50k] [flags]; see --help.

The real images default to the dataset the checkpoint was trained on (its config["data"]); the reference
statistics are computed once and cached. Without --metrics: fid50k_full on CUDA, and on a CPU the dataset preset's
[cpu] choice (fid1k for the stock presets), since fid50k_full would take hours there; a long evaluation on a CPU
is announced with a rough expected time first. Prints one line per metric and appends one json line per metric to
metric-<name>.jsonl next to the checkpoint (or to --out). Works offline: see nestgan/metrics/inception_weights.py
for where the Inception weights come from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import torch

from nestgan.checkpoint import metrics_batch, read_generator
from nestgan.cli import user_errors_as_exit
from nestgan.config import load_config
from nestgan.data import DATASETS, SPLITS, load_training_data, trained_data_source
from nestgan.device import DEVICES, resolve_device
from nestgan.errors import ConfigError
from nestgan.metrics import METRIC_GRAMMAR, MetricSpec, append_metric_line, evaluate_metrics, parse_metric_name
from nestgan.metrics.fidelity import COMPILE_MIN_IMAGES, COMPILE_MODES, INTERNAL_DTYPES
from nestgan.metrics.kinds import METRIC_KINDS
from nestgan.threads import choose_threads

CUDA_DEFAULT_METRICS = ["fid50k_full"]  # StyleGAN's headline FID
CPU_FALLBACK_METRICS = ["fid1k"]  # minutes on a CPU; for a dataset whose preset names no metric
# About 7 images/s through Inception on 2 cores (the [cpu] notes of nestgan/configs/*.toml): a rough rate per thread.
CPU_INCEPTION_IMAGES_PER_S_PER_THREAD = 3.5
LONG_EVALUATION_S = 10 * 60


def default_metrics(device_type: str, dataset: str) -> tuple[list[str], str]:
    """The metrics evaluate runs when --metrics is not given, and why."""
    if device_type == "cuda":
        return CUDA_DEFAULT_METRICS, "the default on CUDA"
    # The dataset preset as training resolves it, with and without its CPU recipe: one reader of [cpu] tables.
    with_cpu, without_cpu = (load_config({"data": {"name": dataset}}, cpu_recipe=on).metrics for on in (True, False))
    instead = f"on a CPU, instead of {', '.join(CUDA_DEFAULT_METRICS)}, which would take hours"
    if with_cpu != without_cpu:
        return with_cpu, f"the [cpu] choice of the {dataset} preset {instead}"
    if with_cpu:
        return with_cpu, f"the {dataset} preset's metrics {instead}"
    return CPU_FALLBACK_METRICS, f"a FID that fits a CPU {instead}"


def cpu_time_note(specs: list[MetricSpec], available_reals: int, threads: int) -> str | None:
    """A rough expected time when an evaluation on a CPU would take long, else None."""
    reals = sum({spec.num_reals(available_reals) for spec in specs if METRIC_KINDS[spec.kind].needs_reals})
    images = max(spec.num_gen for spec in specs) + reals
    rate = CPU_INCEPTION_IMAGES_PER_S_PER_THREAD * threads
    seconds = images / rate
    if seconds < LONG_EVALUATION_S:
        return None
    took = f"{seconds / 3600:.1f} hours" if seconds >= 2 * 3600 else f"{seconds / 60:.0f} minutes"
    return (
        f"expect roughly {took}: {images} images through Inception at about {rate:.0f} images/s on {threads} CPU "
        f"thread(s), less if the {reals} reals' features are cached; the progress bars show the real rate"
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--ckpt", required=True, type=str,
              help="Training checkpoint (network-snapshot-*.pt, best.pt) or .safetensors export.")
@click.option("--metrics", help=f"Comma-separated: {METRIC_GRAMMAR} [fid50k_full on CUDA; on a CPU the dataset "
                                "preset's [cpu] choice, e.g. fid1k].")
@click.option("--data", type=click.Choice(list(DATASETS)), help="Real images [the checkpoint's training data].")
@click.option("--data-dir", type=str, help="Where --data lives [the checkpoint's, for its own dataset].")
@click.option("--split", type=click.Choice(list(SPLITS)), help="Split of the real images [the checkpoint's].")
@click.option("--attribute", type=str, help="celeba: real images with this list_attr_celeba.txt attribute (-Name: "
                                         "without; '' the whole set) [the checkpoint's].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch", type=click.IntRange(min=1),
              help="Images per Inception / generator call [the checkpoint's metrics_batch: the training batch where G "
                   "samples with batch statistics; else 64].")
@click.option("--inception-weights", type=str, help="torch-fidelity inception-v3-compat weights file.")
@click.option("--dtype", type=click.Choice(INTERNAL_DTYPES), default="float32", show_default=True,
              help="Arithmetic inside Inception (float64: slower, a hair more exact; bfloat16: faster where the CPU "
                   "or GPU has it, but its FIDs are not comparable with float32 ones: the deviation is logged).")
@click.option("--compile", "compile_mode", type=click.Choice(COMPILE_MODES), default="auto", show_default=True,
              help=f"torch.compile Inception (same features to float32 rounding); auto: for passes of at least "
                   f"{COMPILE_MIN_IMAGES} images, where the compile pays.")
@click.option("--threads", type=int, help="CPU threads for torch ops [one per usable CPU that other processes leave free].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated images' latents.")
@click.option("--cache-dir", type=str, help="Prepared data / reference statistics [checkpoint's, $NESTGAN_CACHE or ~/.cache/nestgan].")
@click.option("--out", type=str, help="Append the json lines here instead of metric-<name>.jsonl next to --ckpt.")
@click.option("--raw", is_flag=True, help="Evaluate the raw generator weights G instead of the EMA G_ema.")
@user_errors_as_exit
def main(
    *,
    ckpt: str,
    metrics: str | None,
    data: str | None,
    data_dir: str | None,
    split: str | None,
    attribute: str | None,
    device: str,
    batch: int | None,
    inception_weights: str | None,
    dtype: str,
    compile_mode: str,
    threads: int | None,
    seed: int,
    cache_dir: str | None,
    out: str | None,
    raw: bool,
) -> None:
    """Compute FID / KID / precision-recall / IS of a trained generator."""
    specs = [parse_metric_name(name) for name in (metrics or "").split(",") if name.strip()]
    if metrics is not None and not specs:
        raise ConfigError(f"--metrics is empty; metric names are {METRIC_GRAMMAR}")
    choose_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch_device = resolve_device(device)
    generator, config, progress = read_generator(ckpt, ema=not raw, device=torch_device)
    trained_on = dict(config.get("data") or {})
    if data is None and not trained_on.get("name"):
        raise ConfigError(f"{ckpt} does not say which data it was trained on; pass --data (and --data-dir)")
    if data is None or data == trained_on.get("name"):  # the training data, with what the flags change
        source = trained_data_source(trained_on, data_dir=data_dir, split=split)
    else:
        source = {"name": data, "data_dir": data_dir, "split": split or "train", "cache_dir": trained_on.get("cache_dir")}
    if attribute is not None:  # e.g. a source model scored against the subset it will be fine-tuned on
        source["attribute"] = attribute or None
    if not specs:
        names, why = default_metrics(torch_device.type, source["name"])
        specs = [parse_metric_name(name) for name in names]
        click.echo(f"metrics: {', '.join(names)} ({why}; choose others with --metrics)", err=True)
    dataset = load_training_data(source, generator.resolution, cache_dir)
    note = cpu_time_note(specs, len(dataset), torch.get_num_threads()) if torch_device.type == "cpu" else None
    if note:
        click.echo(f"note: {note}", err=True)
    report = evaluate_metrics(
        generator,
        dataset,
        [spec.name for spec in specs],
        torch_device,
        batch_size=batch or metrics_batch(config),
        cache_dir=cache_dir or trained_on.get("cache_dir"),
        weights=inception_weights,
        internal_dtype=dtype,
        seed=seed,
        compile=compile_mode,
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
