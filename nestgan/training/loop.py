"""The GAN training loop (StyleGAN2-ADA structure).

`training_step` is one optimiser step of each network: the D step (real vs fake logits, lazy R1 on the
reals), the G step, then the EMA update of G. `train` does everything around it: networks, data,
run directory, ticks, snapshots, metrics and exact resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import resource
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.profiler import record_function

from nestgan.augment import DiffAugment
from nestgan.checkpoint import load_checkpoint, save_checkpoint
from nestgan.config import TrainConfig
from nestgan.data.sources import data_label
from nestgan.errors import ConfigError, DiskFullError, TrainingError
from nestgan.loss import d_loss, g_loss, r1_penalty
from nestgan.networks import build_discriminator, build_generator
from nestgan.threads import ThreadGovernor
from nestgan.training import distributed, finetune
from nestgan.training.distributed import World
from nestgan.training.ema import ema_beta, update_ema
from nestgan.training.rundir import RunDir, find_latest_checkpoint, kimg_stamp, snapshots

GRID_SIZE = 64  # samples in fakes*.png (8 x 8)

# Independent random streams, one per purpose and rank, all derived from cfg.seed.
LATENT_STREAM, AUGMENT_STREAM, TORCH_STREAM = 1, 2, 3


def stream_seed(seed: int, rank: int, stream: int) -> int:
    return (seed * 1_000_003 + rank * 1009 + stream) % (2**63)


@dataclass
class TrainState:
    """Everything a training step reads or changes; all of it goes into a checkpoint."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    augment: DiffAugment
    latents: torch.Generator  # z of the training steps, drawn on the CPU
    G_forward: nn.Module  # G, or torch.compile(G)
    D_forward: nn.Module
    precision: str  # fp32 | bf16 | fp16 (config "auto" resolved for this machine)
    images_seen: int = 0
    step: int = 0
    tick: int = 0
    train_seconds: float = 0.0  # wall-clock time in training steps, snapshots and metrics excluded


def build_state(cfg: TrainConfig, device: torch.device, rank: int = 0) -> TrainState:
    """Networks, optimisers and random streams; weights are initialised from cfg.seed, equal on every rank."""
    torch.manual_seed(cfg.seed)
    try:
        G = build_generator(cfg.generator).to(device)
        D = build_discriminator(cfg.d, cfg.resolution, **cfg.discriminator).to(device)
    except TypeError as e:
        raise ConfigError(f"cannot build the networks from the config: {e}") from None
    if G.resolution != cfg.resolution:
        raise ConfigError(f"the generator makes {G.resolution} px images but resolution = {cfg.resolution}")
    params_G, params_D = finetune.trainable_parameters(G, D, cfg)  # the optimisers hold only these
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    torch.manual_seed(stream_seed(cfg.seed, rank, TORCH_STREAM))
    betas = (cfg.beta1, cfg.beta2)
    precision = cfg.resolved_precision()
    fp16 = precision == "fp16"
    return TrainState(
        G=G,
        D=D,
        G_ema=G_ema,
        opt_G=adam(params_G, cfg.lr_g, betas, device),
        opt_D=adam(params_D, cfg.lr_d, betas, device),
        scaler_G=torch.amp.GradScaler(device.type, enabled=fp16),
        scaler_D=torch.amp.GradScaler(device.type, enabled=fp16),
        augment=DiffAugment(cfg.augment, seed=stream_seed(cfg.seed, rank, AUGMENT_STREAM)),
        latents=torch.Generator().manual_seed(stream_seed(cfg.seed, rank, LATENT_STREAM)),
        G_forward=torch.compile(G) if cfg.compile else G,
        D_forward=torch.compile(D) if cfg.compile else D,
        precision=precision,
    )


def adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters) where torch has it for the device."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=device.type in ("cpu", "cuda"))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def sample_z(s: TrainState, n: int, device: torch.device) -> torch.Tensor:
    return torch.randn(n, s.G.z_dim, generator=s.latents).to(device)


