"""Data: readers on real and hand-made files, the prepared cache, errors, and the resumable batch iterator."""

from __future__ import annotations

import logging
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nestgan.data import BatchIterator, files, load_dataset, measure_loader_throughput, shapes, trained_data_source
from nestgan.errors import ConfigError, DataError


def _load(name: str, resolution: int, tmp_path: Path, **kwargs):
    return load_dataset(name, resolution, cache_dir=tmp_path / "cache", progress=False, **kwargs)


def _leftover_staging(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "cache" / "prepared").glob(".*.tmp"))


# ------------------------------------------------------------------------------------------------- shapes


def test_shapes_deterministic_and_plausible(tmp_path):
    a = load_dataset("shapes", 32, cache_dir=tmp_path / "a", max_images=64, progress=False)
    b = load_dataset("shapes", 32, cache_dir=tmp_path / "b", max_images=64, progress=False)
    assert a.images.shape == (64, 3, 32, 32) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.identity == b.identity
    assert a.images.min() < 40 and a.images.max() > 215  # dark backgrounds and bright saturated shapes
    flat = a.images.reshape(64, -1).astype(np.int16)
    assert len({row.tobytes() for row in a.images.reshape(64, -1)}) == 64
    assert np.abs(flat[1:] - flat[:-1]).mean() > 10
    # Saturated shape colours: some pixels have a large channel spread, unlike the muted backgrounds.
    spread = a.images.max(axis=1).astype(int) - a.images.min(axis=1)
    assert (spread > 150).mean() > 0.03
    # The same scenes at twice the resolution, box-downsampled, match the 32 px rendering closely.
    scenes = shapes.sample_scenes(shapes.SHAPES_COUNT, shapes.SPLIT_SEEDS["train"]).slice(0, 64)
    big = shapes.render_shapes(scenes, 64).astype(np.float32)
    small = big.reshape(64, 3, 32, 2, 32, 2).mean(axis=(3, 5))
    assert np.abs(small - a.images).mean() < 4
    valid = _load("shapes", 32, tmp_path, split="valid", max_images=64)
    assert valid.identity != a.identity and not np.array_equal(valid.images, a.images)


# ------------------------------------------------------------------------------------------------- CelebA


def _celeba_copy(shared_data: Path, root: Path, scale: int, rows: list[tuple[str, int]], present: list[str]) -> None:
    """A CelebA layout under root with some shared images (optionally upscaled) and a given partition file."""
    (root / "img_align_celeba").mkdir(parents=True)
    for name in present:
        image = Image.open(shared_data / "celeba" / "img_align_celeba" / name)
        image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS).save(
            root / "img_align_celeba" / name, quality=95
        )
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {c}\n" for n, c in rows))


@pytest.mark.parametrize("resolution", [64, 32])
def test_celeba_partial_half_size(shared_data, tmp_path, resolution):
    ds = _load("celeba", resolution, tmp_path, data_dir=shared_data / "celeba", max_images=100)
    assert len(ds) == 100 and ds.images.shape == (100, 3, resolution, resolution)
    assert ds.num_skipped == 0 and ds.name == "celeba" and ds.resolution == resolution
    sample = ds[0]
    assert sample.dtype == torch.uint8 and sample.shape == (3, resolution, resolution)
    # Aligned faces: the crop centre is skin-toned and brighter on average than the crop's corners.
    centre = ds.images[:, :, resolution // 4 : 3 * resolution // 4, resolution // 4 : 3 * resolution // 4]
    assert centre.std() > 20 and ds.images.reshape(100, -1).std(axis=0).mean() > 30


def test_celeba_crop_relative_splits_and_missing_rows(shared_data, tmp_path):
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    rows = [(names[0], 0), (names[1], 0), (names[2], 1), (names[3], 2), (names[4], 0), ("999999.jpg", 0)]
    half, full = tmp_path / "half", tmp_path / "parent"
    _celeba_copy(shared_data, half, 1, rows, names)
    _celeba_copy(shared_data, full / "celeba", 2, rows, names)  # torchvision layout: root is the parent

    train_half = _load("celeba", 32, tmp_path, data_dir=half)
    train_full = _load("celeba", 32, tmp_path, data_dir=full)
    assert len(train_half) == 3 and train_half.meta["missing"] == 1
    # The crop is relative to the image size: a 2x copy gives the same 32 px faces (up to JPEG/resampling noise).
    assert np.abs(train_half.images.astype(int) - train_full.images).mean() < 6
    assert train_half.identity != train_full.identity
    assert len(_load("celeba", 32, tmp_path, data_dir=half, split="valid")) == 1
    assert len(_load("celeba", 32, tmp_path, data_dir=half, split="test")) == 1
    assert len(_load("celeba", 32, tmp_path, data_dir=half, split="all")) == 5


# ------------------------------------------------------------------------------------------------- ImageNet 64


def _tiny_imagenet_subset(shared_data: Path, root: Path, classes: int = 2, per_class: int = 6) -> list[Path]:
    val = shared_data / "tiny-imagenet-64" / "val"
    copied = []
    for wnid in sorted(p.name for p in val.iterdir() if p.is_dir())[:classes]:
        (root / wnid).mkdir(parents=True)
        for path in sorted((val / wnid).iterdir())[:per_class]:
            shutil.copy(path, root / wnid / path.name)
            copied.append(root / wnid / path.name)
    return copied


def _write_npz(path: Path, images: list[Path], **extra) -> None:
    data = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1).reshape(-1) for p in images])
    np.savez(path, data=data, labels=np.arange(1, len(images) + 1), **extra)


