"""Benchmark harness: FLOP counts against hand counts, a tiny end-to-end run (JSON, markdown, PNG), CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from nestgan.bench import family, main, peak_memory, run_benchmark, time_interleaved, write_outputs
from nestgan.networks.summary import count_flops
from nestgan.networks.transformer import TransformerLayer

TINY_NEST = {"arch": "nest", "z_dim": 16, "init_size": 4, "block_size": 4, "widths": [32, 16], "depths": [1, 1],
             "heads": [2, 1]}  # 8 px
TINY_TRANSGAN = {"arch": "transgan", "z_dim": 16, "init_size": 4, "widths": [32, 8], "depths": [1, 1], "heads": 2}
TINY_D = {"channel_base": 64, "channel_max": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def transformer_layer_flops(tokens: int, dim: int, mlp_ratio: int = 4) -> int:
    """Hand count for one sequence (multiply-add = 2): qkv, QK^T and AV, output projection, two MLP linears."""
    n, c = tokens, dim
    return 2 * n * c * 3 * c + 2 * 2 * n * n * c + 2 * n * c * c + 2 * 2 * n * c * mlp_ratio * c


@pytest.mark.parametrize("blocks,tokens,dim,heads", [(3, 16, 32, 2), (1, 64, 24, 4)])
def test_transformer_layer_flops_match_hand_count(blocks, tokens, dim, heads):
    layer = TransformerLayer(dim, heads)
    # The attention term is what FlopCounterMode alone misses on CPU; both shapes would fail without it.
    assert count_flops(layer, torch.randn(blocks, tokens, dim)) == blocks * transformer_layer_flops(tokens, dim)


def test_family_drops_the_resolution():
    assert family("nest-64") == "nest"
    assert family("transgan-64-matched") == "transgan-matched"
    assert family("transgan-128-matched") == "transgan-matched"


def test_time_interleaved_calls_each_once_per_round_in_rotated_order():
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    seconds = time_interleaved(calls, repeats=3, warmup=1, device=torch.device("cpu"))
    assert order == list("abc" "abc" "bca" "cab")
    assert all(len(s) == 3 and all(t >= 0 for t in s) for s in seconds.values())


def test_tiny_benchmark_writes_wellformed_json_markdown_and_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the PNG needs the plot extra")  # installed by the test extra
    generators = {"tiny-nest-8": TINY_NEST, "tiny-transgan-8": TINY_TRANSGAN}
    result = run_benchmark(generators, batches=[2], precisions=["fp32", "bf16"], device=torch.device("cpu"),
                           repeats=2, warmup=1, train=True, memory=False, profile=True, matmul_size=64,
                           d_kwargs=TINY_D, log=lambda _: None)
    written = write_outputs(result, tmp_path, "tiny", pairs=[("tiny-nest-8", "tiny-transgan-8")])
    assert [p.name for p in written] == ["tiny.json", "tiny.md", "tiny.png"]

    loaded = json.loads((tmp_path / "tiny.json").read_text())
    assert loaded["machine"]["torch_version"] == torch.__version__ and loaded["machine"]["threads"] >= 1
    assert len(loaded["rows"]) == 4  # 2 generators x 1 batch x 2 precisions
    positive = ("params", "flops_per_image", "forward_images_per_s", "achieved_flops_per_s", "matmul_flops_per_s",
                "matmul_share", "train_images_per_s")
    for row in loaded["rows"]:
        assert all(row[key] > 0 for key in positive), row
        assert row["resolution"] == 8 and row["batch"] == 2 and row["device"] == "cpu"
        assert len(row["forward_seconds"]) == len(row["train_seconds"]) == 2
        assert row["device_name"] and row["torch_version"] and row["threads"] >= 1
        assert row["peak_memory_bytes"] is None  # memory=False
    assert {r["precision"] for r in loaded["matmul"]} == {"fp32", "bf16"}
    assert all(m["flops_per_s"] > 0 for m in loaded["matmul"])
    profile = loaded["profiles"][0]
    assert abs(sum(c["share"] for c in profile["categories"].values()) - 1) < 1e-6
    assert any(op["category"] == "attention" for p in loaded["profiles"] for op in p["top_ops"])

    markdown = (tmp_path / "tiny.md").read_text()
    assert "| tiny-nest-8 | 8 | 2 | fp32 |" in markdown and "| tiny-nest-8 | tiny-transgan-8 | 2 | fp32 |" in markdown
    assert (tmp_path / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_memory_is_measured_in_a_fresh_process():
    before, peak, kind = peak_memory(TINY_NEST, batch=2, precision="fp32", device=torch.device("cpu"))
    assert 0 < before <= peak and kind


@pytest.mark.parametrize("args,message", [
    (["--precision", "fp64"], "unknown precision 'fp64'"),
    (["--generators", "nest-65"], "unknown generator 'nest-65'"),
    (["--batch", "16,x"], "positive integers"),
    (["--ratio", "nest-64"], "A:B"),
    (["--d", "stylegan"], "--d must be one of"),
])
def test_bad_cli_input_is_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(main, ["--generators", "nest-32", "--no-memory", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("error: ") and message in result.output


def test_recipes_are_timed_as_whole_training_steps(tmp_path):
    """--recipes times each training config's own step (its G, D, batch): a DCGAN row beside a NesT one."""
    nest = tmp_path / "tiny-nest.toml"
    nest.write_text('resolution = 16\nbatch = 4\nd = "dcgan"\nshared_fakes = true\n[generator]\narch = "nest"\n'
                    'z_dim = 16\ninit_size = 4\nblock_size = 4\nwidths = [16, 8, 8]\ndepths = [1, 1, 1]\n'
                    'heads = [2, 1, 1]\n')  # 16 px
    dcgan = tmp_path / "tiny-dcgan.toml"
    dcgan.write_text('resolution = 32\nbatch = 8\ng = "dcgan"\nd = "dcgan"\n[generator]\nngf = 8\n'
                     '[discriminator]\nnorm = "batch"\nchannel_base = 8\n')
    result = CliRunner().invoke(main, ["--generators", "none", "--recipes", f"{nest},{dcgan}", "--precision", "fp32",
                                       "--repeats", "1", "--warmup", "0", "--no-memory", "--out", str(tmp_path),
                                       "--tag", "recipes"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "recipes.json").read_text())["recipes"]
    assert [(r["recipe"], r["g"], r["batch"]) for r in rows] == [("tiny-nest", "nest", 4), ("tiny-dcgan", "dcgan", 8)]
    assert all(r["train_images_per_s"] > 0 and len(r["train_seconds"]) == 1 for r in rows)
    report = (tmp_path / "recipes.md").read_text()
    assert "| tiny-dcgan | dcgan | dcgan | 32 | 8 | fp32 |" in report and "1.00x" in report
    assert not (tmp_path / "recipes.png").exists()  # no generator rows, no throughput plot


