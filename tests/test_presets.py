"""Presets: shipped inside the package, listed and loaded by name, and NESTGAN_CONFIGS points elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nestgan
from nestgan.errors import ConfigError
from nestgan.networks import build_discriminator
from nestgan.presets import ENV_VAR, dataset_preset, load_preset, preset_names

PACKAGE_CONFIGS = Path(nestgan.__file__).resolve().parent / "configs"


def test_shipped_presets_come_from_the_package(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert preset_names("generators") == sorted(p.stem for p in (PACKAGE_CONFIGS / "generators").glob("*.toml"))
    assert {"nest-32", "nest-64", "conv-32", "dcgan-64"} <= set(preset_names("generators"))
    assert load_preset("generators", "nest-32")["arch"] == "nest"
    preset, path = dataset_preset("shapes")
    assert preset["batch"] == 16 and Path(path) == PACKAGE_CONFIGS / "shapes.toml"


def test_shipped_discriminator_presets_load_and_build_at_their_resolution(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    names = preset_names("discriminators")
    assert names == sorted(p.stem for p in (PACKAGE_CONFIGS / "discriminators").glob("*.toml"))
    assert names == ["nest-d-128", "nest-d-32", "nest-d-64"]
    for name in names:
        preset = load_preset("discriminators", name)
        assert preset.pop("arch") == "nest"
        resolution = int(name.rsplit("-", 1)[1])
        assert build_discriminator("nest", resolution, **preset)(torch.zeros(2, 3, resolution, resolution)).shape == (2,)


def test_unknown_preset_lists_the_known_ones(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match=r"unknown generators preset 'nest-33' \(known: conv-128, .*nest-32"):
        load_preset("generators", "nest-33")
    with pytest.raises(ConfigError, match=r"unknown discriminators preset 'nest-d-48' \(known: nest-d-128, nest-d-32"):
        load_preset("discriminators", "nest-d-48")


def test_env_var_points_at_another_folder_of_presets(tmp_path, monkeypatch):
    (tmp_path / "generators").mkdir()
    (tmp_path / "generators" / "mine.toml").write_text('arch = "conv"\n')
    (tmp_path / "shapes.toml").write_text("batch = 8\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert preset_names("generators") == ["mine"]
    assert load_preset("generators", "mine") == {"arch": "conv"}
    assert dataset_preset("shapes") == ({"batch": 8}, str(tmp_path / "shapes.toml"))
    assert dataset_preset("celeba") == ({}, str(tmp_path / "celeba.toml"))  # a dataset without a preset: defaults
