"""What the explorer shows of a generator, with no web code: sample grids for seeds, interpolation strips and their
GIF, projections of uploaded images and walks from them, and the model card; generators are loaded once and shared by
every request."""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nestgan.api import sample, seed_latent, slerp, synthesize
from nestgan.atomic import read_records
from nestgan.checkpoint import ANY_GENERATOR_FILE, export_metrics, file_format, read_generator
from nestgan.data.files import UnreadableImage, decode_image
from nestgan.errors import ConfigError, DataError
from nestgan.images import as_pixels, image_grid, quantize_images, write_gif
from nestgan.metrics.records import metric_value
from nestgan.projection import Projection, project, render

MAX_GRID = 256  # images in one grid: a CPU draws a grid of 64 from the shipped model in about a second


class Generators:
    """Generators by (file, weights), each loaded once with the config and progress its file holds; the browser's
    requests run in threads and share them."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._loaded: dict[tuple[str, bool], tuple[nn.Module, dict, dict]] = {}
        self._lock = threading.Lock()

    def _load(self, path: str | Path, ema: bool) -> tuple[nn.Module, dict, dict]:
        key = (str(Path(path).resolve()), ema)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = read_generator(path, ema=ema, device=self.device)
            return self._loaded[key]

    def get(self, path: str | Path, ema: bool = True) -> nn.Module:
        return self._load(path, ema)[0]

    def card(self, path: str | Path, ema: bool = True) -> Card:
        """The model card of the file, from what was read when it was loaded; a checkpoint's best FID is looked up
        in its run directory each time, as the run may still be scoring snapshots."""
        return model_card(path, *self._load(path, ema))


def seed_grid(generator: nn.Module, seeds: list[int], trunc_resample: float | None = None) -> np.ndarray:
    """One picture (H, W, 3) of the images of `seeds`, as generate.py would write them, in a square-ish grid."""
    if not 1 <= len(seeds) <= MAX_GRID:
        raise ConfigError(f"give 1 to {MAX_GRID} seeds, got {len(seeds)}")
    return image_grid(as_pixels(sample(generator, seeds, trunc_resample=trunc_resample)))


def interpolation(generator: nn.Module, a: int, b: int, steps: int, trunc_resample: float | None = None) -> np.ndarray:
    """The frames (steps, R, R, 3) of the great-circle walk from seed a's z to seed b's (generate.py --interpolate)."""
    if not 2 <= steps <= MAX_GRID:
        raise ConfigError(f"steps must be 2 to {MAX_GRID}, got {steps}")
    ends = [seed_latent(seed, generator.z_dim, trunc_resample) for seed in (a, b)]
    return as_pixels(synthesize(generator, slerp(*ends, torch.linspace(0, 1, steps))))


def project_upload(generator: nn.Module, image_path: str, steps: int) -> tuple[torch.Tensor, Projection]:
    """An uploaded image file as the generator sees it, uint8 (3, R, R) (its largest centred square, resized), and
    its projection."""
    try:
        target = torch.from_numpy(decode_image(image_path, generator.resolution).copy())
    except UnreadableImage:
        raise DataError("the upload is not an image PIL can read; give a PNG or JPEG") from None
    return target, project(generator, target, steps=steps)


@torch.no_grad()
def walk_from_projection(generator: nn.Module, projection: Projection, seed: int, steps: int) -> np.ndarray:
    """Frames (steps, R, R, 3) from a projection to a seed's image: z along the great circle, the level offsets
    fading out linearly."""
    if not 2 <= steps <= MAX_GRID:
        raise ConfigError(f"steps must be 2 to {MAX_GRID}, got {steps}")
    device = next(generator.parameters()).device
    ts = torch.linspace(0, 1, steps)
    zs = slerp(projection.z, seed_latent(seed, generator.z_dim), ts).to(device)
    frames = [render(generator, z[None], [(1 - float(t)) * o.to(device) for o in projection.offsets])
              for z, t in zip(zs, ts)]
    return as_pixels(quantize_images(torch.cat(frames)).cpu())


def gif_bytes(frames: np.ndarray, frame_ms: int = 120) -> bytes:
    """An endless GIF of `frames`, there and back again."""
    out = io.BytesIO()
    write_gif(frames, out, frame_ms, bounce=True)
    return out.getvalue()


@dataclass(frozen=True)
class Card:
    """What a generator file says about the model in it."""

    path: Path
    arch: str
    resolution: int
    parameters: int
    kimg: float | None
    train_minutes: float | None
    best: str | None  # "fid1k 68.6 at 60.2 kimg": an export's own, or the best in a checkpoint's run directory

    def markdown(self) -> str:
        rows = [("file", f"`{self.path}`"), ("generator", f"{self.arch}, {self.resolution} px"),
                ("parameters", f"{self.parameters / 1e6:.2f}M"),
                ("trained", f"{self.kimg:g} kimg" if self.kimg is not None else "not recorded"),
                ("training time", f"{self.train_minutes:.1f} min" if self.train_minutes is not None else "not recorded"),
                ("best FID", self.best or "none recorded")]
        return "| model | |\n|---|---|\n" + "".join(f"| {name} | {value} |\n" for name, value in rows)


def model_card(path: str | Path, generator: nn.Module, config: dict, progress: dict) -> Card:
    """The card of `generator`, loaded from `path` (a training checkpoint or a safetensors export) with its `config`
    and `progress` (read_generator's): an export's best FID is the one it carries from its snapshot, a checkpoint's
    the best of its run directory."""
    path = Path(path)
    if file_format(path, ANY_GENERATOR_FILE) == "safetensors":
        carried = export_metrics(path)
        best = _best_fid({name: [(progress.get("kimg") or 0.0, carried[name])] for name in carried if name.startswith("fid")})
    else:
        best = _best_fid(run_fids(path.parent))
    seconds = progress.get("train_seconds")
    return Card(path, config["generator"].get("arch", "?"), generator.resolution,
                sum(p.numel() for p in generator.parameters()), progress.get("kimg"),
                seconds / 60 if seconds is not None else None, best)


def run_fids(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """FID name -> (kimg, value) points of a run directory's metric-fid*.jsonl."""
    points: dict[str, list[tuple[float, float]]] = {}
    for file in sorted(run_dir.glob("metric-fid*.jsonl")):
        name = file.stem.removeprefix("metric-")
        for record in read_records(file):
            value = metric_value(record.get("results", {}), name)
            if value is not None and math.isfinite(value):
                points.setdefault(name, []).append((float(record.get("kimg") or 0.0), value))
    return points


def _best_fid(fids: dict[str, list[tuple[float, float]]]) -> str | None:
    """'fid1k 61.2 at 1 kimg': the lowest of the points, None without any."""
    best = min(((value, name, kimg) for name, points in fids.items() for kimg, value in points), default=None)
    return None if best is None else f"{best[1]} {best[0]:.1f} at {best[2]:g} kimg"
