"""The machine a benchmark ran on: device name, torch, threads, load; on CUDA also the card, driver, CUDA and cuDNN."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from typing import Any

import torch

from nestgan.device import cpu_has_native_bf16


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
    if device.type == "cuda":
        info.update(cuda_details(device))
    return info


def cuda_details(device: torch.device) -> dict[str, Any]:
    """The card's memory, SMs and capability, the driver (from nvidia-smi, None without it) and the CUDA and cuDNN
    versions torch was built with."""
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu_memory_bytes": props.total_memory,
        "gpu_multiprocessors": props.multi_processor_count,
        "gpu_capability": f"{props.major}.{props.minor}",
        "driver_version": _nvidia_smi("driver_version"),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
    }


def _nvidia_smi(field: str) -> str | None:
    """One --query-gpu field of the first GPU (the driver is the same for all)."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next(iter(out.split()), None)
