"""Image files for the dataset readers: listing and fingerprinting them (in folders and zips) and decoding them into
uint8 (N, 3, R, R) with a pool of threads; unreadable files are skipped and counted."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageOps

from nestgan.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DECODE_THREADS = min(8, os.cpu_count() or 1)
DECODE_CHUNK = 512

Report = Callable[[int], None]
ReadBytes = Callable[[str], bytes]  # name of a file (e.g. a zip member) -> its contents


@dataclass(frozen=True)
class Produced:
    """Outcome of decoding: rows written, files skipped as unreadable, one example of those."""

    count: int
    skipped: int = 0
    example: str = ""


class UnreadableImage(Exception):
    """A file that is not a decodable image: skipped and counted, never fatal."""


# ---------------------------------------------------------------------------------------------- image decoding


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: transparency composited on white, 16-bit scaled down, grey/CMYK/palette converted."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (PNG opens as I;16, or as I in older Pillow): scale 0..65535 to 0..255.
        grey = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(path: str, resolution: int, crop_width_fraction: float | None = None,
                 read: ReadBytes | None = None) -> np.ndarray:
    """Read one image file -> uint8 (3, R, R); `read` gets its bytes (a zip member), by default it is opened.

    Crop: a centred square, the largest one (crop_width_fraction None) or one whose side is that fraction of
    the image width; expressed relative to the image size so half-size copies of a dataset crop the same
    content. Then a Lanczos resize (antialiased when shrinking; small images are upscaled). Raises
    UnreadableImage for anything PIL cannot decode (truncated, corrupt, not an image).
    """
    try:
        with Image.open(io.BytesIO(read(path)) if read else path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = to_rgb(image)
    except Exception as e:  # PIL (and zipfile, for a damaged member) report many exception types
        raise UnreadableImage(f"{path}: {e}") from None
    width, height = rgb.size
    side = min(width, height) if crop_width_fraction is None else min(crop_width_fraction * width, height)
    left, top = (width - side) / 2, (height - side) / 2
    resized = rgb.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    return np.asarray(resized).transpose(2, 0, 1)


def _decode_or_none(path: str, resolution: int, crop: float | None, read: ReadBytes | None) -> np.ndarray | None:
    try:
        return decode_image(path, resolution, crop, read)
    except UnreadableImage:
        return None


def decode_files(paths: list[str], out: np.ndarray, resolution: int, crop: float | None, report: Report,
                 read: ReadBytes | None = None) -> Produced:
    """Decode files in order into out[:k] until out is full, skipping unreadable ones; a thread pool in parallel
    (PIL releases the GIL while decoding and resizing)."""
    count, skipped, example, next_path = 0, 0, "", 0
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        while count < len(out) and next_path < len(paths):
            # Never decode more than still fits, so max_images costs only what it keeps (plus any skipped).
            chunk = paths[next_path : next_path + min(DECODE_CHUNK, len(out) - count)]
            next_path += len(chunk)
            for path, image in zip(chunk, pool.map(lambda p: _decode_or_none(p, resolution, crop, read), chunk)):
                if image is None:
                    skipped, example = skipped + 1, example or path
                else:
                    out[count] = image
                    count += 1
            report(count)
    return Produced(count, skipped, example)


def resize_arrays(images: np.ndarray, resolution: int, pool: ThreadPoolExecutor) -> np.ndarray:
    """Square uint8 images (n, 3, s, s) -> (n, 3, R, R) with the same Lanczos resize as image files."""
    if images.shape[-1] == resolution:
        return images

    def one(chw: np.ndarray) -> np.ndarray:
        resized = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).resize(
            (resolution, resolution), Image.Resampling.LANCZOS
        )
        return np.asarray(resized).transpose(2, 0, 1)

    return np.stack(list(pool.map(one, images)))


def fill_from_arrays(chunks: Iterable[np.ndarray], out: np.ndarray, resolution: int, report: Report) -> Produced:
    """Copy square uint8 chunks (k, 3, s, s) into out, resized to the resolution, until out is full."""
    count = 0
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for chunk in chunks:
            chunk = chunk[: len(out) - count]
            out[count : count + len(chunk)] = resize_arrays(chunk, resolution, pool)
            count += len(chunk)
            report(count)
            if count == len(out):
                break
    return Produced(count)


# ---------------------------------------------------------------------------------------------- file listing


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_files(root: Path) -> list[str]:
    """Every non-hidden file under root, recursively, in a stable (sorted) order."""
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(os.path.join(directory, f) for f in sorted(files) if not f.startswith("."))
    return found


def fingerprint(paths: Iterable[str], root: Path) -> str:
    """Count, total bytes, newest mtime and a hash of the names: changes when files are added, removed or edited."""
    names, total, newest, count = hashlib.sha256(), 0, 0, 0
    for path in paths:
        stat = os.stat(path)
        names.update(os.path.relpath(path, root).encode() + b"\0")
        total, newest, count = total + stat.st_size, max(newest, stat.st_mtime_ns), count + 1
    return f"n={count} bytes={total} mtime={newest} names={names.hexdigest()[:16]}"


ZIP_FIX = "check it with 'unzip -t', re-create it (e.g. with StyleGAN2-ADA's dataset_tool.py) or unpack it"


class ZipMembers:
    """Reads members of one zip file from the decoding threads: each thread opens the zip once, since
    ZipFile.open counts its open members without a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def __call__(self, name: str) -> bytes:
        if not hasattr(self._local, "archive"):
            self._local.archive = zipfile.ZipFile(self.path)
        return self._local.archive.read(name)


def list_zip_members(path: Path) -> list[zipfile.ZipInfo]:
    """Every non-hidden file in the zip, in sorted order; StyleGAN2-ADA's dataset.json (labels) is left out."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path} is not a readable zip file ({e}); {ZIP_FIX}") from None
    visible = [m for m in members if not m.is_dir() and not any(p.startswith(".") for p in m.filename.split("/"))]
    return sorted((m for m in visible if m.filename != "dataset.json"), key=lambda m: m.filename)


def zip_fingerprint(members: list[zipfile.ZipInfo]) -> str:
    """Count, total bytes and a hash of the names and CRCs: changes when any member is added, removed or edited."""
    names = hashlib.sha256()
    for member in members:
        names.update(f"{member.filename}\0{member.CRC}\0".encode())
    return f"n={len(members)} bytes={sum(m.file_size for m in members)} names={names.hexdigest()[:16]}"
