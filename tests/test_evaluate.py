"""evaluate.py end to end: a tiny checkpoint against real CelebA images with the real (converted, offline) Inception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestgan.commands import evaluate
from nestgan.metrics import MetricsReport, fidelity, parse_metric_name
from nestgan.metrics.inception_weights import CONVERTED_NAME, ENV_VAR


# KID and precision/recall on 10 images: real Inception features, cached reference, json lines; cheap on a CPU.
# (FID of 2048-d statistics needs a 2048 x 2048 eigen-decomposition, about a minute on a busy 2-core machine;
# FID through evaluate_metrics is covered in test_metrics.py with a small feature extractor.)
METRICS = "kid10,pr_inception10"
RECORD_KEYS = {"metric", "results", "num_gen", "num_reals", "reference", "extractor", "weights_sha256", "wall_s",
               "checkpoint", "kimg", "train_s"}


@pytest.fixture
def run_dir(tmp_path, shared_data, converted_inception, make_tiny_checkpoint, monkeypatch):
    """A checkpoint trained (nominally) on the first 12 CelebA images, and a cache holding the converted Inception."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    cache = tmp_path / "cache"
    (cache / "inception").mkdir(parents=True)
    for name in (CONVERTED_NAME, CONVERTED_NAME + ".sha256"):
        shutil.copy(converted_inception.path.with_name(name), cache / "inception" / name)
    data = {"name": "celeba", "data_dir": str(shared_data / "celeba"), "split": "train", "max_images": 12}
    make_tiny_checkpoint(tmp_path / "run" / "network-snapshot-000001.pt", data)
    return tmp_path


def evaluate_cli(*args: str):
    return CliRunner().invoke(evaluate.main, [*args, "--device", "cpu"])


def test_evaluate_prints_values_appends_json_lines_and_reuses_the_reference(run_dir, converted_inception, monkeypatch):
    """Offline evaluation of KID and PR: one printed line and one json line per metric with what is needed to
    reproduce it; a second run reads no real image and leaves the cached reference files untouched."""
    ckpt, cache = run_dir / "run" / "network-snapshot-000001.pt", run_dir / "cache"
    first = evaluate_cli("--ckpt", str(ckpt), "--metrics", METRICS, "--cache-dir", str(cache), "--batch", "16")
    assert first.exit_code == 0, (first.output, first.exception)
    assert all(key in first.stdout for key in ("kid10_mean", "pr_inception10_precision", "pr_inception10_recall"))
    assert "10 generated vs 10 real celeba-16-" in first.stdout

    records = {}
    for metric in ("kid10", "pr_inception10"):
        lines = (run_dir / "run" / f"metric-{metric}.jsonl").read_text().splitlines()
        assert len(lines) == 1
        records[metric] = json.loads(lines[0])
        assert RECORD_KEYS <= set(records[metric])
    kid = records["kid10"]
    assert kid["metric"] == "kid10" and set(kid["results"]) == {"kid10_mean", "kid10_std"}
    assert (kid["num_gen"], kid["num_reals"]) == (10, 10)
    assert kid["reference"].startswith("celeba-16-") and kid["extractor"] == "inception-v3-compat"
    assert (kid["weights_sha256"], kid["weights_source"]) == (converted_inception.sha256, "converted")
    assert kid["checkpoint"] == str(ckpt) and kid["wall_s"] > 0
    assert (kid["kimg"], kid["train_s"]) == (1.0, 12.5)  # the checkpoint's place in its run, for curves over time
    assert 0 <= records["pr_inception10"]["results"]["pr_inception10_precision"] <= 1

    cached = {p: p.stat().st_mtime_ns for p in (cache / "fidelity").iterdir()}
    assert cached, "no reference was cached"

    def no_reals(*args, **kwargs):
        raise AssertionError("the second evaluation read real images")

    monkeypatch.setattr(fidelity, "_real_batches", no_reals)
    second = evaluate_cli("--ckpt", str(ckpt), "--metrics", METRICS, "--cache-dir", str(cache), "--batch", "16")
    assert second.exit_code == 0, (second.output, second.exception)
    assert {p: p.stat().st_mtime_ns for p in (cache / "fidelity").iterdir()} == cached
    again = json.loads((run_dir / "run" / "metric-kid10.jsonl").read_text().splitlines()[1])
    assert again["results"] == kid["results"]  # same seed, same reference: the same numbers


