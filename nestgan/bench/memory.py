"""Peak memory of one generator forward, measured in a fresh process per row (so earlier rows do not count); on CUDA
the allocator's peak is exact in-process too (cuda_peak_memory)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import sys
from collections.abc import Callable
from typing import Any

import torch

from nestgan.bench.timing import forward_call
from nestgan.device import synchronize
from nestgan.networks import generator_from_config


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


CUDA_MEMORY_KIND = "cuda max_memory_allocated (weights + activations)"


def cuda_peak_memory(call: Callable[[], Any], device: torch.device) -> tuple[int, int]:
    """(bytes allocated before, peak bytes allocated during) one call, from the CUDA allocator: exact in-process,
    since blocks the allocator caches but no tensor holds do not count."""
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    synchronize(device)
    return before, torch.cuda.max_memory_allocated(device)


def _forward_peak_memory(preset: dict[str, Any], batch: int, precision: str, device_type: str,
                         threads: int) -> tuple[int, int, str]:
    """(memory before, peak during one forward) in bytes and what they measure; run in a fresh process per row."""
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    generator = generator_from_config(preset).to(device).eval()
    forward = forward_call(generator, batch, precision, device)
    if device.type == "cuda":
        return (*cuda_peak_memory(forward, device), CUDA_MEMORY_KIND)
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
