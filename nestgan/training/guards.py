"""What keeps a run safe: stop signals that end it after a snapshot, rollback to the last good checkpoint after
non-finite values, and a full disk ending it with one line."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

import torch

from nestgan.config import TrainConfig
from nestgan.errors import DiskFullError, TrainingError
from nestgan.training.checkpoint import TrainingCheckpoint
from nestgan.training.rundir import RunDir, snapshots
from nestgan.training.step import TrainState

if TYPE_CHECKING:
    from nestgan.training.session import Session


class StopRequested(Exception):
    """A stop signal arrived inside StopSignals.interruptible()."""


Route = TypeVar("Route", bound="SignalRoute")


class SignalRoute:
    """A context manager that, while active, routes SIGINT and SIGTERM to self._handle and then restores the
    handlers it replaced; signal handlers live in the main thread only, so elsewhere it does nothing."""

    def _handle(self, signum: int, frame: Any) -> None:
        raise NotImplementedError

    def __enter__(self: Route) -> Route:
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StopSignals(SignalRoute):
    """While active, SIGINT and SIGTERM (what cluster schedulers send before preemption) only raise a flag:
    the loop finishes its step, takes a snapshot and returns normally. A second signal stops at once, and so does
    the first one inside `interruptible()` (metrics, which may take long and come after the checkpoint is safe)."""

    def __init__(self) -> None:
        self.requested_by: str | None = None
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



class Recovery:
    """Rolls training back to the last good checkpoint after non-finite values, each time with the learning
    rates scaled by cfg.nan_lr_factor once more; gives up after cfg.nan_rollbacks tries without a new snapshot."""

    def __init__(self, last_good: Path | None) -> None:
        self.last_good = last_good
        self.tries = 0

    def saved(self, path: Path | None) -> None:
        self.last_good, self.tries = path, 0

    def roll_back(self, session: Session, s: TrainState, what: str) -> None:
        cfg, log = session.cfg, session.log
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
        TrainingCheckpoint.read(self.last_good).restore(s, session)
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
    # is_tensor: a module's extra state (the projected D's identity) is no tensor
    states = [m.state_dict() for m in (s.G, s.D, s.G_ema)]
    return [t for state in states for t in state.values() if torch.is_tensor(t) and t.is_floating_point()]


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
