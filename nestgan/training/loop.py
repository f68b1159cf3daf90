"""The GAN training loop (StyleGAN2-ADA structure): `train` sets up a Session and runs ticks of training steps until
the run's kimg, minutes or a stop signal; every `snap` ticks, at each of `snap_minutes` and at the end it takes a
snapshot.

The parts: one step (step.py), checkpoints and resume (resume.py), stop signals, NaN rollback and a full disk
(guards.py), tick statistics and console/TensorBoard lines (report.py), snapshots and metrics (snapshot.py), the
set-up (session.py).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from nestgan.checkpoint import load_checkpoint
from nestgan.config import TrainConfig
from nestgan.data.subsets import data_label
from nestgan.device import peak_memory_bytes, process_device, synchronize
from nestgan.training import distributed, finetune
from nestgan.training.distributed import World
from nestgan.training.guards import Recovery, StopSignals, all_finite, disk_full_ends_training, networks_tensors
from nestgan.training.report import Tick, describe, first_step_line, format_seconds, progress_line, tensorboard_writer
from nestgan.training.resume import check_resumable, resolve_resume, restore
from nestgan.training.rundir import RunDir
from nestgan.training.session import Session, configure_device, open_data, preflight
from nestgan.training.snapshot import GRID_SIZE, reals_for_grid, snapshot
from nestgan.training.step import build_state, generate, training_step


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
    ckpt = load_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        check_resumable(cfg, ckpt, resume_path)
    s = build_state(cfg, device, world.rank)
    started_from = finetune.start_from(cfg, s.G, s.G_ema, s.D)
    dataset, loader = open_data(cfg, world, device)

    data = data_label(cfg.data.name, cfg.data.attribute)
    run = RunDir.create(cfg.outdir, f"{data}-{cfg.g}-{cfg.resolution}") if world.is_main else None
    with run.tee() if run else contextlib.nullcontext(), disk_full_ends_training(cfg, run, resume_path):
        session = Session(cfg, world, device, dataset, loader, run=run,
                          log=print if world.is_main else (lambda *a, **k: None),
                          threads=threads if device.type == "cpu" else None)
        log = session.log
        if ckpt is not None:
            restore(s, ckpt, session)
            del ckpt  # its copies of the weights and optimiser states would otherwise stay for the whole run
            log(f"resumed from {resume_path} at {s.images_seen / 1000:g} kimg (tick {s.tick}, step {s.step})")
            if run:
                run.carry_history(resume_path.parent, s.images_seen / 1000)
        if started_from:
            log(f"fine-tune  {started_from}; fresh optimisers, kimg from 0")
        distributed.broadcast_module(s.G)
        distributed.broadcast_module(s.D)
        distributed.broadcast_module(s.G_ema)
        if run:
            # 'latest' names whichever run was newest then; the run directory keeps the checkpoint it really was.
            run.write_json("config.json", {**cfg.to_dict(), "resume": str(resume_path) if resume_path else None})
        describe(session, s)
        return _loop(session, s, last_good=resume_path)


def _loop(session: Session, s, last_good: Path | None) -> Path | None:
    cfg, device, run, log, threads = session.cfg, session.device, session.run, session.log, session.threads
    total = int(cfg.kimg * 1000)
    budget_s = cfg.minutes * 60 if cfg.minutes is not None else None
    session.grid_z = torch.randn(GRID_SIZE, s.G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    session.writer = writer = tensorboard_writer(run)
    if run:
        run.save_grid(reals_for_grid(session.dataset), "reals.png")
        run.save_grid(generate(s.G_ema, session.grid_z, session.micro_batch, s.precision), "fakes_init.png")
    recovery = Recovery(last_good)

    marks = sorted(m * 60 for m in cfg.snap_minutes)
    next_mark = _next_mark(marks, s.train_seconds)
    batches = iter(session.loader)
    tick = Tick(s.images_seen)
    run_start = tick.start
    start_nimg = s.images_seen
    first_step = True
    with StopSignals() as stop:
        while True:
            stats = training_step(s, next(batches), cfg, session.micro_batch)
            trained_s = s.train_seconds + time.perf_counter() - tick.start
            out_of_time = budget_s is not None and trained_s >= budget_s
            at_mark = next_mark is not None and trained_s >= next_mark
            # One host sync per step: a NaN is caught at the step that made it, and every rank agrees on it.
            nonfinite, stopping, out_of_time, at_mark = distributed.any_true(
                [not all_finite(stats.values()), stop.requested, out_of_time, at_mark], device
            )
            if nonfinite:
                recovery.roll_back(session, s, f"non-finite loss at step {s.step}")
                tick.reset(s.images_seen)
                continue
            tick.add(stats)
            if first_step:  # a first line within seconds, not after a whole tick (StyleGAN2-ADA's tick 0)
                next_kimg = tick.start_nimg / 1000 + cfg.tick_kimg
                log(first_step_line(s.images_seen, cfg.kimg, next_kimg, time.perf_counter() - tick.start,
                                    peak_memory_bytes(device)))
                first_step = False
            done = s.images_seen >= total or stopping or out_of_time
            if not done and not at_mark and s.images_seen < tick.start_nimg + cfg.tick_kimg * 1000:
                continue

            # End of a tick: one line on the console, one record in stats.jsonl.
            s.tick += 1
            synchronize(device)
            seconds = time.perf_counter() - tick.start
            s.train_seconds += seconds
            means = distributed.average_scalars(tick.means(), device)
            nimg = s.images_seen - tick.start_nimg
            sec_per_kimg = seconds / (nimg / 1000)
            record = {
                "kimg": s.images_seen / 1000,
                "tick": s.tick,
                "train_s": s.train_seconds,
                "sec_per_kimg": sec_per_kimg,
                "img_per_s": nimg / seconds,
                **means,
                "peak_mem_gib": peak_memory_bytes(device) / 2**30,
                "threads": torch.get_num_threads(),
                "lr_g": s.opt_G.param_groups[0]["lr"],
                "lr_d": s.opt_D.param_groups[0]["lr"],
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            if run:
                run.append_jsonl("stats.jsonl", record)
                eta = max(total - s.images_seen, 0) / 1000 * sec_per_kimg
                if budget_s is not None:
                    eta = min(eta, max(budget_s - s.train_seconds, 0))
                log(progress_line(record, cfg.kimg, eta))
                if writer:
                    for k in ("img_per_s", "sec_per_kimg", *means, "peak_mem_gib"):
                        writer.add_scalar(f"train/{k}", record[k], s.images_seen)

            change = threads.adjust() if threads else None
            if change:
                log(f"threads    {change[0]} -> {change[1]}: other processes keep about "
                    f"{threads.limit - change[1]} of {threads.limit} usable CPUs busy")

            if done or at_mark or s.tick % cfg.snap == 0:
                # A weight update can turn non-finite after the step's losses were computed: never save that.
                if distributed.any_true([not all_finite(networks_tensors(s))], device)[0]:
                    recovery.roll_back(session, s, f"non-finite weights at step {s.step}")
                    tick.reset(s.images_seen)
                    continue
                path = snapshot(session, s, stop, keep=at_mark)
                recovery.saved(path)
                if at_mark:
                    log(f"snapshot   at {s.train_seconds / 60:.2f} training minutes (snap_minutes), kept")
                    next_mark = _next_mark(marks, s.train_seconds)
                stopping = distributed.any_true([stop.requested], device)[0]  # a signal may arrive during metrics
                done = done or stopping
            if out_of_time and not stopping:
                log(f"time budget of {cfg.minutes:g} min reached at {s.images_seen / 1000:g} kimg")
            if stopping:
                log(f"stopped by {stop.requested_by} at {s.images_seen / 1000:g} kimg after a final snapshot; "
                    "continue with --resume latest")
            if done:
                break
            tick.reset(s.images_seen)

    trained = (s.images_seen - start_nimg) / 1000
    log(f"done: {s.images_seen / 1000:g} kimg ({trained:g} in this run) in {format_seconds(time.perf_counter() - run_start)}")
    if writer:
        writer.close()
    return run.path if run else None


def _next_mark(marks: list[float], trained_s: float) -> float | None:
    """The first of the sorted snap_minutes marks (in seconds) still ahead of `trained_s`; None when all are passed."""
    return next((mark for mark in marks if mark > trained_s), None)
