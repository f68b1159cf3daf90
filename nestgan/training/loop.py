"""The GAN training loop (StyleGAN2-ADA structure): `train` sets up a Session and runs ticks of training steps until
the run's kimg, minutes or a stop signal; every `snap` ticks, at each of `snap_minutes` and at the end it takes a
snapshot.

The parts: one step (step.py), checkpoints and resume (resume.py), stop signals, NaN rollback and a full disk
(guards.py), the banner and the statistics collector behind the console, stats.jsonl and TensorBoard (report.py),
snapshots and metrics (snapshot.py), the set-up (session.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from nestgan.config import TrainConfig
from nestgan.data.subsets import data_label
from nestgan.device import process_device
from nestgan.training import distributed, finetune
from nestgan.training.distributed import World
from nestgan.training.guards import Recovery, StopSignals, all_finite, disk_full_ends_training, networks_tensors
from nestgan.training.report import Statistics, describe, format_seconds, tensorboard_writer
from nestgan.training.checkpoint import TrainingCheckpoint, check_resumable, resolve_resume
from nestgan.training.rundir import RunDir
from nestgan.training.session import Session, configure_device, open_data, preflight
from nestgan.training.snapshot import GRID_SIZE, reals_for_grid, snapshot
from nestgan.training.step import TrainState, build_state, grid_images, training_step


def train(cfg: TrainConfig) -> Path | None:
    """Train as cfg says; under torchrun, one process per device. Returns the run directory (rank 0)."""
    world = distributed.world_from_env()
    device = process_device(cfg.device, world.local_rank)
    with distributed.process_group(world, device.type, cfg.dist_timeout_s):
        return _train(cfg, world, device)


def _train(cfg: TrainConfig, world: World, device: torch.device) -> Path | None:
    threads = configure_device(cfg, device)
    # Everything that can be wrong with the config or the resume checkpoint fails here, before any output.
    preflight(cfg, world)
    resume_path = resolve_resume(cfg)
    ckpt = TrainingCheckpoint.read(resume_path) if resume_path else None
    if ckpt is not None:
        check_resumable(cfg, ckpt, resume_path)
    state = build_state(cfg, device, world.rank)
    started_from = finetune.start_from(cfg, state.G, state.G_ema, state.D)
    dataset, loader = open_data(cfg, world, device)

    data = data_label(cfg.data.name, cfg.data.attribute)
    run = RunDir.create(cfg.outdir, f"{data}-{cfg.g}-{cfg.resolution}") if world.is_main else None
    with run.tee() if run else contextlib.nullcontext(), disk_full_ends_training(cfg, run, resume_path):
        grid_z = torch.randn(GRID_SIZE, state.G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        session = Session(cfg, world, device, dataset, loader, grid_z, cfg.micro_batch(world.world_size), run=run,
                          log=print if world.is_main else (lambda *a, **k: None),
                          threads=threads if device.type == "cpu" else None, writer=tensorboard_writer(run))
        log = session.log
        if ckpt is not None:
            ckpt.restore(state, session)
            del ckpt  # its copies of the weights and optimiser states would otherwise stay for the whole run
            log(f"resumed from {resume_path} at {state.images_seen / 1000:g} kimg "
                f"(tick {state.tick}, step {state.step})")
            if run:
                run.carry_history(resume_path.parent, state.images_seen / 1000)
        if started_from:
            log(f"fine-tune  {started_from}; fresh optimisers, kimg from 0")
        distributed.broadcast_module(state.G)
        distributed.broadcast_module(state.D)
        distributed.broadcast_module(state.G_ema)
        if run:
            # 'latest' names whichever run was newest then; the run directory keeps the checkpoint it really was.
            run.write_json("config.json", {**cfg.to_dict(), "resume": str(resume_path) if resume_path else None})
        describe(session, state)
        try:
            return _loop(session, state, last_good=resume_path)
        finally:
            if session.writer:
                session.writer.close()


def _loop(session: Session, state: TrainState, last_good: Path | None) -> Path | None:
    cfg, device, run, log, threads = session.cfg, session.device, session.run, session.log, session.threads
    if run:
        reals = run.save_grid(reals_for_grid(session.dataset), "reals.png")
        fakes = run.save_grid(grid_images(state.G_ema, session.grid_z, session.micro_batch, state.precision),
                              "fakes_init.png")
        if session.writer:  # TensorBoard's image slider starts where the run (or its resume) starts
            session.writer.add_image("reals", reals, state.images_seen, dataformats="HWC")
            session.writer.add_image("fakes", fakes, state.images_seen, dataformats="HWC")
    recovery = Recovery(last_good)
    stats = Statistics(session, state.images_seen)
    run_start, start_nimg, first_step = stats.start, state.images_seen, True

    def roll_back(what: str) -> None:
        recovery.roll_back(session, state, f"{what} at step {state.step}")
        stats.begin(state.images_seen)

    marks = sorted(m * 60 for m in cfg.snap_minutes)
    next_mark = _next_mark(marks, state.train_seconds)
    batches = iter(session.loader)
    with StopSignals() as stop:
        while True:
            losses = training_step(state, next(batches), cfg, session.micro_batch)
            trained_s = state.train_seconds + time.perf_counter() - stats.start
            out_of_time = cfg.minutes is not None and trained_s >= cfg.minutes * 60
            at_mark = next_mark is not None and trained_s >= next_mark
            # One host sync per step: a NaN is caught at the step that made it, and every rank agrees on it.
            nonfinite, stopping, out_of_time, at_mark = distributed.any_true(
                [not all_finite(losses.values()), stop.requested, out_of_time, at_mark], device
            )
            if nonfinite:
                roll_back("non-finite loss")
                continue
            for name, value in losses.items():
                stats.report(name, value)
            if first_step:
                stats.first_step(state)
                first_step = False
            done = state.images_seen >= int(cfg.kimg * 1000) or stopping or out_of_time
            if not done and not at_mark and state.images_seen < stats.start_nimg + cfg.tick_kimg * 1000:
                continue

            seconds = stats.elapsed()
            state.tick += 1
            state.train_seconds += seconds
            stats.publish(state, seconds)
            change = threads.adjust() if threads else None
            if change:
                log(f"threads    {change[0]} -> {change[1]}: other processes keep about "
                    f"{threads.limit - change[1]} of {threads.limit} usable CPUs busy")

            if done or at_mark or state.tick % cfg.snap == 0:
                # A weight update can turn non-finite after the step's losses were computed: never save that.
                if distributed.any_true([not all_finite(networks_tensors(state))], device)[0]:
                    roll_back("non-finite weights")
                    continue
                path = snapshot(session, state, stop, keep=at_mark)
                recovery.saved(path)
                if at_mark:
                    log(f"snapshot   at {state.train_seconds / 60:.2f} training minutes (snap_minutes), kept")
                    next_mark = _next_mark(marks, state.train_seconds)
                stopping = distributed.any_true([stop.requested], device)[0]  # a signal may arrive during metrics
                done = done or stopping
            if out_of_time and not stopping:
                log(f"time budget of {cfg.minutes:g} min reached at {state.images_seen / 1000:g} kimg")
            if stopping:
                log(f"stopped by {stop.requested_by} at {state.images_seen / 1000:g} kimg after a final snapshot; "
                    "continue with --resume latest")
            if done:
                break
            stats.begin(state.images_seen)

    trained = (state.images_seen - start_nimg) / 1000
    log(f"done: {state.images_seen / 1000:g} kimg ({trained:g} in this run) in "
        f"{format_seconds(time.perf_counter() - run_start)}")
    return run.path if run else None


def _next_mark(marks: list[float], trained_s: float) -> float | None:
    """The first of the sorted snap_minutes marks (in seconds) still ahead of `trained_s`; None when all are passed."""
    return next((mark for mark in marks if mark > trained_s), None)
