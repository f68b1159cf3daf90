"""The embedded default dataset: one or two flat shapes on a smooth vertical gradient.

Every scene (background colours, shape kinds, positions, sizes, colours) is drawn once from a fixed seed,
independently of the resolution, and rasterised at the requested size with analytic anti-aliasing, so
image i shows the same scene at 32 px and at 256 px. The structure is simple enough for a small GAN to learn
in minutes on a CPU and clear enough for a person to judge samples at a glance: crisp circles, squares and
upward triangles in saturated colours over a muted background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SHAPES_COUNT = 10_000
SHAPE_KINDS = ("circle", "square", "triangle")
# "all" is the training set: the embedded dataset has no natural union of splits.
SPLIT_SEEDS = {"train": 20_240_501, "valid": 20_240_502, "test": 20_240_503, "all": 20_240_501}
# Saturated shape colours (sRGB), far from the muted backgrounds.
PALETTE = np.array(
    [
        (230, 40, 40),  # red
        (250, 140, 20),  # orange
        (245, 215, 30),  # yellow
        (40, 190, 60),  # green
        (30, 200, 220),  # cyan
        (40, 80, 230),  # blue
        (210, 50, 200),  # magenta
    ],
    dtype=np.float32,
) / 255.0
# Triangle circumradius relative to `size`, so that the three kinds look about equally big.
_TRIANGLE_SCALE = 1.25
_SQUARE_SCALE = 0.9


@dataclass(frozen=True)
class Scenes:
    """Parameters of N scenes; coordinates are fractions of the image side, y pointing down."""

    top: np.ndarray  # (N, 3) background colour at the top edge, in [0, 1]
    bottom: np.ndarray  # (N, 3) background colour at the bottom edge
    num_shapes: np.ndarray  # (N,) 1 or 2
    kind: np.ndarray  # (N, 2) index into SHAPE_KINDS
    centre: np.ndarray  # (N, 2, 2) (x, y) per shape
    size: np.ndarray  # (N, 2) circle radius / square half-side / triangle in-circle scale
    colour: np.ndarray  # (N, 2, 3)

    def __len__(self) -> int:
        return len(self.num_shapes)

    def slice(self, start: int, stop: int) -> Scenes:
        return Scenes(**{name: getattr(self, name)[start:stop] for name in self.__dataclass_fields__})


def _hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated, full-value colour of each hue in [0, 1): (...,) -> (..., 3)."""
    offsets = np.array([0.0, 4.0, 2.0], dtype=np.float32)
    return np.clip(np.abs((hue[..., None] * 6.0 + offsets) % 6.0 - 3.0) - 1.0, 0.0, 1.0)


