"""nestgan.step_profile: a training step split into the phases training_step names."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from nestgan.config import TrainConfig
from nestgan.step_profile import PHASES, main, profile_steps

TINY = {"resolution": 16, "batch": 4, "kimg": 1.0, "precision": "fp32", "r1_interval": 2,
        "generator": {"arch": "nest", "z_dim": 16, "init_size": 4, "block_size": 4, "widths": [16, 8, 8],
                      "depths": [1, 1, 1], "heads": [2, 1, 1]},
        "discriminator": {"channel_base": 64, "channel_max": 16}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shared_fakes", [False, True])
def test_every_phase_is_timed_and_they_add_up_to_the_step(shared_fakes):
    cfg = TrainConfig.from_sources({}, {}, {**TINY, "shared_fakes": shared_fakes})
    result = profile_steps(cfg, steps=2, warmup=1)
    phases = result["phases_ms"]
    assert set(phases) == {*PHASES, "other"}
    assert all(phases[p] > 0 for p in PHASES)  # R1 and EMA included: step 0 of 2 is an R1 step
    assert sum(phases.values()) == pytest.approx(result["step_ms"], rel=0.02)
    assert result["images_per_s"] == pytest.approx(4 / result["step_ms"] * 1e3)


def test_command_prints_one_column_pair_per_precision(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('resolution = 16\nbatch = 4\nr1_interval = 2\n[generator]\narch = "nest"\nz_dim = 16\n'
                      'init_size = 4\nblock_size = 4\nwidths = [16, 8, 8]\ndepths = [1, 1, 1]\nheads = [2, 1, 1]\n')
    result = CliRunner().invoke(main, ["--config", str(config), "--precision", "fp32,bf16", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert "| phase | fp32 ms/step | share | bf16 ms/step | share |" in result.output
    assert result.output.count("| G_forward |") == 1 and "img/s" in result.output
    bad = CliRunner().invoke(main, ["--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 2 and "config file not found" in bad.output
