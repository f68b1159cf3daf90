"""Checkpoints are data: hostile, damaged and foreign files are refused with one clear line."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nestgan.checkpoint import load_checkpoint, load_generator, save_checkpoint
from nestgan.errors import CheckpointError

from conftest import TINY_GENERATOR

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this calls Path.touch(marker): code running from a checkpoint file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def hostile_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pt"
    torch.save({"format": 1, "config": {}, "G_ema": {}, "payload": Payload(marker)}, path)
    return path, marker


def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    path, marker = hostile_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("script", ["generate.py", "evaluate.py", "train_gan.py"])
def test_every_command_refuses_a_hostile_checkpoint_in_one_line(tmp_path, script):
    path, marker = hostile_checkpoint(tmp_path)
    flag = "--resume" if script == "train_gan.py" else "--ckpt"
    proc = subprocess.run([sys.executable, str(REPO / script), flag, str(path), "--outdir" if script != "evaluate.py"
                           else "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: refused to load"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_empty_truncated_missing_and_foreign_files_are_named(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"config": {}, "G": {"w": torch.ones(1000)}})
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save({"w": torch.ones(3)}, tmp_path / "foreign.pt")
    cases = {"empty.pt": "empty (0 bytes)", "truncated.pt": "truncated or corrupt", "missing.pt": "not found",
             "foreign.pt": "not a nestgan checkpoint"}
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_checkpoint(tmp_path / name)
    assert load_checkpoint(good)["G"]["w"].sum() == 1000


def test_weights_of_another_architecture_name_the_mismatch(tmp_path):
    from nestgan.networks import build_generator

    wider = {**TINY_GENERATOR, "widths": [64, 16, 16]}
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, {"config": {"generator": TINY_GENERATOR}, "G_ema": build_generator(wider).state_dict()})
    with pytest.raises(CheckpointError, match="weights do not fit") as info:
        load_generator(path)
    assert "size mismatch" in str(info.value) and "\n" not in str(info.value)

    conv = {"arch": "conv", "z_dim": 32, "resolution": 16}
    save_checkpoint(path, {"config": {"generator": TINY_GENERATOR}, "G_ema": build_generator(conv).state_dict()})
    with pytest.raises(CheckpointError, match="missing.*unexpected keys"):
        load_generator(path)
