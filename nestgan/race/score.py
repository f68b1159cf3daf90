"""Scoring a trained run: the snapshot nearest each minute, evaluated once with the metrics not yet in race.jsonl,
one raw line per (minute, metric)."""

from __future__ import annotations

import json
from collections import defaultdict

import click
import torch

from nestgan.atomic import append_line
from nestgan.checkpoint import metrics_batch, read_generator
from nestgan.data import load_training_data
from nestgan.metrics import evaluate_metrics
from nestgan.race.plan import Job, Race, now, number, read_jsonl
from nestgan.race.runs import Snapshot, nearest, run_snapshots, training_history


def headline(results: dict[str, float], metric: str) -> float:
    """The one value of a metric (KID: its mean)."""
    return results.get(metric, results.get(f"{metric}_mean"))


def score_job(race: Race, job: Job, device: torch.device) -> int:
    """Evaluate the snapshot nearest each minute with the metrics not yet in race.jsonl; one line per (minute,
    metric) appended as soon as it is known. Returns the number of lines written."""
    snaps = run_snapshots(race.outdir(job))
    scored = {(s["config"], s["seed"], s["minutes"], s["metric"]) for s in read_jsonl(race.scores_path)}
    asked: dict[Snapshot, list[tuple[float, str]]] = defaultdict(list)
    for minute in race.minutes:
        for metric in race.metrics:
            if (job.entry.name, job.seed, minute, metric) not in scored:
                asked[nearest(snaps, minute)].append((minute, metric))
    history = training_history(race.outdir(job))
    for snap, pairs in asked.items():
        names = [m for m in race.metrics if any(metric == m for _, metric in pairs)]
        generator, config, _ = read_generator(snap.path, device=device)
        dataset = load_training_data(config["data"], generator.resolution)
        report = evaluate_metrics(generator, dataset, names, device, batch_size=metrics_batch(config),
                                  cache_dir=config["data"].get("cache_dir"))
        specs = {spec.name: spec for spec in report.specs}
        for minute, metric in pairs:
            evaluation = report.record(specs[metric], checkpoint=snap.path)
            line = {"config": job.entry.name, "seed": job.seed, "minutes": minute, "metric": metric,
                    "value": headline(evaluation["results"], metric), "snapshot": str(snap.path),
                    "kimg": snap.images_seen / 1000, "train_s": snap.train_s, "img_per_s": snap.img_per_s,
                    "config_file": job.entry.config, "train_flags": list(job.entry.flags), **history,
                    "machine": race.machine, "evaluation": evaluation, "timestamp": now()}
            append_line(race.scores_path, json.dumps(line, sort_keys=True))
        click.echo(f"scored {job.name} at {', '.join(sorted({number(m) for m, _ in pairs}, key=float))} min "
                   f"(snapshot at {snap.train_s / 60:.2f} min, {snap.images_seen / 1000:g} kimg): "
                   + "  ".join(f"{m} {headline(report.values, m):.4g}" for m in names))
    return sum(len(pairs) for pairs in asked.values())


