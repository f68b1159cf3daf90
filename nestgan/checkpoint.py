"""Checkpoints are data, not code: plain tensors and primitives, written atomically, read weights_only.

Two formats: training checkpoints (torch.save zip: networks, optimisers, progress) and generator exports
(safetensors: one generator's weights, its config as JSON metadata, no pickle). Before anything is unpickled, a
file is sniffed, so that an image, a web page or a Git LFS pointer passed by mistake is named as what it is.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch

from nestgan.atomic import atomic_write
from nestgan.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
EXPORT_FORMAT, EXPORT_VERSION = "nestgan-generator", "1"  # an export's "format" and "format_version" metadata
EXPORT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TRAINING_CHECKPOINT = "a training checkpoint (network-snapshot-*.pt or best.pt)"
ANY_GENERATOR_FILE = f"{TRAINING_CHECKPOINT} or a .safetensors export (generate.py --export)"
# First bytes of files that are often passed by mistake; none of them starts a zip archive or a pickle.
MAGIC_NUMBERS = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x93NUMPY": "a NumPy array (.npy)",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
}
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
PICKLE_PROTOCOL_2_PLUS = b"\x80"  # legacy (non-zip) torch.save files are pickles of protocol >= 2
ZIP_LOCAL_HEADER = b"PK\x03\x04"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a training checkpoint (`state` plus the format version) atomically."""
    save_tensors(path, {"format": FORMAT_VERSION, **state})


def save_tensors(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save `state` (nested tensors) atomically; for want of space a DiskFullError naming about its size."""
    atomic_write(path, lambda f: torch.save(state, f), size_bytes=tensor_bytes(state))


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) state: about what torch.save writes, for a disk-full message."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def file_format(path: str | os.PathLike, wanted: str = TRAINING_CHECKPOINT) -> Literal["torch", "safetensors"]:
    """Whether `path` holds a torch.save file or a safetensors file, judged from its first bytes; anything else
    (empty, text, JSON, HTML, an image, a Git LFS pointer, a truncated or foreign zip) is a CheckpointError that
    names what the file looks like. `wanted` says what the caller accepts, for the fix in that message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None

    def foreign(what: str, fix: str = f"pass {wanted}") -> CheckpointError:
        return CheckpointError(f"not a PyTorch checkpoint: {path} {what}; {fix}")

    if size == 0:
        raise foreign("is empty (0 bytes)")
    if head.startswith(GIT_LFS_POINTER):
        raise foreign("is a Git LFS pointer, not the file it stands for", "run `git lfs pull` in its repository")
    if _is_safetensors(head, size):
        return "safetensors"
    for magic, what in MAGIC_NUMBERS.items():
        if head.startswith(magic):
            raise foreign(f"looks like {what}")
    if head.startswith(ZIP_LOCAL_HEADER):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt (its zip directory is unreadable); "
                f"use an earlier snapshot or pass {wanted}"
            ) from None
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            raise foreign("is a zip archive that torch.save did not write (it has no data.pkl)")
        return "torch"
    if head.startswith(PICKLE_PROTOCOL_2_PLUS):
        return "torch"
    # The incremental decoder accepts a UTF-8 character cut at the end of `head`.
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise foreign(f"is neither a zip archive nor a pickle (it starts with bytes {head[:8].hex(' ')})")
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")):
        raise foreign("looks like an HTML page (a web page saved instead of the file?)",
                      f"download the file itself, or pass {wanted}")
    if start.startswith(("{", "[")) and size <= 1 << 20 and _parses_as_json(path):
        raise foreign("looks like a JSON file")
    raise foreign("looks like a text file")


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file opens with the little-endian u64 length of its JSON header, then the header."""
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and 8 + header_length <= size


def _parses_as_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def _refusal_reason(error: Exception) -> str:
    """What torch's weights_only unpickler objected to, e.g. "Unsupported global: GLOBAL argparse.Namespace ...".

    torch >= 2.6 opens the message with advice to reload with weights_only=False (and terminal colour codes);
    the reason itself follows "WeightsUnpickler error:".
    """
    text = str(error).split("WeightsUnpickler error:", 1)[-1].strip()
    return text.splitlines()[0].split(". ")[0].strip() if text else type(error).__name__


def _constructs_objects(reason: str) -> bool:
    """Whether the unpickler refused a global, class or call (an object beyond tensors and plain data), rather
    than an opcode that torch.save never writes (a pickle of another program)."""
    return any(word in reason for word in ("GLOBAL", "global", "class", "allowlist", "reduce"))


def _load_torch(
    path: Path, wanted: str, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """torch.load(weights_only=True) of a file that file_format called "torch"; every failure a CheckpointError."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would be a second line on stderr
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(e)
        if _constructs_objects(reason):
            raise CheckpointError(
                f"refused to load {path}: it contains objects other than tensors and plain data "
                f"(untrusted or not a nestgan checkpoint; {reason})"
            ) from None
        raise CheckpointError(
            f"not a PyTorch checkpoint: {path} is a pickle that torch.save did not write ({reason}); pass {wanted}"
        ) from None
    except Exception as e:  # damaged bytes make torch.load raise almost anything (RuntimeError, EOFError, KeyError)
        if "magic number" in str(e):
            raise CheckpointError(
                f"not a PyTorch checkpoint: {path} is a pickle that torch.save did not write; pass {wanted}"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); use an earlier snapshot"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a nestgan checkpoint (format {FORMAT_VERSION} expected); pass {wanted}")
    return state


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a training checkpoint with weights_only=True; every failure is a CheckpointError saying what is wrong.
    mmap: the tensors stay in the file until used, so reading a big checkpoint's progress and config is quick."""
    path = Path(path)
    if file_format(path, TRAINING_CHECKPOINT) == "safetensors":
        raise CheckpointError(
            f"{path} is a safetensors file (a generator export holds no optimiser or training state); "
            f"this needs {TRAINING_CHECKPOINT}"
        )
    return _load_torch(path, TRAINING_CHECKPOINT, map_location, mmap)


