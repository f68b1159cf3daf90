"""Fine-tuning: --finetune-from, --trainable attention, --freeze-d (FreezeD), resume of a fine-tune run, and the
CelebA attribute subset (--attribute) a transfer usually targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from PIL import Image

from nestgan.checkpoint import export_generator, load_checkpoint, read_generator
from nestgan.commands import train as train_gan
from nestgan.data import load_dataset
from nestgan.data.sources import celeba_plan
from nestgan.errors import ConfigError
from nestgan.networks import build_discriminator, discriminator_preset
from conftest import TINY_GENERATOR  # noqa: E402
from test_train_cli import TINY_TOML as TRAIN_CLI_TINY_TOML  # noqa: E402  (pytest puts tests/ on sys.path)

REPO = Path(__file__).resolve().parent.parent

# test_train_cli's tiny run (16 px, two steps per tick) with R1 every 3rd step, so frozen D blocks see the R1 backward too.
TINY_TOML = TRAIN_CLI_TINY_TOML.replace('augment = "color,translation"\n', 'augment = "color,translation"\nr1_interval = 3\n')
assert "r1_interval = 3" in TINY_TOML
FROZEN_D = ("from_rgb.", "blocks.0.")  # --freeze-d 1 of the resnet D: its first block, from_rgb included
# The same run with a two-level NesT discriminator (8x8 then 4x4 tokens of 2x2-pixel patches).
NEST_D_TOML = TINY_TOML.replace('d = "resnet"  # the discriminator table below is sized for it\n', 'd = "nest"\n').replace(
    "[discriminator]\nchannel_base = 128\nchannel_max = 16\n",
    '[discriminator]\npreset = "nest-d-32"\npatch_size = 2\nblock_size = 2\nwidths = [16, 16]\ndepths = [1, 1]\n'
    "heads = [1, 1]\n",
)
assert 'd = "nest"' in NEST_D_TOML


@pytest.fixture(scope="module")
def tiny_flags(tmp_path_factory) -> list[str]:
    """Flags of a tiny run: its config file, a cache shared by the module's runs, no metrics, one thread."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.toml").write_text(TINY_TOML)
    return ["--config", str(root / "tiny.toml"), "--cache-dir", str(root / "cache"), "--metrics", "none",
            "--threads", "1"]


@pytest.fixture(scope="module")
def tiny(tiny_flags, tmp_path_factory):
    """(config file, common flags, a source snapshot after 4 steps of training)."""
    outdir = tmp_path_factory.mktemp("source")
    result = run_cli(*tiny_flags, "--outdir", str(outdir), "--kimg", "0.064")
    assert result.exit_code == 0, result.output
    (source,) = outdir.glob("*/network-snapshot-*.pt")
    return Path(tiny_flags[1]), tiny_flags, source


def run_cli(*args: str):
    return CliRunner().invoke(train_gan.main, list(args))


def last_snapshot(outdir: Path) -> dict:
    run = sorted(outdir.iterdir())[-1]
    return load_checkpoint(sorted(run.glob("network-snapshot-*.pt"))[-1])


