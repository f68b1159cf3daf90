"""sample_bn of the BatchNorm generators (dcgan, conv): sampling with running or with the batch's statistics."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nestgan.api import sample, synthesize
from nestgan.checkpoint import read_generator, save_checkpoint
from nestgan.config import load_config
from nestgan.metrics.fidelity import metric_stream_batches
from nestgan.networks import generator_from_config, generator_preset
from nestgan.networks.conv import BatchStatNorm2d

from test_train_cli import dry_run, run_cli  # noqa: E402  (pytest puts tests/ on sys.path)

REPO = Path(__file__).resolve().parent.parent
SMALL = {  # 16 px, a few thousand parameters
    "dcgan": {"arch": "dcgan", "z_dim": 8, "resolution": 16, "ngf": 4},
    "conv": {"arch": "conv", "z_dim": 8, "resolution": 16, "channel_base": 16, "channel_min": 4},
}


def trained_pair(arch: str) -> tuple[nn.Module, nn.Module]:
    """The same weights sampling with running and with batch statistics, in eval mode; a few train-mode forwards
    first, so that the running statistics are the data's and not BatchNorm's initial ones."""
    running = generator_from_config(SMALL[arch])
    for _ in range(3):
        running(torch.randn(8, 8) * 2 + 1)
    batch = generator_from_config({**SMALL[arch], "sample_bn": "batch"})
    batch.load_state_dict(running.state_dict())  # strict: the same parameters and buffers
    return running.eval(), batch.eval()


def manual_batch_norm(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    """A forward hook replacing a BatchNorm's output by the normalisation with its input's biased batch statistics."""
    x = inputs[0]
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + module.eps) * module.weight[:, None, None] + module.bias[:, None, None]


@pytest.mark.parametrize("arch", SMALL)
@torch.no_grad()
def test_batch_mode_samples_with_the_batch_statistics(arch):
    running, batch = trained_pair(arch)
    z = torch.randn(6, 8)
    out = batch(z)
    assert not torch.allclose(out, running(z), atol=1e-3)  # the running statistics are not the batch's
    train_mode = copy.deepcopy(running).train()(z)  # how the PyTorch DCGAN example samples
    torch.testing.assert_close(out, train_mode, rtol=0, atol=1e-6)
    for module in running.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(manual_batch_norm)
    torch.testing.assert_close(out, running(z), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", SMALL)
@torch.no_grad()
def test_eval_forward_in_batch_mode_leaves_the_running_statistics(arch):
    _, batch = trained_pair(arch)
    before = {name: b.clone() for name, b in batch.named_buffers()}
    batch(torch.randn(6, 8))
    assert all(torch.equal(b, before[name]) for name, b in batch.named_buffers())
    batch.train()(torch.randn(6, 8))  # training still tracks them, for a generator switched back to running
    assert not all(torch.equal(b, before[name]) for name, b in batch.named_buffers())


@pytest.mark.parametrize("preset", ["dcgan-64", "conv-64"])
@torch.no_grad()
def test_default_samples_with_running_statistics_as_before(preset):
    """The presets name no sample_bn, so configs and checkpoints stay as they were; the default builds plain
    nn.BatchNorm2d with the same weights from the same seed, and an image does not depend on its batch."""
    config = generator_preset(preset)
    assert "sample_bn" not in config
    torch.manual_seed(1)
    default = generator_from_config(config).eval()
    torch.manual_seed(1)
    explicit = generator_from_config({**config, "sample_bn": "running"}).eval()
    norms = [m for m in default.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    state = explicit.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in default.state_dict().items())
    z = torch.randn(4, config["z_dim"])
    # to float rounding: oneDNN may pick another conv kernel for another batch size (seen on AMD EPYC); batch
    # statistics would move the images by far more (the test above)
    torch.testing.assert_close(default(z)[:2], default(z[:2]), rtol=1e-5, atol=1e-6)


def test_sampling_paths_depend_on_the_batch_in_batch_mode(tmp_path):
    """A checkpoint of a batch-mode generator loads as one, and generate.py, the API and the metrics' stream then
    give images that depend on the sampling batch; a running-mode generator's do not."""
    weights = trained_pair("dcgan")[0].state_dict()
    for sample_bn in ("running", "batch"):
        config = {**SMALL["dcgan"], "sample_bn": sample_bn}
        path = tmp_path / f"{sample_bn}.pt"
        save_checkpoint(path, {"config": {"generator": config, "resolution": 16}, "G": weights, "G_ema": weights})
        G, _, _ = read_generator(path)
        assert any(isinstance(m, BatchStatNorm2d) for m in G.modules()) == (sample_bn == "batch")
        z = torch.randn(4, 8)
        with torch.no_grad():
            pairs = [
                (sample(G, range(4), batch=4)[:2], sample(G, range(2), batch=2)),
                (synthesize(G, z, batch=4)[:2], synthesize(G, z[:2], batch=2)),
                (next(metric_stream_batches(G, 4, 4, torch.device("cpu"), 0))[:2],
                 next(metric_stream_batches(G, 4, 2, torch.device("cpu"), 0))),
            ]
        for a, b in pairs:
            assert (torch.as_tensor(a) == torch.as_tensor(b)).all().item() == (sample_bn == "running")


