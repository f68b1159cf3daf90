"""A run directory as the explorer shows it while it trains: the fixed-z sample grid of every snapshot, the metric
curves of metric-*.jsonl and the loss curves of stats.jsonl. Everything is read again on each refresh; a line that
a live run is still writing is skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nestgan.atomic import read_records
from nestgan.errors import DataError
from nestgan.metrics.records import metric_value

GRID_FILE = re.compile(r"^fakes(\d{6}\.\d{3})\.png$")  # fakes<kimg_stamp>.png, written at each snapshot
LOSSES = ("loss_g", "loss_d", "r1", "d_real", "d_fake")


@dataclass(frozen=True)
class RunView:
    path: Path
    grids: list[tuple[float, Path]]  # (kimg, fakes<kimg>.png), by kimg
    metrics: dict[str, list[tuple[float, float]]]  # metric name -> (kimg, value) points
    losses: dict[str, list[tuple[float, float]]]  # stats.jsonl key -> (kimg, tick mean) points


def read_run(run_dir: str | Path) -> RunView:
    """What `run_dir` holds so far; a folder that is no run directory, or one with no snapshot yet, is a DataError
    saying so."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run directory not found: {path}")
    grids = sorted((float(m.group(1)), p) for p in path.iterdir() if (m := GRID_FILE.match(p.name)))
    if not grids:
        what = "no snapshot yet (its first fakes<kimg>.png comes with the first snapshot)" if (
            path / "config.json").is_file() else "no snapshots: it is not a run directory of train_gan.py"
        raise DataError(f"{path} has {what}")
    metrics = {}
    for file in sorted(path.glob("metric-*.jsonl")):
        name = file.stem.removeprefix("metric-")
        points = [(r["kimg"], metric_value(r.get("results", {}), name)) for r in read_records(file) if "kimg" in r]
        metrics[name] = sorted((k, v) for k, v in points if v is not None)
    records = read_records(path / "stats.jsonl")
    losses = {key: [(r["kimg"], r[key]) for r in records if key in r and "kimg" in r] for key in LOSSES}
    return RunView(path, grids, metrics, {key: points for key, points in losses.items() if points})
