"""SIGKILL at random moments, including in the middle of a checkpoint write, loses at most one snapshot interval."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_toml
from nestgan.checkpoint import load_checkpoint
from nestgan.training.rundir import snapshots

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent

WRITER = """
import sys, torch
from nestgan.checkpoint import save_checkpoint
for i in range(1, 10**6):
    save_checkpoint(sys.argv[1], {"i": i, "w": torch.full((2_000_000,), float(i))})  # 8 MB each
    print(i, flush=True)
"""


def test_checkpoint_killed_while_writing_leaves_a_complete_one(tmp_path):
    path = tmp_path / "ckpt.pt"
    rng = random.Random(0)
    last = 0
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one write has completed
        time.sleep(rng.uniform(0.0, 0.3))  # then die somewhere in a later write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(path)
        assert torch.equal(ckpt["w"], torch.full((2_000_000,), float(ckpt["i"])))  # never a mix or a part
        assert ckpt["i"] >= 1
        last = ckpt["i"]
    assert last >= 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["ckpt.pt"]  # only temp files beside


def test_training_killed_ten_times_resumes_each_time_to_a_valid_end(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_toml(tick_kimg=0.016, snap=1, keep_snapshots=2, augment="translation"))
    runs = tmp_path / "runs"
    command = [sys.executable, str(REPO / "train_gan.py"), "--config", str(config), "--outdir", str(runs),
               "--cache-dir", str(tmp_path / "cache"), "--metrics", "none", "--threads", "1", "--kimg", "0.8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(1)
    kills = 0
    while kills < 10:
        resume = ["--resume", "latest"] if any(snapshots(r) for r in runs.glob("0*")) else []
        proc = subprocess.Popen([*command, *resume], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=env)
        # Wait for this attempt's own training to begin (a new snapshot or stats line), then kill at random.
        before = newest_progress(runs)
        deadline = time.monotonic() + 60
        while newest_progress(runs) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            break  # finished before we could kill it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        newest = max((s for r in runs.glob("0*") for s in snapshots(r)), key=lambda p: p.stat().st_mtime, default=None)
        if newest is not None:
            load_checkpoint(newest)  # the newest complete checkpoint always loads
    assert kills == 10

    final = subprocess.run([*command, "--resume", "latest"], capture_output=True, text=True, timeout=300, env=env)
    assert final.returncode == 0 or "raise --kimg" in final.stderr, final.stderr
    last_run = max(runs.glob("0*"), key=lambda p: int(p.name[:5]))
    end = load_checkpoint(snapshots(last_run)[-1])
    assert end["progress"]["images_seen"] == 800
    records = [json.loads(ln) for ln in (last_run / "stats.jsonl").read_text().splitlines()]
    assert [round(r["kimg"] * 1000) for r in records] == list(range(16, 801, 16))  # continuous, no gap, no repeat


def newest_progress(runs: Path) -> tuple[int, int]:
    """(number of snapshots, stats.jsonl lines) over all runs: changes once a run has trained a tick."""
    stats = [r / "stats.jsonl" for r in runs.glob("0*")]
    lines = sum(p.read_text().count("\n") for p in stats if p.is_file())
    return sum(len(snapshots(r)) for r in runs.glob("0*")), lines
