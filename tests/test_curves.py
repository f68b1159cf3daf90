"""nestgan.curves: metric records of several runs -> a table of every point and a metric-over-time PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestgan.curves import main, read_points


def write_run(path: Path, g: str, records: dict[str, list[dict]]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"g": g, "resolution": 32}))
    for metric, lines in records.items():
        (path / f"metric-{metric}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def fid(kimg: float, train_s: float, value: float, name: str = "fid1k_full") -> dict:
    return {"metric": name, "results": {name: value}, "kimg": kimg, "train_s": train_s}


def kid(kimg: float, train_s: float, value: float) -> dict:
    return {"results": {"kid1k_full_mean": value, "kid1k_full_std": 0.001}, "kimg": kimg, "train_s": train_s}


@pytest.fixture
def runs(tmp_path):
    nest = write_run(tmp_path / "00000-celeba-nest-32", "nest", {
        # evaluated out of order, the 4 kimg point twice (the later record wins), one record without a place in time
        "fid1k_full": [fid(8.0, 1800.0, 150.0), fid(4.0, 900.0, 210.0), fid(4.0, 900.0, 200.0),
                       {"results": {"fid1k_full": 1.0}}],
        "kid1k_full": [kid(4.0, 900.0, 0.2), kid(8.0, 1800.0, 0.12)],
    })
    conv = write_run(tmp_path / "00001-celeba-conv-32", "conv", {"fid1k_full": [fid(5.0, 900.0, 180.0)]})
    return nest, conv


def test_points_are_joined_by_checkpoint_and_sorted_by_kimg(runs):
    nest, _ = runs
    points = read_points(nest, ["fid1k_full", "kid1k_full"])
    assert [(p.kimg, p.train_s) for p in points] == [(4.0, 900.0), (8.0, 1800.0)]
    assert points[0].values == {"fid1k_full": 200.0, "kid1k_full": 0.2}
    assert points[1].values == {"fid1k_full": 150.0, "kid1k_full": 0.12}


def test_cli_prints_every_point_and_writes_the_plot(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="the PNG needs the plot extra")  # installed by the test extra
    nest, conv = runs
    out = tmp_path / "plots" / "fid.png"
    result = CliRunner().invoke(main, [str(nest), str(conv), "--metric", "fid1k_full", "--metric", "kid1k_full",
                                       "--label", "NesT", "--label", "conv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| NesT") or line.startswith("| conv")]
    assert rows == ["| NesT | 4.0 | 15.0 | 200.0 | 0.2000 |", "| NesT | 8.0 | 30.0 | 150.0 | 0.1200 |",
                    "| conv | 5.0 | 15.0 | 180.0 |  |"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".*tmp*"))


def test_default_labels_come_from_the_run_config(runs):
    nest, conv = runs
    result = CliRunner().invoke(main, [str(nest), str(conv), "--metric", "fid1k_full"])
    assert result.exit_code == 0, result.output
    assert "| nest-32 | 4.0 |" in result.output and "| conv-32 | 5.0 |" in result.output


@pytest.mark.parametrize("args, message", [
    (["--metric", "fid5k_full"], "has no records of fid5k_full; evaluate its snapshots first"),
    (["--metric", "fid1k_full", "--label", "only-one"], "1 --label for 2 run directories"),
])
def test_unusable_input_is_one_clear_line(runs, args, message):
    nest, conv = runs
    result = CliRunner().invoke(main, [str(nest), str(conv), *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_missing_run_directory_is_named(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "nope"), "--metric", "fid1k_full"])
    assert result.exit_code != 0 and "run directory not found" in result.output
