"""train_gan.py: config resolution, user errors (exit 2, one line), run directories, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestgan.commands import train as train_gan
from nestgan.presets import read_toml
from nestgan.training.rundir import RunDir

REPO = Path(__file__).resolve().parent.parent

TINY_TOML = """
resolution = 16
batch = 16
tick_kimg = 0.032
snap = 2
precision = "fp32"
d = "resnet"  # the discriminator table below is sized for it
augment = "color,translation"
[data]
max_images = 256
[generator]
arch = "nest"
z_dim = 16
init_size = 4
block_size = 4
widths = [32, 16, 16]
depths = [1, 1, 1]
heads = [2, 1, 1]
[discriminator]
channel_base = 128
channel_max = 16
"""


def run_cli(*args: str):
    return CliRunner().invoke(train_gan.main, list(args))


def dry_run(*args: str) -> dict:
    result = run_cli("--dry-run", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # a note on which [cpu] table applies goes to stderr


def test_dry_run_prints_the_default_config():
    cfg = dry_run()
    assert cfg["data"]["name"] == "shapes" and cfg["resolution"] == 32
    assert cfg["generator"]["arch"] == "nest" and "widths" in cfg["generator"]  # the resolved preset dict


def test_flags_override_config_file_override_preset(tmp_path):
    file = tmp_path / "mine.toml"
    file.write_text('kimg = 5\nlr_g = 0.01\n[data]\nxflip = true\n')
    cfg = dry_run("--config", str(file), "--kimg", "7", "--metrics", "fid2k,kid2k", "--no-xflip")
    assert cfg["kimg"] == 7.0  # flag beats file
    assert cfg["lr_g"] == 0.01  # file beats preset
    assert cfg["data"]["xflip"] is False
    assert cfg["metrics"] == ["fid2k", "kid2k"]
    assert cfg["batch"] == 16  # from nestgan/configs/shapes.toml (the built-in default is 32)
    assert dry_run("--metrics", "none")["metrics"] == []
    recipe = dry_run("--config", str(file), "--lr-g", "3e-4", "--lr-d", "5e-5", "--r1-gamma", "0.5", "--ema-kimg", "2",
                     "--augment", "")
    assert (recipe["lr_g"], recipe["lr_d"], recipe["r1_gamma"], recipe["ema_kimg"]) == (3e-4, 5e-5, 0.5, 2.0)
    assert recipe["augment"] == ""  # an empty policy is a value, not "flag not given"


def test_preset_cpu_table_applies_on_cpu_only_and_flags_still_win():
    cfg = dry_run("--data", "celeba", "--device", "cpu")
    assert cfg["metrics"] == ["fid1k"]  # [cpu] of nestgan/configs/celeba.toml
    assert len(cfg["cpu_tables"]) == 1 and cfg["cpu_tables"][0].startswith(f"{(REPO / 'nestgan' / 'configs').as_posix()}/celeba.toml [cpu]: ")
    assert dry_run("--data", "celeba", "--device", "cpu", "--metrics", "fid10k")["metrics"] == ["fid10k"]
    assert "cpu" not in dry_run("--data", "celeba")


def test_dry_run_says_which_preset_tables_applied_and_why(monkeypatch):
    """stderr names each table and why it applied, the [cpu] table with the values it swapped (fid10k -> fid1k), and
    flags that win over it; the JSON on stdout carries the same lines as "sources"."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("--dry-run", "--data", "celeba", "--device", "cpu")
    notes = [line.removeprefix("config: ") for line in result.stderr.splitlines() if line.startswith("config: ")]
    assert notes == json.loads(result.stdout)["sources"]
    assert notes[0].startswith("celeba preset applied: data is celeba (") and notes[0].endswith("/celeba.toml)")
    assert notes[1].startswith("[cpu] of celeba preset (the CPU recipe) applied: device is cpu; "
                               "metrics fid10k -> fid1k, ")
    assert "batch 64 -> 32" in notes[1] and "generator table (preset, widths" in notes[1]
    assert notes[2:] == ["flags applied last: data.name, device",
                         "generator preset nest-64 applied: named by the [generator] table; "
                         "the [generator] table overrides widths, depths, heads, upsample, border_conv, head, "
                         "deaggregation, mlp_ratio"]
    auto = run_cli("--dry-run", "--data", "celeba", "--metrics", "fid10k").stderr
    assert ("[cpu] of celeba preset (the CPU recipe) applied: device is auto and torch sees no CUDA device; "
            "metrics fid10k -> fid1k") in auto
    assert "flags applied last: data.name, metrics (over the [cpu] value of metrics)" in auto
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    on_gpu = run_cli("--dry-run", "--data", "celeba").stderr
    assert ("config: [cpu] of celeba preset (the CPU recipe) not applied: device is auto and torch sees a CUDA "
            "device") in on_gpu
    assert "generator preset nest-64 applied: g is nest, resolution 64" in on_gpu