def training_step(s: TrainState, reals: torch.Tensor, cfg: TrainConfig, micro_batch: int) -> dict[str, torch.Tensor]:
    """One D step and one G step on this rank's share of the batch, reals (B_rank, 3, R, R) in [-1, 1].

    The share is processed in micro-batches of `micro_batch` whose gradients accumulate; ranks then
    average their gradients, so the update equals one step on the whole batch. With cfg.shared_fakes the G step
    reuses the D step's fakes and their graph (one G forward per step, as the DCGAN reference does) instead of
    drawing new ones. Each phase runs in a named profiler scope (nestgan.step_profile reads them). Returns
    detached scalars.
    """
    device = reals.device
    chunks = reals.split(micro_batch)
    accum = len(chunks)
    do_r1 = cfg.r1_gamma > 0 and s.step % cfg.r1_interval == 0
    stats: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        stats[name] = stats.get(name, 0) + value.detach().float() / accum

    # D step: push real logits up and fake logits down; every 16th step also R1 on the (augmented) reals.
    finetune.set_requires_grad(s.opt_G, cfg.shared_fakes)  # the shared fakes keep their graph for the G step
    finetune.set_requires_grad(s.opt_D, True)
    s.opt_D.zero_grad(set_to_none=True)
    D_forward = s.D if do_r1 else s.D_forward  # double backward (R1) does not run through torch.compile
    fakes = []
    for real, z in zip(chunks, sample_z(s, reals.shape[0], device).split(micro_batch)):
        with record_function("G_forward"), torch.set_grad_enabled(cfg.shared_fakes), autocast(device, s.precision):
            fakes.append(s.G_forward(z))
        real = real.detach().requires_grad_(do_r1)
        with autocast(device, s.precision):
            with record_function("augment"):
                real_aug, fake_aug = s.augment(real), s.augment(fakes[-1].detach())
            with record_function("D_forward"):
                real_logits = D_forward(real_aug)
                fake_logits = D_forward(fake_aug)
        loss = d_loss(cfg.loss, real_logits, fake_logits)
        add("loss_d", loss)
        add("d_real", real_logits.float().mean())
        add("d_fake", fake_logits.float().mean())
        if do_r1:
            with record_function("R1"):
                penalty = r1_penalty(real_logits, real, s.scaler_D.get_scale() if s.scaler_D.is_enabled() else 1.0)
            add("r1", penalty)
            loss = loss + penalty * (cfg.r1_gamma / 2 * cfg.r1_interval)  # lazy: scaled by how rarely it runs
        with record_function("D_backward"):  # R1's second-order backward included on R1 steps
            s.scaler_D.scale(loss / accum).backward()
    with record_function("D_optimizer"):
        distributed.average_gradients(s.D)
        s.scaler_D.step(s.opt_D)
        s.scaler_D.update()

    # G step: make D call the (augmented) fakes real.
    finetune.set_requires_grad(s.opt_G, True)
    finetune.set_requires_grad(s.opt_D, False)
    s.opt_G.zero_grad(set_to_none=True)
    if not cfg.shared_fakes:
        fakes = []
        for z in sample_z(s, reals.shape[0], device).split(micro_batch):
            with record_function("G_forward"), autocast(device, s.precision):
                fakes.append(s.G_forward(z))
    for fake in fakes:
        with autocast(device, s.precision):
            with record_function("augment"):
                fake_aug = s.augment(fake)
            with record_function("D_forward"):
                fake_logits = s.D_forward(fake_aug)
        loss = g_loss(cfg.loss, fake_logits)
        add("loss_g", loss)
        with record_function("G_backward"):  # through D (input gradients only) into G
            s.scaler_G.scale(loss / accum).backward()
    with record_function("G_optimizer"):
        distributed.average_gradients(s.G)
        s.scaler_G.step(s.opt_G)
        s.scaler_G.update()
    finetune.set_requires_grad(s.opt_D, True)

    s.images_seen += cfg.batch
    s.step += 1
    with record_function("EMA"):
        update_ema(s.G_ema, s.G, ema_beta(cfg.batch, cfg.ema_kimg, s.images_seen, cfg.ema_rampup))
    return stats


# ---------------------------------------------------------------------------------------------- checkpoints


