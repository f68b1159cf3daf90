"""Checkpoints of a training run: what goes in (every rank's random streams and data position included), how a run
restores from one, and whether a checkpoint fits the run that wants to resume from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nestgan.config import TrainConfig
from nestgan.errors import ConfigError
from nestgan.training import finetune
from nestgan.training.rundir import find_latest_checkpoint
from nestgan.training.step import TrainState

if TYPE_CHECKING:
    from nestgan.training.session import Session


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


def restore(s: TrainState, ckpt: dict[str, Any], session: Session) -> None:
    """Load weights, optimisers and counters; random streams and data position too when the world size
    and batch are unchanged (then the continuation is exactly the run that was never interrupted)."""
    cfg, world, loader, log = session.cfg, session.world, session.loader, session.log
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