def test_attention_only_and_freeze_d_train_only_what_they_say(tiny, tmp_path):
    config, common, source = tiny
    result = run_cli(*common, "--outdir", str(tmp_path), "--kimg", "0.064", "--finetune-from", str(source),
                     "--trainable", "attention", "--freeze-d", "1")
    assert result.exit_code == 0, result.output
    start, end = load_checkpoint(source), last_snapshot(tmp_path)
    assert end["progress"]["images_seen"] == 64 and end["progress"]["step"] == 4  # a new run: counted from 0

    for name, before in start["G_ema"].items():  # G and G_ema both start from the source's G_ema
        if "attn" in name:
            assert not torch.equal(end["G"][name], before), name
        else:
            assert torch.equal(end["G"][name], before), name
            assert torch.equal(end["G_ema"][name], before), name
    for name, before in start["D"].items():
        assert torch.equal(end["D"][name], before) == name.startswith(FROZEN_D), name

    # Optimiser state exists for the trainable parameters only, in their order.
    attn_shapes = [t.shape for name, t in start["G_ema"].items() if "attn" in name]
    assert [s["exp_avg"].shape for _, s in sorted(end["opt_G"]["state"].items())] == attn_shapes
    d_shapes = [t.shape for name, t in start["D"].items() if not name.startswith(FROZEN_D)]
    assert [s["exp_avg"].shape for _, s in sorted(end["opt_D"]["state"].items())] == d_shapes

    log = (sorted(tmp_path.iterdir())[-1] / "log.txt").read_text()
    assert f"fine-tune  from {source}: G and G_ema from its G_ema, D from its D; fresh optimisers" in log
    trainable = sum(t.numel() for name, t in start["G_ema"].items() if "attn" in name)
    assert f"M params, {trainable / 1e6:.2f}M trainable, D resnet" in log


def test_resuming_an_attention_finetune_continues_exactly(tiny, tmp_path):
    config, common, source = tiny
    finetune = ["--finetune-from", str(source), "--trainable", "attention", "--freeze-d", "1"]
    whole = run_cli(*common, *finetune, "--outdir", str(tmp_path / "whole"), "--kimg", "0.128")
    assert whole.exit_code == 0, whole.output
    half = run_cli(*common, *finetune, "--outdir", str(tmp_path / "halves"), "--kimg", "0.064")
    assert half.exit_code == 0, half.output

    forgot = run_cli(*common, "--outdir", str(tmp_path / "halves"), "--kimg", "0.128", "--resume", "latest")
    assert forgot.exit_code == 2 and "it trained with --trainable attention --freeze-d 1" in forgot.output
    both = run_cli(*common, *finetune, "--outdir", str(tmp_path / "halves"), "--kimg", "0.128", "--resume", "latest")
    assert both.exit_code == 2 and "drop --finetune-from to continue a fine-tune run" in both.output
    assert both.output.count("\n") == 1

    resumed = run_cli(*common, "--trainable", "attention", "--freeze-d", "1", "--outdir", str(tmp_path / "halves"),
                      "--kimg", "0.128", "--resume", "latest")
    assert resumed.exit_code == 0, resumed.output
    a, b = last_snapshot(tmp_path / "whole"), last_snapshot(tmp_path / "halves")
    assert a["progress"]["images_seen"] == b["progress"]["images_seen"] == 128
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    for key in ("opt_G", "opt_D"):
        for index, state in a[key]["state"].items():
            assert torch.equal(state["exp_avg_sq"], b[key]["state"][index]["exp_avg_sq"]), f"{key} {index}"


def test_a_checkpoint_with_only_a_generator_is_a_source_with_no_d(make_tiny_checkpoint, tmp_path):
    """A fine-tune source needs the generator's config and G_ema, not a whole training checkpoint."""
    from nestgan.training.finetune import load_source

    path = make_tiny_checkpoint(tmp_path / "generator-only.pt")
    source = load_source(path)
    assert source.D is None and source.config["generator"] == load_checkpoint(path)["config"]["generator"]
    assert source.G.keys() == load_checkpoint(path)["G_ema"].keys()


def test_finetune_builds_the_networks_of_its_source_over_the_dataset_preset(tiny, tmp_path):
    """Without a --config file, the dataset preset (shapes: 32 px, its own networks) gives way to the source's
    networks, and --dry-run says so; a flag naming another generator replaces the source's (its table with it)."""
    _, _, source = tiny
    trained = load_checkpoint(source)["config"]
    result = run_cli("--dry-run", "--finetune-from", str(source), "--trainable", "attention")
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    for key in ("resolution", "g", "generator", "d", "discriminator"):
        assert cfg[key] == trained[key], key
    assert f"networks of --finetune-from {source} applied over the shapes preset" in result.stderr
    other = run_cli("--dry-run", "--finetune-from", str(source), "--g", "conv", "--resolution", "32")
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["generator"]["arch"] == "conv"


