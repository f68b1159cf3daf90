"""Throughput benchmarks: `python -m nestgan.bench --help`.

For every generator x batch size x precision: generator forward images/s, optionally training-step images/s (G and
D forward + backward with the default loss and DiffAugment), parameters, forward FLOPs per image, the FLOP/s that
achieves, and its share of the rate of a square matmul of the same dtype measured in the same run. Peak memory comes
from a fresh process per row. Results go to <out>/<tag>.json, .md and .png (the plot needs the `plot` extra).

Timing: the models of one (precision, batch) group and the reference matmul are called in rounds, one call each
per round (order rotated), after warm-up; each reports the median of its rounds. On a shared, noisy machine the
absolute speeds drift, but every model sees the same drift, so the ratios between them hold.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from nestgan.cli import resolve_device, user_errors_as_exit
from nestgan.config import TrainConfig, cpu_has_native_bf16, load_config
from nestgan.errors import ConfigError
from nestgan.networks import DISCRIMINATORS, build_generator, generator_preset
from nestgan.networks.summary import count_parameters, forward_flops
from nestgan.presets import preset_names
from nestgan.training.loop import autocast, build_state, training_step

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MATMUL = "(matmul)"  # key of the reference matmul among the timed calls

# Benchmark-only generators, ours and not from a paper: transgan-64-matched grown by a fifth global-attention stage
# (16384 tokens) to 128 px, so the 64 -> 128 px cost growth of global attention can be set against nest-64 -> nest-128.
EXTRA_GENERATORS: dict[str, dict[str, Any]] = {
    "transgan-128-matched": {"arch": "transgan", "z_dim": 256, "init_size": 8, "widths": [320, 160, 80, 40, 20],
                             "depths": [5, 3, 3, 2, 2], "heads": 4, "mlp_ratio": 4.0},
}



# Profiler op name fragments -> category, first match wins (self time, so a copy is counted where it happens).
OP_CATEGORIES = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "_softmax", "bmm", "baddbmm")),
    ("linear (addmm/mm)", ("addmm", "aten::mm", "aten::linear", "aten::matmul")),
    ("conv", ("conv",)),
    ("normalization", ("layer_norm", "batch_norm")),
    ("copies (layout, casts)", ("copy_", "clone", "contiguous", "_to_copy", "aten::cat")),
    ("upsample / pixel shuffle", ("upsample", "pixel_shuffle")),
    ("elementwise", ("gelu", "add", "mul", "tanh", "div", "sub")),
)


# ------------------------------------------------------------------------------------------------ machine


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"{model or platform.processor() or 'CPU'} ({torch.backends.cpu.get_cpu_capability()})"


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "device": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min": os.getloadavg()[0],  # other work sharing the machine
    }
    if device.type == "cpu":
        info["native_bf16"] = cpu_has_native_bf16()
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ measuring


def time_interleaved(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call in each of `repeats` rounds; one call of each per round, the order rotated per round."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            calls[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def forward_call(generator: nn.Module, batch: int, precision: str, device: torch.device) -> Callable[[], None]:
    z = torch.randn(batch, generator.z_dim, device=device)

    def forward() -> None:
        with torch.no_grad(), autocast(device, precision):
            generator(z)

    return forward


def matmul_call(size: int, precision: str, device: torch.device) -> tuple[Callable[[], Any], int]:
    """A square matmul in the precision's dtype and its FLOPs: the device's reference rate."""
    a, b = (torch.randn(size, size, device=device, dtype=DTYPES[precision]) for _ in range(2))
    return (lambda: torch.mm(a, b)), 2 * size**3


def training_call_of(cfg: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """One real training step (D step, G step, EMA) of a fresh state of `cfg` on a fixed batch of random 'reals'."""
    state = build_state(cfg, device)
    reals = torch.rand(cfg.batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    return lambda: training_step(state, reals, cfg, micro_batch=cfg.batch)


def training_call(preset: dict[str, Any], resolution: int, batch: int, precision: str, device: torch.device,
                  d_arch: str, d_kwargs: dict[str, Any]) -> Callable[[], Any]:
    """One real training step (D step, G step, EMA) of a fresh state on a fixed batch of random 'reals'."""
    flags = {"resolution": resolution, "g": preset["arch"], "generator": preset, "d": d_arch,
             "discriminator": d_kwargs, "batch": batch, "precision": precision, "device": device.type, "kimg": 1.0}
    return training_call_of(TrainConfig.from_sources({}, {}, flags), device)


def _rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set size of this process; Linux /proc, else getrusage's peak for both."""
    try:
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f)
        return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return peak, peak


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0), so the next peak belongs to what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _forward_peak_memory(preset: dict[str, Any], batch: int, precision: str, device_type: str,
                         threads: int) -> tuple[int, int, str]:
    """(memory before, peak during one forward) in bytes and what they measure; run in a fresh process per row."""
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    generator = build_generator(preset).to(device).eval()
    forward = forward_call(generator, batch, precision, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward()
        synchronize(device)
        return before, torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated (weights + activations)"
    reset = _reset_peak_rss()
    before = _rss_bytes()[0]
    forward()
    if reset:
        return before, _rss_bytes()[1], "peak RSS during one forward, fresh process (runtime + weights + activations)"
    return before, _rss_bytes()[1], "process peak RSS (ru_maxrss, imports included: an upper bound)"


def peak_memory(preset: dict[str, Any], batch: int, precision: str, device: torch.device) -> tuple[int, int, str]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_forward_peak_memory, preset, batch, precision, device.type,
                           torch.get_num_threads()).result()


