"""The prepared cache: every dataset is decoded and resized once into a uint8 .npy, then memory-mapped.

<cache_dir>/prepared/<name>-<resolution>-<hash12>/ holds images.npy (N, 3, R, R) and meta.json. The hash covers
everything that changes the pixels: source, resolved data path, split, resolution, preprocessing, a fingerprint
of the input files, max_images and PREPARE_VERSION. A cache is built in a staging folder and renamed into
place, so a reader sees a complete cache or none; one that fails any check on opening is rebuilt, never trusted.
Staging folders of killed preparations are removed by the next one. Two processes preparing the same cache at once
both build it and the second rename finds the first one's, equivalent, in place. A complete cache is only read,
so it may be read-only; a read-only one without the entry needed is a ConfigError that says so.
meta.json also records the sha256 of the prepared pixels: FID reference statistics are keyed by it, so a copy of
the data that only changed its timestamps (a re-mount, a copy without -p) costs a re-preparation of seconds, not
another Inception pass over every real image.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nestgan import atomic
from nestgan.atomic import abandoned
from nestgan.data.npz import read_npy_header
from nestgan.data.sources import DATASETS, SPLITS, SourcePlan
from nestgan.data.subsets import data_label
from nestgan.errors import ConfigError, DataError
from nestgan.hashing import sha256_of

PREPARE_VERSION = 1  # bump when decoding or resizing changes pixels
CACHE_FIX = "point --cache-dir or NESTGAN_CACHE at a writable folder"
STALE_STAGING_S = atomic.STALE_S  # a staging folder untouched this long is abandoned, whoever made it
STAGING_NAME = re.compile(r"^\..+\.staging-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+\.tmp$")
log = logging.getLogger("nestgan.data")


def default_cache_dir() -> Path:
    """$NESTGAN_CACHE, else ~/.cache/nestgan."""
    return Path(os.environ.get("NESTGAN_CACHE") or Path.home() / ".cache" / "nestgan").expanduser()


def read_only_reason(folder: Path) -> str | None:
    """Why no file can be created in `folder` (made if absent), e.g. "Read-only file system"; None when one can.

    Decided by trying, not from permission bits: those say nothing for root or on a read-only mount.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        return e.strerror
    os.close(fd)
    os.unlink(probe)
    return None


class DamagedCache(Exception):
    """A prepared folder that fails a check; it is rebuilt."""