def test_finetune_from_a_generator_export_starts_d_fresh(tiny, tmp_path):
    config, common, source = tiny
    G, cfg, progress = read_generator(source)
    export = tmp_path / "G.safetensors"
    export_generator(export, G, cfg, progress)
    frozen_d = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--finetune-from", str(export), "--freeze-d", "1")
    assert frozen_d.exit_code == 2 and "holds no D (a generator export)" in frozen_d.output

    result = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--kimg", "0.032", "--finetune-from", str(export),
                     "--trainable", "attention")
    assert result.exit_code == 0, result.output
    assert "G and G_ema from its G_ema; D from scratch (the file holds no D)" in result.output
    end = last_snapshot(tmp_path / "runs")
    for name, before in G.state_dict().items():
        assert torch.equal(end["G"][name], before) != ("attn" in name), name


def test_a_mismatched_checkpoint_is_one_line_naming_the_difference(tiny, tmp_path):
    config, common, source = tiny
    wider = tmp_path / "wider.toml"
    wider.write_text(TINY_TOML.replace("widths = [32, 16, 16]", "widths = [64, 16, 16]"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_gan.py"), *common, "--config", str(wider), "--finetune-from", str(source),
         "--outdir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: cannot fine-tune from ") and proc.stderr.count("\n") == 1
    assert "its generator differs (widths [32, 16, 16] there, [64, 16, 16] here)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    other_d = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--finetune-from", str(source), "--d", "dcgan")
    assert other_d.exit_code == 2 and "its d differs ('resnet' there, 'dcgan' here)" in other_d.output
    bigger = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--finetune-from", str(source), "--resolution", "32",
                     "--g", "conv")
    assert bigger.exit_code == 2 and "its resolution differs (16 there, 32 here)" in bigger.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--finetune-from", "x.pt", "--resume", "latest"], "--finetune-from starts a new run"),
        (["--trainable", "attention"], "add --finetune-from CKPT"),
        (["--freeze-d", "1"], "add --finetune-from CKPT"),
        (["--finetune-from", "x.pt", "--freeze-d", "-1"], "freeze_d must be >= 0"),
        (["--finetune-from", "x.pt", "--trainable", "attention", "--g", "conv"], "has no attention parameters"),
        (["--finetune-from", "x.pt", "--freeze-d", "4"], "has only 3 blocks; use --freeze-d 0 to 3"),
        (["--finetune-from", "x.pt", "--d", "nest", "--freeze-d", "4"],
         "the nest discriminator at 32 px has only 3 blocks; use --freeze-d 0 to 3"),
        (["--attribute", "Eyeglasses"], "data 'shapes' has none"),
    ],
)
def test_impossible_flags_are_one_line_errors(args, needle):
    result = run_cli("--dry-run", *args)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_dry_run_counts_trainable_parameters():
    result = run_cli("--dry-run", "--data", "celeba", "--device", "cpu", "--finetune-from", "x.pt",
                     "--trainable", "attention", "--freeze-d", "2")
    assert result.exit_code == 0, result.output
    assert "networks: G nest 5.57M params, 0.60M trainable, D dcgan 2.76M params, 2.63M trainable" in result.stderr
    assert "networks: G nest 1.13M params, 1.13M trainable" in run_cli("--dry-run").stderr


@pytest.mark.parametrize("arch", ["resnet", "dcgan"])
def test_freeze_d_blocks_are_one_per_halving_input_first(arch):
    D = build_discriminator(arch, 64, **({"norm": "batch"} if arch == "dcgan" else {}))
    blocks = D.input_blocks()
    assert len(blocks) == 4  # 64 -> 32 -> 16 -> 8 -> 4
    covered = {id(p) for block in blocks for p in block.parameters()}
    first = {id(p) for p in blocks[0].parameters()}
    input_conv = D.from_rgb if arch == "resnet" else D.net[0]
    assert {id(p) for p in input_conv.parameters()} <= first
    head = D.out if arch == "resnet" else D.net[-1]
    assert not {id(p) for p in head.parameters()} & covered  # the logit layer always trains


