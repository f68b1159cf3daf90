"""nestgan-bench / python -m nestgan.bench: the command line of the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import click
import torch

from nestgan.bench.report import markdown_report, write_outputs
from nestgan.bench.run import recipe_rates, run_benchmark
from nestgan.cli import user_errors_as_exit
from nestgan.device import resolve_device
from nestgan.errors import ConfigError
from nestgan.networks import DISCRIMINATORS, generator_preset
from nestgan.presets import preset_names


def resolve_generators(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    known = preset_names("generators")
    presets = {}
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown generator '{name}' (known: {', '.join(known)})")
        presets[name] = generator_preset(name)
    return presets


def _items(option: str, text: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"--{option} needs at least one comma-separated value, got '{text}'")
    return items


def _positive_ints(option: str, text: str) -> list[int]:
    items = _items(option, text)
    if not all(x.isdigit() and int(x) > 0 for x in items):
        raise ConfigError(f"--{option} must be comma-separated positive integers, got '{text}'")
    return [int(x) for x in items]


def _pairs(texts: tuple[str, ...], generators: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for text in texts:
        a, sep, b = text.partition(":")
        if not sep or a not in generators or b not in generators:
            raise ConfigError(f"--ratio must be A:B with both among the benchmarked generators, got '{text}'")
        pairs.append((a, b))
    return pairs


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--generators", default="nest-32,nest-64,nest-128,transgan-64,transgan-64-matched,conv-64",
              show_default=True, help="Comma-separated generator presets (nestgan/configs/generators; "
              "transgan-128-matched is one for benchmarks only), or none.")
@click.option("--batch", default="16", show_default=True, help="Comma-separated batch sizes.")
@click.option("--precision", default="fp32,bf16", show_default=True, help="Comma-separated: fp32, bf16, fp16 (CUDA).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda.")
@click.option("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed rounds; each row reports the median.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed rounds first.")
@click.option("--train/--no-train", default=False, show_default=True, help="Also time real training steps (slow).")
@click.option("--d", "d_arch", default="resnet", show_default=True, help="Discriminator of the training steps.")
@click.option("--memory/--no-memory", default=True, show_default=True, help="Peak memory, a fresh process per row.")
@click.option("--profile", is_flag=True, help="torch.profiler breakdown of one forward per row.")
@click.option("--matmul-size", type=int, default=1024, show_default=True, help="Side of the reference matmul.")
@click.option("--ratio", "ratios", multiple=True, help="A:B, report images/s of A over B (repeatable).")
@click.option("--recipes", default=None, help="Comma-separated training configs (e.g. configs/recipes/dcgan.toml) whose "
              "whole training steps are timed in the same rounds.")
@click.option("--recipe-data", default="shapes", show_default=True, help="Dataset preset the --recipes layer on.")
@click.option("--data", default=None, help="Also time the data loader alone on this dataset (e.g. celeba).")
@click.option("--data-dir", default=None, help="Where --data lives.")
@click.option("--out", default="bench", show_default=True, help="Output folder.")
@click.option("--tag", default="throughput", show_default=True, help="Output names: <out>/<tag>.json/.md/.png.")
@user_errors_as_exit
def main(*, generators: str, batch: str, precision: str, device: str, threads: int, repeats: int, warmup: int,
         train: bool, d_arch: str, memory: bool, profile: bool, matmul_size: int, ratios: tuple[str, ...],
         recipes: str | None, recipe_data: str, data: str | None, data_dir: str | None, out: str, tag: str) -> None:
    """Generator throughput, FLOP/s, share of the matmul rate, memory and training-step speed."""
    presets = {} if generators == "none" else resolve_generators(_items("generators", generators))
    pairs = _pairs(ratios, presets)
    precisions = _items("precision", precision)
    if d_arch not in DISCRIMINATORS:
        raise ConfigError(f"--d must be one of {', '.join(DISCRIMINATORS)}, got '{d_arch}'")
    if threads < 0 or matmul_size < 1:
        raise ConfigError(f"--threads must be >= 0 and --matmul-size >= 1, got {threads} and {matmul_size}")
    if threads:
        torch.set_num_threads(threads)
    result = run_benchmark(presets, _positive_ints("batch", batch), precisions, resolve_device(device),
                           repeats=repeats, warmup=warmup, train=train, memory=memory, profile=profile,
                           matmul_size=matmul_size, d_arch=d_arch, loader_data=(data, data_dir) if data else None)
    if recipes:
        result["recipes"] = recipe_rates(_items("recipes", recipes), recipe_data, precisions,
                                         resolve_device(device), repeats=repeats, warmup=warmup)
    for path in write_outputs(result, Path(out), tag, pairs):
        click.echo(f"wrote {path}")
    click.echo(markdown_report(result, pairs))


if __name__ == "__main__":
    main()
