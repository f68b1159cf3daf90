"""Multi-process training on the CPU (gloo): ranks stay in agreement, torchrun runs train_gan.py, and a rank
that fails does not leave the others hanging."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import TINY_GENERATOR, tiny_toml

pytestmark = pytest.mark.slow  # spawns processes or trains for seconds: .ci/run runs it after the fast pass
REPO = Path(__file__).resolve().parent.parent
TINY_D = {"channel_base": 128, "channel_max": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_rank_env(rank: int, world_size: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def tiny_config(**overrides):
    from nestgan.config import TrainConfig

    flags = {"resolution": 16, "generator": TINY_GENERATOR, "discriminator": TINY_D, "batch": 16,
             "batch_per_device": 4, "precision": "fp32", "r1_interval": 2, **overrides}
    return TrainConfig.from_sources({}, {}, flags, world_size=2)


def _steps_worker(rank: int, rendezvous: str, result_file: str) -> None:
    import torch.distributed as dist

    from nestgan.training import distributed
    from nestgan.training.step import build_state, training_step

    torch.set_num_threads(1)
    cfg = tiny_config()
    with distributed.process_group(distributed.World(rank, 2, rank), "cpu", 60, rendezvous):
        s = build_state(cfg, torch.device("cpu"), rank)
        data = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(rank)) * 2 - 1  # differs per rank
        start = torch.cat([p.detach().flatten() for p in s.G.parameters()]).clone()
        for _ in range(3):
            training_step(s, data, cfg, micro_batch=4)  # 2 ranks x 2 micro-batches x 4 = batch 16
        weights = torch.cat([t.detach().flatten() for m in (s.G, s.D, s.G_ema) for t in m.state_dict().values()])
        gathered = [torch.empty_like(weights) for _ in range(2)]
        dist.all_gather(gathered, weights)
        moved = not torch.equal(start, torch.cat([p.detach().flatten() for p in s.G.parameters()]))
        agree = torch.equal(gathered[0], gathered[1])
    if rank == 0:
        Path(result_file).write_text(f"{agree} {moved} {s.images_seen} {gloo_threads()}")


def gloo_threads() -> int:
    """This process's threads that gloo started (named pt_gloo_runloop and gloo_tcp_loop)."""
    tasks = Path("/proc/self/task")
    return sum("gloo" in (task / "comm").read_text() for task in tasks.iterdir())


def test_two_ranks_agree_on_weights_after_training_steps(tmp_path):
    result = tmp_path / "result.txt"
    mp.spawn(_steps_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(result)), nprocs=2, join=True)
    # Same weights on both ranks; training did move them; leaving the group ended gloo's threads (left running,
    # one could abort the process at exit).
    assert result.read_text() == "True True 48 0"


def fail_third_step_on_rank_1(rank: int) -> None:
    """On rank 1, make the third training step raise; rank 0 is then waiting for its gradients."""
    from nestgan.training import loop

    if rank != 1:
        return
    original, calls = loop.training_step, []

    def failing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated failure on rank 1")
        return original(*args, **kwargs)

    loop.training_step = failing_step


def _failing_worker(rank: int, port: int, outdir: str) -> None:
    from nestgan.training import loop

    set_rank_env(rank, 2, port)
    fail_third_step_on_rank_1(rank)
    cfg = tiny_config(kimg=1.0, outdir=outdir, metrics=[], dist_timeout_s=60.0,
                      data={"max_images": 64, "cache_dir": str(Path(outdir) / "cache")})
    loop.train(cfg)


def test_a_failing_rank_does_not_hang_the_others(tmp_path):
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_failing_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=max(1.0, 50 - (time.monotonic() - start)))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank was still running 50 s after its peer failed"
    assert all(p.exitcode != 0 for p in procs)


def write_tiny_config(tmp_path: Path) -> Path:
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_toml(max_images=64, batch_per_device=4, tick_kimg=0.032))
    return config


def test_torchrun_two_processes_cpu(tmp_path):
    config = write_tiny_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "train_gan.py"), "--config", str(config), "--kimg", "0.064", "--metrics", "none",
         "--outdir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    failure = [ln for ln in proc.stderr.splitlines() if "rror" in ln or "terminate" in ln or "what()" in ln]
    assert proc.returncode == 0, "\n".join(failure[:20]) + "\n...\n" + proc.stderr[-1500:]
    runs = list((tmp_path / "runs").glob("0*"))
    assert len(runs) == 1  # only rank 0 writes
    log = (runs[0] / "log.txt").read_text()
    assert "2 device(s) x 2 x 4" in log and "tick 2" in log
    assert (runs[0] / "network-snapshot-000000.064.pt").is_file()


FAILING_ENTRY = """
import os, sys
sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]  # the repository, then tests/
from test_ddp import fail_third_step_on_rank_1
fail_third_step_on_rank_1(int(os.environ["RANK"]))
import train_gan
train_gan.main()
"""


def test_torchrun_rank_failure_ends_all_ranks_and_shows_its_error(tmp_path):
    config = write_tiny_config(tmp_path)
    entry = tmp_path / "failing_train.py"
    entry.write_text(FAILING_ENTRY)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry), str(REPO), str(REPO / "tests"),
         "--config", str(config), "--kimg", "1", "--metrics", "none", "--outdir", str(tmp_path / "runs"),
         "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode != 0
    assert "simulated failure on rank 1" in proc.stderr
    assert time.monotonic() - start < 90