def op_category(name: str) -> str:
    return next((category for category, keys in OP_CATEGORIES if any(k in name for k in keys)), "other")


def profile_forward(forward: Callable[[], None], device: torch.device, top: int = 12) -> dict[str, Any]:
    """Self time per op of one forward under torch.profiler, grouped into categories, plus the top ops."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        forward()
        synchronize(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ops = [(e.key, getattr(e, attr), e.count) for e in prof.key_averages() if getattr(e, attr) > 0]
    ops.sort(key=lambda op: -op[1])
    total = sum(us for _, us, _ in ops)
    categories: dict[str, float] = {}
    for name, us, _ in ops:
        categories[op_category(name)] = categories.get(op_category(name), 0.0) + us
    return {
        "total_ms": total / 1e3,
        "categories": {k: {"ms": v / 1e3, "share": v / total}
                       for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": name, "ms": us / 1e3, "share": us / total, "calls": n, "category": op_category(name)}
                    for name, us, n in ops[:top]],
    }


# ------------------------------------------------------------------------------------------------ the benchmark


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


def resolve_generators(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    known = preset_names("generators") + list(EXTRA_GENERATORS)
    presets = {}
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown generator '{name}' (known: {', '.join(known)})")
        presets[name] = EXTRA_GENERATORS[name] if name in EXTRA_GENERATORS else generator_preset(name)
    return presets


def _median_rate(work: float, seconds: list[float]) -> float:
    return work / statistics.median(seconds)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(
    generators: dict[str, dict[str, Any]],
    batches: list[int],
    precisions: list[str],
    device: torch.device,
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
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("fp16 needs CUDA; on CPU use fp32 or bf16")
    machine = machine_info(device)
    nets = {name: build_generator(preset).to(device).eval() for name, preset in generators.items()}
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
                steps = {name: training_call(generators[name], g.resolution, batch, precision, device, d_arch,
                                             d_kwargs or {}) for name, g in nets.items()}
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


def recipe_rates(paths: list[str], data: str, precisions: list[str], device: torch.device, repeats: int,
                 warmup: int, log: Callable[[str], None] = _log) -> list[dict[str, Any]]:
    """Training-step images/s of whole recipes (training configs: their own G, D, loss, batch and step), each
    layered on the dataset preset of `data` as train_gan.py would; the recipes of one precision are timed in
    the same rounds."""
    rows = []
    for precision in precisions:
        cfgs = {path: load_config({"data": {"name": data}, "precision": precision, "device": device.type}, path)
                for path in paths}
        log(f"recipes: {precision}: {', '.join(Path(p).stem for p in paths)}")
        calls = {path: training_call_of(cfg, device) for path, cfg in cfgs.items()}
        seconds = time_interleaved(calls, repeats, warmup, device)
        del calls
        for path, cfg in cfgs.items():
            rows.append({"recipe": Path(path).stem, "config": path, "data": data, "g": cfg.g, "d": cfg.d,
                         "resolution": cfg.resolution, "batch": cfg.batch, "precision": precision,
                         "train_images_per_s": _median_rate(cfg.batch, seconds[path]), "train_seconds": seconds[path]})
    return rows


def recipe_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| recipe | G | D | px | batch | precision | train img/s | vs first recipe |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = next(x for x in rows if x["precision"] == r["precision"])
        lines.append(f"| {r['recipe']} | {r['g']} | {r['d']} | {r['resolution']} | {r['batch']} | {r['precision']} "
                     f"| {_rate(r['train_images_per_s'])} | {r['train_images_per_s'] / first['train_images_per_s']:.2f}x |")
    return lines


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


# ------------------------------------------------------------------------------------------------ reports


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| generator | px | batch | precision | params (M) | GFLOP/img | fwd img/s | fwd ms/img | GFLOP/s "
             "| % of matmul | train img/s | peak mem (MiB) | fwd +mem (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        growth = None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] - r["memory_before_forward_bytes"]
        lines.append(
            f"| {r['generator']} | {r['resolution']} | {r['batch']} | {r['precision']} | {r['params'] / 1e6:.2f} "
            f"| {r['flops_per_image'] / 1e9:.2f} | {_rate(r['forward_images_per_s'])} "
            f"| {1e3 / r['forward_images_per_s']:.1f} | {r['achieved_flops_per_s'] / 1e9:.1f} "
            f"| {100 * r['matmul_share']:.0f}% | {_rate(r['train_images_per_s'])} | {_mib(r['peak_memory_bytes'])} "
            f"| {_mib(growth)} |")
    return lines


def _find(rows: list[dict[str, Any]], generator: str, batch: int, precision: str) -> dict[str, Any] | None:
    key = (generator, batch, precision)
    return next((r for r in rows if (r["generator"], r["batch"], r["precision"]) == key), None)


def ratio_lines(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """'A:B' -> images/s of A over images/s of B (= time per image of B over A), forward and training."""
    lines = ["| A | B | batch | precision | fwd img/s A / B | train img/s A / B |", "|---|---|---|---|---|---|"]
    for a, b in pairs:
        for ra in (r for r in rows if r["generator"] == a):
            rb = _find(rows, b, ra["batch"], ra["precision"])
            if rb is None:
                continue
            train = (f"{ra['train_images_per_s'] / rb['train_images_per_s']:.2f}x"
                     if ra["train_images_per_s"] and rb["train_images_per_s"] else "-")
            lines.append(f"| {a} | {b} | {ra['batch']} | {ra['precision']} "
                         f"| {ra['forward_images_per_s'] / rb['forward_images_per_s']:.2f}x | {train} |")
    return lines


def precision_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Reduced precision vs fp32 of the same generator and batch."""
    lines = ["| generator | batch | precision | fwd img/s | fp32 img/s | speed vs fp32 |", "|---|---|---|---|---|---|"]
    for r in rows:
        base = _find(rows, r["generator"], r["batch"], "fp32")
        if r["precision"] != "fp32" and base is not None:
            lines.append(f"| {r['generator']} | {r['batch']} | {r['precision']} | {_rate(r['forward_images_per_s'])} "
                         f"| {_rate(base['forward_images_per_s'])} "
                         f"| {r['forward_images_per_s'] / base['forward_images_per_s']:.2f}x |")
    return lines if len(lines) > 2 else []


