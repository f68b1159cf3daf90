"""Fine-tuning: a new run that starts from a checkpoint's weights, optionally training only part of the networks.

--finetune-from CKPT starts a new run (fresh optimisers and counters, kimg from 0) from a training snapshot or a
safetensors generator export. G and G_ema both start from the checkpoint's G_ema: the averaged weights are the better
generator, an export holds only them, and G_ema equal to G makes the EMA a no-op on frozen weights. D starts from the
checkpoint's D, or from scratch when the file holds none (an export).

--trainable attention trains only the generator's attention projections (qkv and output, parameters named *attn*);
--freeze-d N freezes the discriminator's first N blocks (FreezeD, Mo et al. 2020; what a block is per architecture:
the discriminators' input_blocks()). Frozen parameters have requires_grad False, are not in the optimiser (no state,
no gradient, no all-reduce) and stay bit-identical; the freezing itself is the step's (step.trainable_parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nestgan.checkpoint import ANY_GENERATOR_FILE, file_format, load_checkpoint, read_generator
from nestgan.config import TrainConfig
from nestgan.errors import CheckpointError, ConfigError
from nestgan.training.checkpoint import check_networks


@dataclass
class Source:
    """The weights a fine-tune starts from, and the config that describes them."""

    path: Path
    config: dict[str, Any]  # generator, resolution; d and discriminator when D is present
    G: dict[str, torch.Tensor]  # the checkpoint's G_ema
    D: dict[str, torch.Tensor] | None


# ------------------------------------------------------------------------------------------------ the source


def load_source(path: str | Path) -> Source:
    """Read the weights to fine-tune from: a training snapshot (G_ema and D) or a safetensors export (G_ema only)."""
    path = Path(path)
    if file_format(path, ANY_GENERATOR_FILE) == "safetensors":
        G, config, _ = read_generator(path)  # checks that the weights fit the generator the export names
        return Source(path, {"generator": config["generator"], "resolution": G.resolution}, G.state_dict(), None)
    state = load_checkpoint(path)  # any checkpoint with a generator: its optimisers and streams are not needed
    config = state.get("config")
    if not isinstance(config, dict) or "generator" not in config or "G_ema" not in state:
        raise CheckpointError(f"{path} holds no generator config or G_ema; pass a checkpoint written by train_gan.py")
    return Source(path, config, state["G_ema"], state.get("D"))


def _load(module: nn.Module, weights: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """load_state_dict after comparing key and shape sets, so that a mismatch is one line naming a tensor."""
    def shapes(state: dict[str, Any]) -> dict[str, Any]:  # extra state (the projected D's identity) compares as is
        return {k: tuple(v.shape) if torch.is_tensor(v) else v for k, v in state.items()}

    ours, theirs = shapes(module.state_dict()), shapes(weights)
    if ours != theirs:
        key = min(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise CheckpointError(
            f"cannot fine-tune from {path}: its {what} weights do not fit this run's {what} "
            f"({key}: {theirs.get(key, 'absent')} there, {ours.get(key, 'absent')} here); "
            "it was written by another version of the network"
        )
    module.load_state_dict(weights)


def start_from(cfg: TrainConfig, G: nn.Module, G_ema: nn.Module, D: nn.Module) -> str | None:
    """Copy cfg.finetune_from's weights into freshly built networks; returns what was loaded, for the log (None:
    no fine-tune)."""
    if not cfg.finetune_from:
        return None
    source = load_source(cfg.finetune_from)
    check_networks(source.config, source.D is not None, cfg, source.path, "fine-tune",
                   "give this run the networks the checkpoint was trained with (drop the --config file or flags "
                   "that name others), or fine-tune another one")
    if source.D is None and cfg.freeze_d:
        raise ConfigError(
            f"--freeze-d {cfg.freeze_d} freezes pretrained D blocks, but {source.path} holds no D (a generator "
            "export); fine-tune from a training snapshot or use --freeze-d 0"
        )
    _load(G, source.G, "G_ema", source.path)
    _load(G_ema, source.G, "G_ema", source.path)
    if source.D is None:
        return f"from {source.path}: G and G_ema from its G_ema; D from scratch (the file holds no D)"
    _load(D, source.D, "D", source.path)
    return f"from {source.path}: G and G_ema from its G_ema, D from its D"
