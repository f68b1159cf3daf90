"""Checkpoints are data: hostile, damaged and foreign files are refused with one clear line."""

from __future__ import annotations

import io
import pathlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from nestgan.checkpoint import load_checkpoint, load_generator, save_checkpoint
from nestgan.commands import evaluate, generate, train
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
    cases = {"empty.pt": "is empty (0 bytes)", "truncated.pt": "truncated or corrupt", "missing.pt": "not found",
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


def image_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, kind)
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def half_a_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": 1, "G": torch.ones(1000)}, buffer)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# File contents passed by mistake -> the words that say what they are. None of them is "refused" as untrusted.
NOT_CHECKPOINTS = {
    "empty": (b"", "is empty (0 bytes)"),
    "text": (b"learning rate 2e-4, 25 kimg\n", "looks like a text file"),
    "json": (b'{"kimg": 25.0, "fid10k": 41.2}\n', "looks like a JSON file"),
    "toml": (b"[generator]\narch = 'nest'\n", "looks like a text file"),
    "png": (image_bytes("PNG"), "looks like a PNG image"),
    "jpeg": (image_bytes("JPEG"), "looks like a JPEG image"),
    "html": (b"\n<!DOCTYPE html>\n<html><body>Sign in</body></html>", "looks like an HTML page"),
    "lfs": (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 18695180\n",
            "Git LFS pointer, not the file it stands for; run `git lfs pull`"),
    "truncated zip": (half_a_checkpoint(), "truncated or corrupt (its zip directory is unreadable)"),
    "dataset zip": (zip_bytes({"00000/img00000000.png": image_bytes("PNG")}), "zip archive that torch.save did not write"),
    "plain pickle": (pickle.dumps({"kimg": 25.0}, protocol=4), "pickle that torch.save did not write"),
    "binary": (bytes(range(7, 200)), "neither a zip archive nor a pickle"),
}


@pytest.mark.parametrize("kind", NOT_CHECKPOINTS)
def test_files_that_are_not_checkpoints_are_named_for_what_they_are(tmp_path, kind):
    """Each loader names what the file looks like, in one line, and says what to pass instead."""
    content, words = NOT_CHECKPOINTS[kind]
    path = tmp_path / "network-snapshot-000001.pt"
    path.write_bytes(content)
    for load, wanted in ((load_checkpoint, "training checkpoint"), (load_generator, "training checkpoint")):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert words in message and str(path) in message and "\n" not in message, message
        assert "refused" not in message
        assert "truncated" in words or "LFS" in words or wanted in message, message


def test_a_safetensors_file_is_not_a_training_checkpoint(tmp_path):
    path = tmp_path / "G.safetensors"
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))  # the safetensors layout
    with pytest.raises(CheckpointError, match="is a safetensors file.*needs a training checkpoint"):
        load_checkpoint(path)


def command_line(command: str, path: Path, tmp_path: Path) -> tuple:
    if command == "train --resume":
        return train.main, ["--resume", str(path), "--outdir", str(tmp_path / "runs"), "--device", "cpu"]
    if command == "generate":
        return generate.main, ["--ckpt", str(path), "--outdir", str(tmp_path / "out"), "--device", "cpu"]
    return evaluate.main, ["--ckpt", str(path), "--metrics", "kid10", "--out", str(tmp_path / "m.jsonl"),
                           "--device", "cpu"]


@pytest.mark.parametrize("command", ["generate", "evaluate", "train --resume"])
@pytest.mark.parametrize("kind", NOT_CHECKPOINTS)
def test_every_command_names_a_file_that_is_not_a_checkpoint_in_one_line(tmp_path, command, kind):
    content, words = NOT_CHECKPOINTS[kind]
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    main, args = command_line(command, path, tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_a_text_file_gives_one_line_from_the_real_script(tmp_path):
    """The bug this guards: a text file as --ckpt was a traceback (KeyError: 101) from generate.py."""
    path = tmp_path / "notes.pt"
    path.write_text("hello\n")
    proc = subprocess.run([sys.executable, str(REPO / "generate.py"), "--ckpt", str(path), "--outdir",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == f"error: not a PyTorch checkpoint: {path} looks like a text file; " \
        "pass a training checkpoint (network-snapshot-*.pt or best.pt)\n"
