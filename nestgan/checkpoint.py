"""Checkpoints are data, not code: plain tensors and primitives, written atomically, read weights_only."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from nestgan.errors import CheckpointError

FORMAT_VERSION = 1


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files, prepared image arrays)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a reader sees the old file or the complete new one, never a part.

    The bytes go to a temporary file in the same directory, are fsynced, then renamed over `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _refusal_reason(error: Exception) -> str:
    """What torch's weights_only unpickler objected to, e.g. "Unsupported global: GLOBAL argparse.Namespace ...".

    torch >= 2.6 opens the message with advice to reload with weights_only=False (and terminal colour codes);
    the reason itself follows "WeightsUnpickler error:".
    """
    text = str(error).split("WeightsUnpickler error:", 1)[-1].strip()
    return text.splitlines()[0].split(". ")[0].strip() if text else type(error).__name__


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; every failure is a CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use an earlier snapshot")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains objects other than tensors and plain data "
            f"(untrusted or not a nestgan checkpoint; {_refusal_reason(e)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); use an earlier snapshot"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a nestgan checkpoint (format {FORMAT_VERSION} expected)")
    return state


def load_generator(
    path: str | os.PathLike, ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild the generator a training checkpoint describes and load its weights (G_ema unless ema=False).

    Returns (generator in eval mode on `device`, the checkpoint's resolved training config, its training
    progress: kimg, train_seconds, ...).
    """
    from nestgan.networks import build_generator

    state = load_checkpoint(path)
    config = state.get("config")
    if not isinstance(config, dict) or "generator" not in config:
        raise CheckpointError(f"{path} holds no generator config; it was not written by train_gan.py")
    key = "G_ema" if ema else "G"
    if key not in state:
        raise CheckpointError(f"{path} has no '{key}' weights")
    generator = build_generator(config["generator"])
    try:
        missing, unexpected = generator.load_state_dict(state[key], strict=False)
    except RuntimeError as e:  # shape mismatches are raised even when strict=False
        raise CheckpointError(f"{path}: weights do not fit the generator it names ({str(e).splitlines()[1:2]})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the {config['generator'].get('arch')} generator it names "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})"
        )
    return generator.to(device).eval(), config, dict(state.get("progress") or {})