CPU_RECIPE = {"d": "dcgan", "batch": 32, "r1_gamma": 0.1, "augment": "translation", "beta1": 0.0, "ema_kimg": 1.0,
              "shared_fakes": True, "metrics": ["fid1k"]}
SMALL_NEST_64 = {"widths": [256, 128, 64], "depths": [2, 1, 1], "upsample": "bilinear"}  # on nest-64
LIGHT_NEST_64 = {"widths": [256, 128, 32], "depths": [2, 1, 1], "heads": [4, 4, 1], "upsample": "bilinear",
                 "border_conv": True, "head": "conv", "deaggregation": ["linear", "conv"], "mlp_ratio": 2.0}  # celeba's
SMALL_NEST_32 = {"widths": [128, 64], "depths": [2, 2], "out_patch": 2, "upsample": "bilinear"}  # shapes' generator


@pytest.mark.parametrize(("data", "resolution", "small_nest", "gpu_batch", "gpu_metric", "gpu_widths"), [
    ("folder", 64, LIGHT_NEST_64, 32, "fid5k", [384, 192, 96]),
    ("imagenet64", 64, SMALL_NEST_64, 64, "fid10k", [384, 192, 96]),
    ("cifar10", 32, SMALL_NEST_32, 64, "fid10k", [256, 128, 64]),
])
def test_presets_train_the_cpu_recipe_on_a_cpu(data, resolution, small_nest, gpu_batch, gpu_metric, gpu_widths,
                                               monkeypatch, tmp_path):
    """On a CPU the folder, imagenet64 and cifar10 presets train the CPU recipe (a small NesT against the DCGAN D
    without BatchNorm, batch 32), as celeba does, and --dry-run says so on stderr; --device cuda keeps the GPU values
    (nest-<resolution> against the residual D)."""
    import torch

    args = ["--dry-run", "--data", data, "--data-dir", str(tmp_path)]
    result = run_cli(*args, "--device", "cpu")
    cfg = json.loads(result.stdout)
    assert {key: cfg[key] for key in CPU_RECIPE} == CPU_RECIPE and cfg["resolution"] == resolution
    assert {key: cfg["generator"][key] for key in small_nest} == small_nest
    assert f"config: [cpu] of {data} preset (the CPU recipe) applied: device is cpu; " in result.stderr
    assert "d resnet -> dcgan" in result.stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    result = run_cli(*args, "--device", "cuda")
    cfg = json.loads(result.stdout)
    assert (cfg["d"], cfg["batch"], cfg["metrics"], cfg["cpu_tables"]) == ("resnet", gpu_batch, [gpu_metric], [])
    assert cfg["generator"]["widths"] == gpu_widths
    assert f"config: [cpu] of {data} preset (the CPU recipe) not applied: device is cuda" in result.stderr


def test_workers_is_not_an_alias_of_threads_and_resolutions_come_from_the_presets():
    """--workers means data-loader workers in StyleGAN2-ADA: here it is no option at all. --resolution offers the
    resolutions that have a generator preset, so 16 (no preset) is refused by click."""
    from nestgan.presets import preset_names

    workers = run_cli("--dry-run", "--workers", "2")
    assert workers.exit_code == 2 and "No such option '--workers'" in workers.stderr
    assert dry_run("--threads", "2")["threads"] == 2
    sizes = {name.split("-")[1] for name in preset_names("generators")}
    assert train_gan.preset_resolutions() == sorted(sizes, key=int) and "16" not in sizes
    refused = run_cli("--dry-run", "--resolution", "16")
    assert refused.exit_code == 2 and "'16' is not one of '32', '64', '128'" in refused.stderr


def test_g_and_resolution_flags_pick_the_stock_preset():
    cfg = dry_run("--g", "conv", "--resolution", "64")
    assert cfg["generator"]["arch"] == "conv" and cfg["resolution"] == 64
    assert cfg["d"] == "dcgan" and cfg["discriminator"] == {}  # --d not given: the shapes preset's D (no table) kept
    cfg = dry_run("--resolution", "64")
    assert cfg["generator"]["widths"] == [384, 192, 96]  # the slim shapes table was for 32 px: nest-64 instead


