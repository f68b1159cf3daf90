"""The benchmark: every generator x batch x precision timed in the same rounds as a reference matmul, optionally
training steps, memory, profiles, whole recipes and the data loader; returns the JSON-able result."""

from __future__ import annotations

import os
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nestgan.bench.machine import machine_info
from nestgan.bench.memory import peak_memory
from nestgan.bench.timing import (MATMUL, forward_call, matmul_call, profile_forward, time_interleaved, training_call,
                                  training_call_of)
from nestgan.config import TrainConfig, load_config
from nestgan.device import PRECISIONS, check_precision
from nestgan.errors import ConfigError
from nestgan.networks import generator_from_config
from nestgan.networks.summary import count_parameters, forward_flops


@dataclass
class Row:
    generator: str
    family: str
    arch: str
    resolution: int
    batch: int
    precision: str
    params: int
    flops_per_image: int
    forward_images_per_s: float
    forward_seconds: list[float]  # per round, for the whole batch
    achieved_flops_per_s: float
    matmul_flops_per_s: float  # same dtype, same rounds
    matmul_share: float
    train_images_per_s: float | None
    train_seconds: list[float] | None
    memory_before_forward_bytes: int | None
    peak_memory_bytes: int | None
    memory_kind: str | None
    device: str
    device_name: str
    torch_version: str
    threads: int
    repeats: int
    warmup: int


def family(name: str) -> str:
    """Generator family for the plot: the name without its resolution, 'transgan-64-matched' -> 'transgan-matched'."""
    return re.sub(r"-\d+(?=-|$)", "", name, count=1)


def _median_rate(work: float, seconds: list[float]) -> float:
    return work / statistics.median(seconds)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(
    generators: dict[str, dict[str, Any]],
    batches: list[int],
    precisions: list[str],
    device: torch.device,
    *,
    repeats: int = 5,
    warmup: int = 1,
    train: bool = False,
    memory: bool = True,
    profile: bool = False,
    matmul_size: int = 1024,
    d_arch: str = "resnet",
    d_kwargs: dict[str, Any] | None = None,
    loader_data: tuple[str, str | None] | None = None,
    loader_batches: int = 20,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Measure every generator (name -> preset dict) at every batch and precision; returns the JSON-able result."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
        check_precision(precision, device.type)
    machine = machine_info(device)
    nets = {name: generator_from_config(preset).to(device).eval() for name, preset in generators.items()}
    static = {name: (count_parameters(g), forward_flops(g, device)) for name, g in nets.items()}
    rows: list[Row] = []
    matmul_rates: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    for precision in precisions if nets else []:
        matmul, matmul_flops = matmul_call(matmul_size, precision, device)
        for batch in batches:
            log(f"forward: {precision} batch {batch}: {', '.join(nets)}")
            calls = {name: forward_call(g, batch, precision, device) for name, g in nets.items()}
            seconds = time_interleaved({**calls, MATMUL: matmul}, repeats, warmup, device)
            matmul_rate = _median_rate(matmul_flops, seconds[MATMUL])
            matmul_rates.append({"precision": precision, "batch_group": batch, "size": matmul_size,
                                 "flops_per_s": matmul_rate, "seconds": seconds[MATMUL]})
            train_seconds: dict[str, list[float]] = {}
            if train:
                log(f"training step: {precision} batch {batch}")
                steps = {name: training_call(generators[name], g.resolution, batch, precision, device,
                                             d_arch=d_arch, d_kwargs=d_kwargs or {}) for name, g in nets.items()}
                train_seconds = time_interleaved(steps, repeats, warmup, device)
                del steps
            for name, g in nets.items():
                params, flops = static[name]
                images_per_s = _median_rate(batch, seconds[name])
                before = peak = memory_kind = None
                if memory:
                    before, peak, memory_kind = peak_memory(generators[name], batch, precision, device)
                if profile:
                    profiles.append({"generator": name, "batch": batch, "precision": precision,
                                     **profile_forward(calls[name], device)})
                rows.append(Row(
                    generator=name, family=family(name), arch=generators[name]["arch"], resolution=g.resolution,
                    batch=batch, precision=precision, params=params, flops_per_image=flops,
                    forward_images_per_s=images_per_s, forward_seconds=seconds[name],
                    achieved_flops_per_s=flops * images_per_s, matmul_flops_per_s=matmul_rate,
                    matmul_share=flops * images_per_s / matmul_rate,
                    train_images_per_s=_median_rate(batch, train_seconds[name]) if train else None,
                    train_seconds=train_seconds.get(name),
                    memory_before_forward_bytes=before, peak_memory_bytes=peak,
                    memory_kind=memory_kind,
                    device=device.type, device_name=machine["device_name"], torch_version=machine["torch_version"],
                    threads=machine["threads"], repeats=repeats, warmup=warmup,
                ))
    machine["load_average_1min_at_end"] = os.getloadavg()[0]
    result = {"machine": machine, "matmul": matmul_rates, "rows": [asdict(r) for r in rows], "profiles": profiles}
    if loader_data is not None:
        result["loader"] = measure_loader(loader_data, sorted({g.resolution for g in nets.values()}), batches,
                                          loader_batches, device, log)
    return result


def recipe_rates(paths: list[str], data: str, precisions: list[str], device: torch.device, *, repeats: int,
                 warmup: int, log: Callable[[str], None] = _log) -> list[dict[str, Any]]:
    """Training-step images/s of whole recipes (training configs: their own G, D, loss, batch and step), each
    layered on the dataset preset of `data` as train_gan.py would; the recipes of one precision are timed in
    the same rounds."""
    rows = []
    for precision in precisions:
        cfgs = {path: load_config({"data": {"name": data}, "precision": precision, "device": device.type}, path)
                for path in paths}
        log(f"recipes: {precision}: {', '.join(Path(p).stem for p in paths)}")
        rows += [{**row, "recipe": Path(row["recipe"]).stem, "config": row["recipe"]}
                 for row in time_recipes(cfgs, device, repeats=repeats, warmup=warmup)]
    return rows


def time_recipes(cfgs: dict[str, TrainConfig], device: torch.device, *, repeats: int,
                 warmup: int) -> list[dict[str, Any]]:
    """Training-step images/s of training configs (name -> config), each at its own batch and precision, all
    timed in the same rounds."""
    calls = {name: training_call_of(cfg, device) for name, cfg in cfgs.items()}
    seconds = time_interleaved(calls, repeats, warmup, device)
    del calls
    return [{"recipe": name, "data": cfg.data.name, "g": cfg.g, "d": cfg.d, "resolution": cfg.resolution,
             "batch": cfg.batch, "precision": cfg.precision,
             "train_images_per_s": _median_rate(cfg.batch, seconds[name]), "train_seconds": seconds[name]}
            for name, cfg in cfgs.items()]


def measure_loader(data: tuple[str, str | None], resolutions: list[int], batches: list[int], n_batches: int,
                   device: torch.device, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Images/s the training batch iterator delivers (prepared memory-mapped cache, xflip) alone."""
    from nestgan.data import load_dataset, measure_loader_throughput

    name, data_dir = data
    out = []
    for resolution in resolutions:
        dataset = load_dataset(name, resolution, data_dir=data_dir, progress=False)
        for batch in batches:
            log(f"loader: {name} {resolution} px batch {batch}")
            out.append({"data": name, "resolution": resolution, "batch": batch, "images": len(dataset),
                        "images_per_s": measure_loader_throughput(dataset, batch, n_batches, device)})
    return out