def test_a_recipe_with_the_nest_discriminator_is_timed_with_its_r1_step(tmp_path):
    """d = "nest" in a recipe: its preset resolves as in train_gan.py; the one timed step is step 0, so it runs R1
    (a double backward through the discriminator's attention) in fp32."""
    recipe = tmp_path / "tiny-nestd.toml"
    recipe.write_text('resolution = 16\nbatch = 4\nd = "nest"\nshared_fakes = true\n[generator]\narch = "nest"\n'
                      'z_dim = 16\ninit_size = 4\nblock_size = 4\nwidths = [16, 8, 8]\ndepths = [1, 1, 1]\n'
                      'heads = [2, 1, 1]\n[discriminator]\npreset = "nest-d-32"\npatch_size = 1\n'
                      'widths = [16, 16, 32]\ndepths = [1, 1, 1]\nheads = [1, 1, 2]\n')
    result = CliRunner().invoke(main, ["--generators", "none", "--recipes", str(recipe), "--precision", "fp32",
                                       "--repeats", "1", "--warmup", "0", "--no-memory", "--out", str(tmp_path),
                                       "--tag", "nestd"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "nestd.json").read_text())["recipes"]
    assert (row["recipe"], row["d"], row["resolution"]) == ("tiny-nestd", "nest", 16) and row["train_images_per_s"] > 0