def test_generator_overrides_follow_a_resolution_change_but_not_another_generator(tmp_path):
    file = tmp_path / "bilinear.toml"
    file.write_text('[generator]\nupsample = "bilinear"\n')
    cfg = dry_run("--config", str(file), "--resolution", "64")
    assert cfg["generator"]["upsample"] == "bilinear" and cfg["generator"]["widths"] == [384, 192, 96]
    assert dry_run("--config", str(file), "--g", "nest")["generator"]["upsample"] == "bilinear"  # same g: kept
    cfg = dry_run("--config", str(file), "--g", "conv")
    assert cfg["generator"]["arch"] == "conv" and "upsample" not in cfg["generator"]


SHIPPED_CONFIGS = [path for folder in ("nestgan/configs", "configs/study", "configs/recipes")
                   for path in sorted((REPO / folder).glob("*.toml"))]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_shipped_config_resolves_with_its_own_values(path, tmp_path):
    """A committed config (dataset preset or study recipe) must load, and its keys must reach the run's config."""
    file = read_toml(path)
    cfg = dry_run("--config", str(path), "--device", "cpu", "--data-dir", str(tmp_path))  # folder needs a data dir
    cpu_overrides = file.get("cpu", {})
    for key, value in file.items():
        if isinstance(value, dict) or key in cpu_overrides:
            continue
        assert cfg[key] == value, key
    for key, value in file.get("data", {}).items():
        assert cfg["data"][key] == value, f"data.{key}"
    for table in ("generator", "discriminator"):  # every key of a component table reaches the built network's
        overridden = cpu_overrides.get(table, {})
        for key, value in file.get(table, {}).items():
            if key != "preset" and key not in overridden:
                assert cfg[table].get(key) == value, f"{table}.{key}"
    for key, value in cpu_overrides.items():
        if isinstance(value, dict):  # a [cpu.generator] or [cpu.discriminator] table: each of its keys is there
            for k, v in value.items():
                if k != "preset":
                    assert cfg[key].get(k) == v, f"cpu.{key}.{k}"
        else:
            assert cfg[key] == value, f"cpu.{key}"


