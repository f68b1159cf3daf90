"""What a run says about itself: the banner, and the statistics collector whose records make the tick-0 and
progress lines on the console, stats.jsonl and TensorBoard scalars (when the package is installed)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from nestgan.data.subsets import data_label
from nestgan.device import peak_memory_bytes, synchronize
from nestgan.training import distributed
from nestgan.training.rundir import RunDir
from nestgan.training.step import TrainState, describe_parameters

if TYPE_CHECKING:
    from nestgan.training.session import Session


class Statistics:
    """The run's one statistics collector, after StyleGAN2-ADA's training_stats: code reports `name -> value` while
    a tick runs (tensors stay where they are: no device sync per step), and `publish` ends the tick: each name's mean
    over its reports and over the ranks, with the tick's timing, becomes one record that feeds every sink - the
    console line, stats.jsonl and TensorBoard's train/<name> scalars."""

    def __init__(self, session: Session, images_seen: int) -> None:
        self.session = session
        self.begin(images_seen)

    def begin(self, images_seen: int) -> None:
        """Start a tick: after a published one, or after a rollback (whose reports are dropped)."""
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = {}
        self.start = time.perf_counter()  # time spent on snapshots does not count towards sec/kimg
        self.start_nimg = images_seen

    def report(self, name: str, value: torch.Tensor | float) -> None:
        self.sums[name] = self.sums.get(name, 0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def first_step(self, state: TrainState) -> None:
        """Tick 0: the first step went through, how long it took, and when the first tick line comes (a line within
        seconds, not after a whole tick)."""
        cfg = self.session.cfg
        next_kimg = self.start_nimg / 1000 + cfg.tick_kimg
        self.session.log(
            f"tick 0    kimg {state.images_seen / 1000:8.2f}/{cfg.kimg:g}  "
            f"first step {time.perf_counter() - self.start:.1f} s  "
            f"mem {peak_memory_bytes(self.session.device) / 2**30:.2f} GiB  next line at kimg {round(next_kimg, 3):g}"
        )

    def elapsed(self) -> float:
        """Seconds this tick has trained, once the device has finished its queued work."""
        synchronize(self.session.device)
        return time.perf_counter() - self.start

    def publish(self, state: TrainState, seconds: float) -> None:
        """End the tick that trained `seconds` (already counted in state.train_seconds and state.tick): its record
        to every sink on the main rank. Every rank calls it (the means are averaged over ranks)."""
        session = self.session
        means = distributed.average_scalars({k: float(v) / self.counts[k] for k, v in self.sums.items()},
                                            session.device)
        nimg = state.images_seen - self.start_nimg
        record = {
            "kimg": state.images_seen / 1000,
            "tick": state.tick,
            "train_s": state.train_seconds,
            "sec_per_kimg": seconds / (nimg / 1000),
            "img_per_s": nimg / seconds,
            **means,
            "peak_mem_gib": peak_memory_bytes(session.device) / 2**30,
            "threads": torch.get_num_threads(),
            "lr_g": state.opt_G.param_groups[0]["lr"],
            "lr_d": state.opt_D.param_groups[0]["lr"],
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if session.run:
            session.run.append_jsonl("stats.jsonl", record)
            session.log(progress_line(record, session.cfg.kimg, self._eta(state, record["sec_per_kimg"])))
            if session.writer:
                for k in ("img_per_s", "sec_per_kimg", *means, "peak_mem_gib"):
                    session.writer.add_scalar(f"train/{k}", record[k], state.images_seen)

    def _eta(self, state: TrainState, sec_per_kimg: float) -> float:
        cfg = self.session.cfg
        eta = max(int(cfg.kimg * 1000) - state.images_seen, 0) / 1000 * sec_per_kimg
        if cfg.minutes is not None:
            eta = min(eta, max(cfg.minutes * 60 - state.train_seconds, 0))
        return eta


def describe(session: Session, state: TrainState) -> None:
    """The banner: run dir, data, networks, schedule and threads."""
    cfg, world, device, micro_batch, log = session.cfg, session.world, session.device, session.micro_batch, session.log
    log(f"run dir    {session.run.path if session.run else '-'}")
    data = data_label(cfg.data.name, cfg.data.attribute)
    log(f"data       {data} ({len(session.dataset)} images, {cfg.resolution} px, xflip={cfg.data.xflip})")
    for table in cfg.cpu_tables:
        log(f"recipe     the CPU recipe: {table} (--device cuda keeps the GPU values)")
    log(f"networks   {describe_parameters(state.G, state.D, cfg)}")
    log(
        f"training   {cfg.kimg:g} kimg{f' or {cfg.minutes:g} minutes' if cfg.minutes else ''}, "
        f"batch {cfg.batch} = {world.world_size} device(s) x "
        f"{cfg.batch // world.world_size // micro_batch} x {micro_batch}, {state.precision} on {device}"
        f"{', compiled' if cfg.compile else ''}, loss {cfg.loss}, augment '{cfg.augment}'"
        f"{', shared fakes' if cfg.shared_fakes else ''}"
    )
    if device.type == "cpu":
        threads = session.threads
        how = "fixed" if threads.fixed else f"of {threads.limit} usable CPUs, re-checked every tick"
        log(f"threads    {torch.get_num_threads()} ({how})")


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


def progress_line(r: dict[str, Any], total_kimg: float, eta_s: float) -> str:
    r1 = f"  r1 {r['r1']:.4f}" if "r1" in r else ""
    return (
        f"tick {r['tick']:<4d} kimg {r['kimg']:8.2f}/{total_kimg:g}  {r['img_per_s']:7.1f} img/s  "
        f"{r['sec_per_kimg']:6.2f} s/kimg  loss_G {r['loss_g']:.3f}  loss_D {r['loss_d']:.3f}{r1}  "
        f"D(real) {r['d_real']:+.2f}  D(fake) {r['d_fake']:+.2f}  mem {r['peak_mem_gib']:.2f} GiB  "
        f"eta {format_seconds(eta_s)}"
    )
