"""The machine a benchmark ran on: device name, torch, threads, load."""

from __future__ import annotations

import os
import platform
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
    return info
