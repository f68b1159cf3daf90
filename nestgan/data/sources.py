"""Readers for each dataset (the registry DATASETS): find the files, fingerprint them, and decode them into uint8
(N, 3, R, R) through nestgan.data.files.

A reader does not write the cache itself: it returns a SourcePlan that says what it would read (enough to key
the prepared cache without decoding anything) and how to decode it into a preallocated array.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from nestgan.data import shapes
from nestgan.data.files import (DECODE_CHUNK, IMAGE_EXTENSIONS, Produced, Report, ZipMembers, decode_files,
                                fill_from_arrays, fingerprint, is_image_name, list_files, list_zip_members,
                                zip_fingerprint)
from nestgan.data.npz import npz_data_header, stream_npz_rows
from nestgan.data.subsets import read_partition, with_attribute
from nestgan.errors import DataError

SPLITS = ("train", "valid", "test", "all")
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_CROP = 140 / 178  # side of the "CelebA 64" face crop as a fraction of the image width
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET64_URL = "https://image-net.org/download-images (Downsampled ImageNet 64x64)"


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
    attribute: str | None = None  # CelebA attribute subset (nestgan.data.subsets)


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
    images = [f for f in files if is_image_name(f)]
    if not images:
        raise DataError(
            f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {root} ({len(files)} other files)"
        )
    others = [f for f in files if not is_image_name(f)]

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


def _zip_plan(path: Path, resolution: int) -> SourcePlan:
    """The 'folder' dataset from a zip of image files (e.g. StyleGAN2-ADA's dataset_tool.py output), decoded
    like an image folder; files without an image extension are counted as skipped."""
    members = list_zip_members(path)
    images = [m.filename for m in members if is_image_name(m.filename)]
    if not images:
        raise DataError(
            f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found in {path} ({len(members)} other files); "
            f"the zip should hold image files, in any subfolders"
        )
    others = [m.filename for m in members if not is_image_name(m.filename)]

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


def celeba_plan(data_dir, split: str, resolution: int, download: bool, cache_root: Path, *,
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
    present = {name for name in os.listdir(image_dir) if is_image_name(name)}
    partition = found / "list_eval_partition.txt"
    if partition.is_file():
        code = {"train": 0, "valid": 1, "test": 2}.get(split)
        wanted = [name for name, c in read_partition(partition) if code is None or c == code]
    elif split == "all":
        wanted = sorted(present)
    else:
        raise DataError(
            f"{partition} not found: it defines CelebA's train/valid/test split; get it from {CELEBA_URL} "
            f"or use split 'all'"
        )
    wanted = with_attribute(wanted, found, attribute, url=CELEBA_URL)
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
            for start in range(0, len(data), DECODE_CHUNK):
                yield data[start : start + DECODE_CHUNK].transpose(0, 3, 1, 2)

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
    headers = [npz_data_header(f) for f in files]

    def chunks() -> Iterable[np.ndarray]:
        for path, (rows, side) in zip(files, headers):
            yield from stream_npz_rows(path, rows, side, DECODE_CHUNK)

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
