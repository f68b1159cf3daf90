"""The training checkpoint, in one place: its layout (a typed reader and writer: weights, optimisers, counters and
every rank's random streams and data position), how a run restores from one, and whether a checkpoint's networks
fit a run that resumes or fine-tunes from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nestgan.checkpoint import load_checkpoint, save_checkpoint
from nestgan.config import TrainConfig
from nestgan.errors import CheckpointError, ConfigError
from nestgan.training.rundir import find_latest_checkpoint
from nestgan.training.step import TrainState

if TYPE_CHECKING:
    from nestgan.training.session import Session


@dataclass
class TrainingCheckpoint:
    """What network-snapshot-*.pt holds (one key per field): the run's resolved config, the networks' and optimisers'
    states, the progress counters, and per rank (a list indexed by rank) the random streams and data position."""

    config: dict[str, Any]
    G: dict[str, Any]
    G_ema: dict[str, Any]
    D: dict[str, Any]
    opt_G: dict[str, Any]
    opt_D: dict[str, Any]
    scaler_G: dict[str, Any]
    scaler_D: dict[str, Any]
    progress: dict[str, Any]  # images_seen, kimg, step, tick, train_seconds, world_size, batch
    rng: list[dict[str, Any]]  # torch, cuda, latents
    augment: list[dict[str, Any]]
    loader: list[dict[str, Any]]

    @classmethod
    def of(cls, s: TrainState, cfg: TrainConfig, rank_states: list[dict[str, Any]]) -> TrainingCheckpoint:
        """The checkpoint of a run now; `rank_states`: every rank's rank_state, gathered on the main rank."""
        return cls(
            config=cfg.to_dict(),
            G=s.G.state_dict(),
            G_ema=s.G_ema.state_dict(),
            D=s.D.state_dict(),
            opt_G=s.opt_G.state_dict(),
            opt_D=s.opt_D.state_dict(),
            scaler_G=s.scaler_G.state_dict(),
            scaler_D=s.scaler_D.state_dict(),
            progress={
                "images_seen": s.images_seen,
                "kimg": s.images_seen / 1000,
                "step": s.step,
                "tick": s.tick,
                "train_seconds": s.train_seconds,
                "world_size": len(rank_states),
                "batch": cfg.batch,
            },
            rng=[{k: r[k] for k in ("torch", "cuda", "latents")} for r in rank_states],
            augment=[r["augment"] for r in rank_states],
            loader=[r["loader"] for r in rank_states],
        )

    @classmethod
    def read(cls, path: str | Path) -> TrainingCheckpoint:
        """A training checkpoint from `path`; a file without all of its parts is a CheckpointError naming one."""
        state = load_checkpoint(path)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in state]
        if missing:
            raise CheckpointError(f"{path} is not a whole training checkpoint (it has no '{missing[0]}'); "
                                  "pass a network-snapshot-*.pt written by train_gan.py")
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})

    def write(self, path: str | Path) -> None:
        save_checkpoint(path, dict(vars(self)))

    def restore(self, s: TrainState, session: Session) -> None:
        """Load weights, optimisers and counters into `s`; random streams and data position too when the world size
        and batch are unchanged (then the continuation is exactly the run that was never interrupted)."""
        cfg, world, loader, log = session.cfg, session.world, session.loader, session.log
        for module, weights in ((s.G, self.G), (s.G_ema, self.G_ema), (s.D, self.D)):
            module.load_state_dict(weights)
        s.opt_G.load_state_dict(self.opt_G)
        s.opt_D.load_state_dict(self.opt_D)
        if self.scaler_G and s.scaler_G.is_enabled():
            s.scaler_G.load_state_dict(self.scaler_G)
            s.scaler_D.load_state_dict(self.scaler_D)
        progress = self.progress
        s.images_seen, s.step, s.tick = progress["images_seen"], progress["step"], progress["tick"]
        s.train_seconds = progress.get("train_seconds", 0.0)  # absent in checkpoints older than the minutes budget
        if progress["world_size"] != world.world_size or progress["batch"] != cfg.batch:
            log("resume: world size or batch changed; random streams and data order restart (not bit-exact)")
            return
        rng = self.rng[world.rank]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        s.latents.set_state(rng["latents"])
        s.augment.load_state_dict(self.augment[world.rank])
        loader.load_state_dict(self.loader[world.rank])