@pytest.mark.parametrize(
    ("toml", "args", "needle"),
    [
        ("bogus_key = 1\n", [], "bogus_key"),
        ("[data]\nnmae = 'x'\n", [], "data.nmae"),
        ("kimg = 'many'\n", [], "'kimg' must be float"),
        ("", ["--batch", "30", "--batch-per-device", "8"], "not divisible"),
        ("", ["--precision", "fp16", "--device", "cpu"], "fp16 needs CUDA"),
        ("[generator]\npreset = 'nest-64'\n", [], "resolution = 32"),
        ("", ["--metrics", "fidelity"], "unknown metric"),
        ("", ["--minutes", "0"], "minutes must be > 0"),
        ("d = 'nest'\n[discriminator]\npreset = 'nest-d-99'\n", [], "unknown discriminators preset 'nest-d-99'"),
        ("[discriminator]\npreset = 'nest-d-32'\n", [], "builds a 'nest' discriminator but d = 'dcgan'"),
        ("resolution = 16\n[generator]\npreset = 'nest-32'\ninit_size = 4\n", ["--d", "nest"],
         "unknown discriminators preset 'nest-d-16'"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, toml, args, needle):
    file = tmp_path / "bad.toml"
    file.write_text(toml)
    result = run_cli("--config", str(file), "--outdir", str(tmp_path / "runs"), *args)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and needle in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing written before the config is known to be good


def test_missing_data_folder_is_one_line_exit_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_gan.py"), "--data", "folder", "--data-dir", str(tmp_path / "nowhere"),
         "--outdir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--g", "conv", "--d", "dcgan"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not any((tmp_path / "runs").glob("0*"))  # no run directory for a run that never started


def test_unwritable_outdir_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("--outdir", str(tmp_path / "file" / "runs"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 2 and "cannot write run directories under" in result.output
    assert not (tmp_path / "cache").exists()  # refused before the dataset was prepared


def test_resume_with_nothing_to_resume_is_a_config_error(tmp_path):
    result = run_cli("--resume", "latest", "--outdir", str(tmp_path / "runs"), "--metrics", "none")
    assert result.exit_code == 2 and "--resume latest" in result.output


def test_run_dirs_are_numbered_and_never_reused(tmp_path):
    (tmp_path / "00007-old").mkdir()
    (tmp_path / "notes").mkdir()
    first = RunDir.create(tmp_path, "shapes-nest-32")
    second = RunDir.create(tmp_path, "shapes-nest-32")
    assert first.path.name == "00008-shapes-nest-32" and second.path.name == "00009-shapes-nest-32"
    assert (tmp_path / "00007-old").is_dir()


def test_train_then_resume_latest_continues_in_a_new_run_dir(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    common = ["--config", str(config), "--outdir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
              "--metrics", "none", "--threads", "1"]
    first = run_cli(*common, "--kimg", "0.064")
    assert first.exit_code == 0, first.output
    run0 = tmp_path / "runs" / "00000-shapes-nest-16"
    for name in ("config.json", "log.txt", "reals.png", "fakes_init.png", "stats.jsonl", "network-snapshot-000000.064.pt"):
        assert (run0 / name).is_file(), name
    assert "tick 2" in (run0 / "log.txt").read_text()  # the console, tee'd
    stats0 = [json.loads(ln) for ln in (run0 / "stats.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in stats0] == [0.032, 0.064]
    assert {"sec_per_kimg", "img_per_s", "loss_g", "loss_d", "peak_mem_gib", "lr_g", "timestamp"} <= set(stats0[0])

    second = run_cli(*common, "--kimg", "0.128", "--resume", "latest")
    assert second.exit_code == 0, second.output
    run1 = tmp_path / "runs" / "00001-shapes-nest-16"
    assert "resumed from" in (run1 / "log.txt").read_text()
    assert json.loads((run1 / "config.json").read_text())["resume"] == str(run0 / "network-snapshot-000000.064.pt")
    stats1 = [json.loads(ln) for ln in (run1 / "stats.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in stats1] == [0.032, 0.064, 0.096, 0.128]  # history carried over, continuous
    assert [r["tick"] for r in stats1] == [1, 2, 3, 4]
    assert stats0 == [json.loads(ln) for ln in (run0 / "stats.jsonl").read_text().splitlines()]  # run 0 untouched

    done = run_cli(*common, "--kimg", "0.128", "--resume", "latest")
    assert done.exit_code == 2 and "raise --kimg" in done.output

    snapshot = str(sorted(run1.glob("network-snapshot-*.pt"))[-1])
    foreign = run_cli(*common, "--kimg", "0.256", "--resume", snapshot, "--d", "dcgan")
    assert foreign.exit_code == 2 and "its d differs ('resnet' there, 'dcgan' here)" in foreign.output
    assert len(list((tmp_path / "runs").iterdir())) == 2  # refused before a run directory was made


def test_nest_discriminator_trains_with_r1_and_resumes(tmp_path):
    """--d nest: preset nest-d-<resolution> by default, a [discriminator] table names another one and overrides it;
    R1 at the first step goes through its attention in fp32; the resolved table survives a resume."""
    assert dry_run("--d", "nest")["discriminator"] == {
        k: v for k, v in read_toml(REPO / "nestgan/configs/discriminators/nest-d-32.toml").items() if k != "arch"}
    config = tmp_path / "tiny.toml"
    config.write_text('r1_interval = 2\n' + TINY_TOML.split("[discriminator]")[0].replace('d = "resnet"', 'd = "nest"')
                      + '[discriminator]\n'
                      'preset = "nest-d-32"\npatch_size = 1\nwidths = [16, 16, 32]\nheads = [1, 1, 2]\n'
                      'depths = [1, 1, 1]\n')  # 16 px: 16 -> 8 -> 4 tokens a side
    common = ["--config", str(config), "--outdir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
              "--metrics", "none", "--threads", "1"]
    first = run_cli(*common, "--kimg", "0.064")
    assert first.exit_code == 0, first.output
    run0 = tmp_path / "runs" / "00000-shapes-nest-16"
    assert "D nest" in (run0 / "log.txt").read_text()
    saved = json.loads((run0 / "config.json").read_text())
    assert saved["d"] == "nest" and saved["discriminator"]["patch_size"] == 1 and "preset" not in saved["discriminator"]
    stats = [json.loads(ln) for ln in (run0 / "stats.jsonl").read_text().splitlines()]
    assert all(r["r1"] > 0 and abs(r["loss_d"]) < 100 for r in stats)
    second = run_cli(*common, "--kimg", "0.096", "--resume", "latest")
    assert second.exit_code == 0, second.output


def test_device_cuda_without_cuda_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli("--dry-run", "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA device" in result.output