def rank_state(s: TrainState, loader: Any) -> dict[str, Any]:
    """The random streams and data position of one rank."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "latents": s.latents.get_state(),
        "augment": s.augment.state_dict(),
        "loader": loader.state_dict(),
    }


def checkpoint_state(s: TrainState, cfg: TrainConfig, rank_states: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "config": cfg.to_dict(),
        "G": s.G.state_dict(),
        "G_ema": s.G_ema.state_dict(),
        "D": s.D.state_dict(),
        "opt_G": s.opt_G.state_dict(),
        "opt_D": s.opt_D.state_dict(),
        "scaler_G": s.scaler_G.state_dict(),
        "scaler_D": s.scaler_D.state_dict(),
        "progress": {
            "images_seen": s.images_seen,
            "kimg": s.images_seen / 1000,
            "step": s.step,
            "tick": s.tick,
            "train_seconds": s.train_seconds,
            "world_size": len(rank_states),
            "batch": cfg.batch,
        },
        "rng": [{k: r[k] for k in ("torch", "cuda", "latents")} for r in rank_states],
        "augment": [r["augment"] for r in rank_states],
        "loader": [r["loader"] for r in rank_states],
    }


def restore(s: TrainState, ckpt: dict[str, Any], cfg: TrainConfig, world: World, loader: Any, log: Any) -> None:
    """Load weights, optimisers and counters; random streams and data position too when the world size
    and batch are unchanged (then the continuation is exactly the run that was never interrupted)."""
    for key, module in (("G", s.G), ("G_ema", s.G_ema), ("D", s.D)):
        module.load_state_dict(ckpt[key])
    s.opt_G.load_state_dict(ckpt["opt_G"])
    s.opt_D.load_state_dict(ckpt["opt_D"])
    if ckpt["scaler_G"] and s.scaler_G.is_enabled():
        s.scaler_G.load_state_dict(ckpt["scaler_G"])
        s.scaler_D.load_state_dict(ckpt["scaler_D"])
    progress = ckpt["progress"]
    s.images_seen, s.step, s.tick = progress["images_seen"], progress["step"], progress["tick"]
    s.train_seconds = progress.get("train_seconds", 0.0)  # absent in checkpoints older than the minutes budget
    if progress["world_size"] != world.world_size or progress["batch"] != cfg.batch:
        log("resume: world size or batch changed; random streams and data order restart (not bit-exact)")
        return
    rng = ckpt["rng"][world.rank]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    s.latents.set_state(rng["latents"])
    s.augment.load_state_dict(ckpt["augment"][world.rank])
    loader.load_state_dict(ckpt["loader"][world.rank])


def resolve_resume(cfg: TrainConfig) -> Path | None:
    if cfg.resume is None:
        return None
    if cfg.resume == "latest":
        return find_latest_checkpoint(cfg.outdir, {"data.name": cfg.data.name, "data.attribute": cfg.data.attribute,
                                                   "g": cfg.g, "resolution": cfg.resolution})
    return Path(cfg.resume)


def check_resumable(cfg: TrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    """The checkpoint must describe the same networks and data; the run must still have images to go."""
    old = ckpt.get("config", {})
    for key in ("resolution", "generator", "d", "discriminator"):
        if old.get(key) != getattr(cfg, key):
            raise ConfigError(
                f"cannot resume from {path}: its {key} is {old.get(key)!r}, this run's is {getattr(cfg, key)!r}"
            )
    if old.get("data", {}).get("name") != cfg.data.name:
        raise ConfigError(f"cannot resume from {path}: it was trained on '{old.get('data', {}).get('name')}'")
    if old.get("data", {}).get("attribute") != cfg.data.attribute:
        raise ConfigError(f"cannot resume from {path}: its data.attribute is {old.get('data', {}).get('attribute')!r}, "
                          f"this run's is {cfg.data.attribute!r}; pass the same --attribute")
    finetune.check_resume(cfg, old, path)
    done = ckpt["progress"]["images_seen"]
    if done >= cfg.kimg * 1000:
        raise ConfigError(
            f"{path} has already seen {done / 1000:g} kimg >= kimg {cfg.kimg:g}; raise --kimg to train further"
        )
    trained_s = ckpt["progress"].get("train_seconds", 0.0)
    if cfg.minutes is not None and trained_s >= cfg.minutes * 60:
        raise ConfigError(
            f"{path} has already trained {trained_s / 60:.1f} min >= minutes {cfg.minutes:g}; "
            "raise --minutes to train further"
        )


# --------------------------------------------------------------------------------------------------- train


def resolve_device(cfg: TrainConfig, world: World) -> torch.device:
    if cfg.resolved_device() == "cuda":
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def train(cfg: TrainConfig) -> Path | None:
    """Train as cfg says; under torchrun, one process per device. Returns the run directory (rank 0)."""
    world = distributed.world_from_env()
    device = resolve_device(cfg, world)
    distributed.init(world, device.type, cfg.dist_timeout_s)
    try:
        run_dir = _train(cfg, world, device)
        distributed.barrier()  # on success, no rank leaves the group while another still talks to it
        return run_dir
    finally:
        distributed.shutdown()  # on an error this also releases peers blocked in a collective


def _train(cfg: TrainConfig, world: World, device: torch.device) -> Path | None:
    from nestgan.data import load_dataset
    from nestgan.data.loader import BatchIterator

    threads = ThreadGovernor(cfg.threads)
    if device.type == "cpu":
        threads.start()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    micro_batch = cfg.micro_batch(world.world_size)
    rank_batch = cfg.batch // world.world_size

    # Everything that can be wrong with the config or the resume checkpoint fails here, before any output.
    if world.is_main:
        RunDir.check_writable(cfg.outdir)
        if cfg.metrics:  # find (or convert) the Inception weights now, not after hours of training
            from nestgan.metrics import parse_metric_name, resolve_inception_weights

            needs_classifier = any(parse_metric_name(m).kind == "is" for m in cfg.metrics)
            resolve_inception_weights(cache_dir=cfg.data.cache_dir, need_classifier=needs_classifier)
    resume_path = resolve_resume(cfg)
    ckpt = load_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        check_resumable(cfg, ckpt, resume_path)
    s = build_state(cfg, device, world.rank)
    started_from = finetune.start_from(cfg, s.G, s.G_ema, s.D)

    # Rank 0 prepares the dataset cache; the others then open it.
    def open_dataset():
        return load_dataset(
            cfg.data.name,
            cfg.resolution,
            data_dir=cfg.data.data_dir,
            split=cfg.data.split,
            cache_dir=cfg.data.cache_dir,
            download=cfg.data.download,
            max_images=cfg.data.max_images,
            attribute=cfg.data.attribute,
        )

    dataset = open_dataset() if world.is_main else None
    distributed.barrier()
    if dataset is None:
        dataset = open_dataset()
    loader = BatchIterator(dataset, rank_batch, cfg.seed, world.rank, world.world_size, cfg.data.xflip, device)

    data = data_label(cfg.data.name, cfg.data.attribute)
    run = RunDir.create(cfg.outdir, f"{data}-{cfg.g}-{cfg.resolution}") if world.is_main else None
    with run.tee() if run else contextlib.nullcontext(), disk_full_ends_training(cfg, run, resume_path):
        log = print if world.is_main else (lambda *a, **k: None)
        if ckpt is not None:
            restore(s, ckpt, cfg, world, loader, log)
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
        describe(cfg, s, dataset, world, device, micro_batch, run, log, threads)
        return _loop(cfg, s, dataset, loader, world, device, micro_batch, run, log, last_good=resume_path,
                     threads=threads if device.type == "cpu" else None)


@contextlib.contextmanager
def disk_full_ends_training(cfg: TrainConfig, run: RunDir | None, resume_path: Path | None) -> Iterator[None]:
    """A write that fails for want of space, in nestgan's writers or elsewhere (log.txt, a library), ends the run
    with one line: the file, the size when known, and how to go on. The writers have kept every earlier file whole."""
    try:
        yield
    except Exception as e:
        where = getattr(e, "filename", None) or (run.path if run else cfg.outdir)
        full = DiskFullError.caused_by(e, where)
        if full is None:
            raise
        has_snapshot = resume_path is not None or (run is not None and bool(snapshots(run.path)))
        full.then = "rerun with --resume latest" if has_snapshot else "rerun"
        raise full from None


def describe(cfg, s, dataset, world, device, micro_batch, run, log, threads: ThreadGovernor) -> None:
    log(f"run dir    {run.path if run else '-'}")
    data = data_label(cfg.data.name, cfg.data.attribute)
    log(f"data       {data} ({len(dataset)} images, {cfg.resolution} px, xflip={cfg.data.xflip})")
    for table in cfg.cpu_tables:
        log(f"recipe     the CPU recipe: {table} (--device cuda keeps the GPU values)")
    log(f"networks   {finetune.describe_parameters(s.G, s.D, cfg)}")
    log(
        f"training   {cfg.kimg:g} kimg{f' or {cfg.minutes:g} minutes' if cfg.minutes else ''}, "
        f"batch {cfg.batch} = {world.world_size} device(s) x "
        f"{cfg.batch // world.world_size // micro_batch} x {micro_batch}, {s.precision} on {device}"
        f"{', compiled' if cfg.compile else ''}, loss {cfg.loss}, augment '{cfg.augment}'"
        f"{', shared fakes' if cfg.shared_fakes else ''}"
    )
    if device.type == "cpu":
        how = "fixed" if threads.fixed else f"of {threads.limit} usable CPUs, re-checked every tick"
        log(f"threads    {torch.get_num_threads()} ({how})")


class TickStats:
    """Running means of the step statistics over one tick (kept as tensors: no device sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


def _loop(cfg, s: TrainState, dataset, loader, world: World, device, micro_batch: int, run: RunDir | None, log,
          last_good: Path | None, threads: ThreadGovernor | None):
    total = int(cfg.kimg * 1000)
    budget_s = cfg.minutes * 60 if cfg.minutes is not None else None
    grid_z = torch.randn(GRID_SIZE, s.G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    writer = tensorboard_writer(run)
    if run:
        run.save_grid(reals_for_grid(dataset), "reals.png")
        run.save_grid(generate(s.G_ema, grid_z, micro_batch, s.precision), "fakes_init.png")
    recovery = Recovery(last_good)

    batches = iter(loader)
    tick = TickStats()
    run_start = tick_start = time.perf_counter()
    tick_start_nimg = s.images_seen
    start_nimg = s.images_seen
    first_step = True
    with StopSignals() as stop:
        while True:
            stats = training_step(s, next(batches), cfg, micro_batch)
            out_of_time = budget_s is not None and s.train_seconds + time.perf_counter() - tick_start >= budget_s
            # One host sync per step: a NaN is caught at the step that made it, and every rank agrees on it.
            nonfinite, stopping, out_of_time = distributed.any_true(
                [not all_finite(stats.values()), stop.requested, out_of_time], device
            )
            if nonfinite:
                recovery.roll_back(cfg, s, loader, world, log, f"non-finite loss at step {s.step}")
                tick, tick_start, tick_start_nimg = TickStats(), time.perf_counter(), s.images_seen
                continue
            tick.add(stats)
            if first_step:  # a first line within seconds, not after a whole tick (StyleGAN2-ADA's tick 0)
                next_kimg = tick_start_nimg / 1000 + cfg.tick_kimg
                log(first_step_line(s.images_seen, cfg.kimg, next_kimg, time.perf_counter() - tick_start,
                                    peak_memory_bytes(device)))
                first_step = False
            done = s.images_seen >= total or stopping or out_of_time
            if not done and s.images_seen < tick_start_nimg + cfg.tick_kimg * 1000:
                continue

            # End of a tick: one line on the console, one record in stats.jsonl.
            s.tick += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - tick_start
            s.train_seconds += seconds
            means = distributed.average_scalars(tick.means(), device)
            nimg = s.images_seen - tick_start_nimg
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

            if done or s.tick % cfg.snap == 0:
                # A weight update can turn non-finite after the step's losses were computed: never save that.
                if distributed.any_true([not all_finite(networks_tensors(s))], device)[0]:
                    recovery.roll_back(cfg, s, loader, world, log, f"non-finite weights at step {s.step}")
                    tick, tick_start, tick_start_nimg = TickStats(), time.perf_counter(), s.images_seen
                    continue
                path = snapshot(cfg, s, dataset, loader, world, device, micro_batch, run, grid_z, writer, log, stop)
                recovery.saved(path)
                stopping = distributed.any_true([stop.requested], device)[0]  # a signal may arrive during metrics
                done = done or stopping
            if out_of_time and not stopping:
                log(f"time budget of {cfg.minutes:g} min reached at {s.images_seen / 1000:g} kimg")
            if stopping:
                log(f"stopped by {stop.requested_by} at {s.images_seen / 1000:g} kimg after a final snapshot; "
                    "continue with --resume latest")
            if done:
                break
            tick = TickStats()
            tick_start = time.perf_counter()  # time spent on snapshots does not count towards sec/kimg
            tick_start_nimg = s.images_seen

    trained = (s.images_seen - start_nimg) / 1000
    log(f"done: {s.images_seen / 1000:g} kimg ({trained:g} in this run) in {format_seconds(time.perf_counter() - run_start)}")
    if writer:
        writer.close()
    return run.path if run else None


class StopRequested(Exception):
    """A stop signal arrived inside StopSignals.interruptible()."""


class StopSignals:
    """While active, SIGINT and SIGTERM (what cluster schedulers send before preemption) only raise a flag:
    the loop finishes its step, takes a snapshot and returns normally. A second signal stops at once, and so does
    the first one inside `interruptible()` (metrics, which may take long and come after the checkpoint is safe)."""

    def __init__(self) -> None:
        self.requested_by: str | None = None
        self._previous: dict[int, Any] = {}
        self._interruptible = False

    @property
    def requested(self) -> bool:
        return self.requested_by is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested_by = signal.Signals(signum).name
        if self._interruptible:
            raise StopRequested(self.requested_by)
        print(f"{self.requested_by}: finishing this step, then a snapshot and exit (send again to stop now)", flush=True)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Recovery:
    """Rolls training back to the last good checkpoint after non-finite values, each time with the learning
    rates scaled by cfg.nan_lr_factor once more; gives up after cfg.nan_rollbacks tries without a new snapshot."""

    def __init__(self, last_good: Path | None) -> None:
        self.last_good = last_good
        self.tries = 0

    def saved(self, path: Path | None) -> None:
        self.last_good, self.tries = path, 0

    def roll_back(self, cfg: TrainConfig, s: TrainState, loader: Any, world: World, log: Any, what: str) -> None:
        where = f"{what} ({s.images_seen / 1000:g} kimg)"
        if self.last_good is None:
            raise TrainingError(
                f"{where} and no checkpoint to roll back to; lower lr_g / lr_d in the config or use --precision fp32"
            )
        if self.tries >= cfg.nan_rollbacks:
            raise TrainingError(
                f"{where} again after {self.tries} rollback(s) to {self.last_good.name}; "
                "lower the learning rates or r1_gamma, or use --precision fp32"
            )
        self.tries += 1
        restore(s, load_checkpoint(self.last_good), cfg, world, loader, log)
        for opt in (s.opt_G, s.opt_D):
            for group in opt.param_groups:
                group["lr"] *= cfg.nan_lr_factor**self.tries
        log(
            f"{where}: rolled back to {self.last_good.name} ({s.images_seen / 1000:g} kimg), "
            f"learning rates now {s.opt_G.param_groups[0]['lr']:.3g} (G) {s.opt_D.param_groups[0]['lr']:.3g} (D)"
        )


def all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def networks_tensors(s: TrainState) -> list[torch.Tensor]:
    return [t for m in (s.G, s.D, s.G_ema) for t in m.state_dict().values() if t.is_floating_point()]


def snapshot(cfg, s: TrainState, dataset, loader, world, device, micro_batch, run, grid_z, writer, log, stop) -> Path:
    """Sample grid, checkpoint (rank 0 writes every rank's random state) and metrics; returns the checkpoint's path
    (known on every rank: it names the shared run directory)."""
    rank_states = distributed.gather_to_main(rank_state(s, loader))
    path = None
    if run:
        kimg = s.images_seen / 1000
        images = generate(s.G_ema, grid_z, micro_batch, s.precision)
        run.save_grid(images, f"fakes{kimg_stamp(s.images_seen)}.png")
        if writer:
            writer.add_images("fakes", (images[:16] + 1) / 2, s.images_seen)
        path = run.snapshot_path(s.images_seen)
        save_checkpoint(path, checkpoint_state(s, cfg, rank_states))
        run.prune_snapshots(cfg.keep_snapshots)
        if cfg.metrics:
            try:
                with stop.interruptible():
                    evaluate(cfg, s, dataset, device, run, path, kimg, writer, log)
            except StopRequested as e:
                log(f"metrics    skipped: {e} arrived during the evaluation (the checkpoint was already saved)")
    return distributed.broadcast_from_main(path)


def evaluate(cfg, s: TrainState, dataset, device, run: RunDir, snapshot_path: Path, kimg: float, writer, log) -> None:
    from nestgan.metrics import compute_metrics

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training streams stay untouched
        results = compute_metrics(  # no progress bars: through the tee they would fill log.txt
            s.G_ema, dataset, cfg.metrics, device, batch_size=cfg.metrics_batch, cache_dir=cfg.data.cache_dir,
            progress=False,
        )
    log(
        "metrics    "
        + "  ".join(f"{k} {v:.3f}" for k, v in results.items())
        + f"  ({format_seconds(time.perf_counter() - start)})"
    )
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for name in cfg.metrics:  # kid10k -> kid10k_mean and kid10k_std, both in metric-kid10k.jsonl
        values = {k: v for k, v in results.items() if k == name or k.startswith(f"{name}_")}
        record = {"kimg": kimg, "tick": s.tick, "train_s": s.train_seconds, "snapshot": snapshot_path.name,
                  "results": values, "timestamp": stamp}
        run.append_jsonl(f"metric-{name}.jsonl", record)
        if writer:
            for k, v in values.items():
                writer.add_scalar(f"metrics/{k}", v, s.images_seen)
    fid = next((name for name in cfg.metrics if name.startswith("fid")), None)
    if fid is not None and results.get(fid, math.inf) <= best_so_far(run.path / f"metric-{fid}.jsonl", fid):
        run.set_best(snapshot_path)
        log(f"best.pt    <- {snapshot_path.name} ({fid} {results[fid]:.3f})")


def best_so_far(path: Path, name: str) -> float:
    """Lowest value of metric `name` recorded in its jsonl file (the latest record included)."""
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return min((r["results"][name] for r in records if name in r.get("results", {})), default=math.inf)


# ------------------------------------------------------------------------------------------------- helpers


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch: int, precision: str) -> torch.Tensor:
    with autocast(z.device, precision):
        return torch.cat([G(chunk).float() for chunk in z.split(batch)]).clamp(-1, 1)


def reals_for_grid(dataset) -> torch.Tensor:
    n = min(GRID_SIZE, len(dataset))
    idx = torch.linspace(0, len(dataset) - 1, n).long()  # spread over the dataset, not its first images
    return torch.stack([dataset[int(i)] for i in idx]).float() / 127.5 - 1


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def tensorboard_writer(run: RunDir | None):
    """A SummaryWriter in the run dir when the tensorboard package is installed, else None."""
    if run is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run.path))


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def first_step_line(images_seen: int, total_kimg: float, next_kimg: float, step_s: float, memory_bytes: int) -> str:
    """Tick 0: the first step went through, how long it took, and when the first full tick line comes."""
    return (
        f"tick 0    kimg {images_seen / 1000:8.2f}/{total_kimg:g}  first step {step_s:.1f} s  "
        f"mem {memory_bytes / 2**30:.2f} GiB  next line at kimg {round(next_kimg, 3):g}"
    )


def progress_line(r: dict[str, Any], total_kimg: float, eta_s: float) -> str:
    r1 = f"  r1 {r['r1']:.4f}" if "r1" in r else ""
    return (
        f"tick {r['tick']:<4d} kimg {r['kimg']:8.2f}/{total_kimg:g}  {r['img_per_s']:7.1f} img/s  "
        f"{r['sec_per_kimg']:6.2f} s/kimg  loss_G {r['loss_g']:.3f}  loss_D {r['loss_d']:.3f}{r1}  "
        f"D(real) {r['d_real']:+.2f}  D(fake) {r['d_fake']:+.2f}  mem {r['peak_mem_gib']:.2f} GiB  "
        f"eta {format_seconds(eta_s)}"
    )