def test_imagenet64_folder(shared_data, tmp_path):
    ds = _load("imagenet64", 64, tmp_path, data_dir=shared_data / "tiny-imagenet-64" / "val", max_images=64)
    assert ds.images.shape == (64, 3, 64, 64) and ds.num_skipped == 0
    first = sorted(sorted((shared_data / "tiny-imagenet-64" / "val").iterdir())[0].iterdir())[0]
    assert np.array_equal(ds.images[0], np.asarray(Image.open(first).convert("RGB")).transpose(2, 0, 1))


def test_imagenet64_npz_matches_folder(shared_data, tmp_path):
    files = _tiny_imagenet_subset(shared_data, tmp_path / "folder")
    npz_dir = tmp_path / "npz"
    npz_dir.mkdir()
    # Numeric batch order: batch 2 before batch 10 (lexical order would swap them).
    _write_npz(npz_dir / "train_data_batch_2.npz", files[:7], mean=np.zeros(12288))
    _write_npz(npz_dir / "train_data_batch_10.npz", files[7:])
    _write_npz(npz_dir / "val_data.npz", files[:3])
    for resolution in (32, 64):
        folder = _load("imagenet64", resolution, tmp_path, data_dir=tmp_path / "folder")
        npz = _load("imagenet64", resolution, tmp_path, data_dir=npz_dir)
        assert len(npz) == len(files) and np.array_equal(npz.images, folder.images)
    val = _load("imagenet64", 64, tmp_path, data_dir=npz_dir, split="valid")
    assert len(val) == 3 and np.array_equal(val.images, folder.images[:3])