def test_freeze_d_blocks_of_the_nest_discriminator_are_its_levels():
    preset = {k: v for k, v in discriminator_preset("nest-d-64").items() if k != "arch"}
    D = build_discriminator("nest", 64, **preset)
    blocks = D.input_blocks()
    assert len(blocks) == len(D.levels) == 3  # 16x16, 8x8 and 4x4 token maps

    def ids(*modules) -> set[int]:
        return {id(p) for m in modules for p in m.parameters()}

    assert ids(blocks[0]) == ids(D.patch_embed, D.levels[0])
    for i in (1, 2):  # each later level with the aggregation that halves the map into it
        assert ids(blocks[i]) == ids(D.aggregations[i - 1], D.levels[i])
    epilogue = ids(D.norm, D.fc, D.out)
    assert not epilogue & ids(*blocks) and epilogue | ids(*blocks) == ids(D)


def test_freeze_d_with_the_nest_discriminator_keeps_its_first_level(tiny_flags, tmp_path):
    config = tmp_path / "nest-d.toml"
    config.write_text(NEST_D_TOML)
    common = ["--config", str(config), *tiny_flags[2:], "--kimg", "0.032"]
    source = run_cli(*common, "--outdir", str(tmp_path / "source"))
    assert source.exit_code == 0, source.output
    (source_path,) = (tmp_path / "source").glob("*/network-snapshot-*.pt")
    too_many = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--finetune-from", str(source_path),
                       "--freeze-d", "3")
    assert too_many.exit_code == 2 and "the nest discriminator at 16 px has only 2 blocks" in too_many.output

    result = run_cli(*common, "--outdir", str(tmp_path / "runs"), "--finetune-from", str(source_path),
                     "--freeze-d", "1")
    assert result.exit_code == 0, result.output
    start, end = load_checkpoint(source_path)["D"], last_snapshot(tmp_path / "runs")
    frozen = [name for name in start if name.startswith(("patch_embed.", "levels.0."))]
    assert frozen and all(torch.equal(end["D"][name], start[name]) for name in frozen)
    for name in ("aggregations.0.conv.weight", "levels.1.pos_embed", "out.weight"):  # the rest trains
        assert not torch.equal(end["D"][name], start[name]), name
    assert len(end["opt_D"]["state"]) == len(start) - len(frozen)  # no optimiser state for the frozen level


def _ddp_worker(rank: int, rendezvous: str, result_file: str) -> None:
    from nestgan.config import TrainConfig
    from nestgan.training import distributed
    from nestgan.training.step import build_state, training_step

    torch.set_num_threads(1)
    cfg = TrainConfig.from_sources({}, {}, {
        "resolution": 16, "generator": TINY_GENERATOR, "discriminator": {"channel_base": 128, "channel_max": 16},
        "batch": 16, "precision": "fp32", "r1_interval": 2, "finetune_from": "unused.pt", "trainable": "attention",
        "freeze_d": 1}, world_size=2)
    with distributed.process_group(distributed.World(rank, 2, rank), "cpu", 60, rendezvous):
        s = build_state(cfg, torch.device("cpu"), rank)
        before = {name: t.clone() for name, t in (*s.G.named_parameters(), *s.D.named_parameters())}
        data = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(rank)) * 2 - 1
        for _ in range(2):
            training_step(s, data, cfg, micro_batch=8)
        frozen = [name for name, p in (*s.G.named_parameters(), *s.D.named_parameters()) if not p.requires_grad]
        after = dict((*s.G.named_parameters(), *s.D.named_parameters()))
        unchanged = all(torch.equal(before[n], after[n]) and after[n].grad is None for n in frozen)
        if rank == 0:
            Path(result_file).write_text(f"{len(frozen) > 0} {unchanged}")