def markdown_report(result: dict[str, Any], pairs: list[tuple[str, str]] = ()) -> str:
    m, rows = result["machine"], result["rows"]
    out = [f"Device: {m['device_name']}, torch {m['torch_version']}, {m['threads']} threads, {m['date']}"
           + (f", native bf16: {m['native_bf16']}" if "native_bf16" in m else "")
           + f"; 1-min load average {m['load_average_1min']:.1f} at start, "
             f"{m['load_average_1min_at_end']:.1f} at end", ""]
    out += ["Reference matmul (square, same dtype, timed in the same rounds as the models):", "",
            "| precision | batch group | size | GFLOP/s |", "|---|---|---|---|"]
    out += [f"| {x['precision']} | {x['batch_group']} | {x['size']} | {x['flops_per_s'] / 1e9:.1f} |"
            for x in result["matmul"]]
    out += ["", *rows_table(rows)]
    kinds = sorted({r["memory_kind"] for r in rows if r["memory_kind"]})
    out += [f"\nMemory: {kind}; fwd +mem = peak minus the memory before the forward." for kind in kinds]
    if pairs:
        out += ["", "Ratios (same batch, precision and rounds):", "", *ratio_lines(rows, pairs)]
    if precision_lines(rows):
        out += ["", "Reduced precision (autocast) vs fp32:", "", *precision_lines(rows)]
    for p in result["profiles"]:
        out += ["", f"Profile of one forward: {p['generator']}, batch {p['batch']}, {p['precision']} "
                    f"({p['total_ms']:.0f} ms of op self time)", "", "| category | ms | share |", "|---|---|---|"]
        out += [f"| {k} | {v['ms']:.1f} | {100 * v['share']:.1f}% |" for k, v in p["categories"].items()]
        out += ["", "| top op | calls | ms | share | category |", "|---|---|---|---|---|"]
        out += [f"| `{o['op']}` | {o['calls']} | {o['ms']:.1f} | {100 * o['share']:.1f}% | {o['category']} |"
                for o in p["top_ops"]]
    if result.get("recipes"):
        out += ["", "Training step of whole recipes (each its own G, D, loss and batch; timed in the same rounds):", "",
                *recipe_lines(result["recipes"])]
    if result.get("loader"):
        out += ["", "Data loading (BatchIterator alone, prepared cache, xflip):", "",
                "| data | px | batch | loader img/s |", "|---|---|---|---|"]
        out += [f"| {x['data']} | {x['resolution']} | {x['batch']} | {x['images_per_s']:.0f} |"
                for x in result["loader"]]
    return "\n".join(out) + "\n"


