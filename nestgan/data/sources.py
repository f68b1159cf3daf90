"""Readers for each dataset: find the files, fingerprint them, and decode them into uint8 (N, 3, R, R).

A reader does not write the cache itself: it returns a SourcePlan that says what it would read (enough to key
the prepared cache without decoding anything) and how to decode it into a preallocated array.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import re
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageOps

from nestgan.data import shapes
from nestgan.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test", "all")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_CROP = 140 / 178  # side of the "CelebA 64" face crop as a fraction of the image width
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET64_URL = "https://image-net.org/download-images (Downsampled ImageNet 64x64)"
DECODE_THREADS = min(8, os.cpu_count() or 1)
_DECODE_CHUNK = 512

Report = Callable[[int], None]
ReadBytes = Callable[[str], bytes]  # name of a file (e.g. a zip member) -> its contents


@dataclass(frozen=True)
class Produced:
    """Outcome of decoding: rows written, files skipped as unreadable, one example of those."""

    count: int
    skipped: int = 0
    example: str = ""


@dataclass(frozen=True)
class SourcePlan:
    """What a reader will decode, described without decoding it (this is what keys the prepared cache)."""

    name: str
    location: str  # resolved absolute path of the data, or "embedded"
    split: str
    preprocessing: str  # what is done to each image, in words
    fingerprint: str  # changes when the input files change
    available: int  # images the source holds (before max_images and skipping)
    produce: Callable[[np.ndarray, Report], Produced]  # fills out[:k] in order, returns k and skips
    missing: int = 0  # files listed by an index file (CelebA partition) but absent on disk
    attribute: str | None = None  # CelebA attribute subset (see data_label)


def data_label(name: str, attribute: str | None) -> str:
    """A dataset's name in run directories, cache folders and metric references: 'celeba', 'celeba-Eyeglasses',
    'celeba-not-Eyeglasses'; an attribute subset never shares a name (or FID statistics) with the whole set."""
    if attribute is None:
        return name
    return f"{name}-not-{attribute[1:]}" if attribute.startswith("-") else f"{name}-{attribute}"


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
            chunk = paths[next_path : next_path + min(_DECODE_CHUNK, len(out) - count)]
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


def _is_image_name(name: str) -> bool:
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


def _resolve_root(data_dir: str | os.PathLike | None, cache_root: Path, name: str) -> Path:
    return (Path(data_dir).expanduser() if data_dir is not None else cache_root / "datasets" / name).resolve()


def _image_tree_plan(name: str, root: Path, split: str, resolution: int) -> SourcePlan:
    """Any tree of image files: largest centred square, Lanczos to the resolution.

    Files without an image extension are not decoded but counted as skipped, like unreadable images.
    """
    if not root.exists():
        raise DataError(f"image folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder of images")
    files = list_files(root)
    images = [f for f in files if _is_image_name(f)]
    if not images:
        raise DataError(
            f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {root} ({len(files)} other files)"
        )
    others = [f for f in files if not _is_image_name(f)]

    def produce(out: np.ndarray, report: Report) -> Produced:
        done = decode_files(images, out, resolution, None, report)
        example = done.example or (others[0] if others else "")
        return Produced(done.count, done.skipped + len(others), example)

    return SourcePlan(
        name=name,
        location=str(root),
        split=split,
        preprocessing="rgb (alpha on white), centre square crop of the shorter side, lanczos resize",
        fingerprint=fingerprint(files, root),
        available=len(images),
        produce=produce,
    )


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


def _zip_plan(path: Path, resolution: int) -> SourcePlan:
    """The 'folder' dataset from a zip of image files (e.g. StyleGAN2-ADA's dataset_tool.py output), decoded
    like an image folder; files without an image extension are counted as skipped."""
    members = list_zip_members(path)
    images = [m.filename for m in members if _is_image_name(m.filename)]
    if not images:
        raise DataError(
            f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found in {path} ({len(members)} other files); "
            f"the zip should hold image files, in any subfolders"
        )
    others = [m.filename for m in members if not _is_image_name(m.filename)]

    def produce(out: np.ndarray, report: Report) -> Produced:
        done = decode_files(images, out, resolution, None, report, read=ZipMembers(path))
        example = done.example or (others[0] if others else "")
        return Produced(done.count, done.skipped + len(others), example)

    return SourcePlan(
        name="folder",
        location=str(path),
        split="all",
        preprocessing="rgb (alpha on white), centre square crop of the shorter side, lanczos resize",
        fingerprint=zip_fingerprint(members),
        available=len(images),
        produce=produce,
    )


# ---------------------------------------------------------------------------------------------- datasets


def folder_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path) -> SourcePlan:
    """Any folder tree of images, or a .zip of one; the split is ignored (the whole tree is the dataset)."""
    if data_dir is None:
        raise DataError("the 'folder' dataset needs data_dir: a folder of jpg/jpeg/png/bmp/webp images or a .zip of them")
    root = _resolve_root(data_dir, cache_root, "folder")
    if root.suffix.lower() == ".zip" and not root.exists():
        raise DataError(f"zip file not found: {root}")
    if root.is_file():
        if root.suffix.lower() == ".zip" or zipfile.is_zipfile(root):
            return _zip_plan(root, resolution)
        raise DataError(f"{root} is a file, not a folder of images or a .zip of them")
    return _image_tree_plan("folder", root, "all", resolution)


def shapes_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path) -> SourcePlan:
    """The embedded procedural dataset (see nestgan.data.shapes); needs no files."""
    return SourcePlan(
        name="shapes",
        location="embedded",
        split=split,
        preprocessing="procedural shapes v1, rendered at the resolution",
        fingerprint=f"n={shapes.SHAPES_COUNT} seed={shapes.SPLIT_SEEDS[split]}",
        available=shapes.SHAPES_COUNT,
        produce=lambda out, report: Produced(shapes.produce_shapes(out, split, resolution, report)),
    )


def _find_celeba(root: Path) -> Path | None:
    for candidate in (root, root / "celeba"):  # the official folder, or its parent as torchvision lays it out
        if (candidate / "img_align_celeba").is_dir():
            return candidate
    return None


def _read_partition(path: Path) -> list[tuple[str, int]]:
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataError(f"{path} line {number} is not '<image>.jpg <0|1|2>': {line.strip()[:80]!r}")
            rows.append((fields[0], int(fields[1])))
    return rows


def _attribute_names(path: Path, attribute: str) -> set[str]:
    """Images of list_attr_celeba.txt whose `attribute` is 1 ("-Name": -1); the name is checked against its header."""
    if not path.is_file():
        raise DataError(f"{path} not found: data.attribute needs CelebA's attribute file; get it from {CELEBA_URL}")
    with open(path) as f:
        f.readline()  # the image count
        header = f.readline().split()
        rows = [line.split() for line in f if line.strip()]
    name, wanted = attribute.removeprefix("-"), "-1" if attribute.startswith("-") else "1"
    if name not in header:
        close = difflib.get_close_matches(name, header, n=3) or header[:3]
        raise ConfigError(
            f"unknown CelebA attribute '{name}': {path.name} names {len(header)}, e.g. {', '.join(close)}; pick one "
            f"of them (-Name keeps the images without it)"
        )
    column = header.index(name) + 1
    return {row[0] for row in rows if len(row) == len(header) + 1 and row[column] == wanted}


def celeba_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path,
                attribute: str | None = None) -> SourcePlan:
    """CelebA aligned faces with the standard "CelebA 64" preprocessing.

    Layout: <root>/img_align_celeba/*.jpg and <root>/list_eval_partition.txt (or the same inside <root>/celeba/).
    Split via the partition file: train 0, valid 1, test 2, all. Partial copies work: rows whose image is
    absent are skipped and counted. Crop: a centred square whose side is 140/178 of the image width (140 px of
    the official 178x218 images, the usual CelebA-64 face crop; relative, so half-size copies crop the same
    region), then a Lanczos resize to the resolution. attribute: keep only the images of the split whose
    list_attr_celeba.txt column of that name is 1 ("-Name": -1).
    """
    root = _resolve_root(data_dir, cache_root, "celeba")
    found = _find_celeba(root)
    if found is None and download:
        _download_celeba(root)
        found = _find_celeba(root)
    if found is None:
        raise DataError(
            f"CelebA not found: no img_align_celeba/ in {root} or {root / 'celeba'}; get img_align_celeba.zip and "
            f"list_eval_partition.txt from {CELEBA_URL}, or pass download=True (torchvision; needs internet and gdown)"
        )
    image_dir = found / "img_align_celeba"
    present = {name for name in os.listdir(image_dir) if _is_image_name(name)}
    partition = found / "list_eval_partition.txt"
    if partition.is_file():
        code = {"train": 0, "valid": 1, "test": 2}.get(split)
        wanted = [name for name, c in _read_partition(partition) if code is None or c == code]
    elif split == "all":
        wanted = sorted(present)
    else:
        raise DataError(
            f"{partition} not found: it defines CelebA's train/valid/test split; get it from {CELEBA_URL} "
            f"or use split 'all'"
        )
    if attribute is not None:
        chosen = _attribute_names(found / "list_attr_celeba.txt", attribute)
        wanted = [name for name in wanted if name in chosen]
    names = [name for name in wanted if name in present]
    if not names:
        raise DataError(
            f"no CelebA images of split '{split}'{f' with attribute {attribute}' if attribute else ''} in {image_dir} "
            f"({len(wanted)} listed, none present)"
        )
    paths = [str(image_dir / name) for name in names]
    return SourcePlan(
        name="celeba",
        location=str(found),
        split=split,
        preprocessing=f"rgb, centre square crop of side {CELEBA_CROP:.6f} x width, lanczos resize",
        fingerprint=fingerprint(paths, found),
        available=len(paths),
        produce=lambda out, report: decode_files(paths, out, resolution, CELEBA_CROP, report),
        missing=len(wanted) - len(names),
        attribute=attribute,
    )


def _download_celeba(root: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"could not download CelebA into {root} with torchvision ({first}); it needs internet access and the "
            f"gdown package; or download it from {CELEBA_URL}"
        ) from None


def cifar10_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path) -> SourcePlan:
    """CIFAR-10 via torchvision (python batches): train = the 50k training images, valid/test = the 10k test
    images, all = both; Lanczos resize when the resolution is not 32."""
    import torchvision

    root = _resolve_root(data_dir, cache_root, "cifar10")
    if root.name == "cifar-10-batches-py":
        root = root.parent
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir() and download:
        try:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DataError(f"could not download CIFAR-10 into {root} ({first}); get it from {CIFAR10_URL}") from None
    if not batches.is_dir():
        raise DataError(
            f"CIFAR-10 not found: no cifar-10-batches-py/ in {root}; pass download=True (needs internet) or "
            f"unpack cifar-10-python.tar.gz from {CIFAR10_URL} there"
        )
    parts = {"train": [True], "valid": [False], "test": [False], "all": [True, False]}[split]  # torchvision's train=
    files = []
    for train in parts:
        files += [batches / f"data_batch_{i}" for i in range(1, 6)] if train else [batches / "test_batch"]
    if missing := [f.name for f in files if not f.is_file()]:
        raise DataError(f"CIFAR-10 in {batches} is incomplete: missing {', '.join(missing)}; download it again")

    def chunks() -> Iterable[np.ndarray]:
        for train in parts:
            try:
                data = torchvision.datasets.CIFAR10(str(root), train=train, download=False).data  # (n, 32, 32, 3)
            except RuntimeError as e:
                raise DataError(f"CIFAR-10 in {batches} is damaged ({e}); delete it and download again") from None
            for start in range(0, len(data), _DECODE_CHUNK):
                yield data[start : start + _DECODE_CHUNK].transpose(0, 3, 1, 2)

    return SourcePlan(
        name="cifar10",
        location=str(root),
        split=split,
        preprocessing="cifar10 32x32, lanczos resize",
        fingerprint=fingerprint((str(f) for f in files), root),
        available=10_000 * len(files),  # every CIFAR-10 batch file holds 10,000 images
        produce=lambda out, report: fill_from_arrays(chunks(), out, resolution, report),
    )


# -------------------------------------------------------------------------- Downsampled ImageNet (npz batches)


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream f, leaving f at the first byte of data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _npz_data_header(path: Path) -> tuple[int, int]:
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


def _stream_npz_rows(path: Path, rows: int, side: int, chunk: int) -> Iterable[np.ndarray]:
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


def _batch_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.name)
    return int(digits[-1]) if digits else 0


def _npz_plan(root: Path, files: list[Path], split: str, resolution: int) -> SourcePlan:
    if split in ("train", "valid", "test"):
        train = sorted((f for f in files if f.name.startswith("train_data_batch_")), key=_batch_number)
        val = [f for f in files if f.name == "val_data.npz"]
        if train or val:  # official names: pick the split; otherwise every npz is the dataset
            files = train if split == "train" else val
            if not files:
                wanted = "train_data_batch_*.npz" if split == "train" else "val_data.npz"
                raise DataError(f"no {wanted} in {root} for split '{split}'")
    headers = [_npz_data_header(f) for f in files]

    def chunks() -> Iterable[np.ndarray]:
        for path, (rows, side) in zip(files, headers):
            yield from _stream_npz_rows(path, rows, side, _DECODE_CHUNK)

    return SourcePlan(
        name="imagenet64",
        location=str(root),
        split=split,
        preprocessing="downsampled-imagenet npz rows (CHW), lanczos resize",
        fingerprint=fingerprint((str(f) for f in files), root),
        available=sum(rows for rows, _ in headers),
        produce=lambda out, report: fill_from_arrays(chunks(), out, resolution, report),
    )


def imagenet64_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path) -> SourcePlan:
    """ImageNet 64x64, either the Downsampled-ImageNet npz batches or an ImageFolder tree.

    npz: train = train_data_batch_*.npz (in numeric order), valid/test = val_data.npz, all = every npz; files
    with other names are all used whatever the split. ImageFolder (<root>/<class>/*.JPEG): if <root> has
    train/ or val/ subfolders the split picks one (valid and test -> val/), otherwise <root> is the dataset.
    """
    root = _resolve_root(data_dir, cache_root, "imagenet64")
    if not root.is_dir():  # download=True cannot help: ImageNet needs an account
        raise DataError(
            f"ImageNet 64x64 not found at {root}: expected train_data_batch_*.npz / val_data.npz (download them "
            f"yourself from {IMAGENET64_URL}), or an ImageFolder tree <class>/*.JPEG"
        )
    npz = sorted(root.glob("*.npz")) + sorted(root.glob("*/*.npz"))
    if npz:
        return _npz_plan(root, npz, split, resolution)
    split_dirs = {"train": "train", "valid": "val", "test": "val"}
    if split in split_dirs and any((root / d).is_dir() for d in split_dirs.values()):
        folder = root / split_dirs[split]
        if not folder.is_dir():
            raise DataError(f"no {folder.name}/ folder in {root} for split '{split}' (pass data_dir={root}/<folder>)")
        root = folder
    return _image_tree_plan("imagenet64", root, split, resolution)


DATASETS: dict[str, Callable[..., SourcePlan]] = {
    "shapes": shapes_plan,
    "celeba": celeba_plan,
    "imagenet64": imagenet64_plan,
    "cifar10": cifar10_plan,
    "folder": folder_plan,
}
