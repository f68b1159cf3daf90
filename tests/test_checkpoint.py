"""Checkpoints are data: hostile, damaged and foreign files are refused with one clear line."""

from __future__ import annotations

import contextlib
import io
import json
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

from nestgan.checkpoint import export_generator, load_checkpoint, read_generator, save_checkpoint
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
    from nestgan.networks import generator_from_config

    wider = {**TINY_GENERATOR, "widths": [64, 16, 16]}
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, {"config": {"generator": TINY_GENERATOR}, "G_ema": generator_from_config(wider).state_dict()})
    with pytest.raises(CheckpointError, match="weights do not fit") as info:
        read_generator(path)
    assert "size mismatch" in str(info.value) and "\n" not in str(info.value)

    conv = {"arch": "conv", "z_dim": 32, "resolution": 16}
    save_checkpoint(path, {"config": {"generator": TINY_GENERATOR}, "G_ema": generator_from_config(conv).state_dict()})
    with pytest.raises(CheckpointError, match="missing.*unexpected keys"):
        read_generator(path)


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
    for load, wanted in ((load_checkpoint, "training checkpoint"), (read_generator, "safetensors export")):
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
    with pytest.raises(CheckpointError, match="not a nestgan generator export"):
        read_generator(path)  # safetensors, but without the metadata an export carries


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
        "pass a training checkpoint (network-snapshot-*.pt or best.pt) or a .safetensors export (generate.py --export)\n"


# ------------------------------------------------------------------------------------------ safetensors exports


@pytest.fixture
def trained(tmp_path, make_tiny_checkpoint):
    """A checkpoint whose G and G_ema differ, trained (nominally) on CelebA from a local folder."""
    data = {"name": "celeba", "data_dir": "/home/someone/celeba", "split": "train", "max_images": 12,
            "cache_dir": "/home/someone/.cache"}
    path = make_tiny_checkpoint(tmp_path / "network-snapshot-000001.pt", data)
    state = torch.load(path, weights_only=True)
    state["G_ema"] = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state["G"].items()}
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    return path


def export(checkpoint: Path, out: Path, ema: bool = True, dtype: str = "fp32") -> Path:
    generator, config, progress = read_generator(checkpoint, ema=ema)
    export_generator(out, generator, config, progress, weights="G_ema" if ema else "G", dtype=dtype)
    return out


def test_an_fp32_export_samples_bit_identically_to_its_checkpoint(trained, tmp_path, one_thread):
    """Same seeds, same device: the export's images and float outputs equal the checkpoint's, for G_ema and G."""
    import nestgan

    for ema in (True, False):
        path = export(trained, tmp_path / f"G-{ema}.safetensors", ema=ema)
        from_checkpoint, from_export = nestgan.load_generator(trained, ema=ema), nestgan.load_generator(path, ema=ema)
        seeds = [0, 1, 2, 1000]
        assert torch.equal(nestgan.sample(from_export, seeds), nestgan.sample(from_checkpoint, seeds))
        assert torch.equal(nestgan.sample(from_export, seeds, quantize=False),
                           nestgan.sample(from_checkpoint, seeds, quantize=False))
    assert not torch.equal(nestgan.sample(nestgan.load_generator(tmp_path / "G-True.safetensors"), [0]),
                           nestgan.sample(nestgan.load_generator(tmp_path / "G-False.safetensors"), [0]))


def test_an_export_is_plain_safetensors_with_its_config_as_json_metadata(trained, tmp_path):
    """No pickle: safetensors reads it; the metadata rebuilds the generator and names the data without its paths."""
    from safetensors import safe_open

    path = export(trained, tmp_path / "G.safetensors")
    assert path.read_bytes()[:2] not in (b"PK", b"\x80\x02")  # neither a torch zip nor a pickle
    with safe_open(path, framework="pt") as f:
        metadata, names = f.metadata(), set(f.keys())
    generator, config, progress = read_generator(trained)
    assert names == set(generator.state_dict())
    assert metadata["format"] == "nestgan-generator" and metadata["weights"] == "G_ema"
    assert json.loads(metadata["generator"]) == config["generator"]
    assert (metadata["resolution"], metadata["z_dim"], metadata["dtype"]) == ("16", "32", "fp32")
    assert json.loads(metadata["data"]) == {"name": "celeba", "split": "train", "max_images": 12}
    assert json.loads(metadata["progress"]) == progress
    _, export_config, export_progress = read_generator(path)
    assert export_config == {"generator": config["generator"], "data": json.loads(metadata["data"])}
    assert export_progress == progress
    assert not list(tmp_path.glob(".G.safetensors.*"))  # the atomic write left no temporary file