def test_npz_errors(tmp_path):
    (tmp_path / "keys").mkdir()
    np.savez(tmp_path / "keys" / "train_data_batch_1.npz", images=np.zeros((2, 12288), np.uint8))
    with pytest.raises(DataError, match=r"train_data_batch_1\.npz has no array 'data' \(keys: images\)"):
        _load("imagenet64", 64, tmp_path, data_dir=tmp_path / "keys")
    (tmp_path / "shape").mkdir()
    np.savez(tmp_path / "shape" / "val_data.npz", data=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"val_data\.npz: 'data' is uint8 \(2, 64, 64, 3\); expected .*\(N, 3\*S\*S\)"):
        _load("imagenet64", 64, tmp_path, data_dir=tmp_path / "shape", split="valid")
    with pytest.raises(DataError, match="no train_data_batch_"):
        _load("imagenet64", 64, tmp_path, data_dir=tmp_path / "shape", split="train")
    (tmp_path / "truncated").mkdir()
    np.savez(tmp_path / "truncated" / "x.npz", data=np.zeros((4, 3 * 8 * 8), np.uint8))
    raw = (tmp_path / "truncated" / "x.npz").read_bytes()
    (tmp_path / "truncated" / "x.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"x\.npz is not a readable npz"):
        _load("imagenet64", 8, tmp_path, data_dir=tmp_path / "truncated")
    assert not _leftover_staging(tmp_path)


def test_cifar10_reader(tmp_path, monkeypatch):
    """The reader around torchvision's CIFAR10 (the real files need a download, so torchvision is replaced)."""
    import torchvision

    batches = tmp_path / "cifar" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(b"stand-in")
    rng = np.random.default_rng(0)
    data = {train: rng.integers(0, 256, (n, 32, 32, 3), np.uint8) for train, n in ((True, 30), (False, 10))}

    class StandInCIFAR10:
        def __init__(self, root: str, train: bool, download: bool):
            assert root == str(tmp_path / "cifar") and not download
            self.data = data[train]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", StandInCIFAR10)
    train = _load("cifar10", 32, tmp_path, data_dir=batches, max_images=30)  # the batches folder itself works too
    assert np.array_equal(train.images, data[True].transpose(0, 3, 1, 2))
    both = _load("cifar10", 32, tmp_path, data_dir=tmp_path / "cifar", split="all", max_images=35)
    assert np.array_equal(both.images[30:], data[False][:5].transpose(0, 3, 1, 2))
    test = _load("cifar10", 16, tmp_path, data_dir=tmp_path / "cifar", split="test", max_images=10)
    assert test.images.shape == (10, 3, 16, 16)
    assert np.abs(test.images.astype(float).mean((2, 3)) - data[False].mean((1, 2))).max() < 3


# ------------------------------------------------------------------------------------------------- folder reader


def _odd_images_tree(root: Path) -> None:
    """Every awkward kind of file a user's folder may hold; sorted order is the order below."""
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(root / "a_rgb.jpg", quality=95)
    Image.new("L", (24, 24), 77).save(root / "b_grey.png")
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(root / "c_cmyk.jpg", quality=95)  # red in CMYK
    Image.new("RGBA", (24, 24), (255, 0, 0, 0)).save(root / "d_rgba.png")  # fully transparent red
    Image.fromarray(np.full((24, 24), 128 * 257, np.uint16)).save(root / "e_16bit.png")
    Image.new("RGB", (3, 5), (0, 0, 250)).save(root / "f_tiny.PNG")
    palette = Image.new("P", (24, 24), 1)
    palette.putpalette([0, 0, 0, 250, 250, 0] + [0] * 762)
    palette.save(root / "g_palette.png")
    Image.new("RGB", (64, 64), (90, 90, 90)).save(root / "h_truncated.jpg")
    raw = (root / "h_truncated.jpg").read_bytes()
    (root / "h_truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (root / "i_notes.txt").write_text("not an image")
    Image.new("RGB", (20, 20), (200, 100, 0)).save(root / "sub" / "j.JPEG", quality=95)


def test_folder_reader_converts_and_skips(tmp_path, caplog):
    _odd_images_tree(tmp_path / "images")
    with caplog.at_level(logging.WARNING, logger="nestgan.data"):
        ds = _load("folder", 16, tmp_path, data_dir=tmp_path / "images")
    assert len(ds) == 8 and ds.num_skipped == 2
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 files" in warnings[0] and "h_truncated.jpg" in warnings[0]
    mean = ds.images.reshape(8, 3, -1).mean(axis=2)  # (N, RGB)
    expected = [(10, 200, 30), (77, 77, 77), (255, 0, 0), (255, 255, 255), (128, 128, 128), (0, 0, 250),
                (250, 250, 0), (200, 100, 0)]
    assert np.abs(mean - np.array(expected)).max() < 6, mean.round()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nestgan.data"):
        again = _load("folder", 16, tmp_path, data_dir=tmp_path / "images")
    assert again.num_skipped == 2 and not caplog.records  # reported once, when preparing


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match=f"image folder not found: {tmp_path / 'nope'}"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images \(jpg/jpeg/png/bmp/webp\) found under .*empty"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"no readable images in .*broken \(1 files skipped, e\.g\. .*x\.jpg\)"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "broken")
    with pytest.raises(DataError, match="needs data_dir"):
        _load("folder", 16, tmp_path)
    assert not _leftover_staging(tmp_path)


def _zip_of_tree(root: Path, archive: Path, extra: dict[str, str | bytes] | None = None) -> None:
    """The files under root in a zip, in subfolders as they are; extra adds members by name."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(root).as_posix())
        for name, content in (extra or {}).items():
            out.writestr(name, content)


def test_folder_reader_reads_a_zip_like_the_folder(tmp_path, caplog):
    _odd_images_tree(tmp_path / "images")
    archive = tmp_path / "images.zip"
    # dataset_tool.py's labels file and a macOS resource fork: neither is counted as a skipped file
    _zip_of_tree(tmp_path / "images", archive, {"dataset.json": '{"labels": null}', "__MACOSX/._a_rgb.jpg": b"x"})
    with caplog.at_level(logging.WARNING, logger="nestgan.data"):
        zipped = _load("folder", 16, tmp_path, data_dir=archive)
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "images.zip" in warnings[0] and "h_truncated.jpg" in warnings[0]
    assert len(zipped) == 8 and zipped.num_skipped == 2  # the truncated jpg and the txt, as in the folder
    folder = _load("folder", 16, tmp_path, data_dir=tmp_path / "images")
    assert np.array_equal(zipped.images, folder.images)  # same images, same order, same preprocessing
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "images" / "sub" / "k_new.png")
    _zip_of_tree(tmp_path / "images", archive)
    assert len(_load("folder", 16, tmp_path, data_dir=archive)) == 9  # a changed zip is prepared again


def test_folder_zip_errors(tmp_path):
    corrupt = tmp_path / "corrupt.zip"
    _odd_images_tree(tmp_path / "images")
    _zip_of_tree(tmp_path / "images", corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:-100])  # the central directory at the end is cut off
    with pytest.raises(DataError, match=rf"{corrupt} is not a readable zip file \(.*\); check it with 'unzip -t'"):
        _load("folder", 16, tmp_path, data_dir=corrupt)
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(DataError, match="empty.zip is not a readable zip file"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "empty.zip")
    with zipfile.ZipFile(tmp_path / "texts.zip", "w") as out:
        out.writestr("notes/readme.txt", "x")
        out.writestr("dataset.json", "{}")
    with pytest.raises(DataError, match=r"no images \(jpg/jpeg/png/bmp/webp\) found in .*texts\.zip \(1 other files\)"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "texts.zip")
    with pytest.raises(DataError, match=f"zip file not found: {tmp_path / 'nope.zip'}"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "nope.zip")
    (tmp_path / "list.txt").write_text("a.png")
    with pytest.raises(DataError, match="list.txt is a file, not a folder of images or a .zip of them"):
        _load("folder", 16, tmp_path, data_dir=tmp_path / "list.txt")
    assert not _leftover_staging(tmp_path)


def test_missing_datasets_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match=rf"CelebA not found: no img_align_celeba/ in {tmp_path}.*mmlab"):
        _load("celeba", 64, tmp_path, data_dir=tmp_path)
    with pytest.raises(DataError, match=r"CIFAR-10 not found: no cifar-10-batches-py/ in .*download=True"):
        _load("cifar10", 32, tmp_path, data_dir=tmp_path)
    with pytest.raises(DataError, match="ImageNet 64x64 not found at"):
        _load("imagenet64", 64, tmp_path, data_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        _load("mnist", 32, tmp_path)
    with pytest.raises(ConfigError, match="unknown split"):
        _load("shapes", 32, tmp_path, split="training")
    with pytest.raises(ConfigError, match="resolution"):
        _load("shapes", 2, tmp_path)


# ------------------------------------------------------------------------------------------------- prepared cache


def _refuse(*args, **kwargs):
    raise AssertionError("decoded although a valid prepared cache exists")


def test_cache_reused_without_decoding(tmp_path, monkeypatch):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(5):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(root / f"{i}.png")
    first = _load("folder", 16, tmp_path, data_dir=root)
    shape_first = _load("shapes", 16, tmp_path, max_images=8)
    with monkeypatch.context() as patch:
        patch.setattr(files, "decode_image", _refuse)
        patch.setattr(shapes, "render_shapes", _refuse)
        again = _load("folder", 16, tmp_path, data_dir=root)
        assert again.identity == first.identity and np.array_equal(again.images, first.images)
        assert np.array_equal(_load("shapes", 16, tmp_path, max_images=8).images, shape_first.images)
        # Anything that changes the pixels changes the key: resolution, max_images, the files themselves.
        with pytest.raises(AssertionError, match="decoded although"):
            _load("folder", 8, tmp_path, data_dir=root)
        with pytest.raises(AssertionError, match="decoded although"):
            _load("folder", 16, tmp_path, data_dir=root, max_images=2)
        Image.new("RGB", (20, 20)).save(root / "5.png")
        with pytest.raises(AssertionError, match="decoded although"):
            _load("folder", 16, tmp_path, data_dir=root)
    assert not _leftover_staging(tmp_path)
    grown = _load("folder", 16, tmp_path, data_dir=root)
    assert len(grown) == 6 and grown.identity != first.identity
    assert _load("folder", 8, tmp_path, data_dir=root).identity != grown.identity


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta", "foreign"])
def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    ds = _load("shapes", 16, tmp_path, max_images=12)
    reference = np.array(ds.images)
    npy, meta = ds.directory / "images.npy", ds.directory / "meta.json"
    del ds
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "delete":
        npy.unlink()
    elif damage == "meta":
        meta.write_text("{not json")
    else:  # a cache of other data under this name: right size, wrong key
        meta.write_text(meta.read_text().replace('"max_images": 12', '"max_images": 13'))
    with monkeypatch.context() as patch:
        patch.setattr(shapes, "render_shapes", _refuse)
        with pytest.raises(AssertionError, match="decoded although"):  # the damaged cache was not trusted
            _load("shapes", 16, tmp_path, max_images=12)
    rebuilt = _load("shapes", 16, tmp_path, max_images=12)
    assert np.array_equal(rebuilt.images, reference)


def test_prepared_dataset_pickles_without_its_pixels(tmp_path):
    ds = _load("shapes", 32, tmp_path, max_images=50)
    payload = pickle.dumps(ds)
    assert len(payload) < ds.images.nbytes // 10
    clone = pickle.loads(payload)
    assert clone.identity == ds.identity and torch.equal(clone[7], ds[7])


# ------------------------------------------------------------------------------------------------- BatchIterator


class _NumberedImages:
    """Stand-in dataset: image i is filled with the value i (left half) and 255 - i (right half)."""

    def __init__(self, n: int, resolution: int = 4):
        self.images = np.empty((n, 3, resolution, resolution), np.uint8)
        self.images[..., : resolution // 2] = np.arange(n, dtype=np.uint8)[:, None, None, None]
        self.images[..., resolution // 2 :] = 255 - np.arange(n, dtype=np.uint8)[:, None, None, None]

    def __len__(self) -> int:
        return len(self.images)


def _indices_and_flips(batch: torch.Tensor) -> tuple[list[int], list[bool]]:
    pixels = ((batch + 1) * 127.5).round().to(torch.int64)
    left, right = pixels[:, 0, 0, 0], pixels[:, 0, 0, -1]
    flipped = left > right
    return torch.where(flipped, right, left).tolist(), flipped.tolist()


def test_batches_cover_each_epoch_once_in_range(tmp_path):
    data = _NumberedImages(40)
    batches = BatchIterator(data, batch_size=8, seed=3)
    epochs = [sum((_indices_and_flips(next(batches))[0] for _ in range(5)), []) for _ in range(2)]
    assert sorted(epochs[0]) == list(range(40)) and sorted(epochs[1]) == list(range(40))
    assert epochs[0] != epochs[1] and batches.state_dict() == {"epoch": 2, "position": 0}
    x = next(batches)
    assert x.dtype == torch.float32 and x.shape == (8, 3, 4, 4) and x.min() >= -1 and x.max() <= 1
    assert _indices_and_flips(next(BatchIterator(data, 8, seed=4)))[0] != epochs[0][:8]


def test_ranks_take_disjoint_slices():
    data, world = _NumberedImages(41), 3
    seen = []
    for rank in range(world):
        batches = BatchIterator(data, batch_size=13, seed=0, rank=rank, world_size=world)
        seen.append(_indices_and_flips(next(batches))[0])
        assert batches.state_dict() == {"epoch": 1, "position": 0}  # 41 // 3 = 13 images per rank and epoch
    assert len(set(sum(seen, []))) == 39


def test_xflip_flips_deterministically():
    data = _NumberedImages(64)
    flips = _indices_and_flips(next(BatchIterator(data, 64, seed=1, xflip=True)))[1]
    assert 10 < sum(flips) < 54
    assert flips == _indices_and_flips(next(BatchIterator(data, 64, seed=1, xflip=True)))[1]
    assert not any(_indices_and_flips(next(BatchIterator(data, 64, seed=1)))[1])


def test_resume_is_bit_identical(tmp_path):
    ds = _load("shapes", 8, tmp_path, max_images=37)
    straight = BatchIterator(ds, batch_size=8, seed=5, xflip=True)
    expected = [next(straight) for _ in range(14)]  # crosses three epoch boundaries
    interrupted = BatchIterator(ds, batch_size=8, seed=5, xflip=True)
    for _ in range(6):
        next(interrupted)
    state = interrupted.state_dict()
    resumed = BatchIterator(ds, batch_size=8, seed=5, xflip=True)
    resumed.load_state_dict(state)
    for want in expected[6:]:
        assert torch.equal(next(resumed), want)
    with pytest.raises(ConfigError, match="does not fit"):
        resumed.load_state_dict({"epoch": 0, "position": 37})
    assert measure_loader_throughput(ds, 8, 2) > 0


def test_trained_data_source_moves_only_what_a_flag_names():
    trained_on = {"name": "celeba", "data_dir": "/old/place", "split": "train", "max_images": 9000}
    assert trained_data_source(trained_on) == trained_on
    moved = trained_data_source(trained_on, data_dir="/new/place", split="test")
    assert moved == {**trained_on, "data_dir": "/new/place", "split": "test"}
    assert trained_on["data_dir"] == "/old/place"  # the checkpoint's own dict is left as it was
