"""Images as the metrics and files see them: quantised to uint8 like StyleGAN, and grids of many images in one
picture (sample grids of a run, generate.py's grid and interpolation strips)."""

from __future__ import annotations

import math

import numpy as np
import torch


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255], rounding like StyleGAN (x * 127.5 + 128, truncated)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


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
