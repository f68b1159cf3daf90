"""Training batches straight from the memory-mapped prepared array, exactly resumable.

Each epoch is a permutation drawn from a torch.Generator seeded by (seed, epoch), so the stream of batches is a
pure function of (seed, epoch, position): saving those two counters is enough to resume bit-identically. With
several ranks, every rank walks a disjoint strided slice of the same permutation. Batches may straddle an epoch
boundary, so every batch is full and no image is dropped; epochs never end (the training loop counts images).
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import numpy as np
import torch

from nestgan.data.prepared import PreparedDataset
from nestgan.device import synchronize
from nestgan.errors import ConfigError


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed per (seed, epoch), with no collisions between nearby pairs."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{epoch}".encode()).digest()[:8], "little") >> 1


class BatchIterator:
    """Infinite iterator of float batches (B, 3, R, R) in [-1, 1] on `device`.

    xflip mirrors each image horizontally with probability 1/2, decided by the same per-epoch generator (so
    flips are reproducible and resumable too). state_dict() / load_state_dict() save and restore the position.
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        xflip: bool = False,
        device: str | torch.device = "cpu",
    ):
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if len(dataset) < world_size:
            raise ConfigError(f"{len(dataset)} images cannot be shared among {world_size} ranks")
        self.images = dataset.images
        self.batch_size, self.seed, self.rank, self.world_size, self.xflip = batch_size, seed, rank, world_size, xflip
        self.device = torch.device(device)
        # Every rank sees the same number of images per epoch, so ranks stay in lock-step.
        self.per_rank = len(dataset) // world_size
        self.epoch, self.position = 0, 0
        self._order: np.ndarray | None = None  # this rank's indices for self.epoch
        self._flips: np.ndarray | None = None

    def _draw_epoch(self) -> None:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        permutation = torch.randperm(len(self.images), generator=generator)
        flips = torch.rand(len(self.images), generator=generator) < 0.5
        mine = slice(self.rank, self.per_rank * self.world_size, self.world_size)
        self._order, self._flips = permutation[mine].numpy(), flips[mine].numpy()

    def _next_indices(self) -> tuple[np.ndarray, np.ndarray]:
        indices, flips, needed = [], [], self.batch_size
        while needed:
            if self._order is None:
                self._draw_epoch()
            take = min(needed, self.per_rank - self.position)
            indices.append(self._order[self.position : self.position + take])
            flips.append(self._flips[self.position : self.position + take])
            self.position += take
            needed -= take
            if self.position == self.per_rank:
                self.epoch, self.position, self._order = self.epoch + 1, 0, None
        return np.concatenate(indices), np.concatenate(flips)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> torch.Tensor:
        indices, flips = self._next_indices()
        # Sorted reads are sequential in the file; then put the rows back in permutation order.
        order = np.argsort(indices, kind="stable")
        batch = np.empty((len(indices), *self.images.shape[1:]), dtype=np.uint8)  # (B, 3, R, R)
        batch[order] = self.images[indices[order]]
        if self.xflip and flips.any():
            batch[flips] = batch[flips, :, :, ::-1]
        pixels = torch.from_numpy(batch)
        if self.device.type == "cuda":
            pixels = pixels.pin_memory()
        # uint8 crosses to the device (4x fewer bytes than float), then converts there.
        pixels = pixels.to(self.device, non_blocking=True)
        return pixels.to(torch.float32).div_(127.5).sub_(1.0)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, position = state.get("epoch"), state.get("position")
        fits = isinstance(epoch, int) and isinstance(position, int) and epoch >= 0 and 0 <= position < self.per_rank
        if not fits:
            raise ConfigError(
                f"loader state {state!r} does not fit this dataset ({self.per_rank} images per rank and epoch)"
            )
        self.epoch, self.position, self._order = epoch, position, None


def measure_loader_throughput(
    dataset: PreparedDataset, batch_size: int, n_batches: int, device: str | torch.device = "cpu"
) -> float:
    """Images per second delivered by a BatchIterator (with xflip), after one warm-up batch."""
    batches = BatchIterator(dataset, batch_size, seed=0, xflip=True, device=device)
    next(batches)
    sync = functools.partial(synchronize, torch.device(device))
    sync()
    start = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    sync()
    return n_batches * batch_size / (time.perf_counter() - start)
