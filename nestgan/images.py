"""Images as the metrics and files see them: quantised to uint8 like StyleGAN, and grids of many images in one
picture (sample grids of a run, generate.py's grid and interpolation strips), and animated GIFs of frames."""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255], rounding like StyleGAN (x * 127.5 + 128, truncated)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def as_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, 3, R, R) -> (N, R, R, 3), as PIL and image_grid take them."""
    return images.permute(0, 2, 3, 1).numpy()


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


def grid_picture(images: torch.Tensor) -> np.ndarray:
    """Generator output (N, 3, R, R) in [-1, 1] -> its square-ish grid, uint8 (H, W, 3), quantised as the metrics
    see the images: a run's fakes*.png and the grid TensorBoard shows beside them."""
    return image_grid(as_pixels(quantize_images(images.detach().float().cpu())))


def write_gif(frames: np.ndarray | list[np.ndarray], dest: str | os.PathLike | BinaryIO, frame_ms: int = 120,
              bounce: bool = False) -> None:
    """An endless animated GIF of uint8 frames (H, W, 3) to a path or a binary file; with `bounce` it plays back to
    the first frame again (a walk there and back)."""
    frames = list(frames)
    if bounce:
        frames += frames[-2:0:-1]
    pictures = [Image.fromarray(frame) for frame in frames]
    pictures[0].save(dest, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
