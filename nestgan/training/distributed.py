"""Multi-process training from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

Gradients are averaged by hand after each accumulated step (as StyleGAN3 does; StyleGAN2-ADA wraps its networks
in DDP) instead of wrapping the networks in DistributedDataParallel: the G step runs D without its gradients and
R1 needs double backward, both awkward under DDP. Every collective has a timeout, and a failing rank tears the group
down, so no rank waits forever for a peer that has died.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """Rank and size that torchrun set, without touching the network (single process when absent)."""
    return World(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


@contextmanager
def process_group(world: World, device_type: str, timeout_s: float, rendezvous: str = "env://") -> Iterator[None]:
    """In the process group for the block: NCCL between GPUs, gloo on the CPU; `rendezvous` is torchrun's
    environment, or a `file://` path the caller owns (the tests: no port to race for). On success no rank leaves
    while another still talks to it; on an error the rank leaves at once, which releases peers blocked in a
    collective."""
    if world.world_size > 1:
        # Imported after the group exists (the first optimiser imports it), torch._dynamo keeps a reference to the
        # group: destroy_process_group then leaves gloo's worker threads running into interpreter exit, where one
        # that frees a finished collective's tensors aborts the process.
        import torch._dynamo  # noqa: F401

        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method=rendezvous, rank=world.rank,
                                world_size=world.world_size, timeout=timedelta(seconds=timeout_s))
    try:
        yield
        barrier()
    finally:
        shutdown()


def shutdown() -> None:
    """Leave the process group (a no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # the group may already be broken by the error we are unwinding from
            pass


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module) -> None:
    """All-reduce the mean gradient over ranks, as one flat buffer (missing gradients count as zero)."""
    if not active():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p).clone()


def average_scalars(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each scalar over ranks (for the per-tick statistics)."""
    if not active() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist()))


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (a list indexed by rank), None elsewhere."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out



def any_true(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag OR-ed over ranks, so that every rank takes the same branch (stop, roll back) at the same step."""
    if not active():
        return flags
    t = torch.tensor(flags, dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (also a barrier)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