def test_a_bf16_export_is_half_the_size_and_close(trained, tmp_path, one_thread):
    import nestgan

    full, half = export(trained, tmp_path / "fp32.safetensors"), export(trained, tmp_path / "bf16.safetensors",
                                                                         dtype="bf16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    G = nestgan.load_generator(half)
    assert all(p.dtype == torch.float32 for p in G.parameters())  # stored in bf16, computed in fp32
    seeds = list(range(8))
    difference = nestgan.sample(G, seeds, quantize=False) - nestgan.sample(nestgan.load_generator(full), seeds,
                                                                           quantize=False)
    assert 0 < difference.abs().max() < 0.05


def test_damaged_foreign_and_mismatched_exports_are_named(trained, tmp_path):
    from safetensors.torch import save_file

    path = export(trained, tmp_path / "G.safetensors")
    with pytest.raises(CheckpointError, match="holds only the G_ema weights; drop --raw"):
        read_generator(path, ema=False)
    with pytest.raises(CheckpointError, match="generator export holds no optimiser"):
        load_checkpoint(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size - 100])
    with pytest.raises(CheckpointError, match="export .*truncated.safetensors is truncated or corrupt"):
        read_generator(truncated)
    with safe_open_metadata(path) as (tensors, metadata):
        save_file(tensors, tmp_path / "v2.safetensors", metadata={**metadata, "format_version": "2"})
        save_file(tensors, tmp_path / "nameless.safetensors", metadata={**metadata, "generator": "{not json"})
    with pytest.raises(CheckpointError, match="format version 2; this nestgan reads version 1"):
        read_generator(tmp_path / "v2.safetensors")
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        read_generator(tmp_path / "nameless.safetensors")


@contextlib.contextmanager
def safe_open_metadata(path: Path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        yield {name: f.get_tensor(name) for name in f.keys()}, f.metadata()


def test_generate_exports_without_images_and_every_command_reads_the_export(trained, tmp_path, one_thread):
    """--export writes the safetensors file and nothing else; generate from the export writes the checkpoint's PNGs
    byte for byte; an existing export is kept unless --force."""
    out = tmp_path / "G.safetensors"
    result = CliRunner().invoke(generate.main, ["--ckpt", str(trained), "--export", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith(f"wrote {out} (G_ema, fp32, ") and sorted(p.name for p in tmp_path.iterdir()) \
        == ["G.safetensors", trained.name]
    for source, folder in ((trained, "from-checkpoint"), (out, "from-export")):
        result = CliRunner().invoke(generate.main, ["--ckpt", str(source), "--seeds", "0-3", "--no-grid", "--outdir",
                                                    str(tmp_path / folder), "--device", "cpu"])
        assert result.exit_code == 0, (result.output, result.exception)
    for i in range(4):
        name = f"seed{i:04d}.png"
        assert (tmp_path / "from-export" / name).read_bytes() == (tmp_path / "from-checkpoint" / name).read_bytes()

    before = out.read_bytes()
    again = CliRunner().invoke(generate.main, ["--ckpt", str(trained), "--export", str(out), "--raw"])
    assert again.exit_code == 2 and again.stderr == \
        f"error: {out} already exists; choose another --export path or pass --force to overwrite\n"
    assert out.read_bytes() == before
    forced = CliRunner().invoke(generate.main, ["--ckpt", str(trained), "--export", str(out), "--raw", "--force",
                                                "--export-dtype", "bf16"])
    assert forced.exit_code == 0 and "(G, bf16, " in forced.stdout and out.read_bytes() != before


def test_an_export_carries_the_scores_of_its_snapshot(trained, tmp_path):
    """generate.py --export takes the metric lines of the snapshot it exports (not another snapshot's, nor a cut
    line) into the export's metadata; a re-export keeps them; the model card of the explorer shows them."""
    from nestgan.checkpoint import export_metrics

    lines = [{"kimg": 0.5, "results": {"fid1k": 90.0}}, {"kimg": 1.0, "results": {"fid1k": 70.5}}]
    (tmp_path / "metric-fid1k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "metric-kid1k.jsonl").write_text(json.dumps({"kimg": 1.0, "results": {"kid1k_mean": 0.04,
                                                             "kid1k_std": 0.01}}) + "\n" + '{"kimg": 1.0, "res')
    first, second = tmp_path / "exports" / "G.safetensors", tmp_path / "exports" / "again.safetensors"
    first.parent.mkdir()
    for source, out in ((trained, first), (first, second)):
        result = CliRunner().invoke(generate.main, ["--ckpt", str(source), "--export", str(out)])
        assert result.exit_code == 0, (result.output, result.exception)
        assert export_metrics(out) == {"fid1k": 70.5, "kid1k": 0.04}
    assert export_metrics(export(trained, tmp_path / "plain.safetensors")) == {}


