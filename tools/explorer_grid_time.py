"""How long the explorer takes to draw a grid of 64 seeds on this machine (issue 35 asks for about a second on a
2-core CPU): five grids of new seeds after one warm-up, as JSON with the machine.

    python tools/explorer_grid_time.py --threads 2 > docs/bench/explorer-grid.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nestgan.bench.machine import machine_info
from nestgan.explore.model import Generators, seed_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default="pretrained/celeba64-nest-cpu.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = Generators("cpu").get(args.ckpt)
    seed_grid(generator, list(range(64)))  # warm-up: the first call allocates
    seconds = []
    for rep in range(1, 6):
        started = time.perf_counter()
        seed_grid(generator, list(range(64 * rep, 64 * rep + 64)))
        seconds.append(round(time.perf_counter() - started, 3))
    print(json.dumps({"what": f"explorer seed_grid of 64 seeds, {args.ckpt}, fp32", "seconds": seconds,
                      "median_s": statistics.median(seconds), "machine": machine_info(torch.device("cpu"))}, indent=1))


if __name__ == "__main__":
    main()
