"""A training session: what every part of a run reads (config, process group, device, run directory, log, writer,
data), and the set-up that makes it: checks that fail before any output, the data and the loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from nestgan.config import TrainConfig
from nestgan.threads import ThreadGovernor
from nestgan.training import distributed
from nestgan.training.distributed import World
from nestgan.training.rundir import RunDir


@dataclass
class Session:
    cfg: TrainConfig
    world: World
    device: torch.device
    dataset: Any  # PreparedDataset
    loader: Any  # BatchIterator of this rank's share of each batch
    grid_z: torch.Tensor  # the latents of every fakes*.png
    micro_batch: int  # images per device per forward pass
    run: RunDir | None = None  # on the main rank only
    log: Callable[..., None] = print  # a no-op on the other ranks
    threads: ThreadGovernor | None = None  # the CPU thread governor (None on CUDA)
    writer: Any = None  # TensorBoard SummaryWriter, when installed (main rank)


def configure_device(cfg: TrainConfig, device: torch.device) -> ThreadGovernor:
    """CPU threads (a governor that leaves other processes' CPUs alone) or CUDA's TF32 and cuDNN autotuning."""
    threads = ThreadGovernor(cfg.threads)
    if device.type == "cpu":
        threads.start()
    if device.type == "cuda":
        configure_cuda()
    return threads


def configure_cuda() -> None:
    """What training runs with on CUDA (and benchmarks time with): TF32 matmuls and convolutions, cuDNN autotuning."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def preflight(cfg: TrainConfig, world: World) -> None:
    """What can be wrong outside the config fails here, before any output: an unwritable --outdir, missing
    Inception weights (found or converted now, not after hours of training)."""
    if world.is_main:
        RunDir.check_writable(cfg.outdir)
        if cfg.metrics:
            from nestgan.metrics import parse_metric_name, resolve_inception_weights
            from nestgan.metrics.kinds import METRIC_KINDS

            needs_classifier = any(METRIC_KINDS[parse_metric_name(m).kind].needs_classifier for m in cfg.metrics)
            resolve_inception_weights(cache_dir=cfg.data.cache_dir, need_classifier=needs_classifier)


def open_data(cfg: TrainConfig, world: World, device: torch.device) -> tuple[Any, Any]:
    """The dataset (rank 0 prepares its cache; the others then open it) and this rank's batch iterator."""
    from nestgan.data import load_training_data
    from nestgan.data.loader import BatchIterator

    def open_dataset():
        return load_training_data(vars(cfg.data), cfg.resolution, download=cfg.data.download)

    dataset = open_dataset() if world.is_main else None
    distributed.barrier()
    if dataset is None:
        dataset = open_dataset()
    rank_batch = cfg.batch // world.world_size
    loader = BatchIterator(dataset, rank_batch, cfg.seed, rank=world.rank, world_size=world.world_size,
                           xflip=cfg.data.xflip, device=device)
    return dataset, loader
