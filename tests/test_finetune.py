"""The CelebA attribute subset (--attribute) a transfer usually targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nestgan.commands import train as train_gan
from nestgan.data import load_dataset
from nestgan.data.sources import celeba_plan
from nestgan.errors import ConfigError

# 16 px, two steps per tick.
TINY_TOML = """
resolution = 16
batch = 16
tick_kimg = 0.032
snap = 2
precision = "fp32"
augment = "color,translation"
r1_interval = 3
[data]
max_images = 256
[generator]
arch = "nest"
z_dim = 16
init_size = 4
block_size = 4
widths = [32, 16, 16]
depths = [1, 1, 1]
heads = [2, 1, 1]
[discriminator]
channel_base = 128
channel_max = 16
"""


@pytest.fixture(scope="module")
def tiny_flags(tmp_path_factory) -> list[str]:
    """Flags of a tiny run: its config file, a cache shared by the module's runs, no metrics, one thread."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.toml").write_text(TINY_TOML)
    return ["--config", str(root / "tiny.toml"), "--cache-dir", str(root / "cache"), "--metrics", "none",
            "--threads", "1"]


def run_cli(*args: str):
    return CliRunner().invoke(train_gan.main, list(args))


def fake_celeba(root: Path) -> Path:
    """Six 24x20 solid-colour images (image k has red = 40 k); 1-4 train, 5-6 valid; Eyeglasses on 2, 3 and 5."""
    (root / "img_align_celeba").mkdir(parents=True)
    for k in range(1, 7):
        Image.new("RGB", (20, 24), (40 * k, 0, 0)).save(root / "img_align_celeba" / f"{k:06d}.jpg", quality=100)
    (root / "list_eval_partition.txt").write_text("".join(f"{k:06d}.jpg {0 if k <= 4 else 1}\n" for k in range(1, 7)))
    glasses = {2, 3, 5}
    rows = "".join(f"{k:06d}.jpg -1 {' 1' if k in glasses else '-1'}  1\n" for k in range(1, 7))
    (root / "list_attr_celeba.txt").write_text(f"6\nBald Eyeglasses Smiling\n{rows}")
    return root


def reds(dataset) -> list[int]:
    return sorted(int(round(float(np.asarray(dataset.images[i][0]).mean()) / 40)) for i in range(len(dataset)))


def test_attribute_keeps_the_images_with_it_in_the_split_and_names_the_subset(tmp_path):
    data = fake_celeba(tmp_path / "celeba")
    cache = tmp_path / "cache"
    everything = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, progress=False)
    glasses = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="Eyeglasses", progress=False)
    without = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="-Eyeglasses", progress=False)
    assert (reds(everything), reds(glasses), reds(without)) == ([1, 2, 3, 4], [2, 3], [1, 4])
    assert reds(load_dataset("celeba", 8, data_dir=data, split="valid", cache_dir=cache, attribute="Eyeglasses",
                             progress=False)) == [5]
    # Every key of the subset names it: prepared cache, FID reference (pixels_id), run directory.
    assert everything.pixels_id.startswith("celeba-8-px") and glasses.pixels_id.startswith("celeba-Eyeglasses-8-px")
    assert without.pixels_id.startswith("celeba-not-Eyeglasses-8-px")
    assert glasses.directory.name.startswith("celeba-Eyeglasses-8-") and glasses.directory != everything.directory

    with pytest.raises(ConfigError, match=r"unknown CelebA attribute 'Eyeglass': .* e\.g\. Eyeglasses"):
        load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="Eyeglass")
    with pytest.raises(ConfigError, match="dataset 'shapes' has none"):
        load_dataset("shapes", 8, cache_dir=cache, attribute="Eyeglasses")


def test_training_on_an_attribute_subset_names_it(tiny_flags, tmp_path):
    data = fake_celeba(tmp_path / "celeba")
    args = [*tiny_flags, "--data", "celeba", "--data-dir", str(data), "--outdir", str(tmp_path / "runs"), "--kimg", "0.016"]
    bad = run_cli(*args, "--attribute", "Glasses")
    assert bad.exit_code == 2 and "unknown CelebA attribute 'Glasses'" in bad.output and bad.output.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    result = run_cli(*args, "--attribute", "Eyeglasses")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "00000-celeba-Eyeglasses-nest-16"
    assert json.loads((run / "config.json").read_text())["data"]["attribute"] == "Eyeglasses"
    assert "data       celeba-Eyeglasses (2 images" in (run / "log.txt").read_text()


def test_eyeglasses_subset_of_the_shared_celeba_sample(shared_data, tmp_path):
    """The count docs/usage.md gives: the shared sample's train split holds 674 images with Eyeglasses."""
    plan = celeba_plan(shared_data / "celeba", "train", 64, False, tmp_path, attribute="Eyeglasses")
    assert plan.available == 674 and plan.attribute == "Eyeglasses"
