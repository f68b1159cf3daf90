"""The shipped CelebA-64 generator (pretrained/) loads from the repository and draws distinct 64 px faces."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

import nestgan
from nestgan.commands import generate

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "celeba64-nest-cpu.safetensors"


def test_shipped_generator_is_small_and_samples_distinct_images():
    assert SHIPPED.stat().st_size <= 15 * 2**20  # the size promised for a weights file in the repository
    G = nestgan.load_generator(SHIPPED)
    images = nestgan.sample(G, seeds=range(4))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    flat = images.flatten(1).float()
    assert (flat.std(dim=1) > 20).all()  # not a flat colour: a trained generator draws structure
    assert torch.cdist(flat, flat)[~torch.eye(4, dtype=torch.bool)].min() > 100  # four seeds, four images


def test_generate_cli_reads_the_shipped_file(tmp_path):
    result = CliRunner().invoke(generate.main, ["--ckpt", str(SHIPPED), "--seeds", "0-1", "--outdir",
                                                str(tmp_path / "faces")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["seed0000.png", "seed0001.png"]
    assert (tmp_path / "faces-grid.png").is_file()
