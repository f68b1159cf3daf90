"""Snapshots of a run: sample grid, checkpoint and metrics (with best.pt)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nestgan.atomic import read_records
from nestgan.training import distributed
from nestgan.training.checkpoint import TrainingCheckpoint, rank_state
from nestgan.training.guards import StopRequested, StopSignals
from nestgan.training.report import format_seconds
from nestgan.training.rundir import kimg_stamp
from nestgan.training.step import TrainState, grid_images

if TYPE_CHECKING:
    from nestgan.training.session import Session

GRID_SIZE = 64  # samples in fakes*.png (8 x 8)


def snapshot(session: Session, s: TrainState, stop: StopSignals, keep: bool = False) -> Path:
    """Sample grid, checkpoint (rank 0 writes every rank's random state) and metrics; returns the checkpoint's path
    (known on every rank: it names the shared run directory). `keep`: the checkpoint is never pruned (a snap_minutes
    mark, which a comparison at equal training time reads after the run)."""
    cfg, run, writer, log = session.cfg, session.run, session.writer, session.log
    rank_states = distributed.gather_to_main(rank_state(s, session.loader))
    path = None
    if run:
        images = grid_images(s.G_ema, session.grid_z, session.micro_batch, s.precision)
        picture = run.save_grid(images, f"fakes{kimg_stamp(s.images_seen)}.png")
        if writer:  # the same fixed-z grid, at every snapshot, beside the scalars
            writer.add_image("fakes", picture, s.images_seen, dataformats="HWC")
        path = run.snapshot_path(s.images_seen)
        TrainingCheckpoint.of(s, cfg, rank_states).write(path)
        if keep:
            run.kept.add(path)
        run.prune_snapshots(cfg.keep_snapshots)
        if cfg.metrics:
            try:
                with stop.interruptible():
                    evaluate(session, s, path)
            except StopRequested as e:
                log(f"metrics    skipped: {e} arrived during the evaluation (the checkpoint was already saved)")
    return distributed.broadcast_from_main(path)


def evaluate(session: Session, s: TrainState, snapshot_path: Path) -> None:
    """The config's metrics of G_ema: one line on the console, one line per metric in metric-<name>.jsonl,
    best.pt when the first FID-like metric is the lowest so far."""
    from nestgan import metrics

    cfg, device, run, writer, log = session.cfg, session.device, session.run, session.writer, session.log
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training streams stay untouched
        report = metrics.evaluate_metrics(  # no progress bars: through the tee they would fill log.txt
            s.G_ema, session.dataset, cfg.metrics, device, batch_size=cfg.metrics_batch, cache_dir=cfg.data.cache_dir,
            progress=False,
        )
    results = report.values
    log(
        "metrics    "
        + "  ".join(f"{k} {v:.3f}" for k, v in results.items())
        + f"  ({format_seconds(time.perf_counter() - start)})"
    )
    for spec in report.specs:  # kid10k -> kid10k_mean and kid10k_std, both in metric-kid10k.jsonl
        record = {**report.record(spec, checkpoint=snapshot_path), "kimg": s.images_seen / 1000, "tick": s.tick,
                  "train_s": s.train_seconds, "snapshot": snapshot_path.name}
        metrics.append_metric_line(run.path / f"metric-{spec.name}.jsonl", record)
        if writer:
            for k, v in record["results"].items():
                writer.add_scalar(f"metrics/{k}", v, s.images_seen)
    fid = next((name for name in cfg.metrics if name.startswith("fid")), None)
    if fid is not None and results.get(fid, math.inf) <= best_so_far(run.path / f"metric-{fid}.jsonl", fid):
        run.set_best(snapshot_path)
        log(f"best.pt    <- {snapshot_path.name} ({fid} {results[fid]:.3f})")


def best_so_far(path: Path, name: str) -> float:
    """Lowest value of metric `name` recorded in its jsonl file (the latest record included)."""
    return min((r["results"][name] for r in read_records(path) if name in r.get("results", {})), default=math.inf)


def reals_for_grid(dataset) -> torch.Tensor:
    n = min(GRID_SIZE, len(dataset))
    idx = torch.linspace(0, len(dataset) - 1, n).long()  # spread over the dataset, not its first images
    return torch.stack([dataset[int(i)] for i in idx]).float() / 127.5 - 1