def _extent(kind: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Half the side of the box a shape needs, so it can be kept fully inside the image."""
    return np.where(kind == SHAPE_KINDS.index("triangle"), _TRIANGLE_SCALE * size, size)


def sample_scenes(count: int, seed: int) -> Scenes:
    """Draw `count` scenes deterministically from `seed`."""
    rng = np.random.default_rng(seed)

    def muted(value_low: float, value_high: float) -> np.ndarray:
        hue = rng.random(count, dtype=np.float32)
        saturation = rng.uniform(0.15, 0.4, count).astype(np.float32)[:, None]
        value = rng.uniform(value_low, value_high, count).astype(np.float32)[:, None]
        return value * ((1.0 - saturation) + saturation * _hue_to_rgb(hue))

    top, bottom = muted(0.35, 0.7), muted(0.08, 0.35)
    num_shapes = rng.integers(1, 3, count)
    kind = rng.integers(0, len(SHAPE_KINDS), (count, 2))
    # Lone shapes are bigger; pairs are smaller so that they rarely need to overlap.
    size = np.where(num_shapes[:, None] == 1, rng.uniform(0.16, 0.26, (count, 2)), rng.uniform(0.11, 0.18, (count, 2)))
    first = rng.integers(0, len(PALETTE), count)
    second = (first + rng.integers(1, len(PALETTE), count)) % len(PALETTE)  # always a different colour
    colour = PALETTE[np.stack([first, second], axis=1)]

    extent = _extent(kind, size)
    centre = extent[..., None] + rng.random((count, 2, 2)) * (1.0 - 2.0 * extent[..., None])
    # Re-draw the second shape of pairs that overlap (a few vectorised rounds settle almost all of them).
    for _ in range(16):
        gap = np.linalg.norm(centre[:, 0] - centre[:, 1], axis=1) - (extent[:, 0] + extent[:, 1])
        clash = (num_shapes == 2) & (gap < 0.02)
        if not clash.any():
            break
        e = extent[clash, 1][:, None]
        centre[clash, 1] = e + rng.random((int(clash.sum()), 2)) * (1.0 - 2.0 * e)
    return Scenes(
        top=top.astype(np.float32),
        bottom=bottom.astype(np.float32),
        num_shapes=num_shapes,
        kind=kind,
        centre=centre.astype(np.float32),
        size=size.astype(np.float32),
        colour=colour.astype(np.float32),
    )


def _signed_distance(kind: int, px: np.ndarray, py: np.ndarray, centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Distance to the shape's edge (negative inside), in image-side units: (n,) params -> (n, R, R)."""
    dx = px[None, None, :] - centre[:, 0, None, None]
    dy = py[None, :, None] - centre[:, 1, None, None]
    r = size[:, None, None]
    if SHAPE_KINDS[kind] == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if SHAPE_KINDS[kind] == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - _SQUARE_SCALE * r
    # Upward equilateral triangle: the farthest of its three edge lines (outward normals at 90, 210, 330 deg,
    # y down), with in-radius half the circumradius. Exact inside, slightly rounded outside the corners.
    sin60 = np.float32(np.sqrt(3.0) / 2.0)
    inradius = 0.5 * _TRIANGLE_SCALE * r
    return np.maximum(np.maximum(dy, sin60 * dx - 0.5 * dy), -sin60 * dx - 0.5 * dy) - inradius


def render_shapes(scenes: Scenes, resolution: int) -> np.ndarray:
    """Rasterise scenes into uint8 images (N, 3, R, R); edges are anti-aliased by pixel coverage."""
    n, r = len(scenes), resolution
    coords = (np.arange(r, dtype=np.float32) + 0.5) / r  # pixel centres
    t = coords[None, :, None, None]  # (1, R, 1, 1) vertical position
    image = scenes.top[:, None, None, :] * (1.0 - t) + scenes.bottom[:, None, None, :] * t  # (N, R, 1, 3)
    image = np.broadcast_to(image, (n, r, r, 3)).copy()  # (N, R, R, 3)
    for j in range(2):
        distance = np.empty((n, r, r), dtype=np.float32)
        for kind in range(len(SHAPE_KINDS)):
            chosen = scenes.kind[:, j] == kind
            if chosen.any():
                centre, size = scenes.centre[chosen, j], scenes.size[chosen, j]
                distance[chosen] = _signed_distance(kind, coords, coords, centre, size)
        coverage = np.clip(0.5 - distance * r, 0.0, 1.0)  # a one-pixel ramp across the edge
        coverage *= (scenes.num_shapes > j)[:, None, None]
        coverage = coverage[..., None]
        image = image * (1.0 - coverage) + scenes.colour[:, j, None, None, :] * coverage
    return np.rint(image * 255.0).astype(np.uint8).transpose(0, 3, 1, 2)  # (N, 3, R, R)


def produce_shapes(
    out: np.ndarray, split: str, resolution: int, report: Callable[[int], None], chunk_pixels: int = 1 << 22
) -> int:
    """Fill `out` (n <= SHAPES_COUNT rows) with the first n scenes of the split; returns n."""
    scenes = sample_scenes(SHAPES_COUNT, SPLIT_SEEDS[split])
    step = max(1, chunk_pixels // (resolution * resolution))
    for start in range(0, len(out), step):
        stop = min(start + step, len(out))
        out[start:stop] = render_shapes(scenes.slice(start, stop), resolution)
        report(stop)
    return len(out)
