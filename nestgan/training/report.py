"""What a run says about itself: the banner, tick statistics and the tick-0 and progress lines on the console,
and TensorBoard scalars when the package is installed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from nestgan.data.subsets import data_label
from nestgan.training.finetune import describe_parameters
from nestgan.training.rundir import RunDir
from nestgan.training.step import TrainState

if TYPE_CHECKING:
    from nestgan.training.session import Session


class Tick:
    """One tick: the running means of the step statistics (kept as tensors: no device sync per step), and when and
    at how many images it began. `reset` starts the next one (after a tick line, or after a rollback)."""

    def __init__(self, images_seen: int) -> None:
        self.reset(images_seen)

    def reset(self, images_seen: int) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.start = time.perf_counter()  # time spent on snapshots does not count towards sec/kimg
        self.start_nimg = images_seen

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


def describe(session: Session, s: TrainState) -> None:
    """The banner: run dir, data, networks, schedule and threads."""
    cfg, world, device, micro_batch, log = session.cfg, session.world, session.device, session.micro_batch, session.log
    log(f"run dir    {session.run.path if session.run else '-'}")
    data = data_label(cfg.data.name, cfg.data.attribute)
    log(f"data       {data} ({len(session.dataset)} images, {cfg.resolution} px, xflip={cfg.data.xflip})")
    for table in cfg.cpu_tables:
        log(f"recipe     the CPU recipe: {table} (--device cuda keeps the GPU values)")
    log(f"networks   {describe_parameters(s.G, s.D, cfg)}")
    log(
        f"training   {cfg.kimg:g} kimg{f' or {cfg.minutes:g} minutes' if cfg.minutes else ''}, "
        f"batch {cfg.batch} = {world.world_size} device(s) x "
        f"{cfg.batch // world.world_size // micro_batch} x {micro_batch}, {s.precision} on {device}"
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
