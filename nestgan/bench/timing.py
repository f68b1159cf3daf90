"""Timing primitives: calls timed in interleaved rounds, the calls themselves (generator forward, reference matmul,
a real training step) and a profiler breakdown of one forward."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nestgan.config import TrainConfig
from nestgan.device import autocast, dtype, synchronize
from nestgan.training.step import build_state, training_step

MATMUL = "(matmul)"  # key of the reference matmul among the timed calls

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
    a, b = (torch.randn(size, size, device=device, dtype=dtype(precision)) for _ in range(2))
    return (lambda: torch.mm(a, b)), 2 * size**3


def training_call_of(cfg: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """One real training step (D step, G step, EMA) of a fresh state of `cfg` on a fixed batch of random 'reals'."""
    state = build_state(cfg, device)
    reals = torch.rand(cfg.batch, 3, cfg.resolution, cfg.resolution, device=device) * 2 - 1
    return lambda: training_step(state, reals, cfg, micro_batch=cfg.batch)


def training_call(preset: dict[str, Any], resolution: int, batch: int, precision: str, device: torch.device, *,
                  d_arch: str, d_kwargs: dict[str, Any]) -> Callable[[], Any]:
    """One real training step (D step, G step, EMA) of a fresh state on a fixed batch of random 'reals'."""
    flags = {"resolution": resolution, "g": preset["arch"], "generator": preset, "d": d_arch,
             "discriminator": d_kwargs, "batch": batch, "precision": precision, "device": device.type, "kimg": 1.0}
    return training_call_of(TrainConfig.from_sources({}, {}, flags), device)


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
