"""Image grids: many images in one picture (sample grids of a run, generate.py's grid and interpolation strips)."""

from __future__ import annotations

import math

import numpy as np


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """uint8 (N, H, W, C) -> one (rows*H, columns*W, C) picture, row-major, black where the last row is short.

    columns: ceil(sqrt(N)) by default, a square-ish grid.
    """
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = image
    return grid