class PreparedDataset(Dataset):
    """A prepared cache folder as a torch Dataset of uint8 (3, R, R) tensors.

    `images` is the whole memory-mapped array (N, 3, R, R) uint8, for fast batched reads; `identity` is the
    cache key (source, data, split, resolution, preprocessing, input-file fingerprint); `pixels_id` names the
    content itself (<name>-<resolution>-px<sha256 of images.npy>), the same wherever the same pixels were
    prepared, and keys FID reference statistics.
    """

    def __init__(self, directory: str | os.PathLike, key: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self.meta = _read_meta(self.directory / "meta.json")
        if key is not None and self.meta.get("key") != key:
            raise DamagedCache("meta.json describes other data")
        self.images = _open_images(self.directory / "images.npy", tuple(self.meta["shape"]))
        self.identity: str = self.meta["identity"]
        self.name: str = self.meta["key"]["name"]
        self.split: str = self.meta["key"]["split"]
        self.resolution: int = self.meta["key"]["resolution"]
        self.num_skipped: int = self.meta["skipped"]
        pixels_sha256 = self.meta.get("pixels_sha256") or sha256_of(self.directory / "images.npy")  # older caches
        label = data_label(self.name, self.meta["key"].get("attribute"))
        self.pixels_id: str = f"{label}-{self.resolution}-px{pixels_sha256[:12]}"

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[index]))  # copy: the memmap is read-only

    def __repr__(self) -> str:
        return f"PreparedDataset({self.identity!r}, n={len(self)}, resolution={self.resolution})"

    # A memmap would pickle as a full copy of the data; DataLoader workers re-open the file instead.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "images"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.images = np.load(self.directory / "images.npy", mmap_mode="r")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
        complete = all(k in meta for k in ("identity", "skipped")) and all(
            k in meta["key"] for k in ("name", "split", "resolution")
        )
        consistent = complete and len(meta["shape"]) == 4 and meta["shape"][0] == meta["count"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedCache(f"meta.json unreadable ({type(e).__name__}: {e})") from None
    if not consistent:
        raise DamagedCache("meta.json is incomplete or inconsistent")
    return meta


def _open_images(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """Memory-map images.npy after checking its header and that the file holds every byte it announces."""
    try:
        with open(path, "rb") as f:
            file_shape, fortran_order, dtype = read_npy_header(f)
            data_offset = f.tell()
    except (OSError, ValueError) as e:
        raise DamagedCache(f"images.npy unreadable ({e})") from None
    if file_shape != shape or dtype != np.uint8 or fortran_order:
        raise DamagedCache(f"images.npy is {dtype} {file_shape}, meta.json says uint8 {shape}")
    if path.stat().st_size != data_offset + int(np.prod(shape)):
        raise DamagedCache(f"images.npy is truncated ({path.stat().st_size} bytes)")
    return np.load(path, mmap_mode="r")


class _ProgressLine:
    """Occasional 'preparing ...: k/n' lines on stderr while a cache is built (quiet when disabled)."""

    def __init__(self, label: str, total: int, enabled: bool, every_s: float = 5.0):
        self.label, self.total, self.enabled, self.every_s = label, total, enabled, every_s
        self.start = self.last = time.monotonic()
        self.say(f"preparing {label}: {total} images (once; cached afterwards)")

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.say(f"preparing {self.label}: {done}/{self.total} ({done / (now - self.start):.0f} images/s)")

    def finish(self, done: int) -> None:
        self.say(f"prepared {self.label}: {done} images in {time.monotonic() - self.start:.1f} s")


def _cache_key(plan: SourcePlan, resolution: int, max_images: int | None) -> dict[str, Any]:
    return {
        "name": plan.name,
        "location": plan.location,
        "split": plan.split,
        "resolution": resolution,
        "preprocessing": plan.preprocessing,
        "fingerprint": plan.fingerprint,
        "max_images": max_images,
        "version": PREPARE_VERSION,
        **({"attribute": plan.attribute} if plan.attribute else {}),  # absent otherwise: older caches keep their key
    }


def _remove_stale_staging(folder: Path) -> None:
    """Remove staging folders that no live preparation owns: this host's whose process is gone, and any
    untouched for STALE_STAGING_S (another host's, whose process cannot be asked): nestgan.atomic.abandoned."""
    for path in folder.glob(".*.tmp"):
        match = STAGING_NAME.match(path.name)
        try:
            touched = max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()])
        except OSError:  # not a folder, or removed meanwhile by its owner or another cleaner
            continue
        if abandoned(match and match["host"], match and int(match["pid"]), touched):
            shutil.rmtree(path, ignore_errors=True)


