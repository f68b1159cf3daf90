"""Reading .npz archives of uint8 image rows (the Downsampled-ImageNet format) from their headers and in chunks,
without loading a whole array: the official train batches are 1.2 GB each."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from nestgan.errors import DataError


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream f, leaving f at the first byte of data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def npz_data_header(path: Path) -> tuple[int, int]:
    """(rows, side) of the 'data' array in an official Downsampled-ImageNet npz, read from its header only."""
    expected = "a uint8 array 'data' of shape (N, 3*S*S) in CHW order (Downsampled ImageNet format)"
    try:
        with zipfile.ZipFile(path) as archive:
            if "data.npy" not in archive.namelist():
                keys = ", ".join(n.removesuffix(".npy") for n in archive.namelist()) or "none"
                raise DataError(f"{path} has no array 'data' (keys: {keys}); expected {expected}")
            with archive.open("data.npy") as f:
                shape, fortran_order, dtype = read_npy_header(f)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable npz file ({e}); expected {expected}") from None
    side = int(round((shape[1] / 3) ** 0.5)) if len(shape) == 2 else 0
    if dtype != np.uint8 or fortran_order or len(shape) != 2 or 3 * side * side != shape[1] or side == 0:
        raise DataError(f"{path}: 'data' is {dtype} {shape}; expected {expected}")
    return shape[0], side


def stream_npz_rows(path: Path, rows: int, side: int, chunk: int) -> Iterable[np.ndarray]:
    """Yield the 'data' rows of an npz as (k, 3, S, S) chunks without loading the whole array."""
    with zipfile.ZipFile(path) as archive, archive.open("data.npy") as f:
        read_npy_header(f)
        row_bytes = 3 * side * side
        for start in range(0, rows, chunk):
            k = min(chunk, rows - start)
            buffer = f.read(k * row_bytes)
            if len(buffer) != k * row_bytes:
                raise DataError(f"{path} is truncated: 'data' ends after {start + len(buffer) // row_bytes} rows")
            yield np.frombuffer(buffer, dtype=np.uint8).reshape(k, 3, side, side)
