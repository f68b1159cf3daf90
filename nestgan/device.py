"""Devices and precisions: the one home of --device, --precision, autocast, dtypes, synchronisation and peak memory.

torch is imported inside the functions, so the config (and `--help`) can name the choices without loading it.
"""

from __future__ import annotations

import contextlib
import resource
from typing import TYPE_CHECKING

from nestgan.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")  # --device
PRECISIONS = ("fp32", "bf16", "fp16")  # what a step runs in
PRECISION_CHOICES = ("auto", *PRECISIONS)  # --precision of training: auto is resolved per machine


def resolve_device(name: str) -> torch.device:
    """--device auto | cpu | cuda -> a torch.device (auto: CUDA when torch sees one); CUDA without one is an error."""
    import torch

    if name not in DEVICES:
        raise ConfigError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def process_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of one training process: its local rank's GPU, or the CPU."""
    import torch

    if resolve_device(name).type == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX); Linux only, else False."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device_type: str) -> str:
    """auto -> bf16 on CUDA with bf16 and on CPUs with native bf16 (emulated bf16 is far slower), else fp32."""
    if precision != "auto":
        return precision
    import torch

    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def check_precision(precision: str, device_type: str) -> None:
    """A precision the device runs: fp16 needs CUDA (its GradScaler)."""
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError("precision fp16 needs CUDA (GradScaler); use --precision bf16 or fp32 on CPU")


def dtype(precision: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for a forward pass: nothing for fp32, else torch.autocast in the precision's dtype."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=dtype(precision))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: the allocator's peak; CPU: the process's peak RSS."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
