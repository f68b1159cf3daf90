"""The explorer's parts without a browser: what it draws for seeds and walks, the model card, a run directory read
while it trains, and the command's refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import nestgan
from nestgan.errors import ConfigError, DataError
from nestgan.checkpoint import read_generator
from nestgan.explore import cli
from nestgan.explore import model as explore_model
from nestgan.explore.model import (Generators, gif_bytes, interpolation, project_upload, run_fids,
                                   seed_grid, walk_from_projection)
from nestgan.explore.run_view import read_run
from nestgan.images import as_pixels, image_grid

from conftest import same_to_rounding

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "celeba64-nest-cpu.safetensors"


@pytest.fixture(scope="module")
def generators() -> Generators:
    return Generators("cpu")


def test_a_generator_is_loaded_once_per_file_and_weights(generators, make_tiny_checkpoint, tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    assert generators.get(ckpt) is generators.get(str(ckpt))
    assert generators.get(ckpt, ema=False) is not generators.get(ckpt)


def test_the_grid_for_seeds_is_generates_grid(generators):
    """The page shows what generate.py writes for the same seeds: the same pixels in the same grid."""
    G = generators.get(SHIPPED)
    assert np.array_equal(seed_grid(G, [5, 0, 7]), image_grid(as_pixels(nestgan.sample(G, [5, 0, 7]))))
    psi = seed_grid(G, [5], trunc_resample=0.7)
    assert np.array_equal(psi, as_pixels(nestgan.sample(G, [5], trunc_resample=0.7))[0])
    with pytest.raises(ConfigError, match="give 1 to 256 seeds"):
        seed_grid(G, list(range(300)))


def test_an_interpolation_runs_from_one_seed_to_the_other_and_its_gif_goes_there_and_back(generators):
    G = generators.get(SHIPPED)
    frames = interpolation(G, 3, 9, steps=5)
    ends = as_pixels(nestgan.sample(G, [3, 9]))
    assert frames.shape == (5, 64, 64, 3)
    assert same_to_rounding(frames[0], ends[0]) and same_to_rounding(frames[-1], ends[1])  # 5 images drawn, not 2
    gif = Image.open(io.BytesIO(gif_bytes(frames)))
    assert gif.n_frames == 8  # 5 there, 3 back
    with pytest.raises(ConfigError, match="steps must be 2 to 256"):
        interpolation(G, 3, 9, steps=1)


def test_model_card_of_an_export_and_of_a_training_checkpoint(generators, make_tiny_checkpoint, tmp_path, monkeypatch):
    card = generators.card(SHIPPED)
    assert (card.arch, card.resolution) == ("nest", 64)
    assert card.parameters == sum(p.numel() for p in generators.get(SHIPPED).parameters())
    (tmp_path / "run").mkdir()
    ckpt = make_tiny_checkpoint(tmp_path / "run" / "network-snapshot-000001.000.pt")
    lines = [{"results": {"fid1k": 80.5}, "kimg": 0.5}, {"results": {"fid1k": 61.25}, "kimg": 1.0}]
    (tmp_path / "run" / "metric-fid1k.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines) + '{"results": {"fid1k": 1')  # a line cut short
    reads = []
    monkeypatch.setattr(explore_model, "read_generator", lambda *a, **k: reads.append(a) or read_generator(*a, **k))
    generators.get(ckpt)
    card = generators.card(ckpt)
    assert len(reads) == 1  # the card comes from what was read at load time, not from a second read of the weights
    assert (card.kimg, card.train_minutes, card.best) == (1.0, 12.5 / 60, "fid1k 61.2 at 1 kimg")
    assert "| best FID | fid1k 61.2 at 1 kimg |" in card.markdown()
    assert run_fids(tmp_path / "nothing here") == {}


def test_a_walk_from_a_projection_starts_at_it_and_ends_at_the_seed(generators, tmp_path):
    G = generators.get(SHIPPED)
    face = tmp_path / "face.png"
    Image.fromarray(as_pixels(nestgan.sample(G, [1000]))[0]).save(face)
    target, result = project_upload(G, str(face), steps=8)
    assert target.shape == (3, 64, 64)
    frames = walk_from_projection(G, result, seed=4, steps=4)
    assert np.array_equal(frames[0], result.image.permute(1, 2, 0).numpy())
    assert np.array_equal(frames[-1], as_pixels(nestgan.sample(G, [4]))[0])
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(DataError, match="not an image PIL can read"):
        project_upload(G, str(tmp_path / "notes.txt"), steps=8)


def grid_png(path: Path, value: int) -> None:
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(path)


def test_a_run_is_read_as_it_trains(tmp_path):
    run = tmp_path / "00000-celeba-nest-64"
    run.mkdir()
    with pytest.raises(DataError, match="no snapshots: it is not a run directory"):
        read_run(run)
    (run / "config.json").write_text("{}")
    with pytest.raises(DataError, match="no snapshot yet"):
        read_run(run)
    with pytest.raises(DataError, match="run directory not found"):
        read_run(tmp_path / "elsewhere")
    for kimg, value in (("000002.000", 20), ("000001.000", 10)):
        grid_png(run / f"fakes{kimg}.png", value)
    grid_png(run / "fakes_init.png", 0)
    (run / "stats.jsonl").write_text('{"kimg": 1.0, "loss_g": 0.7, "loss_d": 1.3}\n{"kimg": 2.0, "loss_g": 0.8, "lo')
    (run / "metric-fid1k.jsonl").write_text('{"kimg": 2.0, "results": {"fid1k": 70.0}}\n')
    (run / "metric-kid1k.jsonl").write_text('{"kimg": 2.0, "results": {"kid1k_mean": 0.05, "kid1k_std": 0.01}}\n')
    view = read_run(run)
    assert [(kimg, path.name) for kimg, path in view.grids] == [(1.0, "fakes000001.000.png"),
                                                               (2.0, "fakes000002.000.png")]
    assert view.metrics == {"fid1k": [(2.0, 70.0)], "kid1k": [(2.0, 0.05)]}
    assert view.losses == {"loss_g": [(1.0, 0.7)], "loss_d": [(1.0, 1.3)]}  # the line being written is skipped


def run_cli(*args: str):
    return CliRunner().invoke(cli.main, [*args, "--no-browser"])


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port must be 1 to 65535, got 70000"),
    (["--run", "no/such/run"], "--run no/such/run: no such directory"),
    (["--ckpt", "no/such.pt"], "no/such.pt"),
])
def test_the_command_refuses_bad_flags_in_one_line_before_it_serves(args, message):
    result = run_cli(*args)
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_nestgan_needs_no_gradio():
    """import nestgan, the explorer's model and run view, and the training commands load without Gradio."""
    import subprocess
    import sys

    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('gradio', 'pandas'): raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "import nestgan, nestgan.explore, nestgan.explore.model, nestgan.explore.run_view\n"
            "import nestgan.commands.train, nestgan.commands.generate, nestgan.commands.project\n"
            "from click.testing import CliRunner\n"
            "r = CliRunner().invoke(nestgan.explore.main, ['--no-browser'])\n"
            "print(r.exit_code, r.output.strip())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("2 error: the explorer needs Gradio: pip install 'nestgan[explore]'")
