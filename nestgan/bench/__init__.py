"""Throughput benchmarks: `python -m nestgan.bench --help`.

For every generator x batch size x precision: generator forward images/s, optionally training-step images/s (G and
D forward + backward with the default loss and DiffAugment), parameters, forward FLOPs per image, the FLOP/s that
achieves, and its share of the rate of a square matmul of the same dtype measured in the same run. Peak memory comes
from a fresh process per row. Results go to <out>/<tag>.json, .md and .png (the plot needs the `plot` extra).

Timing: the models of one (precision, batch) group and the reference matmul are called in rounds, one call each
per round (order rotated), after warm-up; each reports the median of its rounds. On a shared, noisy machine the
absolute speeds drift, but every model sees the same drift, so the ratios between them hold.
"""

from nestgan.bench.cli import main
from nestgan.bench.memory import peak_memory
from nestgan.bench.report import markdown_report, write_outputs
from nestgan.bench.run import family, recipe_rates, run_benchmark
from nestgan.bench.timing import time_interleaved

__all__ = ["family", "main", "markdown_report", "peak_memory", "recipe_rates", "run_benchmark", "time_interleaved",
           "write_outputs"]