def export_generator(
    path: str | os.PathLike,
    generator: torch.nn.Module,
    config: dict[str, Any],
    progress: dict[str, Any],
    weights: Literal["G_ema", "G"] = "G_ema",
    dtype: Literal["fp32", "bf16"] = "fp32",
    metrics: dict[str, float] | None = None,
) -> None:
    """Write `generator` as a safetensors export, atomically: its floating-point weights in `dtype` and, as JSON
    metadata, what read_generator needs to rebuild it (the generator config), the training data's name and split
    (no local paths) for evaluation, the training progress and `metrics`, the scores of the snapshot it comes from.
    No optimiser, no pickle."""
    from safetensors.torch import save

    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(EXPORT_DTYPES)}, got '{dtype}'")
    tensors = {
        name: (t.to(EXPORT_DTYPES[dtype]) if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in generator.state_dict().items()
    }
    data_keys = ("name", "split", "max_images", "attribute")  # what evaluate.py needs to find the training data again
    data = {key: value for key, value in (config.get("data") or {}).items() if key in data_keys}
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "generator": json.dumps(config["generator"], sort_keys=True),
        "resolution": str(generator.resolution),
        "z_dim": str(generator.z_dim),
        "weights": weights,
        "dtype": dtype,
        "data": json.dumps(data, sort_keys=True),
        "progress": json.dumps(progress, sort_keys=True),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
    }
    content = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(content), size_bytes=len(content))


def _read_export(path: Path, ema: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(config, weights, progress) of a safetensors generator export."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"export {path} is truncated or corrupt ({e}); export it again") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a nestgan generator export (its metadata has no "
            f"format={EXPORT_FORMAT}); pass {ANY_GENERATOR_FILE}"
        )
    if metadata.get("format_version") != EXPORT_VERSION:
        raise CheckpointError(
            f"{path} is a nestgan export of format version {metadata.get('format_version')}; this nestgan reads "
            f"version {EXPORT_VERSION} (upgrade nestgan)"
        )
    if not ema and metadata.get("weights") == "G_ema":
        raise CheckpointError(f"{path} holds only the G_ema weights; drop --raw, or export G with --export --raw")
    try:
        config = {"generator": json.loads(metadata["generator"]), "data": json.loads(metadata.get("data", "{}"))}
        progress = json.loads(metadata.get("progress", "{}"))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"export {path} has unreadable metadata ({type(e).__name__}: {e}); export it again") from None
    return config, tensors, progress


def export_metrics(path: str | os.PathLike) -> dict[str, float]:
    """The scores a safetensors export carries from its snapshot (metric name -> headline value); {} for an export
    written before exports carried them."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return json.loads((f.metadata() or {}).get("metrics", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"export {path} is truncated or corrupt ({e}); export it again") from None


def networks_of(path: str | os.PathLike) -> dict[str, Any]:
    """The networks a training checkpoint or a safetensors export was made with, as config keys: resolution, g and
    generator, and d and discriminator when the file holds a D (an export holds none)."""
    path = Path(path)
    if file_format(path, ANY_GENERATOR_FILE) == "safetensors":
        generator, config, _ = read_generator(path)
        return {"resolution": generator.resolution, "g": config["generator"]["arch"], "generator": config["generator"]}
    state = load_checkpoint(path, mmap=True)
    config = state.get("config")
    if not isinstance(config, dict) or "generator" not in config:
        raise CheckpointError(f"{path} holds no generator config; it was not written by train_gan.py")
    keys = ("resolution", "g", "generator") + (("d", "discriminator") if "D" in state else ())
    return {key: config[key] for key in keys if key in config}


def metrics_batch(config: dict[str, Any]) -> int:
    """Images per generator call when a checkpoint's generator makes metric images: its run's metrics_batch (a
    generator that samples with each batch's own BatchNorm statistics sets it to its training batch), else the
    default; an export keeps no run settings."""
    from nestgan.config import TrainConfig

    return int(config.get("metrics_batch") or TrainConfig.metrics_batch)


def read_generator(
    path: str | os.PathLike, ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild the generator a training checkpoint or a safetensors export describes and load its weights.

    From a checkpoint: G_ema, or G with ema=False. An export holds one of the two; ema=False asks for G and
    refuses an export of G_ema. Returns (generator in eval mode on `device`, the config: the checkpoint's
    resolved training config, or an export's {"generator", "data"}, the training progress: kimg, ...).
    """
    from nestgan.networks import generator_from_config

    path = Path(path)
    if file_format(path, ANY_GENERATOR_FILE) == "safetensors":
        config, weights, progress = _read_export(path, ema)
    else:
        state = _load_torch(path, ANY_GENERATOR_FILE)
        config, progress = state.get("config"), dict(state.get("progress") or {})
        if not isinstance(config, dict) or "generator" not in config:
            raise CheckpointError(f"{path} holds no generator config; it was not written by train_gan.py")
        key = "G_ema" if ema else "G"
        if key not in state:
            raise CheckpointError(f"{path} has no '{key}' weights")
        weights = state[key]
    generator = generator_from_config(config["generator"])
    try:
        missing, unexpected = generator.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches are raised even when strict=False
        raise CheckpointError(f"{path}: weights do not fit the generator it names ({str(e).splitlines()[1:2]})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the {config['generator'].get('arch')} generator it names "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})"
        )
    return generator.to(device).eval(), config, progress
