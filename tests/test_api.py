"""The Python API (import nestgan): loading, building and sampling generators, metrics on images, torch.hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nestgan
from nestgan.errors import CheckpointError, ConfigError, DataError
from nestgan.metrics.fidelity import evaluate_metrics, metric_stream_batches

from conftest import TINY_GENERATOR
from test_metrics import PIXELS, TinyGenerator, shapes

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_tiny_checkpoint) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("api") / "network-snapshot-000001.pt")


def test_import_nestgan_does_not_import_torch():
    """`import nestgan` stays cheap; the API loads on first use."""
    code = "import sys, nestgan; assert 'torch' not in sys.modules; nestgan.sample; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_load_generator_gives_g_ema_in_eval_mode_and_g_on_request(ckpt, one_thread):
    G = nestgan.load_generator(ckpt)
    assert not G.training and (G.z_dim, G.resolution) == (TINY_GENERATOR["z_dim"], 16)
    state = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(v, state["G_ema"][k]) for k, v in G.state_dict().items())
    raw = nestgan.load_generator(ckpt, ema=False)
    assert all(torch.equal(v, state["G"][k]) for k, v in raw.state_dict().items())
    with pytest.raises(CheckpointError, match="looks like a text file"):
        nestgan.load_generator(Path(__file__))


def test_sample_is_deterministic_per_seed_and_independent_of_the_batch(ckpt, one_thread):
    """A seed gives the same image whatever the batch and the other seeds; uint8 is the quantised float output."""
    G = nestgan.load_generator(ckpt)
    images = nestgan.sample(G, [3, 1, 4, 1, 5], batch=2)
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16) and images.device.type == "cpu"
    assert torch.equal(images[1], images[3]) and not torch.equal(images[0], images[1])
    assert torch.equal(nestgan.sample(G, [4]), images[2:3])
    floats = nestgan.sample(G, [3, 1], quantize=False)
    assert floats.dtype == torch.float32 and -1 <= floats.min() < floats.max() <= 1
    assert torch.equal(nestgan.metrics.quantize_images(floats), images[:2])
    z = nestgan.seed_latent(3, G.z_dim)
    with torch.no_grad():
        assert torch.allclose(G(z[None]), floats[:1], atol=1e-6)
    bounded = nestgan.seed_latent(3, G.z_dim, trunc_resample=0.5)
    assert bounded.abs().max() <= 0.5 and not torch.equal(nestgan.sample(G, [3], trunc_resample=0.5), images[:1])
    with pytest.raises(ConfigError, match="at least one seed"):
        nestgan.sample(G, [])


def test_sample_matches_the_pngs_of_generate(ckpt, tmp_path, one_thread):
    """The API and generate.py draw the same z for a seed and write the same pixels."""
    from click.testing import CliRunner

    from nestgan.commands import generate

    result = CliRunner().invoke(generate.main, ["--ckpt", str(ckpt), "--seeds", "7,9", "--outdir",
                                                str(tmp_path / "out"), "--no-grid", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    images = nestgan.sample(nestgan.load_generator(ckpt), [7, 9])
    for seed, image in zip((7, 9), images):
        png = np.asarray(Image.open(tmp_path / "out" / f"seed{seed:04d}.png"))
        assert np.array_equal(png, image.permute(1, 2, 0).numpy())


def test_sample_runs_in_eval_mode_and_restores_training_mode(one_thread):
    """A freshly built generator with BatchNorm samples from its running statistics and stays in training mode."""
    G = nestgan.build_generator("dcgan-32", z_dim=16)
    assert G.training and G.z_dim == 16 and G.resolution == 32
    one = nestgan.sample(G, [0])
    assert G.training
    assert torch.equal(nestgan.sample(G, [0, 1])[:1], one)  # batch statistics would make it depend on seed 1


def test_build_generator_from_every_preset_names_unknown_ones():
    from nestgan.presets import preset_names

    names = [name for name in preset_names("generators") if not name.startswith("transgan")]  # 300 MB each
    assert {"nest-32", "nest-64", "conv-32", "dcgan-64"} <= set(names)
    for name in names:
        G = nestgan.build_generator(name)
        assert G.resolution == int(name.split("-")[1])
    with pytest.raises(ConfigError, match="unknown generators preset 'nest-16'"):
        nestgan.build_generator("nest-16")
    with pytest.raises(ConfigError, match="unknown option"):
        nestgan.build_generator("nest-32", widths_typo=[1])


def test_compute_metrics_on_a_tensor_a_folder_and_a_generator_agree(tmp_path, one_thread):
    """The same 20 images given as a generator, as a uint8 tensor and as a folder of PNGs give the same values."""
    G, cache = TinyGenerator(), tmp_path / "cache"
    common = dict(data="shapes", max_images=40, cache_dir=tmp_path / "data", feature_extractor=PIXELS, seed=5)
    from_generator = nestgan.compute_metrics(G, ["fid20", "kid20"], **common)
    with torch.no_grad():
        images = torch.cat(list(metric_stream_batches(G, 20, 64, torch.device("cpu"), seed=5)))
    from_tensor = nestgan.compute_metrics(images, "fid20,kid20", **common)
    assert from_tensor == from_generator and from_tensor["fid20"] > 0
    direct = evaluate_metrics(images, shapes(tmp_path), ["fid20"], "cpu", cache_dir=cache, feature_extractor=PIXELS)
    assert direct.values["fid20"] == from_tensor["fid20"]

    folder = tmp_path / "samples"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"seed{i:04d}.png")
    assert nestgan.compute_metrics(folder, ["fid20", "kid20"], **common) == from_tensor

    with pytest.raises(DataError, match="fid40 needs 40 generated images, 20 given"):
        nestgan.compute_metrics(images, ["fid40"], **common)
    with pytest.raises(ConfigError, match=r"uint8 \(N, 3, R, R\)"):
        nestgan.compute_metrics(images.float(), ["fid20"], **common)
    with pytest.raises(DataError, match="image folder not found"):
        nestgan.compute_metrics(tmp_path / "nowhere", ["fid20"], **common)


def test_torch_hub_loads_the_generator_of_a_checkpoint(ckpt, one_thread):
    G = torch.hub.load(str(REPO), "generator", source="local", ckpt=str(ckpt), trust_repo=True)
    assert not G.training and torch.equal(nestgan.sample(G, [0]), nestgan.sample(nestgan.load_generator(ckpt), [0]))
