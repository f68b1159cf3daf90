"""A checkpoint written by an older commit (tests/fixtures/README.md says which) still resumes: the run continues
from its counters and random streams and lands where that commit's own continuation landed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from continue_resume_checkpoint import EXPECTED, FIXTURE, continue_fixture, sums  # noqa: E402


def test_a_checkpoint_from_before_the_refactor_resumes_where_its_own_code_went(tmp_path, one_thread):
    assert FIXTURE.stat().st_size < 1_000_000
    run_dir, ckpt = continue_fixture(str(tmp_path))
    log = (run_dir / "log.txt").read_text()
    assert f"resumed from {FIXTURE} at 0.032 kimg (tick 2, step 4)" in log
    assert "not bit-exact" not in log  # same world size and batch: random streams and data position restored
    expected = json.loads(EXPECTED.read_text())
    assert {k: v for k, v in ckpt["progress"].items() if k != "train_seconds"} == {
        k: v for k, v in expected["progress"].items() if k != "train_seconds"}
    got = sums(ckpt)
    for key in ("G_ema", "D"):
        assert got[key].keys() == expected[key].keys()
        for name, value in expected[key].items():
            assert got[key][name] == pytest.approx(value, rel=1e-4, abs=1e-5), f"{key}.{name}"
    assert torch.isfinite(torch.tensor(list(got["G_ema"].values()))).all()