def test_two_ranks_average_only_the_trainable_gradients(tmp_path):
    result = tmp_path / "result.txt"
    mp.spawn(_ddp_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(result)), nprocs=2, join=True)
    assert result.read_text() == "True True"


# ----------------------------------------------------------------------------------- CelebA attribute subset


def fake_celeba(root: Path) -> Path:
    """Six 24x20 solid-colour images (image k has red = 40 k); 1-4 train, 5-6 valid; Eyeglasses on 2, 3 and 5."""
    (root / "img_align_celeba").mkdir(parents=True)
    for k in range(1, 7):
        Image.new("RGB", (20, 24), (40 * k, 0, 0)).save(root / "img_align_celeba" / f"{k:06d}.jpg", quality=100)
    (root / "list_eval_partition.txt").write_text("".join(f"{k:06d}.jpg {0 if k <= 4 else 1}\n" for k in range(1, 7)))
    glasses = {2, 3, 5}
    rows = "".join(f"{k:06d}.jpg -1 {' 1' if k in glasses else '-1'}  1\n" for k in range(1, 7))
    (root / "list_attr_celeba.txt").write_text(f"6\nBald Eyeglasses Smiling\n{rows}")
    return root


def reds(dataset) -> list[int]:
    return sorted(int(round(float(np.asarray(dataset.images[i][0]).mean()) / 40)) for i in range(len(dataset)))


def test_attribute_keeps_the_images_with_it_in_the_split_and_names_the_subset(tmp_path):
    data = fake_celeba(tmp_path / "celeba")
    cache = tmp_path / "cache"
    everything = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, progress=False)
    glasses = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="Eyeglasses", progress=False)
    without = load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="-Eyeglasses", progress=False)
    assert (reds(everything), reds(glasses), reds(without)) == ([1, 2, 3, 4], [2, 3], [1, 4])
    assert reds(load_dataset("celeba", 8, data_dir=data, split="valid", cache_dir=cache, attribute="Eyeglasses",
                             progress=False)) == [5]
    # Every key of the subset names it: prepared cache, FID reference (pixels_id), run directory.
    assert everything.pixels_id.startswith("celeba-8-px") and glasses.pixels_id.startswith("celeba-Eyeglasses-8-px")
    assert without.pixels_id.startswith("celeba-not-Eyeglasses-8-px")
    assert glasses.directory.name.startswith("celeba-Eyeglasses-8-") and glasses.directory != everything.directory

    with pytest.raises(ConfigError, match=r"unknown CelebA attribute 'Eyeglass': .* e\.g\. Eyeglasses"):
        load_dataset("celeba", 8, data_dir=data, cache_dir=cache, attribute="Eyeglass")
    with pytest.raises(ConfigError, match="dataset 'shapes' has none"):
        load_dataset("shapes", 8, cache_dir=cache, attribute="Eyeglasses")


def test_training_on_an_attribute_subset_names_it(tiny_flags, tmp_path):
    data = fake_celeba(tmp_path / "celeba")
    args = [*tiny_flags, "--data", "celeba", "--data-dir", str(data), "--outdir", str(tmp_path / "runs"), "--kimg", "0.016"]
    bad = run_cli(*args, "--attribute", "Glasses")
    assert bad.exit_code == 2 and "unknown CelebA attribute 'Glasses'" in bad.output and bad.output.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    result = run_cli(*args, "--attribute", "Eyeglasses")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "00000-celeba-Eyeglasses-nest-16"
    assert json.loads((run / "config.json").read_text())["data"]["attribute"] == "Eyeglasses"
    assert "data       celeba-Eyeglasses (2 images" in (run / "log.txt").read_text()


def test_eyeglasses_subset_of_the_shared_celeba_sample(shared_data, tmp_path):
    """The count docs/usage.md gives: the shared sample's train split holds 674 images with Eyeglasses."""
    plan = celeba_plan(shared_data / "celeba", "train", 64, False, tmp_path, attribute="Eyeglasses")
    assert plan.available == 674 and plan.attribute == "Eyeglasses"
