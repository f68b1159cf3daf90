"""python -m nestgan.race: the command; see nestgan/race/__init__.py."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from nestgan.cli import user_errors_as_exit
from nestgan.data import DATASETS
from nestgan.device import resolve_device
from nestgan.errors import ConfigError
from nestgan.metrics import resolve_inception_weights
from nestgan.race.plan import DEFAULT_METRICS, Job, Race, check_same_machine, parse_race, race_lock, remember
from nestgan.race.report import write_report
from nestgan.race.runs import Stop, finished, run_snapshots, still_training, train_jobs
from nestgan.race.score import score_job
from nestgan.threads import all_cores, choose_threads

EXIT_STOPPED = 130


def run_race(race: Race, stop: Stop) -> list[str]:
    """Train what is not trained (each run alone, or --pin runs side by side), scoring each run once trained;
    returns the failed trainings."""
    budget = max(race.minutes)
    jobs = race.jobs()
    pending = [job for job in jobs if not finished(run_snapshots(race.outdir(job)), budget)]
    if pending:
        check_same_machine(race)
    entries = remember(race)
    device = resolve_device("auto")
    for job in jobs:
        pid = still_training(race.outdir(job))
        if pid is not None:
            raise ConfigError(f"{job.name}: a training that an earlier race process started still runs (pid {pid}); "
                              f"wait for it to end, or stop it with kill -INT {pid}, then rerun")

    def score_trained(jobs: list[Job]) -> None:
        for job in jobs:
            if finished(run_snapshots(race.outdir(job)), budget) and score_job(race, job, device):
                write_report(race, entries)

    score_trained(jobs)  # runs trained before a stop or a crash of the race, and new metrics or minutes
    width = race.pin or 1
    failures = []
    for start in range(0, len(pending), width):
        group = pending[start : start + width]
        failures += train_jobs(race, group, stop)
        if stop.requested:
            break
        score_trained(group)
    note = write_report(race, entries)
    if note:
        click.echo(note, err=True)
    return failures


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--config", "configs", multiple=True, required=True,
              help="A contestant, '[NAME=]FILE [train flags]', e.g. 'conv=configs/study/celeba64-nest-r1d-b32.toml "
                   "--g conv' (repeatable; NAME: the file's stem).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated training seeds of every config.")
@click.option("--minutes", required=True,
              help="Comma-separated training minutes to score at, e.g. 10,25,50; each run trains for the last.")
@click.option("--metrics", default=DEFAULT_METRICS, show_default=True,
              help="Comma-separated metrics against every real image (<fid|kid|pr_inception><N>[k]_full).")
@click.option("--data", type=click.Choice(list(DATASETS)), help="Dataset of every run [each config's].")
@click.option("--data-dir", type=str, help="Where the data lives [each config's].")
@click.option("--out", required=True, type=str, help="The race directory; rerun with it to continue the race.")
@click.option("--threads", type=int, help="CPU threads of each training and of the evaluations [every usable core].")
@click.option("--pin", type=int,
              help="Trials: train up to this many runs side by side, each with one thread pinned to its own core "
                   "(at most the usable cores); their figures are marked as trials.")
@user_errors_as_exit
def main(**options: Any) -> None:
    """Train configs one after another, each alone, and score them at equal training minutes."""
    race = parse_race(**options)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    choose_threads(race.threads or all_cores())
    resolve_inception_weights()  # found or converted now, not after days of training
    with race_lock(race.dir), Stop() as stop:
        try:
            failures = run_race(race, stop)
        except KeyboardInterrupt:
            stop.requested = True
            failures = []
    if stop.requested:
        click.echo("stopped: scores so far are in race.jsonl; rerun the same command to continue", err=True)
        sys.exit(EXIT_STOPPED)
    if failures:
        click.echo(f"error: {len(failures)} training(s) failed, the rest of the race went on: " + "; ".join(failures),
                   err=True)
        sys.exit(1)
    click.echo(f"race: {race.dir / 'race.md'}")


if __name__ == "__main__":
    main()