def rank_state(s: TrainState, loader: Any) -> dict[str, Any]:
    """The random streams and data position of one rank."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "latents": s.latents.get_state(),
        "augment": s.augment.state_dict(),
        "loader": loader.state_dict(),
    }


# ------------------------------------------------------------------------------------------------ fitting a run


def check_networks(theirs: dict[str, Any], has_d: bool, cfg: TrainConfig, path: Path, action: str, fix: str) -> None:
    """The networks a checkpoint's config describes (`theirs`; D only when it holds one) are this run's: else one
    ConfigError, 'cannot <action> from <path>: its <what> differs (<there>, <here>); <fix>'."""
    keys = ["resolution", "generator"] + (["d", "discriminator"] if has_d else [])
    for key in keys:
        if theirs.get(key) != getattr(cfg, key):
            raise ConfigError(f"cannot {action} from {path}: its {key} differs "
                              f"({_difference(theirs.get(key), getattr(cfg, key))}); {fix}")


def _difference(theirs: Any, ours: Any) -> str:
    """'widths [256, 128, 64] there, [384, 192, 96] here; ...' for dicts, the two values otherwise."""
    if not (isinstance(theirs, dict) and isinstance(ours, dict)):
        return f"{theirs!r} there, {ours!r} here"
    keys = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k} {theirs.get(k, '(unset)')} there, {ours.get(k, '(unset)')} here" for k in keys)


def check_resumable(cfg: TrainConfig, ckpt: TrainingCheckpoint, path: Path) -> None:
    """The checkpoint must describe the same networks, data and frozen parameters; the run must still have images
    to go."""
    old = ckpt.config
    check_networks(old, True, cfg, path, "resume", "resume with the config it was trained with")
    if old.get("data", {}).get("name") != cfg.data.name:
        raise ConfigError(f"cannot resume from {path}: it was trained on '{old.get('data', {}).get('name')}'")
    if old.get("data", {}).get("attribute") != cfg.data.attribute:
        raise ConfigError(f"cannot resume from {path}: its data.attribute is {old.get('data', {}).get('attribute')!r}, "
                          f"this run's is {cfg.data.attribute!r}; pass the same --attribute")
    theirs = (old.get("trainable", "all"), old.get("freeze_d", 0))  # the optimiser state holds exactly those
    if theirs != (cfg.trainable, cfg.freeze_d):
        raise ConfigError(
            f"cannot resume from {path}: it trained with --trainable {theirs[0]} --freeze-d {theirs[1]}, this run asks "
            f"for --trainable {cfg.trainable} --freeze-d {cfg.freeze_d}; pass the former (to change them, start a new "
            f"run with --finetune-from {path})"
        )
    done = ckpt.progress["images_seen"]
    if done >= cfg.kimg * 1000:
        raise ConfigError(
            f"{path} has already seen {done / 1000:g} kimg >= kimg {cfg.kimg:g}; raise --kimg to train further"
        )
    trained_s = ckpt.progress.get("train_seconds", 0.0)
    if cfg.minutes is not None and trained_s >= cfg.minutes * 60:
        raise ConfigError(
            f"{path} has already trained {trained_s / 60:.1f} min >= minutes {cfg.minutes:g}; "
            "raise --minutes to train further"
        )


def resolve_resume(cfg: TrainConfig) -> Path | None:
    if cfg.resume is None:
        return None
    if cfg.resume == "latest":
        return find_latest_checkpoint(cfg.outdir, {"data.name": cfg.data.name, "data.attribute": cfg.data.attribute,
                                                   "g": cfg.g, "resolution": cfg.resolution})
    return Path(cfg.resume)