@pytest.mark.parametrize(
    "problem, args",
    [("missing checkpoint", ["--ckpt", "{tmp}/missing.pt"]),
     ("corrupt checkpoint", ["--ckpt", "{tmp}/corrupt.pt"]),
     ("unknown metric", ["--ckpt", "{ckpt}", "--metrics", "kid10,lpips10"]),
     ("not Inception weights", ["--ckpt", "{ckpt}", "--inception-weights", "{tmp}/corrupt.pt"])],
)
def test_evaluate_user_errors_exit_2_with_one_line(run_dir, problem, args):
    """Bad checkpoints, metric names or weights: exit 2 and a single 'error:' line, no traceback, nothing written."""
    ckpt = run_dir / "run" / "network-snapshot-000001.pt"
    (run_dir / "corrupt.pt").write_bytes(ckpt.read_bytes()[:4096])
    args = [a.format(tmp=run_dir, ckpt=ckpt) for a in args]
    if "--metrics" not in args:
        args += ["--metrics", "kid10"]
    result = evaluate_cli(*args, "--cache-dir", str(run_dir / "cache"))
    assert result.exit_code == 2, (problem, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    assert "Traceback" not in result.output
    assert not list((run_dir / "run").glob("metric-*.jsonl"))


def fid1k_report(dataset, value: float) -> MetricsReport:
    """What evaluate_metrics would return for fid1k, for tests that replace it."""
    return MetricsReport(values={"fid1k": value}, specs=[parse_metric_name("fid1k")], num_reals={"fid1k": 12},
                         reference=dataset.pixels_id, extractor="inception-v3-compat", weights_sha256="-",
                         weights_source="test", internal_dtype="float32", seed=0, device="cpu", wall_s=1.0)


def test_default_metrics_fit_the_device():
    """Without --metrics: fid50k_full on CUDA; on a CPU the dataset preset's [cpu] choice, else its metrics, else
    fid1k. A long evaluation on a CPU gets a rough expected time, a short one none."""
    assert evaluate.default_metrics("cuda", "celeba")[0] == ["fid50k_full"]
    names, why = evaluate.default_metrics("cpu", "celeba")
    assert names == ["fid1k"]
    assert why.startswith("the [cpu] choice of the celeba preset on a CPU, instead of fid50k_full")
    assert evaluate.default_metrics("cpu", "shapes")[0] == ["fid500"]  # no [cpu] table: the preset's own, CPU-sized
    note = evaluate.cpu_time_note([parse_metric_name("fid50k_full")], 202_599, threads=2)
    assert note.startswith("expect roughly 10.0 hours: 252599 images through Inception at about 7 images/s")
    assert evaluate.cpu_time_note([parse_metric_name("fid1k")], 202_599, threads=2) is None


def test_evaluate_without_metrics_on_a_cpu_runs_the_presets_cpu_choice_and_says_why(run_dir, monkeypatch):
    """A CelebA checkpoint evaluated on a CPU with no --metrics computes fid1k (celeba's [cpu] choice), not
    fid50k_full, and says so on stderr before it starts."""
    asked = []

    def fake_evaluate(generator, dataset, names, device, **kwargs):
        asked.append(names)
        return fid1k_report(dataset, 12.5)

    monkeypatch.setattr(evaluate, "evaluate_metrics", fake_evaluate)
    ckpt = run_dir / "run" / "network-snapshot-000001.pt"
    result = evaluate_cli("--ckpt", str(ckpt), "--cache-dir", str(run_dir / "cache"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert asked == [["fid1k"]]
    assert result.stderr.startswith("metrics: fid1k (the [cpu] choice of the celeba preset on a CPU, instead of "
                                    "fid50k_full, which would take hours; choose others with --metrics)\n")
    assert result.stdout.startswith("fid1k 12.5000") and (run_dir / "run" / "metric-fid1k.jsonl").is_file()


def test_evaluate_attribute_scores_against_a_celeba_subset(run_dir, monkeypatch):
    """--attribute picks the real images by a list_attr_celeba.txt attribute (a source model scored against the
    subset it will be fine-tuned on); '' goes back to the whole set of a checkpoint trained on a subset."""
    seen = []

    def fake_evaluate(generator, dataset, names, device, **kwargs):
        seen.append(dataset.pixels_id)
        return fid1k_report(dataset, 1.0)

    monkeypatch.setattr(evaluate, "evaluate_metrics", fake_evaluate)
    ckpt, cache = run_dir / "run" / "network-snapshot-000001.pt", run_dir / "cache"
    for attribute in ("Eyeglasses", ""):
        result = evaluate_cli("--ckpt", str(ckpt), "--metrics", "fid1k", "--cache-dir", str(cache),
                              "--attribute", attribute)
        assert result.exit_code == 0, (result.output, result.exception)
    assert seen[0].startswith("celeba-Eyeglasses-16-") and seen[1].startswith("celeba-16-")
    bad = evaluate_cli("--ckpt", str(ckpt), "--metrics", "fid1k", "--cache-dir", str(cache), "--attribute", "Glasses")
    assert bad.exit_code == 2 and "unknown CelebA attribute 'Glasses'" in bad.stderr


def test_evaluate_samples_in_the_checkpoints_metrics_batch_unless_batch_is_given(run_dir, monkeypatch, shared_data,
                                                                                 make_tiny_checkpoint):
    """A generator that samples with each batch's own BatchNorm statistics is scored in its run's metrics_batch (its
    training batch), as its training snapshots and races were; --batch overrides it; a run without one gets 64."""
    batches = []

    def fake_evaluate(generator, dataset, names, device, **kwargs):
        batches.append(kwargs["batch_size"])
        return fid1k_report(dataset, 1.0)

    monkeypatch.setattr(evaluate, "evaluate_metrics", fake_evaluate)
    data = {"name": "celeba", "data_dir": str(shared_data / "celeba"), "split": "train", "max_images": 12}
    plain = run_dir / "run" / "network-snapshot-000001.pt"
    batch_stats = make_tiny_checkpoint(run_dir / "b128" / "network-snapshot-000001.pt", data, metrics_batch=128)
    common = ("--metrics", "fid1k", "--cache-dir", str(run_dir / "cache"))
    for args in ((str(batch_stats),), (str(batch_stats), "--batch", "16"), (str(plain),)):
        result = evaluate_cli("--ckpt", *args, *common)
        assert result.exit_code == 0, (result.output, result.exception)
    assert batches == [128, 16, 64]
    bad = evaluate_cli("--ckpt", str(plain), *common, "--batch", "0")
    assert bad.exit_code == 2 and "--batch" in bad.stderr
