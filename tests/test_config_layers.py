"""The config layering rule, one for every component: a table named for a component ([generator], [discriminator])
applies while that component stays the same (its family g or d and, for a table made for one size, the resolution);
a higher table of bare keys overrides those keys of it, one naming a preset or a whole arch replaces it."""

from __future__ import annotations

import pytest

from nestgan.config import TrainConfig, load_config

SLIM_NEST_32 = {"arch": "nest", "z_dim": 32, "init_size": 4, "block_size": 4, "widths": [32, 16, 16],
                "depths": [1, 1, 1], "heads": [2, 1, 1], "out_patch": 2}  # a whole 32 px generator
SLIM_D = {"channel_base": 256, "channel_max": 32}


def merged(preset: dict, flags: dict) -> TrainConfig:
    return TrainConfig.from_sources(preset, {}, {"device": "cpu", **flags})


@pytest.mark.parametrize("table_key, family_key, same, other", [
    ("generator", "g", "nest", "conv"),
    ("discriminator", "d", "resnet", "dcgan"),
])
def test_a_component_table_applies_while_its_component_stays_the_same(table_key, family_key, same, other):
    table = {"generator": {"upsample": "bilinear"}, "discriminator": SLIM_D}[table_key]
    preset = {family_key: same, table_key: table}
    kept = getattr(merged(preset, {family_key: same}), table_key)  # the same component named again: kept
    assert all(kept[k] == v for k, v in table.items())
    dropped = getattr(merged(preset, {family_key: other}), table_key)  # another one: the table was not made for it
    assert not any(dropped.get(k) == v for k, v in table.items())
    key, value = next(iter(table.items()))
    over = {"generator": {"mlp_ratio": 2.0}, "discriminator": {"channel_max": 64}}[table_key]
    layered = getattr(merged(preset, {family_key: same, table_key: over}), table_key)  # bare keys: key by key
    assert layered[key] == value and all(layered[k] == v for k, v in over.items())


def test_a_table_made_for_one_size_applies_while_the_resolution_stays_the_same():
    preset = {"resolution": 32, "generator": SLIM_NEST_32, "discriminator": SLIM_D}
    assert merged(preset, {"resolution": 32}).generator["widths"] == [32, 16, 16]
    cfg = merged(preset, {"resolution": 64})  # the whole 32 px generator does not fit: preset nest-64 instead
    assert cfg.generator["arch"] == "nest" and cfg.generator["widths"] != [32, 16, 16]
    assert cfg.discriminator == SLIM_D  # overrides of a size-free component follow the resolution


def test_overrides_of_the_stock_preset_follow_a_resolution_change():
    cfg = merged({"generator": {"upsample": "bilinear"}}, {"resolution": 64})
    assert cfg.generator["upsample"] == "bilinear" and cfg.resolution == 64


def test_discriminator_presets_follow_the_same_rule():
    """d = nest resolves its table over preset nest-d-<resolution> after layering; the layering itself is the rule
    above: a table naming a preset is made for one size, and overrides follow d and the resolution."""
    named = {"d": "nest", "resolution": 64, "discriminator": {"preset": "nest-d-64", "depths": [1, 1, 1]}}
    assert merged(named, {"d": "nest"}).discriminator["depths"] == [1, 1, 1]  # same d, same size: kept
    assert merged(named, {"d": "resnet"}).discriminator == {}  # another d: dropped
    at_32 = merged(named, {"resolution": 32}).discriminator  # another size: dropped, preset nest-d-32 instead
    assert at_32["patch_size"] == 2 and at_32["depths"] != [1, 1, 1]
    overrides = {"d": "nest", "discriminator": {"mlp_ratio": 2.0}}
    cfg = merged(overrides, {"resolution": 64})  # overrides of the stock preset follow the resolution
    assert cfg.discriminator["mlp_ratio"] == 2.0 and cfg.discriminator["patch_size"] == 4
    assert any(line.startswith("discriminator preset nest-d-64 applied: d is nest") for line in cfg.sources)


def test_a_table_naming_a_preset_replaces_the_one_below():
    preset = {"resolution": 64, "generator": {"upsample": "bilinear", "widths": [256, 128, 32]}}
    cfg = merged(preset, {"generator": {"preset": "nest-64", "mlp_ratio": 2.0}})
    assert cfg.generator["widths"] == [384, 192, 96] and cfg.generator.get("upsample") != "bilinear"
    assert cfg.generator["mlp_ratio"] == 2.0


@pytest.mark.parametrize("table_text, widths, mlp_ratio", [
    ("mlp_ratio = 4.0", [256, 128, 32], 4.0),  # bare keys: the rest of the CPU recipe's generator stays
    ('preset = "nest-64"', [384, 192, 96], 4.0),  # a preset: the stock generator
])
def test_a_config_files_generator_table_over_the_cpu_recipe(tmp_path, table_text, widths, mlp_ratio):
    """What a user's --config [generator] does to the celeba preset's [cpu.generator] on a CPU."""
    file = tmp_path / "mine.toml"
    file.write_text(f"[generator]\n{table_text}\n")
    cfg = load_config({"data": {"name": "celeba"}}, file, cpu_recipe=True)
    assert cfg.generator["widths"] == widths and cfg.generator["mlp_ratio"] == mlp_ratio
    assert cfg.generator["deaggregation"] == (["linear", "conv"] if widths == [256, 128, 32] else "conv")