@pytest.mark.parametrize("args, message", [
    (["--export", "{tmp}/G.pt"], "--export needs a file name ending in .safetensors"),
    (["--export", "{tmp}/G.safetensors", "--n", "4", "--outdir", "{tmp}/out"], "drop --n/--outdir"),
    (["--export", "{tmp}/G.safetensors", "--export-dtype", "fp16"], "Invalid value for '--export-dtype'"),
])
def test_export_user_errors_are_one_line(trained, tmp_path, args, message):
    result = CliRunner().invoke(generate.main, ["--ckpt", str(trained)] + [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output, result.output
    assert not (tmp_path / "G.safetensors").exists() and not (tmp_path / "G.pt").exists()


def test_evaluate_an_export_against_the_data_its_metadata_names(tmp_path, make_tiny_checkpoint, converted_inception,
                                                               monkeypatch, one_thread):
    """The export names its training data (shapes, 12 images); evaluate uses it, or asks for --data if it is not
    named."""
    from nestgan.metrics.inception_weights import CONVERTED_NAME, ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    cache = tmp_path / "cache"
    (cache / "inception").mkdir(parents=True)
    for name in (CONVERTED_NAME, CONVERTED_NAME + ".sha256"):
        (cache / "inception" / name).write_bytes(converted_inception.path.with_name(name).read_bytes())
    checkpoint = make_tiny_checkpoint(tmp_path / "network-snapshot-000001.pt", {"name": "shapes", "max_images": 12})
    path = export(checkpoint, tmp_path / "G.safetensors")
    args = ["--ckpt", str(path), "--metrics", "kid10", "--cache-dir", str(cache), "--device", "cpu", "--batch", "16"]
    result = CliRunner().invoke(evaluate.main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "kid10_mean" in result.stdout and "10 generated vs 10 real shapes-16-" in result.stdout
    record = json.loads((tmp_path / "metric-kid10.jsonl").read_text())
    assert record["checkpoint"] == str(path) and record["kimg"] == 1.0

    generator, config, progress = read_generator(checkpoint)
    export_generator(path, generator, {**config, "data": {}}, progress)
    result = CliRunner().invoke(evaluate.main, args)
    assert result.exit_code == 2 and result.stderr == \
        f"error: {path} does not say which data it was trained on; pass --data (and --data-dir)\n"


def test_resume_from_an_export_says_it_needs_a_training_checkpoint(trained, tmp_path):
    path = export(trained, tmp_path / "G.safetensors")
    result = CliRunner().invoke(train.main, ["--resume", str(path), "--outdir", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 2 and result.stderr == (
        f"error: {path} is a safetensors file (a generator export holds no optimiser or training state); this needs "
        "a training checkpoint (network-snapshot-*.pt or best.pt)\n")