def plot_throughput(result: dict[str, Any], path: Path) -> bool:
    """images/s vs resolution, log y, one line per generator family and precision (best batch measured).

    Returns False (and writes nothing) when matplotlib, the optional `plot` extra, is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    best: dict[tuple[str, str], dict[int, float]] = {}
    for r in result["rows"]:
        line = best.setdefault((r["family"], r["precision"]), {})
        line[r["resolution"]] = max(line.get(r["resolution"], 0.0), r["forward_images_per_s"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for (fam, precision), points in sorted(best.items()):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", linestyle="-" if precision == "fp32" else "--",
                label=f"{fam} ({precision})")
    resolutions = sorted({r["resolution"] for r in result["rows"]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(resolutions, [str(x) for x in resolutions])
    ax.set_yscale("log")
    ax.set_xlabel("resolution (px)")
    ax.set_ylabel("generator forward images/s (best batch)")
    m = result["machine"]
    ax.set_title(f"{m['device_name']}, torch threads: {m['threads']}, torch {m['torch_version']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_outputs(result: dict[str, Any], out_dir: Path, tag: str, pairs: list[tuple[str, str]] = (),
                  plot: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{tag}.json", out_dir / f"{tag}.md"]
    written[0].write_text(json.dumps(result, indent=1) + "\n")
    written[1].write_text(markdown_report(result, pairs))
    if plot and result["rows"]:
        if plot_throughput(result, out_dir / f"{tag}.png"):
            written.append(out_dir / f"{tag}.png")
        else:
            _log('no plot: matplotlib is missing (pip install -e ".[plot]")')
    return written


# ------------------------------------------------------------------------------------------------ command line


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
              show_default=True, help="Comma-separated generator presets (nestgan/configs/generators) or benchmark extras "
              f"({', '.join(EXTRA_GENERATORS)}), or none.")
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
def main(generators: str, batch: str, precision: str, device: str, threads: int, repeats: int, warmup: int,
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
                                         resolve_device(device), repeats, warmup)
    for path in write_outputs(result, Path(out), tag, pairs):
        click.echo(f"wrote {path}")
    click.echo(markdown_report(result, pairs))


if __name__ == "__main__":
    main()
