"""Training: losses, R1, DiffAugment, EMA, gradient accumulation, learning on tiny data, exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from nestgan.augment import DiffAugment, cutout, translation
from nestgan.checkpoint import load_checkpoint
from nestgan.config import TrainConfig
from nestgan.errors import ConfigError
from nestgan.loss import d_loss, g_loss, r1_penalty
from nestgan.training.ema import ema_beta, update_ema
from nestgan.training.loop import train
from nestgan.training.step import build_state, training_step

TINY_G = {"arch": "nest", "z_dim": 32, "init_size": 4, "block_size": 4, "widths": [32, 16, 16],
          "depths": [1, 1, 1], "heads": [2, 1, 1]}  # 16 px
TINY_D = {"channel_base": 256, "channel_max": 32}


def tiny_config(**overrides) -> TrainConfig:
    flags = {"resolution": 16, "generator": TINY_G, "discriminator": TINY_D, "batch": 16, "precision": "fp32",
             "kimg": 1.0, "threads": 1, **overrides}  # a fixed thread count: exact resume depends on it
    return TrainConfig.from_sources({}, {}, flags)


# ------------------------------------------------------------------------------------------------ losses


def test_losses_at_zero_logits_and_signs():
    zero = torch.zeros(4)
    assert d_loss("nonsaturating", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert d_loss("hinge", zero, zero).item() == pytest.approx(2.0)
    assert g_loss("nonsaturating", zero).item() == pytest.approx(math.log(2))
    # A discriminator that is right has a lower loss than one that is wrong.
    right, wrong = torch.full((4,), 3.0), torch.full((4,), -3.0)
    for kind in ("nonsaturating", "hinge"):
        assert d_loss(kind, right, wrong) < d_loss(kind, wrong, right)
        assert g_loss(kind, right) < g_loss(kind, wrong)


def test_r1_penalty_is_squared_gradient_norm_and_differentiable():
    w = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * w).sum(dim=(1, 2, 3))  # d logit / d x = w for every sample
    penalty = r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(w.detach().square().sum().item(), rel=1e-5)
    penalty.backward()  # create_graph: the penalty trains w
    assert torch.allclose(w.grad, 2 * w.detach(), rtol=1e-5)


def test_r1_penalty_under_bf16_autocast_is_float32_and_finite():
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(x).squeeze(1)
    penalty = r1_penalty(logits, x)
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty) and penalty > 0
    penalty.backward()
    assert torch.isfinite(D[0].weight.grad).all() and D[0].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- DiffAugment


def test_diffaugment_random_per_sample_reproducible_and_differentiable():
    x = torch.rand(1, 3, 16, 16).expand(8, -1, -1, -1).clone().requires_grad_(True)  # 8 copies of one image
    augment = DiffAugment("color,translation,cutout", seed=1)
    state = augment.state_dict()
    y = augment(x)
    assert y.shape == x.shape
    flat = y.detach().flatten(1)
    assert all(not torch.equal(flat[0], flat[i]) for i in range(1, 8))  # each sample got its own parameters
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    augment.load_state_dict(state)
    assert torch.equal(augment(x.detach()), y.detach())  # the random stream is restorable (checkpoints)
    assert torch.equal(DiffAugment("", seed=1)(x), x)  # empty policy = off


def test_translation_shifts_with_zero_fill_and_cutout_zeroes_a_quarter():
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(256, 1, 16, 16)
    shifted = translation(x, gen)
    zero_rows = (shifted == 0).all(dim=3).sum(dim=(1, 2))
    zero_cols = (shifted == 0).all(dim=2).sum(dim=(1, 2))
    assert zero_rows.max() == 2 and zero_cols.max() == 2  # +-1/8 of 16 px
    assert (zero_rows > 0).any() and (zero_rows == 0).any()
    cut = cutout(x, gen)
    zeros = (cut == 0).float().mean(dim=(1, 2, 3))
    assert zeros.max() == pytest.approx(0.25)  # a full 8x8 square inside the image
    assert 0.1 < zeros.mean() < 0.25  # squares hanging over the border cover less


def test_augmentation_runs_on_reals_and_fakes_in_both_steps():
    cfg = tiny_config(augment="translation", r1_gamma=0.0)
    s = build_state(cfg, torch.device("cpu"))
    calls = []
    real_augment = s.augment

    def spy(x):
        calls.append(x)
        return real_augment(x)

    s.augment = spy
    reals = torch.rand(16, 3, 16, 16) * 2 - 1
    training_step(s, reals, cfg, micro_batch=8)
    # D step: per micro-batch the reals then the fakes; G step: the fakes of each micro-batch.
    assert len(calls) == 2 * 2 + 2
    assert torch.equal(calls[0], reals[:8]) and torch.equal(calls[2], reals[8:])
    assert not calls[1].requires_grad  # fakes in the D step do not train G
    assert calls[4].requires_grad and calls[5].requires_grad  # fakes in the G step carry G's gradient


# --------------------------------------------------------------------------------------------------- EMA


def test_ema_beta_half_life_and_rampup():
    beta = ema_beta(batch=32, ema_kimg=10, images_seen=10**9, rampup=0.05)
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    assert beta ** (10_000 / 32) == pytest.approx(0.5)  # half-life of 10 kimg
    assert ema_beta(32, 10, images_seen=10**9, rampup=None) == beta
    early = ema_beta(32, 10, images_seen=640, rampup=0.05)  # half-life capped at 0.05 * 640 = 32 images
    assert early == pytest.approx(0.5)


def test_update_ema_moves_towards_model():
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, beta=0.75)
    assert torch.allclose(ema.weight, 0.75 * before + 0.25 * model.weight.detach())


# ------------------------------------------------------------------------------------ accumulation, learning


def test_gradient_accumulation_equals_one_big_batch():
    # No augmentation (its draws depend on the micro-batch split); minibatch-std groups of 1 (batch independent).
    cfg = tiny_config(augment="", discriminator={**TINY_D, "mbstd_group": 1}, lr_g=1e-12, lr_d=1e-12)
    reals = torch.rand(16, 3, 16, 16) * 2 - 1
    grads = []
    for micro_batch in (16, 4):
        s = build_state(cfg, torch.device("cpu"))
        stats = training_step(s, reals, cfg, micro_batch)  # step 0 includes R1
        assert "r1" in stats
        grads.append((stats, [p.grad.clone() for p in (*s.G.parameters(), *s.D.parameters())]))
    (stats_big, big), (stats_acc, acc) = grads
    for a, b in zip(big, acc):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for key in stats_big:
        torch.testing.assert_close(stats_big[key], stats_acc[key], rtol=1e-4, atol=1e-6)


def test_shared_fakes_run_g_once_and_leave_the_d_step_unchanged():
    """With shared_fakes the G step reuses the D step's fakes: one G forward per step instead of two, the same D update."""
    reals = torch.rand(16, 3, 16, 16) * 2 - 1
    results = {}
    for shared in (False, True):
        cfg = tiny_config(shared_fakes=shared)
        s = build_state(cfg, torch.device("cpu"))
        calls = []
        s.G.register_forward_hook(lambda *_: calls.append(1))
        g_before = [p.clone() for p in s.G.parameters()]
        training_step(s, reals, cfg, micro_batch=8)
        assert all(p.grad is not None for p in s.G.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(g_before, s.G.parameters()))
        results[shared] = (len(calls), [p.detach().clone() for p in s.D.parameters()])
    assert results[False][0] == 4 and results[True][0] == 2  # two micro-batches
    for a, b in zip(results[False][1], results[True][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_ema_kimg_zero_makes_g_ema_a_copy_of_g():
    cfg = tiny_config(ema_kimg=0.0)
    s = build_state(cfg, torch.device("cpu"))
    training_step(s, torch.rand(16, 3, 16, 16) * 2 - 1, cfg, micro_batch=16)
    for a, b in zip(s.G_ema.parameters(), s.G.parameters()):
        assert torch.equal(a, b)


def coloured_squares(n: int, seed: int = 0) -> torch.Tensor:
    """Tiny data set: a bright orange square somewhere on a dark blue background, (N, 3, 16, 16) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.tensor([-0.8, -0.6, 0.4]).view(1, 3, 1, 1).repeat(n, 1, 16, 16)
    corners = torch.randint(0, 9, (n, 2), generator=g)
    for img, (y, x) in zip(images, corners.tolist()):
        img[:, y : y + 8, x : x + 8] = torch.tensor([0.9, 0.4, -0.7]).view(3, 1, 1)
    return images


def test_few_hundred_steps_learn_the_data():
    torch.set_num_threads(1)  # tiny tensors: one thread avoids spin-waiting when the cores are shared
    cfg = tiny_config(lr_g=1e-3, lr_d=1e-3, r1_gamma=0.05)
    s = build_state(cfg, torch.device("cpu"))
    data = coloured_squares(512)
    z = torch.randn(256, s.G.z_dim, generator=torch.Generator().manual_seed(5))

    def colour_gap() -> float:
        with torch.no_grad():
            fake = s.G_ema(z)
        return (fake.mean(dim=(0, 2, 3)) - data.mean(dim=(0, 2, 3))).abs().sum().item()

    gap_before = colour_gap()
    margins = []
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        stats = training_step(s, data[torch.randint(0, len(data), (16,), generator=g)], cfg, 16)
        assert all(torch.isfinite(v) for v in stats.values())
        margins.append((stats["d_real"] - stats["d_fake"]).item())
    assert sum(margins[10:60]) / 50 > 0  # D tells reals from fakes early on
    gap_after = colour_gap()
    assert gap_after < 0.5 * gap_before  # the EMA generator's colours moved toward the data's
    assert all(torch.isfinite(p).all() for p in (*s.G.parameters(), *s.D.parameters()))


# ---------------------------------------------------------------------------------------------- resume


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    torch.set_num_threads(1)

    def run(kimg: float, outdir: str, resume: str | None = None):
        cfg = tiny_config(kimg=kimg, outdir=str(tmp_path / outdir), resume=resume, r1_interval=3, tick_kimg=0.064,
                          snap=1, data={"max_images": 256, "cache_dir": str(tmp_path / "cache")},
                          generator={**TINY_G, "z_dim": 16}, augment="color,translation,cutout")
        run_dir = train(cfg)
        return load_checkpoint(sorted(run_dir.glob("network-snapshot-*.pt"))[-1])

    whole = run(0.128, "whole")  # 8 steps of 16 images, R1 at steps 0, 3, 6
    half = run(0.064, "halves")
    assert half["progress"]["images_seen"] == 64
    resumed = run(0.128, "halves", resume="latest")
    timeless = lambda progress: {k: v for k, v in progress.items() if k != "train_seconds"}  # noqa: E731
    assert timeless(resumed["progress"]) == timeless(whole["progress"])
    assert resumed["progress"]["train_seconds"] > half["progress"]["train_seconds"]  # the clock carries over
    for key in ("G", "D", "G_ema"):
        for name, tensor in whole[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name}"
    assert not all(torch.equal(t, half["G"][n]) for n, t in whole["G"].items())  # the second half did train
    stats = [json.loads(ln) for ln in (tmp_path / "halves" / "00001-shapes-nest-16" / "stats.jsonl").open()]
    assert [r["kimg"] for r in stats] == [0.064, 0.128]


def test_a_tick_0_line_comes_after_the_first_step_before_the_first_tick(tmp_path):
    """Like StyleGAN2-ADA: a line after the first step (kimg, its time, memory, when the next line comes), then
    the ticks as before; tick 0 is only a console line, not a stats.jsonl record."""
    torch.set_num_threads(1)
    cfg = tiny_config(kimg=0.064, outdir=str(tmp_path / "runs"), tick_kimg=0.032, snap=1000,
                      data={"max_images": 256, "cache_dir": str(tmp_path / "cache")})
    run_dir = train(cfg)
    lines = (run_dir / "log.txt").read_text().splitlines()
    ticks = [line.split()[:4] for line in lines if line.startswith("tick ")]
    assert ticks == [["tick", "0", "kimg", "0.02/0.064"], ["tick", "1", "kimg", "0.03/0.064"],
                     ["tick", "2", "kimg", "0.06/0.064"]]
    first = next(line for line in lines if line.startswith("tick 0"))
    assert "first step " in first and " GiB" in first and first.endswith("next line at kimg 0.032")
    assert lines.index(first) < next(i for i, line in enumerate(lines) if line.startswith("tick 1"))
    assert [json.loads(ln)["tick"] for ln in (run_dir / "stats.jsonl").open()] == [1, 2]


def test_minutes_budget_stops_early_with_a_snapshot_and_counts_over_resumes(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(kimg=1000.0, minutes=0.05, outdir=str(tmp_path / "runs"), tick_kimg=0.032, snap=1000,
                      data={"max_images": 256, "cache_dir": str(tmp_path / "cache")})
    run_dir = train(cfg)
    (snapshot,) = run_dir.glob("network-snapshot-*.pt")
    progress = load_checkpoint(snapshot)["progress"]
    assert 3.0 <= progress["train_seconds"] < 30 and progress["images_seen"] < 1_000_000
    stats = [json.loads(ln) for ln in (run_dir / "stats.jsonl").open()]
    assert stats[-1]["train_s"] == progress["train_seconds"]
    assert all(a["train_s"] < b["train_s"] for a, b in zip(stats, stats[1:]))
    log = (run_dir / "log.txt").read_text()
    assert "training   1000 kimg or 0.05 minutes," in log  # the banner names both stop conditions
    assert "time budget of 0.05 min reached" in log
    with pytest.raises(ConfigError, match="raise --minutes"):  # the budget is spent: nothing left to resume
        train(tiny_config(**{**vars(cfg), "data": vars(cfg.data), "resume": "latest"}))


class RecordingWriter:
    """Stands in for TensorBoard's SummaryWriter: records what a run gives it."""

    def __init__(self) -> None:
        self.images: list[tuple[str, np.ndarray, int]] = []
        self.scalars: list[tuple[str, float, int]] = []

    def add_image(self, tag: str, picture: np.ndarray, step: int, dataformats: str = "CHW") -> None:
        assert dataformats == "HWC"
        self.images.append((tag, picture.copy(), step))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        pass


def test_tensorboard_gets_the_fixed_z_grid_of_every_snapshot_beside_its_scalars(tmp_path, monkeypatch):
    """TensorBoard's images are the run's own grids, pixel for pixel: reals and the fixed-z fakes at the start,
    then fakes<kimg>.png at every snapshot, at the images seen, the step its scalars use."""
    writer = RecordingWriter()
    monkeypatch.setattr("nestgan.training.loop.tensorboard_writer", lambda run: writer)
    torch.set_num_threads(1)
    cfg = tiny_config(kimg=0.096, outdir=str(tmp_path / "runs"), tick_kimg=0.032, snap=1,
                      data={"max_images": 256, "cache_dir": str(tmp_path / "cache")})
    run_dir = train(cfg)
    fakes = [(picture, step) for tag, picture, step in writer.images if tag == "fakes"]
    files = ["fakes_init.png", *sorted(p.name for p in run_dir.glob("fakes0*.png"))]
    assert len(files) == len(fakes) == 4 and [step for _, step in fakes] == [0, 32, 64, 96]
    for (picture, _), name in zip(fakes, files):
        assert np.array_equal(picture, np.asarray(Image.open(run_dir / name)))
    (reals,) = [picture for tag, picture, _ in writer.images if tag == "reals"]
    assert np.array_equal(reals, np.asarray(Image.open(run_dir / "reals.png")))
    assert {step for tag, _, step in writer.scalars if tag.startswith("train/")} == {32, 64, 96}
