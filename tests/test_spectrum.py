"""nestgan.spectrum: power spectrum and step profile on known patterns, and the command end to end."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from nestgan.errors import ConfigError

from nestgan.spectrum import block_seam_ratio, main, pair_ratio, power_spectrum, seam_ratio, step_profile


def test_power_spectrum_peaks_at_the_pattern_frequency():
    columns = torch.arange(32.0)
    stripes = torch.cos(2 * math.pi * 8 * columns / 32).expand(2, 3, 32, 32)  # 8 cycles per image along rows
    power = power_spectrum(stripes)
    assert power.shape == (17,)
    assert power[1:].argmax() + 1 == 8  # (power[0] is the columns' constant: the stripes are vertical)
    assert power[8] > 1000 * (power[1:].sum() - power[8])


def test_uint8_and_float_images_give_the_same_spectrum():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(power_spectrum(images), power_spectrum(images.float() / 127.5 - 1))


def test_step_profile_finds_a_texture_locked_to_the_grid():
    row = torch.tensor([1.0, -1.0, -1.0, 1.0]).repeat(4)  # period 4: big steps at i mod 4 = 0 and 2, none at 1 and 3
    images = (row[None, :] * torch.ones(16, 1)).expand(2, 3, 16, 16)  # columns constant: vertical steps are 0
    profile = step_profile(images, period=4)
    assert profile[0] == profile[2] == 1.0  # (2 horizontally + 0 vertically) / 2
    assert profile[1] == profile[3] == 0.0
    smooth = torch.linspace(-1, 1, 16).expand(2, 3, 16, 16)
    assert torch.allclose(step_profile(smooth, 4), step_profile(smooth, 4).mean().expand(4))


def test_seam_ratio_sees_blocks_that_meet_with_a_step_and_not_a_smooth_image():
    blocks = torch.arange(4.0).repeat_interleave(8) / 4  # a 32-px row of four 8-px blocks, a step at each border
    seamed = (blocks[None, :] + blocks[:, None]).expand(2, 3, 32, 32) + 0.01 * torch.randn(2, 3, 32, 32)
    smooth = torch.linspace(-1, 1, 32).expand(2, 3, 32, 32) + 0.01 * torch.randn(2, 3, 32, 32)
    assert seam_ratio(seamed, period=8) > 5
    assert 0.8 < seam_ratio(smooth, period=8) < 1.25
    assert block_seam_ratio(seamed, period=8) > 5
    assert 0.8 < block_seam_ratio(smooth, period=8) < 1.25


def test_a_2px_upsampling_texture_raises_the_seam_ratio_not_the_block_seam_ratio():
    noise = torch.rand(4, 3, 16, 16) * 2 - 1
    upsampled = noise.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # (4, 3, 32, 32): 2x2 pixel pairs
    textured = upsampled + 0.02 * torch.randn(4, 3, 32, 32)
    assert pair_ratio(textured) > 5 and 0.8 < pair_ratio(torch.rand(4, 3, 32, 32)) < 1.25
    assert seam_ratio(textured, period=8) > 1.5  # the border step (odd) over a median taken across both phases
    assert 0.8 < block_seam_ratio(textured, period=8) < 1.25
    blocks = torch.arange(4.0).repeat_interleave(8) * 2  # and with a step at every 8-px border on top
    assert block_seam_ratio(textured + (blocks[None, :] + blocks[:, None]), period=8) > 1.5
    with pytest.raises(ConfigError, match="even grid period"):
        block_seam_ratio(textured, period=5)


@pytest.fixture
def checkpoint(tmp_path, make_tiny_checkpoint):
    data = {"name": "shapes", "max_images": 24, "cache_dir": str(tmp_path / "cache")}
    return make_tiny_checkpoint(tmp_path / "run" / "network-snapshot-000001.pt", data)


def test_cli_prints_one_ratio_per_frequency_and_a_step_row_per_image_set(checkpoint):
    result = CliRunner().invoke(main, ["--ckpt", str(checkpoint), "--ckpt", str(checkpoint), "--n", "24",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    frequency_rows = [line for line in lines if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert [int(row.split("|")[1]) for row in frequency_rows] == list(range(1, 9))  # 16 px: 1 .. 8 cycles
    ratios = [float(v) for v in frequency_rows[0].split("|")[3:5]]
    assert ratios[0] == ratios[1] > 0  # the same checkpoint twice: the same images
    assert sum(line.startswith("| real |") for line in lines) == 2  # a step row and a seam row
    assert sum(line.startswith("| run 1.0 kimg |") for line in lines) == 4  # a step row and a seam row per checkpoint
    seam_header = next(line for line in lines if line.startswith("| images | seam ratio"))
    assert seam_header.endswith("| block seam ratio | pair ratio |")  # the default period, 4, is even
    assert "Seam ratio" in result.output
    assert "24 generated, 24 real" in result.output


@pytest.mark.parametrize("args, message", [
    (["--ckpt", "{tmp}/missing.pt"], "missing.pt"),
    (["--ckpt", "{ckpt}", "--period", "1"], "--period"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in args]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_data_dir_finds_the_reals_of_a_checkpoint_that_keeps_no_path(tmp_path, make_tiny_checkpoint):
    """An export keeps its data's name, not where it lives: --data-dir says where, as evaluate.py's does."""
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(8):
        pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=rng).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    data = {"name": "folder", "cache_dir": str(tmp_path / "cache")}
    ckpt = make_tiny_checkpoint(tmp_path / "run" / "network-snapshot-000001.pt", data)
    args = ["--ckpt", str(ckpt), "--n", "8", "--period", "4", "--device", "cpu"]
    without = CliRunner().invoke(main, args)
    assert without.exit_code == 2 and "Traceback" not in without.output
    found = CliRunner().invoke(main, [*args, "--data-dir", str(folder)])
    assert found.exit_code == 0, found.output
    assert "8 real" in found.output