def _build(plan: SourcePlan, key: dict[str, Any], identity: str, final: Path, progress: bool) -> None:
    """Decode the source into a staging folder beside `final`, then rename it into place."""
    resolution, limit = key["resolution"], min(plan.available, key["max_images"] or plan.available)
    _remove_stale_staging(final.parent)
    # Host and pid in the name let a later preparation tell a killed one's leftovers from a running one's.
    owner = f"staging-{atomic.owner()}-"
    staging = Path(tempfile.mkdtemp(prefix=f".{identity}.{owner}", suffix=".tmp", dir=final.parent))
    try:
        if plan.missing:
            log.warning(f"{plan.name}: {plan.missing} listed images are absent from {plan.location} (partial copy?)")
        line = _ProgressLine(f"{plan.name} {plan.split} at {resolution}px from {plan.location}", limit, progress)
        shape = (limit, 3, resolution, resolution)
        images = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        produced = plan.produce(images, line)
        if produced.count == 0:
            raise DataError(
                f"no readable images in {plan.location} ({produced.skipped} files skipped, e.g. {produced.example})"
            )
        if produced.count < limit:  # some files were unreadable: keep only the rows written
            kept = np.lib.format.open_memmap(
                staging / "kept.npy", mode="w+", dtype=np.uint8, shape=(produced.count, *shape[1:])
            )
            kept[:] = images[: produced.count]
            kept.flush()
            del kept
            os.replace(staging / "kept.npy", staging / "images.npy")
        else:
            images.flush()
        del images
        line.finish(produced.count)
        if produced.skipped:
            log.warning(
                f"{plan.name}: skipped {produced.skipped} files that are not readable images under {plan.location} "
                f"(e.g. {produced.example})"
            )
        meta = {
            "identity": identity,
            "count": produced.count,
            "shape": [produced.count, 3, resolution, resolution],
            "skipped": produced.skipped,
            "missing": plan.missing,
            "source": plan.location,
            "pixels_sha256": sha256_of(staging / "images.npy"),
            "key": key,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process finished the same cache first; theirs is equivalent, ours is dropped below.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_dataset(
    name: str,
    resolution: int,
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    max_images: int | None = None,
    progress: bool = True,
    attribute: str | None = None,
) -> PreparedDataset:
    """Open dataset `name` at `resolution` px, preparing its cache the first time (decoding nothing afterwards).

    data_dir: where the dataset lives (default <cache_dir>/datasets/<name>; unused by "shapes", required by
    "folder"). cache_dir: default $NESTGAN_CACHE or ~/.cache/nestgan. max_images: keep the first N readable
    images. attribute: celeba only, the images with that list_attr_celeba.txt attribute ("-Name": without). Missing,
    empty or unreadable data raises DataError; bad arguments raise ConfigError.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 4:
        raise ConfigError(f"resolution must be an integer >= 4 pixels, got {resolution!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ConfigError(f"max_images must be a positive integer or None, got {max_images!r}")
    if attribute is not None and name != "celeba":
        raise ConfigError(f"attribute picks CelebA images by attribute; dataset '{name}' has none: drop it")
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    subset = {"attribute": attribute} if attribute is not None else {}
    plan = DATASETS[name](data_dir, split, resolution, download, cache_root, **subset)
    key = _cache_key(plan, resolution, max_images)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    identity = f"{data_label(plan.name, plan.attribute)}-{resolution}-{digest}"
    folder = cache_root / "prepared" / identity
    damaged = None
    if folder.exists():
        try:
            return PreparedDataset(folder, key)
        except DamagedCache as e:
            damaged = e
    why = read_only_reason(folder.parent)
    if why:
        raise ConfigError(
            f"the cache folder {folder.parent} is read-only ({why}) and holds no complete prepared {plan.name} at "
            f"{resolution}px; {CACHE_FIX}, or prepare it there once from an account that can write it"
        )
    if damaged is not None:
        log.warning(f"prepared cache {folder} is damaged ({damaged}); rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)  # another process may be removing it too
    _build(plan, key, identity, folder, progress)
    try:
        return PreparedDataset(folder, key)
    except DamagedCache as e:
        raise DataError(f"prepared cache {folder} failed its check right after being written ({e}); is the disk full?")


def trained_data_source(
    trained_on: dict[str, Any], *, data_dir: str | None = None, split: str | None = None
) -> dict[str, Any]:
    """A checkpoint's config["data"] with what a user's flags move: --data-dir (the same data in another place, e.g.
    on another machine) and --split; a flag left out keeps the checkpoint's value."""
    return {**trained_on, **({"data_dir": data_dir} if data_dir else {}), **({"split": split} if split else {})}


def load_training_data(
    data: dict[str, Any], resolution: int, cache_dir: str | os.PathLike | None = None, download: bool = False
) -> PreparedDataset:
    """The real images a run trains or trained on, from its config["data"] (name, data_dir, split, ...), at
    `resolution`; only a training run passes `download` (its data.download), evaluating a checkpoint never downloads."""
    return load_dataset(
        data.get("name", "shapes"),
        resolution,
        data_dir=data.get("data_dir"),
        split=data.get("split", "train"),
        cache_dir=cache_dir or data.get("cache_dir"),
        download=download,
        max_images=data.get("max_images"),
        attribute=data.get("attribute"),
    )
