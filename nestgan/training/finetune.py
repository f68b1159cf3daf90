"""Fine-tuning: a new run that starts from a checkpoint's weights, optionally training only part of the networks.

--finetune-from CKPT starts a new run (fresh optimisers and counters, kimg from 0) from a training snapshot or a
safetensors generator export. G and G_ema both start from the checkpoint's G_ema: the averaged weights are the better
generator, an export holds only them, and G_ema equal to G makes the EMA a no-op on frozen weights. D starts from the
checkpoint's D, or from scratch when the file holds none (an export).

--trainable attention trains only the generator's attention projections (qkv and output, parameters named *attn*);
--freeze-d N freezes the discriminator's first N blocks (FreezeD, Mo et al. 2020; what a block is per architecture:
the discriminators' input_blocks()). Frozen parameters have requires_grad False, are not in the optimiser (no state,
no gradient, no all-reduce) and stay bit-identical.
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

ATTENTION_KEY = "attn"  # NesT/TransGAN TransformerLayer.attn: qkv and proj


@dataclass
class Source:
    """The weights a fine-tune starts from, and the config that describes them."""

    path: Path
    config: dict[str, Any]  # generator, resolution; d and discriminator when D is present
    G: dict[str, torch.Tensor]  # the checkpoint's G_ema
    D: dict[str, torch.Tensor] | None


# ------------------------------------------------------------------------------------------------ freezing


def trainable_parameters(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Freeze what cfg.trainable and cfg.freeze_d exclude (requires_grad False); return the parameters left to train
    in G and in D, the lists the optimisers are built over."""
    if cfg.trainable == "attention":
        names = [name for name, _ in G.named_parameters() if ATTENTION_KEY in name]
        if not names:
            raise ConfigError(
                f"--trainable attention: the {cfg.g} generator has no attention parameters; "
                "use a nest or transgan generator, or --trainable all"
            )
        for name, p in G.named_parameters():
            p.requires_grad_(ATTENTION_KEY in name)
    if cfg.freeze_d:
        blocks = D.input_blocks()
        if cfg.freeze_d > len(blocks):
            raise ConfigError(
                f"--freeze-d {cfg.freeze_d}: the {cfg.d} discriminator at {cfg.resolution} px has only {len(blocks)} "
                f"blocks; use --freeze-d 0 to {len(blocks)}"
            )
        for block in blocks[: cfg.freeze_d]:
            block.requires_grad_(False)
    return [p for p in G.parameters() if p.requires_grad], [p for p in D.parameters() if p.requires_grad]


def set_requires_grad(optimizer: torch.optim.Optimizer, flag: bool) -> None:
    """requires_grad of the parameters `optimizer` trains, and only those: frozen ones never get a gradient."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.requires_grad_(flag)


def describe_parameters(G: nn.Module, D: nn.Module, cfg: TrainConfig) -> str:
    """'G nest 6.52M params, 0.79M trainable, D dcgan 2.76M params, 2.76M trainable' (after freezing)."""

    def counts(module: nn.Module) -> str:
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        return f"{total / 1e6:.2f}M params, {trainable / 1e6:.2f}M trainable"

    return f"G {cfg.g} {counts(G)}, D {cfg.d} {counts(D)}"


# ------------------------------------------------------------------------------------------------ the source


def load_source(path: str | Path) -> Source:
    """Read the weights to fine-tune from: a training snapshot (G_ema and D) or a safetensors export (G_ema only)."""
    path = Path(path)
    if file_format(path, ANY_GENERATOR_FILE) == "safetensors":
        G, config, _ = read_generator(path)  # checks that the weights fit the generator the export names
        return Source(path, {"generator": config["generator"], "resolution": G.resolution}, G.state_dict(), None)
    state = load_checkpoint(path)
    config = state.get("config")
    if not isinstance(config, dict) or "generator" not in config or "G_ema" not in state:
        raise CheckpointError(f"{path} holds no generator config or G_ema; pass a checkpoint written by train_gan.py")
    return Source(path, config, state["G_ema"], state.get("D"))


def check_compatible(source: Source, cfg: TrainConfig) -> None:
    """One ConfigError naming what differs between the checkpoint's networks and this run's, and the fix."""
    old = source.config
    fix = "give this run the networks the checkpoint was trained with (its --config / flags), or fine-tune another one"
    if old.get("resolution") != cfg.resolution:
        raise ConfigError(
            f"cannot fine-tune from {source.path}: it makes {old.get('resolution')} px images, this run "
            f"{cfg.resolution} px; pass --resolution {old.get('resolution')} or {fix}"
        )
    compared = [("generator", old["generator"], cfg.generator)]
    if source.D is not None:
        compared += [("d", old.get("d"), cfg.d), ("discriminator", old.get("discriminator"), cfg.discriminator)]
    for what, theirs, ours in compared:
        if theirs != ours:
            raise ConfigError(f"cannot fine-tune from {source.path}: its {what} differs ({_difference(theirs, ours)}); {fix}")


def _difference(theirs: Any, ours: Any) -> str:
    """'widths [256, 128, 64] there, [384, 192, 96] here; ...' for dicts, the two values otherwise."""
    if not (isinstance(theirs, dict) and isinstance(ours, dict)):
        return f"{theirs!r} there, {ours!r} here"
    keys = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    return "; ".join(f"{k} {theirs.get(k, '(unset)')} there, {ours.get(k, '(unset)')} here" for k in keys)


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
    check_compatible(source, cfg)
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


def check_resume(cfg: TrainConfig, old: dict[str, Any], path: Path) -> None:
    """A resumed run freezes what the run it continues froze: the optimiser state holds exactly those parameters."""
    theirs = (old.get("trainable", "all"), old.get("freeze_d", 0))
    if theirs != (cfg.trainable, cfg.freeze_d):
        raise ConfigError(
            f"cannot resume from {path}: it trained with --trainable {theirs[0]} --freeze-d {theirs[1]}, this run asks "
            f"for --trainable {cfg.trainable} --freeze-d {cfg.freeze_d}; pass the former (to change them, start a new "
            f"run with --finetune-from {path})"
        )