def test_generate_samples_a_batch_mode_checkpoint_in_its_metrics_batch(tmp_path):
    """generate.py calls a batch-statistics generator with its run's metrics_batch (the training batch), as the
    metrics and races do, so its PNGs are the images those scored; --batch overrides it."""
    from click.testing import CliRunner
    from PIL import Image

    from nestgan.commands import generate
    from nestgan.images import as_pixels

    weights = trained_pair("dcgan")[0].state_dict()
    config = {**SMALL["dcgan"], "sample_bn": "batch"}
    path = tmp_path / "batch.pt"
    save_checkpoint(path, {"config": {"generator": config, "resolution": 16, "metrics_batch": 2},
                           "G": weights, "G_ema": weights})
    G, _, _ = read_generator(path)
    with torch.no_grad():
        expected = {batch: as_pixels(sample(G, range(4), batch=batch)) for batch in (4, 2)}

    def written(*flags: str) -> np.ndarray:
        out = tmp_path / f"out{'-'.join(flags)}"
        result = CliRunner().invoke(generate.main, ["--ckpt", str(path), "--n", "4", "--outdir", str(out),
                                                    "--no-grid", "--device", "cpu", *flags])
        assert result.exit_code == 0, (result.output, result.exception)
        return np.stack([np.asarray(Image.open(out / f"seed{s:04d}.png").convert("RGB")) for s in range(4)])

    assert (written() == expected[2]).all()
    assert (written("--batch", "4") == expected[4]).all() and not (expected[2] == expected[4]).all()


def test_sample_bn_reaches_the_network_through_a_config_file(tmp_path):
    file = tmp_path / "dcgan-batch.toml"
    file.write_text('g = "dcgan"\n[generator]\nsample_bn = "batch"\n')
    assert dry_run("--config", str(file))["generator"] == {**generator_preset("dcgan-32"), "sample_bn": "batch"}
    cfg = load_config({"device": "cpu"}, file)
    assert any(isinstance(m, BatchStatNorm2d) for m in generator_from_config(cfg.generator).modules())
    assert dry_run("--config", str(file), "--g", "conv")["generator"].get("sample_bn") is None  # made for dcgan
    file.write_text('g = "dcgan"\n[generator]\nsample_bn = "batches"\n')
    refused = run_cli("--dry-run", "--config", str(file))
    assert refused.exit_code == 2
    assert "dcgan generator: unknown sample_bn 'batches' (choose from running, batch)" in refused.stderr


@pytest.mark.parametrize(("name", "batch", "sample_bn"), [
    ("celeba64-dcgan", 64, None), ("celeba64-dcgan-b128", 128, None),
    ("celeba64-dcgan-batchstats", 64, "batch"), ("celeba64-dcgan-b128-batchstats", 128, "batch"),
])
def test_dcgan_study_configs(name, batch, sample_bn):
    """The plain DCGAN at batch 64 and the PyTorch example's 128, each sampling with running or batch statistics;
    the batch-statistics ones take their snapshot metrics at the training batch."""
    cfg = load_config({"device": "cpu"}, REPO / "configs" / "study" / f"{name}.toml")
    assert (cfg.g, cfg.d, cfg.batch, cfg.generator.get("sample_bn")) == ("dcgan", "dcgan", batch, sample_bn)
    assert cfg.metrics_batch == (batch if sample_bn else 64)
